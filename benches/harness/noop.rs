//! A no-op RPC against a bare tonic server.

use crate::prelude::*;

pub(crate) async fn health_calls(
    addr: &str,
    callers: usize,
    window: Duration,
) -> anyhow::Result<Stats> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = common::channel(addr).await?;
    let started = Instant::now();
    let deadline = started + window;
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let mut client = HealthClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                client.check(HealthCheckRequest::default()).await?;
                samples.push(t.elapsed());
            }
            anyhow::Ok(samples)
        }));
    }
    gather(tasks, started).await
}

/// A health check on our server against the same call on a bare tonic
/// server, both child processes, 16 callers on one connection.
pub(crate) async fn noop(plan: &Plan, url: String) -> anyhow::Result<Vec<Line>> {
    let ours = server(Some(&url), None, &[])?;
    let mut command = Command::new(std::env::current_exe()?);
    command.env("HARNESS_ROLE", "hello");
    let bare = spawn_logged(command)?;
    health_calls(&ours.addr, 16, Duration::from_millis(500)).await?;
    health_calls(&bare.addr, 16, Duration::from_millis(500)).await?;
    // Alternated in four slices each, so that drift in the machine's load
    // falls on both sides alike.
    let slice = plan.window / 4;
    let (mut mine, mut baseline) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        mine.push(health_calls(&ours.addr, 16, slice).await?);
        baseline.push(health_calls(&bare.addr, 16, slice).await?);
    }
    let (mine, baseline) = (Stats::merge(&mine), Stats::merge(&baseline));
    let ratio = mine.per_second / baseline.per_second;
    let line = Line {
        scenario: "No-op RPC (health check), 16 callers".to_owned(),
        ours: mine.cell(),
        baseline: format!("bare tonic: {}", baseline.cell()),
        ratio: format!("{ratio:.2}x"),
        target: ">= 0.8x".to_owned(),
        met: ratio >= 0.8,
    };
    report(&line);
    Ok(vec![line])
}
