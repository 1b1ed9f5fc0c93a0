//! Restart policies: when a failed connector is started again, and what
//! marks a start as an automatic one. Plain data; the planning is in
//! `restart.rs`.

use chrono::{DateTime, Utc};
use std::time::Duration;

/// The principal automatic starts are issued and audited as.
pub const AUTO_RESTART_PRINCIPAL: &str = "system:auto-restart";

/// Failure reasons that no number of retries fixes: the store does not
/// hold the pull-back time or the checkpoint, or the connector cannot pull
/// back.
pub const NON_RETRIABLE_REASONS: &[&str] = &[
    "PULL_BACK_OUT_OF_RANGE",
    "PULL_BACK_NOT_SUPPORTED",
    "CHECKPOINT_OUT_OF_RANGE",
];

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

/// What marks a start as the control plane's own: which automatic start
/// it is, the connector generation it was planned at, and the audited
/// reason. A start carrying it is made only while the connector is as the
/// plan saw it (`still_applies`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutomaticStart {
    /// 1 for the first automatic start since the count was last reset.
    pub attempt: u32,
    pub generation: i64,
    pub reason: String,
}
