//! Test harness: a fresh PostgreSQL database per test, migrated, and the real
//! server on a port-0 listener reached through the generated tonic client.

use connector_control::api::limits::RateLimits;
use connector_control::auth::Authenticator;
use connector_control::fleet::FleetOptions;
use connector_control::proto::v1::{self, connector_service_client::ConnectorServiceClient};
use connector_control::server::{self, ServeOptions};
use connector_control::store::PgStore;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_types::{ErrorInfo, StatusExt};

/// The servers' heartbeat interval in tests.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(200);

/// Where the tests find PostgreSQL when `DATABASE_URL` is unset.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn base_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// `url` pointing at database `name` instead (URL or key-value form).
pub fn with_database(url: &str, name: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let (query, rest) = match url.find('?') {
            Some(q) => (&url[q..], &url[..q]),
            None => ("", url),
        };
        let authority_end = rest[scheme_end + 3..]
            .find('/')
            .map_or(rest.len(), |i| scheme_end + 3 + i);
        format!("{}/{name}{query}", &rest[..authority_end])
    } else {
        format!("{url} dbname={name}")
    }
}

async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        Ok(pair) => pair,
        Err(error) => panic!(
            "cannot reach PostgreSQL at {url} ({error}). The tests need a PostgreSQL server: \
             start one (`pg_ctlcluster 15 main start`, or `docker compose up -d postgres`) \
             or point DATABASE_URL at one"
        ),
    };
    tokio::spawn(connection);
    client
}

/// A database of its own for one test, dropped (with its connections) when
/// the test ends, pass or fail.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        Self::create_on(&base_url()).await
    }

    /// A fresh database on the server at `admin_url`.
    pub async fn create_on(admin_url: &str) -> Self {
        let admin_url = admin_url.to_owned();
        let name = format!("cc_test_{}", uuid::Uuid::new_v4().simple());
        admin_client(&admin_url)
            .await
            .execute(&format!("CREATE DATABASE {name}"), &[])
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
        let url = with_database(&admin_url, &name);
        Self {
            name,
            url,
            admin_url,
        }
    }

    /// A direct connection, for arranging what only agents could report and
    /// for checking what was (not) written.
    pub async fn client(&self) -> tokio_postgres::Client {
        admin_client(&self.url).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime; a thread with its own runtime
        // can block on the async client.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(async {
                    admin_client(&admin_url)
                        .await
                        .execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), &[])
                        .await
                })
        })
        .join();
        if !matches!(dropped, Ok(Ok(_))) && !std::thread::panicking() {
            panic!("dropping test database {}: {dropped:?}", self.name);
        }
    }
}

/// A running server on its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: ConnectorServiceClient<Channel>,
    pub db: Arc<TestDatabase>,
    shutdown: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_on(Arc::new(TestDatabase::create().await)).await
}

async fn spawn_on(db: Arc<TestDatabase>) -> TestApp {
    spawn_at(db, "127.0.0.1:0").await
}

async fn spawn_at(db: Arc<TestDatabase>, addr: &str) -> TestApp {
    // Short, so that liveness tests finish quickly; they wait on
    // conditions, never on this value.
    spawn_replica_at(
        db,
        addr,
        FleetOptions::new(HEARTBEAT_INTERVAL),
        None,
        Authenticator::open(),
    )
    .await
}

/// A server on its own database that authenticates callers with `auth`
/// and limits each principal's changes as `rate_limits` says (None: the
/// defaults).
pub async fn spawn_with_auth(auth: Authenticator, rate_limits: Option<RateLimits>) -> TestApp {
    let db = Arc::new(TestDatabase::create().await);
    let fleet = FleetOptions::new(HEARTBEAT_INTERVAL);
    spawn_with(db, "127.0.0.1:0", fleet, None, auth, rate_limits).await
}

/// One more replica (its own pool, listener and loops) on `db`.
pub async fn spawn_replica(
    db: Arc<TestDatabase>,
    fleet: FleetOptions,
    replica_id: &str,
) -> TestApp {
    spawn_replica_at(
        db,
        "127.0.0.1:0",
        fleet,
        Some(replica_id),
        Authenticator::open(),
    )
    .await
}

