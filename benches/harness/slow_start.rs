//! A slow start holds up nothing else: while one connector's start takes
//! 30 s (3 s in a quick run) in the reference agent's driver, other
//! connectors are started and confirmed (`wait`), and heartbeats go on.
//! Baseline: the same confirmed starts with no slow start in flight; for
//! heartbeats, the interval (the driver notes each observation, and once
//! the other starts are done only heartbeats observe).

use crate::prelude::*;
use connector_control::agent::driver::{Capabilities, Driver, Observation, Refusal, Start};
use connector_control::agent::{self, Simulated};
use std::sync::Mutex;

/// The simulation, except that starting `slow` takes `hold`; it notes when
/// it is observed (once per heartbeat).
struct Held {
    inner: Simulated,
    hold: Duration,
    observed: Arc<Mutex<Vec<Instant>>>,
}

impl Driver for Held {
    fn name(&self) -> &str {
        "held"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn start(&self, start: Start) -> Result<(), Refusal> {
        if start.connector_id == "slow" {
            tokio::time::sleep(self.hold).await;
        }
        self.inner.start(start).await
    }
    async fn pause(&self, connector_id: &str, generation: i64) -> Result<(), Refusal> {
        self.inner.pause(connector_id, generation).await
    }
    fn observe(&self) -> Vec<Observation> {
        self.observed.lock().unwrap().push(Instant::now());
        self.inner.observe()
    }
}

/// Starts `id` and waits until its agent confirmed it: how long that took.
async fn confirmed(
    client: &mut ConnectorServiceClient<Channel>,
    id: &str,
) -> anyhow::Result<Duration> {
    let mut request = tonic::Request::new(v1::StartConnectorRequest {
        id: id.to_owned(),
        wait: true,
        ..Default::default()
    });
    request.set_timeout(Duration::from_secs(60));
    let started = Instant::now();
    client.start_connector(request).await?;
    Ok(started.elapsed())
}

pub(crate) async fn slow_start(plan: &Plan, url: String) -> anyhow::Result<Vec<Line>> {
    let hold = if plan.quick {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(30)
    };
    let interval = Duration::from_secs(1);
    let process = server(Some(&url), None, &["--heartbeat-interval", "1s"])?;
    let channel = common::channel(&process.addr).await?;
    let mut client = ConnectorServiceClient::new(channel);
    let others = 10;
    create_connector(&mut client, "slow").await?;
    for i in 0..others {
        create_connector(&mut client, &format!("base-{i}")).await?;
        create_connector(&mut client, &format!("during-{i}")).await?;
    }
    let observed = Arc::new(Mutex::new(Vec::new()));
    let driver = Held {
        inner: Simulated::new(Duration::from_secs(1), Duration::from_secs(3600)),
        hold,
        observed: observed.clone(),
    };
    let config = agent_config(&process.addr, "held-1");
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(agent::run(config, driver, stop.clone().cancelled_owned()));

    let mut baseline = Vec::new();
    for i in 0..others {
        baseline.push(confirmed(&mut client, &format!("base-{i}")).await?);
    }
    client
        .start_connector(v1::StartConnectorRequest {
            id: "slow".to_owned(),
            ..Default::default()
        })
        .await?;
    let slow_from = Instant::now();
    let mut ours = Vec::new();
    for i in 0..others {
        ours.push(confirmed(&mut client, &format!("during-{i}")).await?);
    }
    anyhow::ensure!(
        slow_from.elapsed() < hold,
        "the other starts outlasted the slow one: nothing was measured during it"
    );
    // Heartbeats over the rest of the slow start (no other command runs
    // then, so every observation is a heartbeat's).
    let quiet_from = Instant::now();
    tokio::time::sleep(hold.saturating_sub(slow_from.elapsed())).await;
    let gaps: Vec<Duration> = {
        let observed = observed.lock().unwrap();
        observed
            .windows(2)
            .filter(|pair| pair[0] >= quiet_from && pair[1] <= slow_from + hold)
            .map(|pair| pair[1] - pair[0])
            .collect()
    };
    stop.cancel();
    anyhow::ensure!(
        gaps.len() >= 2,
        "too few heartbeats during the slow start: {}",
        gaps.len()
    );
    let longest = gaps.iter().max().copied().unwrap_or_default();

    let (ours, baseline) = (
        Stats::of(ours, Duration::from_secs(1)),
        Stats::of(baseline, Duration::from_secs(1)),
    );
    let extra = ms(ours.p50) - ms(baseline.p50);
    let others_line = Line {
        scenario: format!(
            "A {} s start in flight: other connectors' starts, confirmed",
            hold.as_secs()
        ),
        ours: format!("{:.2} / {:.2} ms", ms(ours.p50), ms(ours.p99)),
        baseline: format!(
            "no slow start: {:.2} / {:.2} ms",
            ms(baseline.p50),
            ms(baseline.p99)
        ),
        ratio: format!("p50 {extra:+.2} ms"),
        target: "p50 <= baseline + 5 ms".to_owned(),
        met: extra <= 5.0,
    };
    report(&others_line);
    let beats_line = Line {
        scenario: format!(
            "A {} s start in flight: the longest gap between heartbeats",
            hold.as_secs()
        ),
        ours: format!("{:.2} s over {} gaps", longest.as_secs_f64(), gaps.len()),
        baseline: format!("the interval: {:.2} s", interval.as_secs_f64()),
        ratio: format!("{:.2}x", longest.as_secs_f64() / interval.as_secs_f64()),
        target: "<= 1.5x the interval".to_owned(),
        met: longest <= interval.mul_f64(1.5),
    };
    report(&beats_line);
    Ok(vec![others_line, beats_line])
}
