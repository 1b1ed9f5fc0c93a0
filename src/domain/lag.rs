//! Which connectors an operator should look at: those that should run and
//! either lag more than the alert threshold or are not heard from because
//! their agent is offline.

use super::{Connector, ConnectorState};
use std::time::Duration;

/// Why a connector is flagged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LagCause {
    /// Running, with a reported latency over the threshold.
    Latency,
    /// Meant to run, but its agent went offline (state UNKNOWN).
    AgentOffline,
}

impl LagCause {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            LagCause::Latency => "latency",
            LagCause::AgentOffline => "agent_offline",
        }
    }
}

/// Why `connector` is lagging under `alert`, if it is. Stores filter with
/// the same rule: desired RUNNING, and either state UNKNOWN, or state
/// RUNNING with latency strictly over `alert`.
pub fn lag_cause(connector: &Connector, alert: Duration) -> Option<LagCause> {
    if connector.desired_state != ConnectorState::Running {
        return None;
    }
    match connector.state {
        ConnectorState::Unknown => Some(LagCause::AgentOffline),
        ConnectorState::Running if connector.latency.is_some_and(|latency| latency > alert) => {
            Some(LagCause::Latency)
        }
        _ => None,
    }
}

/// The flag `Connector.status_message` starts with when the connector is
/// lagging: what is wrong and what the threshold is, in words.
pub fn lag_flag(connector: &Connector, alert: Duration) -> Option<String> {
    let whole_seconds = |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs()));
    match lag_cause(connector, alert)? {
        LagCause::Latency => Some(format!(
            "LAGGING: latency {} is over the {} alert threshold",
            whole_seconds(connector.latency.unwrap_or_default()),
            humantime::format_duration(alert),
        )),
        LagCause::AgentOffline => Some(match &connector.last_heartbeat_time {
            Some(at) => format!(
                "AGENT OFFLINE: agent {} has not reported since {}",
                if connector.agent_id.is_empty() {
                    "(none)"
                } else {
                    &connector.agent_id
                },
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            None => "AGENT OFFLINE: no agent has reported on it".to_owned(),
        }),
    }
}

/// `status_message` as shown to operators: the flag, then the agent's own
/// words.
pub fn flagged_message(connector: &Connector, alert: Duration) -> String {
    match (
        lag_flag(connector, alert),
        connector.status_message.is_empty(),
    ) {
        (None, _) => connector.status_message.clone(),
        (Some(flag), true) => flag,
        (Some(flag), false) => format!("{flag}; agent: {}", connector.status_message),
    }
}
