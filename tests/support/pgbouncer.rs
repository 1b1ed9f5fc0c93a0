//! Debian's PgBouncer in front of a PostgreSQL server, on a free port, for
//! the PgBouncer tests (`tests/api/pgbouncer.rs`) and benchmark
//! (`benches/harness/pgbouncer.rs`).

#![allow(dead_code)] // each includer (test, benchmark) uses its own part

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A PgBouncer process and its files, removed when dropped.
pub struct PgBouncer {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

impl PgBouncer {
    /// PgBouncer in `pool_mode` in front of the server `url` names (its
    /// first TCP host), trusting the URL's user.
    pub fn in_front_of(url: &str, pool_mode: &str, owner: Option<(u32, u32)>) -> Self {
        let config: tokio_postgres::Config = url.parse().expect("a PostgreSQL URL");
        let (host, port) = match (config.get_hosts().first(), config.get_ports().first()) {
            (Some(tokio_postgres::config::Host::Tcp(host)), port) => {
                (host.clone(), port.copied().unwrap_or(5432))
            }
            _ => panic!("PgBouncer needs the database URL to name a TCP host: {url:?}"),
        };
        let user = config.get_user().unwrap_or("postgres");
        Self::start(pool_mode, &host, port, user, owner)
    }

    /// PgBouncer in `pool_mode` in front of the server at `host`:`port`,
    /// trusting `user`, run as `owner` (it refuses root).
    pub fn start(
        pool_mode: &str,
        host: &str,
        port: u16,
        user: &str,
        owner: Option<(u32, u32)>,
    ) -> Self {
        let binary = "/usr/sbin/pgbouncer";
        assert!(
            std::path::Path::new(binary).exists(),
            "{binary} is missing: the PgBouncer tests need Debian's `pgbouncer` package \
             (`apt-get install -y pgbouncer`; .ci/run installs it)"
        );
        let dir = std::env::temp_dir().join(format!(
            "connector-control-pgbouncer-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let listen_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.display();
        std::fs::write(dir.join("userlist.txt"), format!("\"{user}\" \"\"\n")).unwrap();
        std::fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {d}/userlist.txt
pool_mode = {pool_mode}
default_pool_size = 8
max_client_conn = 500
pidfile = {d}/pgbouncer.pid
admin_users = {user}
"
            ),
        )
        .unwrap();
        let mut command = Command::new(binary);
        command
            // A directory it may enter, whoever it runs as.
            .current_dir(&dir)
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("pgbouncer.log")).unwrap());
        // PgBouncer refuses to run as root.
        if let Some((uid, gid)) = owner {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
        let child = command.spawn().expect("starting pgbouncer");
        let bouncer = Self {
            port: listen_port,
            dir,
            child,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", listen_port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "pgbouncer did not listen: {}",
                bouncer.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        bouncer
    }

    /// The URL of database `name` through this PgBouncer.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
