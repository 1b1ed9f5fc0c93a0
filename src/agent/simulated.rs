//! `--driver simulated` (the default, and what `serve --demo` runs): each
//! connector is a simulation whose checkpoint advances towards now minus a
//! configured latency, over a store that holds the last `store_retention`
//! of change data. Pull-back and the store-range rules behave as a real
//! incremental connector's do.

use super::driver::{Capabilities, Driver, Observation, Refusal, Run, Start};
use crate::domain::TimeRange;
use crate::domain::pull_back::{checkpoint_lost, pull_back_out_of_range};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// How much faster than real time a simulated connector replays change
/// data it is behind on (after a pull-back, or a pause): an hour behind
/// catches up in a minute.
const CATCH_UP_SPEED: i32 = 60;

/// The simulated connectors of one agent.
#[derive(Debug)]
pub struct Simulated {
    /// The lag every running connector reports.
    latency: Duration,
    /// How far back each connector's store holds change data.
    store_retention: Duration,
    connectors: Mutex<BTreeMap<String, Connector>>,
}

/// One simulated connector.
#[derive(Clone, Debug)]
struct Connector {
    running: bool,
    /// Where replication stands; advances while running, towards `now -
    /// latency`, at `CATCH_UP_SPEED` while it is further behind. None
    /// until it first runs here: a simulation made for a command knows no
    /// checkpoint, and never makes one up.
    checkpoint: Option<DateTime<Utc>>,
    /// When the checkpoint last advanced.
    advanced: DateTime<Utc>,
}

impl Connector {
    /// Replays what came since the last call: the checkpoint moves towards
    /// `now - lag`, at most `CATCH_UP_SPEED` times the time that passed.
    fn advance(&mut self, lag: chrono::Duration, now: DateTime<Utc>) {
        if let (true, Some(checkpoint)) = (self.running, self.checkpoint) {
            let target = now - lag;
            let replayed = (now - self.advanced) * CATCH_UP_SPEED;
            if checkpoint < target {
                self.checkpoint = Some((checkpoint + replayed).min(target));
            }
        }
        self.advanced = now;
    }
}

impl Simulated {
    pub fn new(latency: Duration, store_retention: Duration) -> Self {
        Simulated {
            latency,
            store_retention,
            connectors: Mutex::default(),
        }
    }

    fn lag(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.latency).unwrap_or_default()
    }

    /// What the simulated store holds: the last `store_retention`.
    fn store_range(&self, now: DateTime<Utc>) -> TimeRange {
        let retention =
            chrono::Duration::from_std(self.store_retention).unwrap_or(chrono::Duration::days(1));
        TimeRange {
            earliest: now - retention,
            latest: now,
        }
    }

    /// Runs `change` on the connector's simulation, made (stopped, no
    /// checkpoint) if this is its first command.
    fn with<T>(&self, id: &str, change: impl FnOnce(&mut Connector, DateTime<Utc>) -> T) -> T {
        let now = Utc::now();
        let lag = self.lag();
        let mut connectors = self.connectors.lock().unwrap();
        let connector = connectors.entry(id.to_owned()).or_insert(Connector {
            running: false,
            checkpoint: None,
            advanced: now,
        });
        connector.advance(lag, now);
        change(connector, now)
    }

    fn observation(&self, id: &str, c: &Connector, now: DateTime<Utc>) -> Observation {
        Observation {
            connector_id: id.to_owned(),
            run: if c.running {
                Run::Running
            } else {
                Run::Stopped
            },
            checkpoint_time: c.checkpoint,
            // How far behind it is: the checkpoint's age, which agrees with
            // the checkpoint whatever happened (a pull-back is minutes
            // behind until it caught up).
            latency: c.checkpoint.filter(|_| c.running).map(|checkpoint| {
                (now - checkpoint)
                    .to_std()
                    .unwrap_or_default()
                    .max(self.latency)
            }),
            store_range: Some(self.store_range(now)),
            message: String::new(),
            retriable: None,
            generation: None,
        }
    }
}

