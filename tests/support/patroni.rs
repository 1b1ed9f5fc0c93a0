//! A real PostgreSQL high-availability cluster on this machine, for the
//! failover test (`tests/api/patroni.rs`) and benchmark (`benches/harness/
//! failover.rs`): one etcd member (Debian's `etcd-server`) and two
//! PostgreSQL servers run by Debian's `patroni`, a primary and one
//! synchronous standby, every port free and chosen at start. The failover
//! is Patroni's own; this file only starts, observes and kills.
//!
//! PostgreSQL refuses to run as root: when the tests run as root, Patroni
//! (and so PostgreSQL) runs as the `postgres` user.

#![allow(dead_code)] // each includer (test, benchmark) uses its own part

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Patroni's timing, named in the benchmark's report: the leader key lives
/// `TTL` seconds unless renewed; each node's loop runs every `LOOP_WAIT`;
/// DCS and PostgreSQL calls are retried for `RETRY_TIMEOUT`
/// (`loop_wait + 2 * retry_timeout <= ttl`, as Patroni requires).
pub const TTL: u32 = 10;
pub const LOOP_WAIT: u32 = 1;
pub const RETRY_TIMEOUT: u32 = 4;

/// One Patroni-managed PostgreSQL server.
pub struct Node {
    pub name: String,
    pub pg_port: u16,
    pub rest_port: u16,
    dir: PathBuf,
    patroni: Child,
}

impl Node {
    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The postmaster's pid, from its pid file, while it runs.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let pid_file = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        pid_file.lines().next()?.trim().parse().ok()
    }
}

/// A member as Patroni's REST API reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub name: String,
    /// `leader`, `sync_standby`, `replica`, ...
    pub role: String,
    /// `running`, `starting`, `stopped`, ...
    pub state: String,
    pub timeline: Option<u64>,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub etcd_port: u16,
    dir: PathBuf,
    etcd: Child,
}

impl Cluster {
    /// Starts etcd and two Patroni nodes and waits until one is the leader
    /// and the other its synchronous standby. Panics, saying what to
    /// install, when the packages are missing.
    pub fn start() -> Self {
        for (program, package) in [("etcd", "etcd-server"), ("patroni", "patroni")] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {program}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            assert!(
                found,
                "`{program}` is not installed: the failover tests need Debian's `{package}` \
                 package (`apt-get install -y patroni etcd-server`; .ci/run installs it)"
            );
        }
        let bin_dir = postgres_bin_dir();
        let owner = postgres_owner();
        let dir = std::env::temp_dir().join(format!(
            "connector-control-patroni-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();

        let [etcd_port, etcd_peer_port] = [free_port(), free_port()];
        let etcd_log = std::fs::File::create(dir.join("etcd.log")).unwrap();
        let etcd = Command::new("etcd")
            .current_dir(&dir)
            .args([
                "--name",
                "e0",
                "--data-dir",
                dir.join("etcd").to_str().unwrap(),
                "--listen-client-urls",
                &format!("http://127.0.0.1:{etcd_port}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{etcd_port}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{etcd_peer_port}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{etcd_peer_port}"),
                "--initial-cluster",
                &format!("e0=http://127.0.0.1:{etcd_peer_port}"),
                "--initial-cluster-state",
                "new",
            ])
            .stdout(etcd_log.try_clone().unwrap())
            .stderr(etcd_log)
            .spawn()
            .expect("starting etcd");
        let mut cluster = Self {
            nodes: Vec::new(),
            etcd_port,
            dir: dir.clone(),
            etcd,
        };
        cluster.wait_for("etcd to answer", Duration::from_secs(30), |cluster| {
            http_get(cluster.etcd_port, "/health").is_some_and(|(status, _)| status == 200)
        });

        let scope = format!("cc-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        for index in 0..2 {
            let name = format!("node{index}");
            let node_dir = dir.join(&name);
            std::fs::create_dir_all(&node_dir).unwrap();
            std::fs::set_permissions(&node_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            let (pg_port, rest_port) = (free_port(), free_port());
            let config = node_dir.join("patroni.yml");
            std::fs::write(
                &config,
                patroni_config(
                    &scope, &name, &node_dir, &bin_dir, pg_port, rest_port, etcd_port,
                ),
            )
            .unwrap();
            let log = std::fs::File::create(node_dir.join("patroni.log")).unwrap();
            if let Some((uid, gid)) = owner {
                for path in [&node_dir, &config, &node_dir.join("patroni.log")] {
                    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
                }
            }
            let mut command = Command::new("patroni");
            command
                .arg(&config)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .env("HOME", &node_dir)
                // Its own directory: run as postgres, it could not enter
                // the test's (a checkout under root's home, say), and its
                // bootstrap would never finish.
                .current_dir(&node_dir);
            if let Some((uid, gid)) = owner {
                use std::os::unix::process::CommandExt;
                command.uid(uid).gid(gid);
            }
            let patroni = command.spawn().expect("starting patroni");
            cluster.nodes.push(Node {
                name,
                pg_port,
                rest_port,
                dir: node_dir,
                patroni,
            });
            // The first node bootstraps the cluster; the second joins it
            // by copying it, so it starts once there is a leader.
            if index == 0 {
                cluster.wait_for("the first node to lead", Duration::from_secs(60), |c| {
                    c.leader().is_some()
                });
            }
        }
        cluster.wait_until_replicated(Duration::from_secs(90));
        cluster
    }

    /// The control plane's URL: every node, the writable one chosen at
    /// each connection.
    pub fn database_url(&self) -> String {
        let hosts = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.pg_port))
            .collect::<Vec<_>>()
            .join(",");
        format!("postgres://postgres@{hosts}/postgres?target_session_attrs=read-write")
    }

