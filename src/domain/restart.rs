//! Automatic starts: a connector meant to run that failed is started again
//! after a backoff, as Kubernetes restarts a crashed container (counted as
//! Strimzi's `autoRestart` counts).

use super::audit::Actor;
use super::model::{Connector, ConnectorState, StartRequest};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The principal automatic starts are issued and audited as.
pub const AUTO_RESTART_PRINCIPAL: &str = "system:auto-restart";

/// Failure reasons that no number of retries fixes: the store does not
/// hold the pull-back time, or the connector cannot pull back.
pub const NON_RETRIABLE_REASONS: &[&str] = &["PULL_BACK_OUT_OF_RANGE", "PULL_BACK_NOT_SUPPORTED"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartMode {
    Never,
    OnFailure,
}

impl RestartMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartMode::Never => "NEVER",
            RestartMode::OnFailure => "ON_FAILURE",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "NEVER" => Some(RestartMode::Never),
            "ON_FAILURE" => Some(RestartMode::OnFailure),
            _ => None,
        }
    }
}

/// When a failed connector is started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    pub mode: RestartMode,
    /// Automatic starts allowed in a row; 0 = unlimited.
    pub max_restarts: u32,
    /// The delay before the first automatic start; it doubles after each.
    pub initial_backoff: Duration,
    /// The longest delay.
    pub max_backoff: Duration,
    /// Running this long after an automatic start resets the count.
    pub reset_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            mode: RestartMode::OnFailure,
            max_restarts: 0,
            initial_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

impl std::fmt::Display for RestartPolicy {
    /// "ON_FAILURE, at most 5 in a row, after 10s doubling to 5m, reset after 10m".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let limit = match self.max_restarts {
            0 => "unlimited".to_owned(),
            n => format!("at most {n} in a row"),
        };
        write!(
            f,
            "{}, {limit}, after {} doubling to {}, reset after {}",
            self.mode.as_str(),
            humantime::format_duration(self.initial_backoff),
            humantime::format_duration(self.max_backoff),
            humantime::format_duration(self.reset_after)
        )
    }
}

impl RestartPolicy {
    /// The delay before automatic start `attempt` (1 for the first):
    /// `initial_backoff * 2^(attempt-1)`, at most `max_backoff`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(32);
        self.initial_backoff
            .checked_mul(1 << doublings.min(31))
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }

    /// Whether a connector that started `count` times in a row may start
    /// once more.
    pub fn allows(&self, count: u32) -> bool {
        self.mode == RestartMode::OnFailure && (self.max_restarts == 0 || count < self.max_restarts)
    }
}

/// A connector's automatic starts: its policy and where it stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restarts {
    pub policy: RestartPolicy,
    /// Automatic starts since the connector last ran for `reset_after`.
    pub count: u32,
    /// When the next automatic start is due; None when none is scheduled.
    pub next_time: Option<DateTime<Utc>>,
}

/// Whether a failure with `reason` may be retried; `flagged` is what the
/// agent said (`CommandResult.retriable`), which wins when given.
pub fn retriable(reason: &str, flagged: Option<bool>) -> bool {
    flagged.unwrap_or_else(|| !NON_RETRIABLE_REASONS.contains(&reason))
}

/// The start an automatic restart issues: an ordinary start, as the
/// control plane itself, idempotent per attempt (a second leader retrying
/// the same attempt gets the first one's command back).
pub fn restart_request(connector: &Connector, attempt: u32) -> StartRequest {
    StartRequest {
        connector_id: connector.id.clone(),
        pull_back_time: None,
        region: None,
        request_id: Some(format!("auto-restart-{attempt}-g{}", connector.generation)),
        actor: Actor {
            principal: AUTO_RESTART_PRINCIPAL.to_owned(),
            peer: String::new(),
        },
        trace_context: Default::default(),
    }
}

/// What `status_message` adds about automatic starts: the next one and
/// when, or that they are used up. None when there is nothing to say.
pub fn restart_note(connector: &Connector, now: DateTime<Utc>) -> Option<String> {
    let restarts = &connector.restart;
    if connector.desired_state != ConnectorState::Running {
        return None;
    }
    if let Some(due) = restarts.next_time {
        let wait = (due - now).to_std().unwrap_or_default();
        let wait = humantime::format_duration(Duration::from_secs(wait.as_secs()));
        return Some(format!("automatic start {} in {wait}", restarts.count + 1));
    }
    let failed = matches!(
        connector.state,
        ConnectorState::Failed | ConnectorState::Stopped
    );
    if failed
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
}
