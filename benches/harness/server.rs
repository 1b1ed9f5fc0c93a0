//! The release server (and a bare tonic one) as child processes, and the
//! database set-up scenarios share.

use crate::prelude::*;

/// A child process serving gRPC; killed when dropped.
pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) addr: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in bytes (VmRSS).
    pub(crate) fn rss(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// User + system CPU time so far.
    pub(crate) fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which may hold spaces).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
            .sum();
        Duration::from_millis(ticks * 10) // USER_HZ = 100
    }
}

/// Spawns `command` and waits for its "serving gRPC" log line.
pub(crate) fn spawn_logged(mut command: Command) -> anyhow::Result<Process> {
    let mut child = command.stderr(Stdio::piped()).spawn()?;
    let addr = common::serving_address(&mut child)?;
    Ok(Process { child, addr })
}

/// The release server on PostgreSQL (`url`) or, with None, the embedded
/// store in `dir`.
pub(crate) fn server(
    url: Option<&str>,
    dir: Option<&std::path::Path>,
    args: &[&str],
) -> anyhow::Result<Process> {
    let mut command = common::serve_command(args);
    command.args(extra_server_args());
    match url {
        Some(url) => {
            command.env("DATABASE_URL", url);
        }
        None => {
            command.env_remove("DATABASE_URL");
        }
    }
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    spawn_logged(command)
}

/// `--server-arg=X` arguments of the harness, passed to every server.
pub(crate) fn extra_server_args() -> Vec<String> {
    std::env::args()
        .filter_map(|arg| arg.strip_prefix("--server-arg=").map(str::to_owned))
        .collect()
}

/// The baseline for the no-op RPC: a bare tonic server (health service
/// only, default settings) in a child process like ours.
pub(crate) fn hello_server() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        eprintln!("serving gRPC addr={}", listener.local_addr()?);
        tonic::transport::Server::builder()
            .add_service(service)
            // The same socket option as ours: the comparison is of the
            // servers, not of Nagle's algorithm.
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            )
            .await?;
        Ok(())
    })
}

pub(crate) async fn connectors_client(
    addr: &str,
) -> anyhow::Result<ConnectorServiceClient<Channel>> {
    Ok(ConnectorServiceClient::new(common::channel(addr).await?))
}

/// One StartConnector of connector `id`, timed from the call to its answer.
pub(crate) async fn timed_start(
    client: &mut ConnectorServiceClient<Channel>,
    id: String,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    client
        .start_connector(v1::StartConnectorRequest {
            id,
            ..Default::default()
        })
        .await?;
    Ok(t.elapsed())
}

pub(crate) async fn sql(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let mut config: tokio_postgres::Config = url.parse()?;
    // As the server's connections: plans made with the real values.
    config.options("-c plan_cache_mode=force_custom_plan");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// `count` STOPPED incremental-sync connectors `<prefix>-0000001`, ... in
/// region eu-1.
pub(crate) async fn preload(
    db: &tokio_postgres::Client,
    prefix: &str,
    count: u64,
) -> anyhow::Result<()> {
    db.batch_execute(&format!(
        "INSERT INTO connectors (id, name, project_id, project_name, name_folded,
            project_name_folded, kind, source_type, source_region, source_address,
            destination_type, destination_region, destination_address,
            region, server_ip, state, desired_state)
         SELECT '{prefix}-' || lpad(n::text, 7, '0'), 'bench ' || n, 'proj-bench', 'Bench',
                'bench ' || n, 'bench', 'INCREMENTAL_SYNC', 'MYSQL', 'eu-1', '10.200.0.1:3306',
                'OCEANBASE', 'eu-1', '10.201.0.1:2881', 'eu-1', '', 'STOPPED', 'STOPPED'
         FROM generate_series(1, {count}) AS n"
    ))
    .await?;
    Ok(())
}

/// After a bulk load: vacuumed and analyzed (no autovacuum starts in the
/// middle of a measurement) and checkpointed (no checkpoint writes the
/// load out during one).
pub(crate) async fn settle(db: &tokio_postgres::Client) -> anyhow::Result<()> {
    // One statement each: VACUUM cannot run in a multi-statement batch.
    db.batch_execute("VACUUM ANALYZE connectors").await?;
    db.batch_execute("CHECKPOINT").await?;
    Ok(())
}

pub(crate) fn connector_id(prefix: &str, n: u64) -> String {
    format!("{prefix}-{n:07}")
}

/// Creates incremental connector `id` in eu-2.
pub(crate) async fn create_connector(
    client: &mut ConnectorServiceClient<Channel>,
    id: &str,
) -> anyhow::Result<()> {
    client
        .create_connector(v1::CreateConnectorRequest {
            connector: Some(v1::Connector {
                id: id.to_owned(),
                name: id.to_owned(),
                project_id: "bench".to_owned(),
                project_name: "Bench".to_owned(),
                kind: v1::ConnectorKind::IncrementalSync as i32,
                source: Some(common::endpoint("eu-2")),
                destination: Some(common::endpoint("eu-2")),
                ..Default::default()
            }),
        })
        .await?;
    Ok(())
}

/// The reference agent's settings: `agent_id` in eu-2, to the server at
/// `addr`.
pub(crate) fn agent_config(addr: &str, agent_id: &str) -> connector_control::agent::AgentConfig {
    connector_control::agent::AgentConfig {
        control_plane: vec![format!("http://{addr}")],
        bearer: Default::default(),
        tls: None,
        agent_id: agent_id.to_owned(),
        region: "eu-2".to_owned(),
        server_ip: "10.0.2.9".to_owned(),
    }
}
