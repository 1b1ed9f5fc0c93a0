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

/// The release server on a free port, with `serve` arguments `args`.
pub fn spawn_server(url: &str, args: &[&str]) -> anyhow::Result<Server> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_connector-control"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--heartbeat-interval",
            "10s",
            // The bench is one principal making many changes on purpose.
            "--rate-limit",
            "0",
        ])
        .args(args)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn,connector_control::server=info")
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().expect("piped");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .ok_or_else(|| anyhow::anyhow!("server exited"))??;
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok(Server { child, addr })
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
