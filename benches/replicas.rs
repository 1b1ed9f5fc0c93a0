//! Cross-replica command delivery: two release server processes on one
//! database, the probe agent connected to replica A, StartConnector called
//! on replica B; the delay from B's answer to the agent's receipt
//! (p50/p99). The baseline, measured in the same run against the same
//! pair, is StartConnector on A itself (the in-process wake-up). Modes:
//! LISTEN/NOTIFY (the default, polling every 2 s as the safety net) and
//! --poll-only at two poll intervals.
//!
//!     cargo bench --bench replicas
//!
//! Needs PostgreSQL at DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).

mod common;

use common::{channel, ms, open_agent, percentile, probe_delivery, spawn_server, with_database};
use connector_control::proto::v1::connector_service_client::ConnectorServiceClient;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    with_database(|url| async move { run(&url).await }).await
}

async fn run(url: &str) -> anyhow::Result<()> {
    let modes: [(&str, &[&str]); 3] = [
        ("LISTEN/NOTIFY", &[]),
        (
            "poll-only, every 100 ms",
            &["--poll-only", "--poll-interval", "100ms"],
        ),
        (
            "poll-only, every 500 ms",
            &["--poll-only", "--poll-interval", "500ms"],
        ),
    ];
    println!(
        "{:<26} {:>22} {:>9} {:>9} {:>12}",
        "mode", "StartConnector on", "p50 ms", "p99 ms", "p50 / base"
    );
    for (index, (mode, args)) in modes.into_iter().enumerate() {
        let a = spawn_server(url, &[args, &["--replica-id", "bench-a"]].concat())?;
        let b = spawn_server(url, &[args, &["--replica-id", "bench-b"]].concat())?;
        let (received_tx, mut received) = mpsc::unbounded_channel();
        open_agent(
            channel(&a.addr).await?,
            "probe-agent".to_owned(),
            "probe".to_owned(),
            Some(received_tx),
            Arc::new(AtomicUsize::new(0)),
        )
        .await?;
        // Let both replicas settle (listeners up, first polls done).
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut on_a = ConnectorServiceClient::new(channel(&a.addr).await?);
        let mut on_b = ConnectorServiceClient::new(channel(&b.addr).await?);
        let same = probe_delivery(&mut on_a, &mut received, index * 2).await?;
        let cross = probe_delivery(&mut on_b, &mut received, index * 2 + 1).await?;
        let base = percentile(&same, 50).as_secs_f64().max(1e-9);
        for (label, delays) in [
            ("A (agent's replica)", &same),
            ("B (the other one)", &cross),
        ] {
            let p50 = percentile(delays, 50);
            println!(
                "{:<26} {:>22} {:>9.2} {:>9.2} {:>11.1}x",
                mode,
                label,
                ms(p50),
                ms(percentile(delays, 99)),
                p50.as_secs_f64() / base
            );
        }
    }
    Ok(())
}
