//! Agent streams at scale, against the release server as a child process:
//! how many concurrent agent sessions one server holds at a 10 s heartbeat,
//! the server's memory per stream and CPU, and the delay from a
//! StartConnector's return to the agent receiving the command (p50/p99),
//! measured first with one agent connected (the baseline) and then under
//! load.
//!
//!     cargo bench --bench agents                     # 1,000 / 5,000 / 10,000 streams
//!     BENCH_STREAMS=2000,20000 cargo bench --bench agents
//!
//! Needs PostgreSQL at DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).

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

const HEARTBEAT: Duration = Duration::from_secs(10);
/// Agents sharing one HTTP/2 connection (real agents have one each; this
/// keeps the bench within the machine's file-descriptor limit).
const AGENTS_PER_CONNECTION: usize = 10;
const PROBES: usize = 100;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let steps: Vec<usize> = std::env::var("BENCH_STREAMS")
        .unwrap_or_else(|_| "1000,5000,10000".to_owned())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
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
    let result = run(&url, &steps).await;
    admin
        .execute(&format!("DROP DATABASE {name} WITH (FORCE)"), &[])
        .await?;
    result
}

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server(url: &str) -> anyhow::Result<Server> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_connector-control"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--heartbeat-interval",
            "10s",
        ])
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

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

async fn channel(addr: &str) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?)
}

fn message(m: agent_message::Message) -> v1::AgentMessage {
    v1::AgentMessage { message: Some(m) }
}

/// Opens one agent session and serves it in the background: heartbeats
/// every 10 s (from a random phase), commands answered at once. Commands
/// received are reported on `received` with their arrival time.
async fn open_agent(
    channel: Channel,
    id: String,
    region: String,
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
                    let beat = v1::Heartbeat { sequence, connectors: Vec::new() };
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
async fn probe_delivery(
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

fn endpoint(region: &str) -> v1::Endpoint {
    v1::Endpoint {
        r#type: "MYSQL".to_owned(),
        region: region.to_owned(),
        address: "10.9.0.2:3306".to_owned(),
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run(url: &str, steps: &[usize]) -> anyhow::Result<()> {
    let server = spawn_server(url)?;
    let pid = server.child.id();
    let mut client = ConnectorServiceClient::new(channel(&server.addr).await?);
    let connected = Arc::new(AtomicUsize::new(0));
    let (received_tx, mut received) = mpsc::unbounded_channel();
    open_agent(
        channel(&server.addr).await?,
        "probe-agent".to_owned(),
        "probe".to_owned(),
        Some(received_tx),
        connected.clone(),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_kib(pid);
    let baseline = probe_delivery(&mut client, &mut received, 0).await?;
    let (base50, base99) = (percentile(&baseline, 50), percentile(&baseline, 99));
    println!(
        "server RSS with 1 agent: {:.1} MiB",
        idle_rss as f64 / 1024.0
    );
    println!(
        "baseline delivery (1 agent): p50 {:.2} ms, p99 {:.2} ms\n",
        ms(base50),
        ms(base99)
    );
    println!(
        "{:>8} {:>10} {:>12} {:>12} {:>10} {:>10} {:>10} {:>12}",
        "streams", "open s", "RSS MiB", "KiB/stream", "CPU %", "p50 ms", "p99 ms", "p99 / base"
    );

    let mut opened = 0;
    let ticks_per_second = 100.0; // Linux USER_HZ
    for (round, &target) in steps.iter().enumerate() {
        let started = Instant::now();
        while opened < target {
            let batch = (target - opened).min(500);
            let mut tasks = Vec::new();
            for chunk in 0..batch.div_ceil(AGENTS_PER_CONNECTION) {
                let channel = channel(&server.addr).await?;
                for j in 0..AGENTS_PER_CONNECTION.min(batch - chunk * AGENTS_PER_CONNECTION) {
                    let n = opened + chunk * AGENTS_PER_CONNECTION + j;
                    tasks.push(tokio::spawn(open_agent(
                        channel.clone(),
                        format!("agent-{n}"),
                        format!("r-{}", n % 20),
                        None,
                        connected.clone(),
                    )));
                }
            }
            for task in tasks {
                task.await??;
            }
            opened += batch;
        }
        let open_time = started.elapsed();
        // Two heartbeat rounds to settle, then measure one more.
        tokio::time::sleep(HEARTBEAT * 2).await;
        let cpu_before = cpu_ticks(pid);
        let window = Instant::now();
        tokio::time::sleep(HEARTBEAT * 2).await;
        let cpu = (cpu_ticks(pid) - cpu_before) as f64
            / ticks_per_second
            / window.elapsed().as_secs_f64()
            * 100.0;
        let rss = rss_kib(pid);
        let delays = probe_delivery(&mut client, &mut received, round + 1).await?;
        let (p50, p99) = (percentile(&delays, 50), percentile(&delays, 99));
        println!(
            "{:>8} {:>10.1} {:>12.1} {:>12.1} {:>10.1} {:>10.2} {:>10.2} {:>11.1}x",
            connected.load(Ordering::Relaxed),
            open_time.as_secs_f64(),
            rss as f64 / 1024.0,
            rss.saturating_sub(idle_rss) as f64 / target as f64,
            cpu,
            ms(p50),
            ms(p99),
            p99.as_secs_f64() / base99.as_secs_f64().max(1e-9)
        );
    }
    println!(
        "\nCPU % is the server process over {} s at a {} s heartbeat (200% = both cores); \
         the bench's own agents run on the same 2 cores.",
        (HEARTBEAT * 2).as_secs(),
        HEARTBEAT.as_secs()
    );
    Ok(())
}
