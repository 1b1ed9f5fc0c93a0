//! A custom driver, end to end: connectors that are tokio tasks applying
//! a "row" every 100 ms, run by the reference agent's session.
//!
//! ```sh
//! cargo run --example custom_driver -- http://127.0.0.1:50051 eu-2 ticker-1 10.0.2.9
//! ```
//!
//! Everything protocol-shaped (hello, welcome, heartbeats, generation
//! fencing, duplicate deliveries, reconnect backoff) is the session's: the
//! driver only starts, pauses and observes. This one cannot replay history,
//! so it says `pull_back: false`, and the control plane refuses a pull-back
//! for its region at call time (PULL_BACK_NOT_SUPPORTED).

use chrono::{DateTime, Utc};
use connector_control::agent::driver::{Capabilities, Driver, Observation, Refusal, Run, Start};
use connector_control::agent::{self, AgentConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What one ticker connector has done so far.
#[derive(Default)]
struct Progress {
    rows: u64,
    checkpoint: Option<DateTime<Utc>>,
}

/// A running ticker: its task and how to stop it.
struct Ticking {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Tickers {
    progress: Mutex<HashMap<String, Arc<Mutex<Progress>>>>,
    running: Mutex<HashMap<String, Ticking>>,
}

impl Driver for Tickers {
    fn name(&self) -> &str {
        "ticker"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { pull_back: false }
    }

    async fn start(&self, start: Start) -> Result<(), Refusal> {
        let progress = self
            .progress
            .lock()
            .unwrap()
            .entry(start.connector_id.clone())
            .or_default()
            .clone();
        let stop = CancellationToken::new();
        let (ready, is_ready) = tokio::sync::oneshot::channel();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut ready = Some(ready);
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    let mut progress = progress.lock().unwrap();
                    progress.rows += 1;
                    progress.checkpoint = Some(Utc::now());
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                }
            }
        });
        // Started once the first row is applied: the session answers the
        // command only then, without holding up anything else.
        is_ready
            .await
            .map_err(|_| Refusal::new("TICKER_DIED", "the ticker ended before its first row"))?;
        self.running
            .lock()
            .unwrap()
            .insert(start.connector_id, Ticking { stop, task });
        Ok(())
    }

    async fn pause(&self, connector_id: &str, _generation: i64) -> Result<(), Refusal> {
        let ticking = self.running.lock().unwrap().remove(connector_id);
        if let Some(Ticking { stop, task }) = ticking {
            stop.cancel();
            let _ = task.await;
        }
        Ok(())
    }

    fn observe(&self) -> Vec<Observation> {
        let running = self.running.lock().unwrap();
        self.progress
            .lock()
            .unwrap()
            .iter()
            .map(|(id, progress)| {
                let progress = progress.lock().unwrap();
                let run = if running.contains_key(id) {
                    Run::Running
                } else {
                    Run::Stopped
                };
                Observation {
                    connector_id: id.clone(),
                    run,
                    checkpoint_time: progress.checkpoint,
                    latency: (run == Run::Running).then(|| Duration::from_millis(100)),
                    store_range: None,
                    message: format!("{} rows applied", progress.rows),
                    retriable: None,
                    generation: None,
                }
            })
            .collect()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut next = |name: &str, default: &str| {
        args.next().unwrap_or_else(|| {
            eprintln!("{name} not given: {default}");
            default.to_owned()
        })
    };
    let config = AgentConfig {
        control_plane: vec![next("control plane", "http://127.0.0.1:50051")],
        region: next("region", "eu-2"),
        agent_id: next("agent id", "ticker-1"),
        server_ip: next("server ip", "10.0.2.9"),
        bearer: Default::default(),
        tls: None,
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    agent::run(config, Tickers::default(), shutdown).await
}