impl Driver for Simulated {
    fn name(&self) -> &str {
        "simulated"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { pull_back: true }
    }

    async fn start(&self, start: Start) -> Result<(), Refusal> {
        self.with(&start.connector_id, |connector, now| {
            let range = self.store_range(now);
            // The recorded checkpoint wins over this simulation's own: it
            // may be newer (another agent ran the connector since) or this
            // one missing (the agent restarted since). Neither: a new
            // connector, which begins with the data of now.
            let checkpoint = start
                .checkpoint_time
                .or(connector.checkpoint)
                .unwrap_or(now - self.lag());
            let held = |time: &str| format!("the store holds data {range}; {time}");
            connector.checkpoint = match start.pull_back_time {
                Some(time) if pull_back_out_of_range(time, Some(&range), now) => {
                    return Err(Refusal::new(
                        "PULL_BACK_OUT_OF_RANGE",
                        held(&format!("cannot pull back to {}", time.to_rfc3339())),
                    ));
                }
                None if checkpoint_lost(checkpoint, &range) && !start.skip_to_earliest => {
                    return Err(Refusal::new(
                        "CHECKPOINT_OUT_OF_RANGE",
                        format!(
                            "the checkpoint {} is gone: {}",
                            checkpoint.to_rfc3339(),
                            held("pull back to a time within it, or start with skip_to_earliest")
                        ),
                    )
                    .not_retriable());
                }
                Some(time) => Some(time),
                // Skipping on purpose: from the earliest data held.
                None if checkpoint_lost(checkpoint, &range) => Some(range.earliest),
                None => Some(checkpoint),
            };
            connector.running = true;
            connector.advanced = now;
            Ok(())
        })
    }

    async fn pause(&self, connector_id: &str, _generation: i64) -> Result<(), Refusal> {
        self.with(connector_id, |connector, _| connector.running = false);
        Ok(())
    }

    fn observe(&self) -> Vec<Observation> {
        let now = Utc::now();
        let lag = self.lag();
        let mut connectors = self.connectors.lock().unwrap();
        connectors
            .iter_mut()
            .map(|(id, c)| {
                c.advance(lag, now);
                self.observation(id, c, now)
            })
            .collect()
    }

