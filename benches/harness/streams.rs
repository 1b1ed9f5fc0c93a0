//! Many agent streams: memory, CPU and write transactions.

use crate::prelude::*;

/// The sum of every sample of `series` (all label sets) at `addr`.
pub(crate) async fn metric_sum(addr: &str, series: &str) -> anyhow::Result<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(body
        .lines()
        .filter(|line| {
            line.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

pub(crate) fn free_port() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.to_string())
}

/// Opens `count` agent sessions (10 per HTTP/2 connection) of `region`;
/// with `report`, agent i reports connector `s-<i>` in every heartbeat.
pub(crate) async fn open_agents(
    addr: &str,
    count: usize,
    region: &str,
    report: bool,
) -> anyhow::Result<Arc<AtomicUsize>> {
    let connected = Arc::new(AtomicUsize::new(0));
    let mut channel = common::channel(addr).await?;
    for i in 0..count {
        if i % 10 == 0 {
            channel = common::channel(addr).await?;
        }
        common::open_agent_reporting(
            channel.clone(),
            format!("{region}-agent-{i}"),
            region.to_owned(),
            report.then(|| connector_id("s", i as u64 + 1)),
            None,
            connected.clone(),
        )
        .await?;
    }
    Ok(connected)
}

/// `streams` agents heartbeating every 10 s, each reporting one connector
/// whose latency changes every time: memory per stream, CPU, and the
/// write transactions heartbeats cost (times and statuses) per second,
/// over two heartbeat rounds.
pub(crate) async fn streams(plan: &Plan, url: String) -> anyhow::Result<Vec<Line>> {
    {
        connector_control::store::PgStore::connect(&url, 1)
            .await?
            .migrate()
            .await?;
        let db = sql(&url).await?;
        preload(&db, "s", plan.streams as u64).await?;
        settle(&db).await?;
    }
    let metrics = free_port()?;
    let process = server(Some(&url), None, &["--metrics-listen", &metrics])?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = process.rss();
    open_agents(&process.addr, plan.streams, "eu-1", true).await?;
    // Every agent's first heartbeat, at a random phase within 10 s.
    tokio::time::sleep(common::HEARTBEAT).await;
    let window = common::HEARTBEAT * 2;
    let writes_series = "connector_control_heartbeat_writes_total";
    let (cpu, writes) = (process.cpu(), metric_sum(&metrics, writes_series).await?);
    tokio::time::sleep(window).await;
    let cpu = process.cpu() - cpu;
    let writes = (metric_sum(&metrics, writes_series).await? - writes) / window.as_secs_f64();
    let connected = metric_sum(&metrics, "connector_control_agents_connected").await?;
    anyhow::ensure!(
        connected as usize == plan.streams,
        "{connected} of {} streams still connected",
        plan.streams
    );
    let db = sql(&url).await?;
    let reported: i64 = db
        .query_one(
            "SELECT count(*) FROM connectors WHERE id LIKE 's-%' AND latency_us IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    anyhow::ensure!(
        reported as usize == plan.streams,
        "only {reported} of {} reported connectors were recorded",
        plan.streams
    );
    let per_stream = (process.rss().saturating_sub(idle)) as f64 / plan.streams as f64 / 1024.0;
    let core = cpu.as_secs_f64() / window.as_secs_f64() * 100.0;
    let line = Line {
        scenario: format!(
            "{} agent streams, heartbeat every 10 s, each reporting a changing status",
            plan.streams
        ),
        ours: format!(
            "{per_stream:.1} KiB/stream, {core:.1}% of a core, {writes:.2} heartbeat write transactions/s"
        ),
        baseline: format!("idle server: {:.1} MiB", idle as f64 / 1048576.0),
        ratio: "-".to_owned(),
        target: "<= 50 KB/stream, <= 10% of a core, <= 1 write/s".to_owned(),
        met: per_stream * 1.024 <= 50.0 && core <= 10.0 && writes <= 1.0,
    };
    report(&line);
    Ok(vec![line])
}
