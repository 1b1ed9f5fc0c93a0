//! What a subscription is, as PostgreSQL says, turned into an
//! `Observation`: pure, so that every case is tested without a cluster.

use super::super::driver::{Observation, Run};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// What the destination says of the subscription.
#[derive(Clone, Debug, PartialEq)]
pub struct Destination {
    pub enabled: bool,
    /// Its apply worker runs.
    pub worker: bool,
    /// Apply and table-sync errors counted by `pg_stat_subscription_stats`.
    pub errors: i64,
    /// What connector-control last did to it, from its comment.
    pub mark: Option<Mark>,
    /// The comment as it is (an operator's, say), to restore it.
    pub comment: Option<String>,
    /// The replication slot it uses on the publisher.
    pub slot: Option<String>,
}

/// The last start or pause connector-control applied, kept in the
/// subscription's comment in the same transaction as its ENABLE or
/// DISABLE, so that it outlives the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    pub start: bool,
    pub generation: i64,
    /// The subscription's error count when it was written: errors counted
    /// since a start are what disabled it, even across agent restarts.
    pub errors: i64,
}

const MARK: &str = "connector-control:";

impl Mark {
    /// The comment: `connector-control: connector c1 START generation 5
    /// errors 0`.
    pub fn text(self, connector_id: &str) -> String {
        let action = if self.start { "START" } else { "PAUSE" };
        format!(
            "{MARK} connector {connector_id} {action} generation {} errors {}",
            self.generation, self.errors
        )
    }

    /// A comment written by `text` for this connector; None for any other.
    pub fn parse(comment: &str, connector_id: &str) -> Option<Mark> {
        let words: Vec<&str> = comment.strip_prefix(MARK)?.split_whitespace().collect();
        match words.as_slice() {
            [
                "connector",
                id,
                action,
                "generation",
                generation,
                "errors",
                errors,
            ] if *id == connector_id => Some(Mark {
                start: match *action {
                    "START" => true,
                    "PAUSE" => false,
                    _ => return None,
                },
                generation: generation.parse().ok()?,
                errors: errors.parse().ok()?,
            }),
            _ => None,
        }
    }
}

/// What the publisher says of the subscription's slot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lag {
    /// WAL written on the publisher that the subscription has not
    /// confirmed.
    pub behind_bytes: i64,
    /// `pg_stat_replication.replay_lag` while its walsender streams (None
    /// when idle and caught up, or not streaming).
    pub replay_lag: Option<Duration>,
    pub streaming: bool,
}

/// What the driver remembers between two looks.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    /// The checkpoint last known while it streamed.
    pub checkpoint: Option<DateTime<Utc>>,
    /// The mark last read: its generation still counts while the
    /// destination cannot be read.
    pub mark: Option<Mark>,
    /// The state last read: kept while the destination cannot be read (a
    /// network blip is not a failure of the replication, which goes on).
    pub run: Option<Run>,
}