    fn observe_connector(&self, connector_id: &str) -> Option<Observation> {
        let now = Utc::now();
        let mut connectors = self.connectors.lock().unwrap();
        let connector = connectors.get_mut(connector_id)?;
        connector.advance(self.lag(), now);
        Some(self.observation(connector_id, connector, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simulated() -> Simulated {
        Simulated::new(Duration::from_secs(2), Duration::from_secs(3600))
    }

    fn start(generation: i64) -> Start {
        Start {
            connector_id: "c1".into(),
            generation,
            pull_back_time: None,
            checkpoint_time: None,
            skip_to_earliest: false,
        }
    }

    /// Changes c1's simulation behind the driver's back (time passing).
    fn rewind(driver: &Simulated, change: impl FnOnce(&mut Connector)) {
        change(driver.connectors.lock().unwrap().get_mut("c1").unwrap());
    }

    fn observed(driver: &Simulated) -> Observation {
        driver.observe().remove(0)
    }

    #[tokio::test]
    async fn one_connector_is_observed_as_all_are_and_none_is_made_up() {
        let driver = simulated();
        driver.start(start(1)).await.unwrap();
        let one = driver.observe_connector("c1").unwrap();
        assert_eq!((one.run, one.connector_id.as_str()), (Run::Running, "c1"));
        assert!(driver.observe_connector("c9").is_none());
        assert_eq!(driver.observe().len(), 1, "observing c9 made nothing");
    }

    #[tokio::test]
    async fn pull_back_beyond_the_store_is_refused() {
        let driver = simulated();
        let refused = |minutes_back: i64| Start {
            pull_back_time: Some(Utc::now() - chrono::Duration::minutes(minutes_back)),
            ..start(1)
        };
        let result = driver.start(refused(120)).await;
        assert_eq!(result.unwrap_err().reason, "PULL_BACK_OUT_OF_RANGE");
        let result = driver.start(refused(-5)).await;
        assert_eq!(
            result.unwrap_err().reason,
            "PULL_BACK_OUT_OF_RANGE",
            "after the latest data"
        );
        assert_eq!(observed(&driver).run, Run::Stopped);
        driver.start(refused(30)).await.unwrap();
        assert_eq!(observed(&driver).run, Run::Running);
    }

    #[tokio::test]
    async fn a_start_from_a_checkpoint_the_store_lost_fails_unless_skipping() {
        let driver = simulated();
        driver.start(start(1)).await.unwrap();
        driver.pause("c1", 2).await.unwrap();
        // Two hours later, with one hour of retention.
        let stopped_at = Utc::now() - chrono::Duration::hours(2);
        rewind(&driver, |c| c.checkpoint = Some(stopped_at));
        let refusal = driver.start(start(3)).await.unwrap_err();
        assert_eq!(refusal.reason, "CHECKPOINT_OUT_OF_RANGE");
        assert_eq!(refusal.retriable, Some(false));
        assert_eq!(observed(&driver).run, Run::Stopped);
        let skipping = Start {
            skip_to_earliest: true,
            ..start(4)
        };
        driver.start(skipping).await.unwrap();
        let resumed = observed(&driver).checkpoint_time.unwrap();
        assert!(
            resumed > stopped_at + chrono::Duration::minutes(59),
            "{resumed}"
        );
    }

    #[tokio::test]
    async fn a_fresh_simulation_resumes_from_the_recorded_checkpoint_never_from_now() {
        // The agent restarted: it knows nothing of c1, which the control
        // plane recorded paused two hours ago (one hour of retention).
        let driver = simulated();
        let recorded = Utc::now() - chrono::Duration::hours(2);
        let from_record = Start {
            checkpoint_time: Some(recorded),
            ..start(5)
        };
        let refusal = driver.start(from_record.clone()).await.unwrap_err();
        assert_eq!(refusal.reason, "CHECKPOINT_OUT_OF_RANGE");
        assert_eq!(observed(&driver).run, Run::Stopped);
        // Within the store: it replays from there.
        let recorded = Utc::now() - chrono::Duration::minutes(30);
        let within = Start {
            checkpoint_time: Some(recorded),
            ..from_record
        };
        driver.start(within).await.unwrap();
        let status = observed(&driver);
        assert_eq!(status.run, Run::Running);
        assert!(
            status.checkpoint_time.unwrap() < Utc::now() - chrono::Duration::minutes(29),
            "resumed at {:?}, not near the recorded {recorded}",
            status.checkpoint_time
        );
    }

    #[tokio::test]
    async fn after_a_pull_back_the_latency_is_the_checkpoints_age_until_it_catches_up() {
        let driver = simulated();
        let pulled_back = Utc::now() - chrono::Duration::minutes(30);
        driver
            .start(Start {
                pull_back_time: Some(pulled_back),
                ..start(1)
            })
            .await
            .unwrap();
        let latency = observed(&driver).latency.unwrap();
        assert!(latency >= Duration::from_secs(29 * 60), "{latency:?}");
        // A minute later it replayed an hour's worth: caught up, to the
        // configured lag.
        rewind(&driver, |c| c.advanced -= chrono::Duration::minutes(1));
        let status = observed(&driver);
        let latency = status.latency.unwrap();
        assert!(latency < Duration::from_secs(3), "{latency:?}");
        assert!(Utc::now() - status.checkpoint_time.unwrap() < chrono::Duration::seconds(3));
    }
}