    /// One node's URL, for looking at it directly.
    pub fn node_url(&self, index: usize) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.nodes[index].pg_port
        )
    }

    /// The members, as the first node that answers reports them.
    pub fn members(&self) -> Vec<Member> {
        for node in &self.nodes {
            let Some((200, body)) = http_get(node.rest_port, "/cluster") else {
                continue;
            };
            let Ok(cluster) = serde_json::from_str::<serde_json::Value>(&body) else {
                continue;
            };
            let members = cluster["members"].as_array().cloned().unwrap_or_default();
            return members
                .iter()
                .map(|member| Member {
                    name: member["name"].as_str().unwrap_or("").to_owned(),
                    role: member["role"].as_str().unwrap_or("").to_owned(),
                    state: member["state"].as_str().unwrap_or("").to_owned(),
                    timeline: member["timeline"].as_u64(),
                })
                .collect();
        }
        Vec::new()
    }

    /// The index of the node that leads and runs, if one does.
    pub fn leader(&self) -> Option<usize> {
        let members = self.members();
        let leader = members
            .iter()
            .find(|m| m.role == "leader" && m.state == "running")?;
        self.nodes.iter().position(|node| node.name == leader.name)
    }

    /// Waits until a leader runs with a synchronous standby that Patroni
    /// would fail over to: running, on the leader's timeline, within the
    /// allowed lag (a standby that just rejoined after a failover is none of
    /// these for a while, and a crashed primary would be restarted in place
    /// instead). Returns the leader's index.
    pub fn wait_until_replicated(&self, within: Duration) -> usize {
        self.wait_for(
            "a leader and a synchronous standby ready to take over",
            within,
            |cluster| {
                let members = cluster.members();
                let running = |role: &str| {
                    members
                        .iter()
                        .find(|m| m.role == role && m.state == "running")
                };
                let (Some(leader), Some(standby)) = (running("leader"), running("sync_standby"))
                else {
                    return false;
                };
                let Some(node) = cluster.nodes.iter().find(|n| n.name == standby.name) else {
                    return false;
                };
                leader.timeline.is_some()
                    && standby.timeline == leader.timeline
                    && http_get(node.rest_port, "/sync").is_some_and(|(status, _)| status == 200)
                    && http_get(node.rest_port, "/replica?lag=1MB")
                        .is_some_and(|(status, _)| status == 200)
            },
        );
        self.leader().expect("a leader")
    }

    /// SIGKILL to the leader's postmaster (its Patroni lives on and hands
    /// the leadership over: `primary_start_timeout` is 0). Returns the
    /// index of the node killed.
    pub fn kill_leader_postgres(&self) -> usize {
        let leader = self.leader().expect("a leader to kill");
        let pid = self.nodes[leader]
            .postmaster_pid()
            .expect("the leader's postmaster pid");
        eprintln!(
            "killing the postmaster of {} (pid {pid}) with SIGKILL",
            self.nodes[leader].name
        );
        kill("KILL", pid);
        leader
    }

    /// A switchover through Patroni's REST API: the leader is demoted
    /// (PostgreSQL shut down, its sessions ended with admin_shutdown, then
    /// started again as a standby) and the synchronous standby promoted.
    /// Returns the index of the node that led.
    pub fn switchover(&self) -> usize {
        let leader = self.leader().expect("a leader to switch over from");
        let candidate = (leader + 1) % self.nodes.len();
        let body = format!(
            r#"{{"leader": "{}", "candidate": "{}"}}"#,
            self.nodes[leader].name, self.nodes[candidate].name
        );
        eprintln!(
            "switching over from {} to {}",
            self.nodes[leader].name, self.nodes[candidate].name
        );
        let answer = http_request(self.nodes[leader].rest_port, "POST", "/switchover", &body);
        assert!(
            answer.as_ref().is_some_and(|(status, _)| *status == 200),
            "switchover refused: {answer:?}\n{}",
            self.logs()
        );
        leader
    }

    /// Waits until a node other than `old` leads and runs; its index.
    pub fn wait_for_new_leader(&self, old: usize, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            match self.leader() {
                Some(leader) if leader != old => return leader,
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "no new leader within {within:?}; cluster: {:?}\n{}",
                self.members(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What Patroni and etcd logged, for a failure message.
    pub fn logs(&self) -> String {
        let mut logs = String::new();
        for node in &self.nodes {
            let log = std::fs::read_to_string(node.dir.join("patroni.log")).unwrap_or_default();
            // What happened, not the loop's "no action" lines.
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .filter(|line| !line.contains("no action."))
                .take(30)
                .collect();
            logs.push_str(&format!("--- {} (last lines) ---\n", node.name));
            for line in tail.into_iter().rev() {
                logs.push_str(line);
                logs.push('\n');
            }
        }
        logs
    }

    fn wait_for(&self, what: &str, within: Duration, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + within;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "waited {within:?} for {what}; cluster: {:?}\n{}",
                self.members(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Patroni stops its PostgreSQL on SIGTERM; whatever still runs
        // afterwards is killed, so that nothing outlives the test.
        for node in &mut self.nodes {
            kill("TERM", node.patroni.id());
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &mut self.nodes {
            while node.patroni.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = node.patroni.kill();
            let _ = node.patroni.wait();
            if let Some(pid) = node.postmaster_pid() {
                kill("KILL", pid);
            }
        }
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!(
                "the Patroni cluster's files are kept in {}",
                self.dir.display()
            );
        }
    }
}

fn patroni_config(
    scope: &str,
    name: &str,
    dir: &Path,
    bin_dir: &Path,
    pg_port: u16,
    rest_port: u16,
    etcd_port: u16,
) -> String {
    let dir = dir.display();
    let bin_dir = bin_dir.display();
    format!(
        "scope: {scope}
namespace: /connector-control-tests/
name: {name}
restapi:
  listen: 127.0.0.1:{rest_port}
  connect_address: 127.0.0.1:{rest_port}
etcd3:
  hosts: 127.0.0.1:{etcd_port}
bootstrap:
  dcs:
    ttl: {TTL}
    loop_wait: {LOOP_WAIT}
    retry_timeout: {RETRY_TIMEOUT}
    synchronous_mode: true
    # A crashed primary is not restarted in place: the standby takes over.
    primary_start_timeout: 0
    postgresql:
      use_pg_rewind: true
      parameters:
        wal_log_hints: 'on'
        max_connections: 100
  initdb:
    - encoding: UTF8
    - auth: trust
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:{pg_port}
  connect_address: 127.0.0.1:{pg_port}
  data_dir: {dir}/data
  bin_dir: {bin_dir}
  pgpass: {dir}/pgpass
  authentication:
    superuser:
      username: postgres
    replication:
      username: postgres
    rewind:
      username: postgres
  parameters:
    unix_socket_directories: '{dir}'
"
    )
}

/// The newest PostgreSQL server binaries installed (`/usr/lib/postgresql/N/bin`).
fn postgres_bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server binaries under /usr/lib/postgresql")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("a PostgreSQL server under /usr/lib/postgresql/*/bin")
        .1
}

/// The `postgres` user's uid and gid when this process runs as root: who
/// PostgreSQL, Patroni and PgBouncer run as (they refuse root).
pub fn postgres_owner() -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").ok()?.uid() != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|line| line.starts_with("postgres:"));
    let fields: Vec<&str> = line
        .expect("a postgres user to run PostgreSQL as")
        .split(':')
        .collect();
    Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn kill(signal: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// A plain HTTP GET on loopback: status and body, None if nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_request(port, "GET", path, "")
}

/// One HTTP/1.0 request on loopback: status and body, None if nothing
/// answers.
fn http_request(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    // A switchover answers once it is done.
    let wait = if method == "GET" { 5 } else { 60 };
    stream
        .set_read_timeout(Some(Duration::from_secs(wait)))
        .ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}