async fn spawn_replica_at(
    db: Arc<TestDatabase>,
    addr: &str,
    fleet: FleetOptions,
    replica_id: Option<&str>,
    auth: Authenticator,
) -> TestApp {
    spawn_with(db, addr, fleet, replica_id, auth, None).await
}

async fn spawn_with(
    db: Arc<TestDatabase>,
    addr: &str,
    fleet: FleetOptions,
    replica_id: Option<&str>,
    auth: Authenticator,
    rate_limits: Option<RateLimits>,
) -> TestApp {
    let mut store = PgStore::connect(&db.url, 8)
        .await
        .expect("connecting the store");
    if let Some(id) = replica_id {
        store = store.with_replica_id(id);
    }
    store.migrate().await.expect("migrating");
    let listener = TcpListener::bind(addr).await.expect("binding");
    let addr = listener.local_addr().unwrap();
    let (shutdown, stop) = oneshot::channel::<()>();
    let options = ServeOptions {
        max_wait: Duration::from_secs(30),
        drain_timeout: Duration::from_secs(10),
        fleet,
        auth,
        rate_limits: rate_limits.unwrap_or_default(),
        ..ServeOptions::default()
    };
    let server = tokio::spawn(server::serve(listener, store, options, async {
        let _ = stop.await;
    }));
    let client = ConnectorServiceClient::new(channel_to(&addr.to_string()).await);
    TestApp {
        addr,
        client,
        db,
        shutdown: std::sync::Mutex::new(Some(shutdown)),
        server: Some(server),
    }
}

impl TestApp {
    pub async fn channel(&self) -> Channel {
        channel_to(&self.addr.to_string()).await
    }

