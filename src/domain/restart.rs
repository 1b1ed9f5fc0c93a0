//! Automatic starts: a connector meant to run that failed is started again
//! after a backoff, as Kubernetes restarts a crashed container (counted as
//! Strimzi's `autoRestart` counts).

use super::audit::Actor;
use super::model::{Connector, ConnectorState, StartRequest};
pub use super::restart_policy::{
    AUTO_RESTART_PRINCIPAL, AutomaticStart, NON_RETRIABLE_REASONS, RestartMode, RestartPolicy,
    Restarts, retriable,
};
use chrono::{DateTime, Utc};
use std::time::Duration;

impl AutomaticStart {
    /// Whether the locked connector is still the failed one it was planned
    /// for: same generation (no start or pause since), still failed and
    /// meant to run, the count where the plan saw it, and the policy still
    /// allowing it.
    pub fn still_applies(&self, connector: &Connector) -> bool {
        connector.generation == self.generation
            && failed_meant_to_run(connector)
            && connector.restart.count.checked_add(1) == Some(self.attempt)
            && connector.restart.policy.allows(connector.restart.count)
    }
}

fn failed_meant_to_run(connector: &Connector) -> bool {
    connector.desired_state == ConnectorState::Running && connector.state == ConnectorState::Failed
}

/// What the leader does about one connector in a round of automatic
/// starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    Nothing,
    /// Failed while meant to run: start it again at this time.
    Schedule(DateTime<Utc>),
    /// The schedule no longer applies (it runs again, was paused, is no
    /// longer failed, or its policy forbids it): drop it.
    Cancel,
    /// It has run for `reset_after` since its last automatic start.
    Reset,
    /// The scheduled time came: issue automatic start `attempt`.
    Start(AutomaticStart),
}

