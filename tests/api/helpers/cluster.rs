//! A PostgreSQL server of a test's own (initdb, pg_ctl), for tests that
//! stop it or need settings the shared one must not get.

use super::TempDir;

/// A PostgreSQL server of this test's own, which it can stop and start:
/// the shared one serves every other test. Created with the machine's
/// PostgreSQL binaries (as the `postgres` user when the tests run as root,
/// since PostgreSQL refuses to run as root).
pub struct PrivateCluster {
    dir: TempDir,
    bin: std::path::PathBuf,
    pub port: u16,
    /// `-c name=value` settings the server runs with.
    settings: Vec<String>,
}

impl PrivateCluster {
    pub fn create() -> Self {
        Self::with_settings(&[])
    }

    /// With server settings of its own, `wal_level=logical` say.
    pub fn with_settings(settings: &[&str]) -> Self {
        let bin = postgres_bin();
        let dir = TempDir::new();
        if running_as_root() {
            run("chown", &["-R", "postgres", dir.0.to_str().unwrap()], false);
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = PrivateCluster {
            dir,
            bin,
            port,
            settings: settings.iter().map(|s| format!(" -c {s}")).collect(),
        };
        cluster.pg(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        cluster.start();
        cluster
    }

    fn data(&self) -> String {
        self.dir.0.join("data").display().to_string()
    }

    fn pg(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool).display().to_string();
        run(&program, args, running_as_root());
    }

    pub fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off{}",
            self.port,
            self.dir.0.display(),
            self.settings.concat()
        );
        let log = self.dir.0.join("log").display().to_string();
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    pub fn stop(&self) {
        self.pg("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// The URL of database `name` on it.
    pub fn url_of(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let program = self.bin.join("pg_ctl").display().to_string();
        let data = self.data();
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let _ = as_postgres(&program, &args, running_as_root()).output();
    }
}

fn postgres_bin() -> std::path::PathBuf {
    if let Ok(dir) = std::env::var("PG_BINDIR") {
        return dir.into();
    }
    let mut versions: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect(
            "PostgreSQL server binaries (initdb, pg_ctl) are needed: install postgresql, \
             or set PG_BINDIR",
        )
        .map(|entry| entry.unwrap().path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no initdb under /usr/lib/postgresql/*/bin")
}

fn running_as_root() -> bool {
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn as_postgres(program: &str, args: &[&str], root: bool) -> std::process::Command {
    let mut command = if root {
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", "postgres", "--", program]).args(args);
        command
    } else {
        let mut command = std::process::Command::new(program);
        command.args(args);
        command
    };
    // A directory every user may enter: run as postgres, it could not
    // enter the test's (a checkout under root's home, say).
    command.current_dir(std::env::temp_dir());
    command
}

fn run(program: &str, args: &[&str], root: bool) {
    let out = as_postgres(program, args, root)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