    /// Stops the server gracefully and starts a new one on the same database.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        spawn_on(self.db.clone()).await
    }

    /// Asks the server to shut down gracefully, without waiting for it.
    pub fn begin_shutdown(&self) {
        if let Some(shutdown) = self.shutdown.lock().unwrap().take() {
            let _ = shutdown.send(());
        }
    }

    /// As `restart`, listening on the same address, so that connected
    /// agents find the new server when they reconnect.
    pub async fn restart_in_place(mut self) -> TestApp {
        self.stop().await;
        spawn_at(self.db.clone(), &self.addr.to_string()).await
    }

    pub async fn stop(&mut self) {
        self.begin_shutdown();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task panicked")
                .expect("server failed");
        }
    }

    pub async fn create(&self, connector: v1::Connector) -> v1::Connector {
        self.client
            .clone()
            .create_connector(v1::CreateConnectorRequest {
                connector: Some(connector),
            })
            .await
            .expect("CreateConnector")
            .into_inner()
    }

    pub async fn get(&self, id: &str) -> v1::Connector {
        self.client
            .clone()
            .get_connector(v1::GetConnectorRequest { id: id.to_owned() })
            .await
            .expect("GetConnector")
            .into_inner()
    }

    pub async fn start(
        &self,
        request: v1::StartConnectorRequest,
    ) -> Result<v1::StartConnectorResponse, tonic::Status> {
        self.client
            .clone()
            .start_connector(request)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn pause(
        &self,
        request: v1::PauseConnectorRequest,
    ) -> Result<v1::PauseConnectorResponse, tonic::Status> {
        self.client
            .clone()
            .pause_connector(request)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn list(
        &self,
        request: v1::ListConnectorsRequest,
    ) -> Result<v1::ListConnectorsResponse, tonic::Status> {
        self.client
            .clone()
            .list_connectors(request)
            .await
            .map(|r| r.into_inner())
    }

    /// Runs one SQL statement on the test database; returns rows affected.
    pub async fn sql(&self, statement: &str) -> u64 {
        self.db
            .client()
            .await
            .execute(statement, &[])
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"))
    }

    /// Runs one query returning a single bigint.
    pub async fn count(&self, query: &str) -> i64 {
        self.db
            .client()
            .await
            .query_one(query, &[])
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"))
            .get(0)
    }

    /// Sets what an agent would have reported: state and store range.
    pub async fn observe(&self, id: &str, state: &str) {
        let n = self
            .sql(&format!(
                "UPDATE connectors SET state = '{state}' WHERE id = '{id}'"
            ))
            .await;
        assert_eq!(n, 1);
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// A gRPC channel to `addr` (host:port).
pub async fn channel_to(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"))
}

/// A valid connector to create; tests override what they care about.
pub fn connector(id: &str, name: &str) -> v1::Connector {
    v1::Connector {
        id: id.to_owned(),
        name: name.to_owned(),
        project_id: "proj-orders".to_owned(),
        project_name: "Orders Replication".to_owned(),
        kind: v1::ConnectorKind::IncrementalSync as i32,
        source: Some(v1::Endpoint {
            r#type: "MYSQL".to_owned(),
            region: "eu-1".to_owned(),
            address: "10.0.1.20:3306".to_owned(),
        }),
        destination: Some(v1::Endpoint {
            r#type: "OCEANBASE".to_owned(),
            region: "eu-2".to_owned(),
            address: "10.0.2.30:2881".to_owned(),
        }),
        ..Default::default()
    }
}

pub fn start_request(id: &str) -> v1::StartConnectorRequest {
    v1::StartConnectorRequest {
        id: id.to_owned(),
        ..Default::default()
    }
}

pub fn pause_request(id: &str) -> v1::PauseConnectorRequest {
    v1::PauseConnectorRequest {
        id: id.to_owned(),
        ..Default::default()
    }
}

/// The ErrorInfo every error must carry, checked for our domain.
pub fn error_info(status: &tonic::Status) -> ErrorInfo {
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "connector.v1", "{status:?}");
    info
}

/// Asserts code and reason; returns the status for further checks.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    reason: &str,
) -> tonic::Status {
    let status = result.expect_err("the call should have failed");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(error_info(&status).reason, reason, "{status:?}");
    status
}

/// The fields named by the BadRequest detail.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("no BadRequest in {status:?}"))
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

pub fn timestamp(time: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// Polls `check` until it yields a value or `within` passes.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A hand-driven agent speaking the real protocol, for precise scenarios.
pub struct TestAgent {
    pub id: String,
    pub welcome: v1::Welcome,
    outbound: tokio::sync::mpsc::Sender<v1::AgentMessage>,
    inbound: tonic::Streaming<v1::ControlMessage>,
}

pub fn hello(agent_id: &str, region: &str, server_ip: &str) -> v1::Hello {
    v1::Hello {
        agent_id: agent_id.to_owned(),
        instance_id: uuid::Uuid::new_v4().to_string(),
        region: region.to_owned(),
        server_ip: server_ip.to_owned(),
        version: "test".to_owned(),
        connectors: Vec::new(),
    }
}

/// Opens a stream whose first message is `first`; the server's answer.
pub async fn open_stream(
    app: &TestApp,
    first: v1::AgentMessage,
) -> Result<
    (
        tokio::sync::mpsc::Sender<v1::AgentMessage>,
        tonic::Streaming<v1::ControlMessage>,
    ),
    tonic::Status,
> {
    open_stream_to(app.channel().await, first).await
}

/// As `open_stream`, over any channel.
pub async fn open_stream_to(
    channel: Channel,
    first: v1::AgentMessage,
) -> Result<
    (
        tokio::sync::mpsc::Sender<v1::AgentMessage>,
        tonic::Streaming<v1::ControlMessage>,
    ),
    tonic::Status,
> {
    use connector_control::proto::v1::agent_service_client::AgentServiceClient;
    let (outbound, receiver) = tokio::sync::mpsc::channel(16);
    // The hello is queued before the call is awaited, as agents must.
    outbound.send(first).await.unwrap();
    let mut client = AgentServiceClient::new(channel);
    let response = client
        .connect(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await?;
    Ok((outbound, response.into_inner()))
}

impl TestAgent {
    pub async fn connect(app: &TestApp, hello: v1::Hello) -> TestAgent {
        Self::connect_to(app.channel().await, hello).await
    }

    pub async fn connect_to(channel: Channel, hello: v1::Hello) -> TestAgent {
        let id = hello.agent_id.clone();
        let first = v1::AgentMessage {
            message: Some(v1::agent_message::Message::Hello(hello)),
        };
        let (outbound, mut inbound) = open_stream_to(channel, first).await.expect("Connect");
        let welcome = match next_message(&mut inbound).await {
            Ok(v1::control_message::Message::Welcome(welcome)) => welcome,
            other => panic!("expected welcome, got {other:?}"),
        };
        TestAgent {
            id,
            welcome,
            outbound,
            inbound,
        }
    }

    /// The next message from the control plane, or the stream's error.
    pub async fn next(&mut self) -> Result<v1::control_message::Message, tonic::Status> {
        next_message(&mut self.inbound).await
    }

    /// The next command; panics on anything else.
    pub async fn next_command(&mut self) -> v1::Command {
        match self.next().await {
            Ok(v1::control_message::Message::Command(command)) => command,
            other => panic!("agent {} expected a command, got {other:?}", self.id),
        }
    }

    /// A second handle on the outbound stream (for a background heartbeat).
    pub fn sender(&self) -> tokio::sync::mpsc::Sender<v1::AgentMessage> {
        self.outbound.clone()
    }

    pub async fn send(&self, message: v1::agent_message::Message) {
        self.outbound
            .send(v1::AgentMessage {
                message: Some(message),
            })
            .await
            .expect("the stream is open");
    }

    pub async fn heartbeat(&self, sequence: i64, connectors: Vec<v1::ConnectorStatus>) {
        self.send(v1::agent_message::Message::Heartbeat(v1::Heartbeat {
            sequence,
            connectors,
        }))
        .await;
    }

    /// Answers `command` as carried out, reporting the connector in `state`.
    pub async fn succeed(&self, command: &v1::Command, state: v1::ConnectorState) {
        self.send(v1::agent_message::Message::Result(v1::CommandResult {
            command_id: command.id.clone(),
            success: true,
            status: Some(status(&command.connector_id, state, command.generation)),
            ..Default::default()
        }))
        .await;
    }

    /// Like `fail`, on a stream that may already be closed.
    pub async fn try_fail(&self, command: &v1::Command, reason: &str, message: &str) {
        let _ = self
            .outbound
            .send(v1::AgentMessage {
                message: Some(v1::agent_message::Message::Result(v1::CommandResult {
                    trace_context: Default::default(),
                    command_id: command.id.clone(),
                    success: false,
                    error_reason: reason.to_owned(),
                    error_message: message.to_owned(),
                    status: None,
                })),
            })
            .await;
    }

    pub async fn fail(&self, command: &v1::Command, reason: &str, message: &str) {
        self.send(v1::agent_message::Message::Result(v1::CommandResult {
            trace_context: Default::default(),
            command_id: command.id.clone(),
            success: false,
            error_reason: reason.to_owned(),
            error_message: message.to_owned(),
            status: None,
        }))
        .await;
    }
}

async fn next_message(
    inbound: &mut tonic::Streaming<v1::ControlMessage>,
) -> Result<v1::control_message::Message, tonic::Status> {
    match tokio::time::timeout(Duration::from_secs(10), inbound.message()).await {
        Ok(Ok(Some(message))) => Ok(message.message.expect("a message")),
        Ok(Ok(None)) => Err(tonic::Status::unavailable("stream ended")),
        Ok(Err(status)) => Err(status),
        Err(_) => panic!("no control message within 10 s"),
    }
}

pub fn status(
    connector_id: &str,
    state: v1::ConnectorState,
    generation: i64,
) -> v1::ConnectorStatus {
    v1::ConnectorStatus {
        connector_id: connector_id.to_owned(),
        state: state as i32,
        generation,
        ..Default::default()
    }
}

impl TestApp {
    pub async fn command_status(&self, command_id: &str) -> String {
        self.db
            .client()
            .await
            .query_one("SELECT status FROM commands WHERE id = $1", &[&command_id])
            .await
            .unwrap()
            .get(0)
    }

    /// Waits until GetConnector satisfies `check`.
    pub async fn connector_becomes(
        &self,
        id: &str,
        check: impl Fn(&v1::Connector) -> bool,
    ) -> v1::Connector {
        eventually(Duration::from_secs(10), || async {
            let connector = self.get(id).await;
            check(&connector).then_some(connector)
        })
        .await
    }
}

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
            .env("CONNECTOR_CONTROL_LISTEN", "127.0.0.1:0");
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
