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

mod common;

use common::{
    HEARTBEAT, channel, ms, open_agent, percentile, probe_delivery, spawn_server, with_database,
};
use connector_control::proto::v1::connector_service_client::ConnectorServiceClient;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Agents sharing one HTTP/2 connection (real agents have one each; this
/// keeps the bench within the machine's file-descriptor limit).
const AGENTS_PER_CONNECTION: usize = 10;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let steps: Vec<usize> = std::env::var("BENCH_STREAMS")
        .unwrap_or_else(|_| "1000,5000,10000".to_owned())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    with_database(|url| async move { run(&url, &steps).await }).await
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

async fn run(url: &str, steps: &[usize]) -> anyhow::Result<()> {
    let server = spawn_server(url, &[])?;
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
