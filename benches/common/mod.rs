//! Shared by the benches that drive real server processes with agents:
//! a database of their own, the release server as a child process, agents
//! speaking the real protocol, and delivery probes.
#![allow(dead_code)]

use connector_control::proto::v1::{
    self, agent_message, agent_service_client::AgentServiceClient,
    connector_service_client::ConnectorServiceClient, control_message,
};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// The heartbeat interval of the bench agents (and their servers).
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// Connectors started per delivery probe.
pub const PROBES: usize = 100;

/// A database of the bench's own on the PostgreSQL at DATABASE_URL:
/// `work` runs with its URL, then the database is dropped.
pub async fn with_database<F, Fut>(work: F) -> anyhow::Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    with_database_returning(work).await
}

/// As `with_database`, returning what `work` returns.
pub async fn with_database_returning<T, F, Fut>(work: F) -> anyhow::Result<T>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("cc_bench_{}", uuid::Uuid::new_v4().simple());
    let (admin, connection) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    admin
        .execute(&format!("CREATE DATABASE {name}"), &[])
        .await?;
    let url = match admin_url.rfind('/') {
        Some(i) if i > admin_url.find("://").map_or(0, |s| s + 2) => {
            format!("{}/{name}", &admin_url[..i])
        }
        _ => format!("{admin_url}/{name}"),
    };
    let result = work(url).await;
    admin
        .execute(&format!("DROP DATABASE {name} WITH (FORCE)"), &[])
        .await?;
    result
}

pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `connector-control serve` on a free port with a 10 s heartbeat (unless
/// `args` sets one), no
/// rate limit unless `args` sets one (a bench is one principal making many
/// changes on purpose), its start-up line logged, and `args`.
pub fn serve_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_connector-control"));
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    if !args.contains(&"--heartbeat-interval") {
        command.args(["--heartbeat-interval", "10s"]);
    }
    if !args.iter().any(|arg| arg.ends_with("-rate-limit")) {
        command.args(["--operator-rate-limit", "0", "--admin-rate-limit", "0"]);
    }
    command
        .args(args)
        .env(
            "RUST_LOG",
            "warn,connector_control::server=info,connector_control::console=info",
        )
        .env("CONNECTOR_CONTROL_CONSOLE_LISTEN", "127.0.0.1:0");
    command
}

/// The release server on a free port, with `serve` arguments `args`.
pub fn spawn_server(url: &str, args: &[&str]) -> anyhow::Result<Server> {
    let mut child = serve_command(args)
        .env("DATABASE_URL", url)
        .stderr(Stdio::piped())
        .spawn()?;
    let addr = serving_address(&mut child)?;
    Ok(Server { child, addr })
}

/// Reads the piped stderr of a starting server until its "serving gRPC
/// addr=..." line; the address. The rest of the log is drained.
pub fn serving_address(child: &mut Child) -> anyhow::Result<String> {
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .ok_or_else(|| anyhow::anyhow!("the server exited during start-up"))??;
        if line.contains("serving gRPC")
            && let Some(rest) = line.split("addr=").nth(1)
        {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok(addr)
}

pub async fn channel(addr: &str) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?)
}

pub fn message(m: agent_message::Message) -> v1::AgentMessage {
    v1::AgentMessage { message: Some(m) }
}

/// Opens one agent session and serves it in the background: heartbeats
/// every 10 s (from a random phase), commands answered at once. Commands
/// received are reported on `received` with their arrival time.
pub async fn open_agent(
    channel: Channel,
    id: String,
    region: String,
    received: Option<mpsc::UnboundedSender<(String, Instant)>>,
    connected: Arc<AtomicUsize>,
) -> anyhow::Result<()> {
    open_agent_reporting(channel, id, region, None, received, connected).await
}

/// As `open_agent`; with `reports`, every heartbeat reports that connector
/// RUNNING with a latency that changes each time (so each heartbeat
/// carries a change to record, as a real agent's would).
pub async fn open_agent_reporting(
    channel: Channel,
    id: String,
    region: String,
    reports: Option<String>,
    received: Option<mpsc::UnboundedSender<(String, Instant)>>,
    connected: Arc<AtomicUsize>,
) -> anyhow::Result<()> {
    let (outbound, rx) = mpsc::channel(16);
    outbound
        .send(message(agent_message::Message::Hello(v1::Hello {
            agent_id: id.clone(),
            instance_id: uuid::Uuid::new_v4().to_string(),
            region,
            server_ip: "10.9.0.1".to_owned(),
            version: "bench".to_owned(),
            connectors: Vec::new(),
            capabilities: None,
        })))
        .await?;
    let mut inbound = AgentServiceClient::new(channel)
        .connect(ReceiverStream::new(rx))
        .await?
        .into_inner();
    inbound.message().await?; // welcome
    connected.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let phase =
            Duration::from_millis(u64::from(uuid::Uuid::new_v4().as_u128() as u16) % 10_000);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, HEARTBEAT);
        let mut sequence = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    sequence += 1;
                    let connectors = reports.iter().map(|connector| v1::ConnectorStatus {
                        connector_id: connector.clone(),
                        state: v1::ConnectorState::Running as i32,
                        latency: Some(prost_types::Duration { seconds: 1 + sequence % 7, nanos: 0 }),
                        ..Default::default()
                    }).collect();
                    let beat = v1::Heartbeat { sequence, connectors };
                    if outbound.send(message(agent_message::Message::Heartbeat(beat))).await.is_err() {
                        return;
                    }
                }
                incoming = inbound.message() => match incoming {
                    Ok(Some(v1::ControlMessage {
                        message: Some(control_message::Message::Command(command)),
                    })) => {
                        if let Some(received) = &received {
                            let _ = received.send((command.id.clone(), Instant::now()));
                        }
                        let result = v1::CommandResult {
                            command_id: command.id,
                            success: true,
                            status: Some(v1::ConnectorStatus {
                                connector_id: command.connector_id,
                                state: v1::ConnectorState::Running as i32,
                                generation: command.generation,
                                ..Default::default()
                            }),
                            ..Default::default()
                        };
                        let _ = outbound.send(message(agent_message::Message::Result(result))).await;
                    }
                    Ok(Some(_)) => {}
                    _ => return,
                },
            }
        }
    });
    Ok(())
}

