//! The server and the reference agent as child processes, and temporary
//! directories.

use std::time::Duration;

/// A `connector-control serve` child process on a free port.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub addr: String,
    log: std::sync::mpsc::Receiver<String>,
    /// Every log line read so far.
    seen: Vec<String>,
}

impl ServerProcess {
    /// Serves on a free port, given through CONNECTOR_CONTROL_LISTEN.
    pub fn spawn(database_url: &str) -> Self {
        Self::spawn_with(database_url, &[])
    }

    /// As `spawn`, with more `serve` arguments.
    pub fn spawn_with(database_url: &str, args: &[&str]) -> Self {
        Self::spawn_with_env(database_url, args, &[])
    }

    /// As `spawn_with`, in a process that may open at most `limit` files
    /// (sockets included).
    pub fn spawn_with_open_file_limit(database_url: &str, args: &[&str], limit: u64) -> Self {
        use std::os::unix::process::CommandExt;
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_connector-control"));
        command.env("DATABASE_URL", database_url);
        // SAFETY: between fork and exec only setrlimit(2), a system call,
        // runs.
        unsafe {
            command.pre_exec(move || rlimit::setrlimit(rlimit::Resource::NOFILE, limit, limit));
        }
        Self::spawn_command(command, args)
    }

    /// As `spawn_with`, with more environment variables.
    pub fn spawn_with_env(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_connector-control"));
        command.env("DATABASE_URL", database_url);
        command.envs(env.iter().copied());
        Self::spawn_command(command, args)
    }

    /// The reference agent (`connector-control agent ARGS`), once it has
    /// connected to the control plane.
    pub fn spawn_agent(args: &[&str]) -> Self {
        Self::spawn_agent_with_env(args, &[])
    }

    /// The reference agent in eu-2 (server 10.0.2.9) with `driver` and its
    /// `connectors_file`, connected to the server at `addr`.
    pub fn spawn_driver_agent(
        addr: std::net::SocketAddr,
        agent_id: &str,
        driver: &str,
        connectors_file: &std::path::Path,
    ) -> Self {
        Self::spawn_agent(&[
            "--control-plane",
            &format!("http://{addr}"),
            "--region",
            "eu-2",
            "--server-ip",
            "10.0.2.9",
            "--agent-id",
            agent_id,
            "--driver",
            driver,
            "--connectors-file",
            connectors_file.to_str().unwrap(),
        ])
    }

    /// As `spawn_agent`, with more environment variables.
    pub fn spawn_agent_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_connector-control"));
        command.arg("agent").args(args).envs(env.iter().copied());
        let mut process = Self::spawn_logging(command);
        process.wait_for_log("connected to the control plane");
        process
    }

    fn spawn_logging(mut command: std::process::Command) -> Self {
        let mut child = command
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawning connector-control");
        let stderr = child.stderr.take().unwrap();
        let (lines, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in
                std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok)
            {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        ServerProcess {
            child,
            addr: String::new(),
            log,
            seen: Vec::new(),
        }
    }

    /// Sends `signal` (TERM, INT, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} failed");
    }

    /// A server on the embedded store in `dir` (no DATABASE_URL).
    pub fn spawn_embedded(dir: &std::path::Path, args: &[&str]) -> Self {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_connector-control"));
        command.env_remove("DATABASE_URL").current_dir(dir);
        Self::spawn_command(command, args)
    }

    fn spawn_command(mut command: std::process::Command, args: &[&str]) -> Self {
        command
            .arg("serve")
            .args(args)
            .env("CONNECTOR_CONTROL_LISTEN", "127.0.0.1:0")
            // Processes run in parallel: the console's default port is not
            // theirs to take.
            .env("CONNECTOR_CONTROL_CONSOLE_LISTEN", "127.0.0.1:0");
        let mut process = Self::spawn_logging(command);
        let line = process.wait_for_log("serving gRPC");
        let addr = line
            .split("addr=")
            .nth(1)
            .expect("the serving line names the address")
            .split_whitespace()
            .next()
            .unwrap();
        process.addr = addr.to_owned();
        process
    }

    /// The address a `--metrics-listen 127.0.0.1:0` server logged.
    pub fn metrics_addr(&mut self) -> String {
        self.wait_for_log("serving Prometheus metrics")
            .split("addr=")
            .nth(1)
            .expect("the metrics line names the address")
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    }

    /// How many log lines so far contain `needle` (without waiting).
    pub fn count_logged(&mut self, needle: &str) -> usize {
        while let Ok(line) = self.log.try_recv() {
            self.seen.push(line);
        }
        self.seen
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    }

    /// The first log line containing `needle`, waiting up to 30 s for it.
    pub fn wait_for_log(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|line| line.contains(needle)) {
            return line.clone();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(error) => panic!("no log line containing {needle:?}: {error}"),
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("cc-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
