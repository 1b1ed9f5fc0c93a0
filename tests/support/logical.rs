//! A PostgreSQL server of a test's (or benchmark's) own, made with initdb and
//! pg_ctl, for those that stop it or need settings the shared one must not
//! get; and on it, `Replication`: logical replication from a source to a
//! destination database, for the postgres driver.

#![allow(dead_code)] // each includer (test, benchmark) uses its own part

use std::time::Duration;
use tokio_postgres::{Client, NoTls};

/// A directory of the cluster's own, removed with it.
struct Dir(std::path::PathBuf);

impl Dir {
    fn new() -> Self {
        let path =
            std::env::temp_dir().join(format!("cc-cluster-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A PostgreSQL server of this test's own, which it can stop and start:
/// the shared one serves every other test. Created with the machine's
/// PostgreSQL binaries (as the `postgres` user when the tests run as root,
/// since PostgreSQL refuses to run as root).
pub struct PrivateCluster {
    dir: Dir,
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
        let dir = Dir::new();
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

/// A cluster with a source and a destination database, and per
/// subscription `s` (made by `subscribe`) a table `s_t` in both and a
/// publication `s_p` of it.
pub struct Replication {
    pub cluster: PrivateCluster,
    pub source: Client,
    pub destination: Client,
}

pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(connection);
    client
}

impl Replication {
    pub async fn new() -> Self {
        let cluster = PrivateCluster::with_settings(&["wal_level=logical"]);
        let admin = connect(&cluster.url()).await;
        for name in ["source", "destination"] {
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
        }
        let source = connect(&cluster.url_of("source")).await;
        let destination = connect(&cluster.url_of("destination")).await;
        Replication {
            cluster,
            source,
            destination,
        }
    }

    /// A disabled subscription `name` to its table's publication, from now
    /// on. Its slot is made first: in one cluster, CREATE SUBSCRIPTION
    /// cannot make it.
    pub async fn subscribe(&self, name: &str) {
        let table = format!("CREATE TABLE {name}_t (id int PRIMARY KEY, v text)");
        self.source
            .batch_execute(&format!(
                "{table}; CREATE PUBLICATION {name}_p FOR TABLE {name}_t"
            ))
            .await
            .unwrap();
        // When each row arrived: a column of the destination's own.
        self.destination
            .batch_execute(&format!(
                "CREATE TABLE {name}_t (id int PRIMARY KEY, v text,
                                        arrived timestamptz DEFAULT clock_timestamp())"
            ))
            .await
            .unwrap();
        self.source
            .execute(
                "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&name],
            )
            .await
            .unwrap();
        self.destination
            .batch_execute(&format!(
                "CREATE SUBSCRIPTION {name}
                   CONNECTION 'host=127.0.0.1 port={} user=postgres dbname=source'
                   PUBLICATION {name}_p
                   WITH (enabled = false, create_slot = false, slot_name = '{name}',
                         copy_data = false, disable_on_error = true)",
                self.cluster.port
            ))
            .await
            .unwrap();
    }

    /// The connectors file naming `subscriptions`, one connector each.
    pub fn connectors_file(&self, subscriptions: &[(&str, &str)]) -> String {
        subscriptions
            .iter()
            .map(|(connector, subscription)| {
                format!(
                    "[connectors.{connector}]\ndestination = {:?}\nsubscription = {subscription:?}\n\
                     readiness = \"20s\"\n",
                    self.cluster.url_of("destination")
                )
            })
            .collect()
    }

    /// Rows `ids` at the source, for subscription `name`.
    pub async fn insert(&self, name: &str, ids: std::ops::RangeInclusive<i32>) {
        for id in ids {
            self.source
                .execute(
                    &format!("INSERT INTO {name}_t VALUES ($1, 'from the source')"),
                    &[&id],
                )
                .await
                .unwrap();
        }
    }

    /// Runs `sql` at the destination.
    pub async fn at_destination(&self, sql: &str) {
        self.destination.batch_execute(sql).await.unwrap();
    }

    /// The ids at the destination, of subscription `name`'s table.
    pub async fn arrived(&self, name: &str) -> Vec<i32> {
        self.destination
            .query(&format!("SELECT id FROM {name}_t ORDER BY id"), &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    /// Waits until the destination holds exactly `ids` in `name`'s table.
    pub async fn arrives(&self, name: &str, ids: std::ops::RangeInclusive<i32>) {
        let wanted: Vec<i32> = ids.collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let now = self.arrived(name).await;
            if now == wanted {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the destination holds {now:?}, not {wanted:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