/// The rule of automatic starts for one connector at `now`.
/// `running_since` is when its newest command, a start, succeeded (None
/// when the newest command is something else or has not succeeded).
pub fn plan(
    connector: &Connector,
    running_since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Plan {
    let restarts = &connector.restart;
    // An automatic start never skips data: with the checkpoint gone from
    // the store, only an operator's explicit choice starts it again.
    let wanted = failed_meant_to_run(connector)
        && restarts.policy.allows(restarts.count)
        && super::rules::checkpoint_gone(connector).is_none();
    match restarts.next_time {
        Some(_) if !wanted => Plan::Cancel,
        Some(due) if due <= now => {
            let attempt = restarts.count.saturating_add(1);
            Plan::Start(AutomaticStart {
                attempt,
                generation: connector.generation,
                reason: start_reason(connector, attempt),
            })
        }
        Some(_) => Plan::Nothing,
        None if wanted => {
            let delay = restarts.policy.delay(restarts.count.saturating_add(1));
            Plan::Schedule(
                now + chrono::TimeDelta::from_std(delay).unwrap_or(chrono::TimeDelta::MAX),
            )
        }
        None => {
            let reset_at = running_since.map(|since| {
                since
                    + chrono::TimeDelta::from_std(restarts.policy.reset_after)
                        .unwrap_or(chrono::TimeDelta::MAX)
            });
            let ran_long_enough = reset_at.is_some_and(|at| at <= now);
            if restarts.count > 0 && connector.state == ConnectorState::Running && ran_long_enough {
                Plan::Reset
            } else {
                Plan::Nothing
            }
        }
    }
}

/// The audited reason of an automatic start: which one, of how many, and
/// the failure it answers.
fn start_reason(connector: &Connector, attempt: u32) -> String {
    let of = match connector.restart.policy.max_restarts {
        0 => String::new(),
        max => format!(" of {max}"),
    };
    let failure = if connector.status_message.is_empty() {
        "no message from the agent"
    } else {
        connector.status_message.as_str()
    };
    format!("automatic start {attempt}{of} after FAILED: {failure}")
}

/// The start an automatic restart issues: an ordinary start, as the
/// control plane itself, idempotent per attempt (a second leader retrying
/// the same attempt gets the first one's command back).
pub fn restart_request(connector_id: &str, automatic: AutomaticStart) -> StartRequest {
    StartRequest {
        connector_id: connector_id.to_owned(),
        pull_back_time: None,
        region: None,
        skip_to_earliest: false,
        request_id: Some(format!(
            "auto-restart-{}-g{}",
            automatic.attempt, automatic.generation
        )),
        actor: Actor {
            principal: AUTO_RESTART_PRINCIPAL.to_owned(),
            peer: String::new(),
        },
        trace_context: Default::default(),
        automatic: Some(automatic),
    }
}

/// What `status_message` adds about automatic starts: the next one and
/// when, or that they are used up. None when there is nothing to say.
pub fn restart_note(connector: &Connector, now: DateTime<Utc>) -> Option<String> {
    let restarts = &connector.restart;
    if connector.desired_state != ConnectorState::Running {
        return None;
    }
    if connector.state == ConnectorState::Failed
        && restarts.policy.mode == RestartMode::OnFailure
        && let Some((checkpoint, range)) = super::rules::checkpoint_gone(connector)
    {
        return Some(format!(
            "no automatic start: the store no longer holds its checkpoint {} (it holds data \
             from {}): start it by hand, pulling back to a time the store holds or skipping \
             to the earliest data",
            checkpoint.to_rfc3339(),
            range.earliest.to_rfc3339()
        ));
    }
    if let Some(due) = restarts.next_time
        && connector.state == ConnectorState::Failed
    {
        let wait = (due - now).to_std().unwrap_or_default();
        let wait = humantime::format_duration(Duration::from_secs(wait.as_secs()));
        return Some(format!("automatic start {} in {wait}", restarts.count + 1));
    }
    if connector.state == ConnectorState::Failed
        && restarts.policy.mode == RestartMode::OnFailure
        && !restarts.policy.allows(restarts.count)
    {
        return Some(format!(
            "automatic starts used up ({} of {}): start it by hand once the problem is fixed",
            restarts.count, restarts.policy.max_restarts
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let policy = RestartPolicy::default();
        let delays: Vec<u64> = (1..=7).map(|n| policy.delay(n).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(policy.delay(200), Duration::from_secs(300), "no overflow");
    }

    #[test]
    fn a_limit_stops_the_restarts_and_never_means_never() {
        let limited = RestartPolicy {
            max_restarts: 3,
            ..RestartPolicy::default()
        };
        assert!(limited.allows(2));
        assert!(!limited.allows(3));
        assert!(RestartPolicy::default().allows(1_000_000), "0 = unlimited");
        let never = RestartPolicy {
            mode: RestartMode::Never,
            ..RestartPolicy::default()
        };
        assert!(!never.allows(0));
    }

    #[test]
    fn pull_back_failures_are_not_retried_unless_the_agent_says_otherwise() {
        assert!(!retriable("PULL_BACK_OUT_OF_RANGE", None));
        assert!(!retriable("PULL_BACK_NOT_SUPPORTED", None));
        assert!(retriable("DESTINATION_UNREACHABLE", None));
        assert!(!retriable("DESTINATION_UNREACHABLE", Some(false)));
        assert!(retriable("PULL_BACK_OUT_OF_RANGE", Some(true)));
    }

    fn failed(count: u32, next_time: Option<DateTime<Utc>>) -> Connector {
        let mut connector = crate::domain::sample::connector(ConnectorState::Failed);
        connector.desired_state = ConnectorState::Running;
        connector.status_message = "start failed (DESTINATION_UNREACHABLE): refused".into();
        connector.restart.count = count;
        connector.restart.next_time = next_time;
        connector
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn a_failure_is_scheduled_after_the_backoff_of_its_attempt() {
        assert_eq!(plan(&failed(0, None), None, at(0)), Plan::Schedule(at(10)));
        assert_eq!(plan(&failed(2, None), None, at(0)), Plan::Schedule(at(40)));
    }

    #[test]
    fn a_due_schedule_starts_the_next_attempt_and_not_before() {
        assert_eq!(plan(&failed(2, Some(at(40))), None, at(39)), Plan::Nothing);
        let Plan::Start(start) = plan(&failed(2, Some(at(40))), None, at(40)) else {
            panic!("not started");
        };
        assert_eq!(start.attempt, 3);
        assert_eq!(start.generation, 3);
        assert!(
            start
                .reason
                .starts_with("automatic start 3 after FAILED: start failed")
        );
        let request = restart_request("c1", start.clone());
        assert_eq!(request.request_id.as_deref(), Some("auto-restart-3-g3"));
        assert_eq!(request.actor.principal, AUTO_RESTART_PRINCIPAL);
        assert!(start.still_applies(&failed(2, Some(at(40)))));
    }

    #[test]
    fn a_planned_start_no_longer_applies_once_the_connector_changed() {
        let Plan::Start(start) = plan(&failed(0, Some(at(10))), None, at(10)) else {
            panic!("not started");
        };
        let mut paused = failed(0, None);
        paused.generation += 1;
        paused.state = ConnectorState::Pausing;
        paused.desired_state = ConnectorState::Stopped;
        assert!(!start.still_applies(&paused));
        let mut recovered = failed(0, None);
        recovered.state = ConnectorState::Running;
        assert!(!start.still_applies(&recovered));
        let mut counted = failed(1, None);
        counted.restart.count = 1;
        assert!(
            !start.still_applies(&counted),
            "another leader made this attempt"
        );
    }

    #[test]
    fn a_schedule_is_cancelled_when_it_no_longer_applies() {
        let mut recovered = failed(1, Some(at(20)));
        recovered.state = ConnectorState::Running;
        assert_eq!(plan(&recovered, None, at(0)), Plan::Cancel);
        let mut never = failed(1, Some(at(20)));
        never.restart.policy.mode = RestartMode::Never;
        assert_eq!(plan(&never, None, at(0)), Plan::Cancel);
        let mut used_up = failed(3, Some(at(20)));
        used_up.restart.policy.max_restarts = 3;
        assert_eq!(plan(&used_up, None, at(30)), Plan::Cancel);
        used_up.restart.next_time = None;
        assert_eq!(
            plan(&used_up, None, at(30)),
            Plan::Nothing,
            "never scheduled again"
        );
        assert!(
            restart_note(&used_up, at(30))
                .unwrap()
                .contains("used up (3 of 3)"),
            "{:?}",
            restart_note(&used_up, at(30))
        );
    }

    #[test]
    fn the_count_resets_after_running_for_reset_after() {
        let mut running = failed(4, None);
        running.state = ConnectorState::Running;
        assert_eq!(plan(&running, Some(at(0)), at(599)), Plan::Nothing);
        assert_eq!(plan(&running, Some(at(0)), at(600)), Plan::Reset);
        assert_eq!(
            plan(&running, None, at(600)),
            Plan::Nothing,
            "not known to run since"
        );
        running.restart.count = 0;
        assert_eq!(
            plan(&running, Some(at(0)), at(600)),
            Plan::Nothing,
            "nothing to reset"
        );
    }

    #[test]
    fn no_automatic_start_skips_data_the_store_no_longer_holds() {
        let mut gone = failed(0, None);
        gone.checkpoint_time = Some(at(-100));
        gone.store_range = Some(crate::domain::TimeRange {
            earliest: at(-50),
            latest: at(0),
        });
        assert_eq!(plan(&gone, None, at(0)), Plan::Nothing, "not scheduled");
        gone.restart.next_time = Some(at(10));
        assert_eq!(plan(&gone, None, at(20)), Plan::Cancel, "nor started");
        gone.restart.next_time = None;
        let note = restart_note(&gone, at(0)).unwrap();
        assert!(note.contains("no automatic start"), "{note}");
        assert!(!retriable("CHECKPOINT_OUT_OF_RANGE", None));
    }

    #[test]
    fn the_status_message_says_which_start_comes_and_when() {
        let note = restart_note(&failed(2, Some(at(40))), at(0)).unwrap();
        assert_eq!(note, "automatic start 3 in 40s");
    }
}