/// Starts `PROBES` connectors of the probe region one after another; the
/// delay from each StartConnector's return to the probe agent's receipt.
pub async fn probe_delivery(
    client: &mut ConnectorServiceClient<Channel>,
    received: &mut mpsc::UnboundedReceiver<(String, Instant)>,
    round: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut delays = Vec::with_capacity(PROBES);
    for i in 0..PROBES {
        let id = format!("probe-{round}-{i}");
        client
            .create_connector(v1::CreateConnectorRequest {
                connector: Some(v1::Connector {
                    id: id.clone(),
                    name: id.clone(),
                    project_id: "bench".to_owned(),
                    project_name: "Bench".to_owned(),
                    kind: v1::ConnectorKind::IncrementalSync as i32,
                    source: Some(endpoint("probe")),
                    destination: Some(endpoint("probe")),
                    ..Default::default()
                }),
            })
            .await?;
        let command = client
            .start_connector(v1::StartConnectorRequest {
                id,
                ..Default::default()
            })
            .await?
            .into_inner()
            .command
            .expect("a command");
        let returned = Instant::now();
        let arrived = loop {
            let (command_id, at) = tokio::time::timeout(Duration::from_secs(30), received.recv())
                .await?
                .ok_or_else(|| anyhow::anyhow!("probe agent gone"))?;
            if command_id == command.id {
                break at;
            }
        };
        delays.push(arrived.saturating_duration_since(returned));
    }
    delays.sort();
    Ok(delays)
}

pub fn endpoint(region: &str) -> v1::Endpoint {
    v1::Endpoint {
        r#type: "MYSQL".to_owned(),
        region: region.to_owned(),
        address: "10.9.0.2:3306".to_owned(),
    }
}

pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Loads `count` connectors shaped like a real fleet into the (migrated)
/// database `db`: 5,000 projects, 6 regions, server IPs in 10.x.y.z, a mix
/// of states and kinds; names are `<topic>-<8 hex> to warehouse`, so that
/// all "orders" names sort together, after half the table; 1 in 97 reports
/// two minutes of latency, the others two seconds.
pub async fn load_fleet(db: &tokio_postgres::Client, count: u64) -> anyhow::Result<()> {
    db.batch_execute(&format!(
        "INSERT INTO connectors (id, name, project_id, project_name, name_folded,
            project_name_folded, kind, source_type, source_region, source_address,
            destination_type, destination_region, destination_address,
            region, server_ip, state, desired_state, latency_us)
         SELECT id, name, project_id, project_name, lower(name), lower(project_name), kind,
                'MYSQL', 'eu-1', '10.200.0.1:3306', 'OCEANBASE', region, '10.201.0.1:2881',
                region, server_ip, state, 'RUNNING', latency_us
         FROM (
           SELECT 'conn-' || lpad(n::text, 7, '0') AS id,
                  (ARRAY['orders','payments','users','audit','inventory','billing'])[1 + n % 6]
                      || '-' || substr(md5(n::text), 1, 8) || ' to warehouse' AS name,
                  'proj-' || (n % 5000) AS project_id,
                  'Project ' || (ARRAY['Alpha','Bravo','Cobalt','Delta','Ember'])[1 + n % 5]
                      || ' ' || (n % 5000) AS project_name,
                  CASE WHEN n % 4 = 0 THEN 'FULL_MIGRATION' ELSE 'INCREMENTAL_SYNC' END AS kind,
                  (ARRAY['eu-1','eu-2','us-1','us-2','ap-1','ap-2'])[1 + n % 6] AS region,
                  '10.' || (n / 65536 % 256) || '.' || (n / 256 % 256) || '.' || (n % 256)
                      AS server_ip,
                  (ARRAY['RUNNING','RUNNING','RUNNING','STOPPED','FAILED','PAUSING'])[1 + n % 6]
                      AS state,
                  CASE WHEN n % 97 = 0 THEN 120000000 ELSE 2000000 END AS latency_us
           FROM generate_series(1, {count}) AS n
         ) AS fleet"
    ))
    .await?;
    Ok(())
}