/// The observation of connector `id`: `destination` as read (an error: why
/// it could not be), the publisher's `lag` (an error: why it is unknown).
pub fn observe(
    id: &str,
    subscription: &str,
    destination: &Result<Destination, String>,
    lag: &Result<Lag, String>,
    memory: &mut Memory,
    now: DateTime<Utc>,
) -> Observation {
    let mut observation = Observation::stopped(id);
    let d = match destination {
        Ok(d) => d,
        Err(why) => {
            observation.run = memory.run.unwrap_or(Run::Failed);
            observation.message = match memory.run {
                Some(_) => format!("{why} (the state shown is the last one read)"),
                None => why.clone(),
            };
            observation.generation = memory.mark.map(|mark| mark.generation);
            return observation;
        }
    };
    memory.mark = d.mark;
    observation.generation = d.mark.map(|mark| mark.generation);
    let wanted_running = d.mark.is_some_and(|mark| mark.start);
    // Counted since the mark; statistics reset (a crash, or by hand) count
    // from zero again.
    let new_errors = d.mark.map_or(0, |mark| {
        if d.errors >= mark.errors {
            d.errors - mark.errors
        } else {
            d.errors
        }
    });
    (observation.run, observation.message) = match (d.enabled, d.worker) {
        (true, true) => (Run::Running, String::new()),
        // Without disable_on_error, PostgreSQL restarts a failing worker
        // for ever: failed, so that operators see it.
        (true, false) if wanted_running && new_errors > 0 => (
            Run::Failed,
            format!(
                "the apply worker of subscription {subscription} keeps failing ({new_errors} \
                 error(s) since it was started; PostgreSQL retries it): the destination's server \
                 log names the error. Create subscriptions WITH (disable_on_error = true) to stop \
                 at the first"
            ),
        ),
        (true, false) => (
            Run::Running,
            format!(
                "enabled, but its apply worker is not running yet (PostgreSQL starts it, and \
                 restarts it after an error; {} errors counted)",
                d.errors
            ),
        ),
        (false, _) if wanted_running && new_errors > 0 => (
            Run::Failed,
            format!(
                "PostgreSQL disabled subscription {subscription} after {new_errors} error(s) \
                 (disable_on_error; {} counted in pg_stat_subscription_stats): the destination's \
                 server log names the error and the row. Fix it; the connector's restart policy \
                 starts it again",
                d.errors
            ),
        ),
        (false, _) if wanted_running => (
            Run::Stopped,
            format!(
                "subscription {subscription} was disabled outside connector-control (no error \
                 counted): start the connector to enable it again"
            ),
        ),
        (false, _) => (Run::Stopped, String::new()),
    };
    memory.run = Some(observation.run);
    match lag {
        Ok(lag) if observation.run == Run::Running && lag.streaming => {
            let latency = lag.replay_lag.unwrap_or_default();
            observation.latency = Some(latency);
            let checkpoint = now - chrono::Duration::from_std(latency).unwrap_or_default();
            memory.checkpoint = Some(checkpoint);
            observation.checkpoint_time = Some(checkpoint);
        }
        // Not streaming: it stands where it stopped, and falls behind as
        // the publisher writes on.
        Ok(lag) => {
            observation.checkpoint_time = memory.checkpoint;
            observation.latency = memory.checkpoint.map(|checkpoint| {
                if lag.behind_bytes > 0 {
                    (now - checkpoint).to_std().unwrap_or_default()
                } else {
                    Duration::ZERO
                }
            });
        }
        Err(why) => {
            let note = format!("lag unknown: {why}");
            observation.message = if observation.message.is_empty() {
                note
            } else {
                format!("{}; {note}", observation.message)
            };
        }
    }
    observation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destination(enabled: bool, worker: bool, errors: i64, start: Option<bool>) -> Destination {
        Destination {
            enabled,
            worker,
            errors,
            mark: start.map(|start| Mark {
                start,
                generation: 4,
                errors: 0,
            }),
            comment: None,
            slot: Some("s".into()),
        }
    }

    fn streaming(lag_ms: Option<u64>) -> Result<Lag, String> {
        Ok(Lag {
            behind_bytes: 0,
            replay_lag: lag_ms.map(Duration::from_millis),
            streaming: true,
        })
    }

    fn look(d: Destination, lag: Result<Lag, String>, memory: &mut Memory) -> Observation {
        observe("c1", "s", &Ok(d), &lag, memory, Utc::now())
    }

    #[test]
    fn marks_are_read_back_for_their_own_connector_only() {
        let mark = Mark {
            start: true,
            generation: 7,
            errors: 2,
        };
        assert_eq!(Mark::parse(&mark.text("c1"), "c1"), Some(mark));
        assert_eq!(Mark::parse(&mark.text("c1"), "c2"), None);
        assert_eq!(Mark::parse("replicates orders", "c1"), None);
        assert_eq!(
            Mark::parse(
                "connector-control: connector c1 START generation x errors 0",
                "c1"
            ),
            None
        );
    }

    #[test]
    fn a_streaming_subscription_runs_with_postgresqls_replay_lag() {
        let mut memory = Memory::default();
        let seen = look(
            destination(true, true, 0, Some(true)),
            streaming(Some(1500)),
            &mut memory,
        );
        assert_eq!(seen.run, Run::Running);
        assert_eq!(seen.generation, Some(4));
        assert_eq!(seen.latency, Some(Duration::from_millis(1500)));
        assert!(memory.checkpoint.is_some());
        // Caught up and idle: PostgreSQL says no lag.
        let idle = look(
            destination(true, true, 0, Some(true)),
            streaming(None),
            &mut memory,
        );
        assert_eq!(idle.latency, Some(Duration::ZERO));
    }

    #[test]
    fn paused_it_falls_behind_from_where_it_stopped() {
        let mut memory = Memory {
            checkpoint: Some(Utc::now() - chrono::Duration::minutes(5)),
            ..Memory::default()
        };
        let behind = Ok(Lag {
            behind_bytes: 4096,
            replay_lag: None,
            streaming: false,
        });
        let seen = look(
            destination(false, false, 0, Some(false)),
            behind,
            &mut memory,
        );
        assert_eq!(seen.run, Run::Stopped);
        assert!(
            seen.latency.unwrap() >= Duration::from_secs(299),
            "{seen:?}"
        );
    }

    #[test]
    fn disabled_by_an_error_after_a_start_is_failed_and_retriable() {
        let mut memory = Memory::default();
        let seen = look(
            destination(false, false, 1, Some(true)),
            streaming(None),
            &mut memory,
        );
        assert_eq!(seen.run, Run::Failed);
        assert_eq!(seen.retriable, None, "the restart policy applies");
        assert!(
            seen.message.contains("disable_on_error"),
            "{}",
            seen.message
        );
        // Disabled by hand, no error: stopped, and says so.
        let by_hand = look(
            destination(false, false, 0, Some(true)),
            streaming(None),
            &mut Memory::default(),
        );
        assert_eq!(by_hand.run, Run::Stopped);
        assert!(by_hand.message.contains("outside connector-control"));
        // Statistics reset since the mark (errors 3 then): still its error.
        let mut reset = destination(false, false, 1, Some(true));
        reset.mark.as_mut().unwrap().errors = 3;
        assert_eq!(
            look(reset, streaming(None), &mut Memory::default()).run,
            Run::Failed
        );
        // No disable_on_error: enabled, the worker failing and restarted.
        let looping = look(
            destination(true, false, 2, Some(true)),
            streaming(None),
            &mut Memory::default(),
        );
        assert_eq!(looping.run, Run::Failed);
        assert!(
            looping.message.contains("keeps failing"),
            "{}",
            looping.message
        );
    }

    #[test]
    fn an_unreachable_destination_keeps_the_last_state_read() {
        let mut memory = Memory::default();
        look(
            destination(true, true, 0, Some(true)),
            streaming(None),
            &mut memory,
        );
        let blip = observe(
            "c1",
            "s",
            &Err("cannot connect to postgres://app@db:5432/dst: timed out".into()),
            &Err("unused".into()),
            &mut memory,
            Utc::now(),
        );
        assert_eq!((blip.run, blip.generation), (Run::Running, Some(4)));
        assert!(blip.message.contains("last one read"), "{}", blip.message);
    }

    #[test]
    fn an_unreachable_destination_is_failed_with_why_and_an_unknown_lag_is_said() {
        let seen = observe(
            "c1",
            "s",
            &Err("cannot connect to postgres://app@db:5432/dst: refused".into()),
            &Err("unused".into()),
            &mut Memory::default(),
            Utc::now(),
        );
        assert_eq!(seen.run, Run::Failed);
        assert!(seen.message.contains("cannot connect"));
        let unknown = look(
            destination(true, true, 0, Some(true)),
            Err("permission denied for subconninfo".into()),
            &mut Memory::default(),
        );
        assert_eq!(unknown.latency, None);
        assert!(
            unknown.message.contains("lag unknown"),
            "{}",
            unknown.message
        );
    }
}
