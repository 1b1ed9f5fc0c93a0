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
    // Rounded up: a latency just over the threshold never reads as equal.
    let whole_seconds = |d: Duration| {
        humantime::format_duration(Duration::from_secs(
            d.as_secs() + u64::from(d.subsec_nanos() > 0),
        ))
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn connector(state: ConnectorState, desired: ConnectorState, latency: u64) -> Connector {
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 9, 30, 0).unwrap();
        Connector {
            name: "orders".to_owned(),
            agent_id: "a1".to_owned(),
            desired_state: desired,
            generation: 1,
            latency: Some(Duration::from_secs(latency)),
            create_time: at,
            update_time: at,
            last_heartbeat_time: Some(at),
            ..crate::domain::sample::connector(state)
        }
    }

    const ALERT: Duration = Duration::from_secs(60);

    #[test]
    fn what_lags_and_why() {
        use ConnectorState::*;
        // (state, desired state, latency in s, cause)
        let cases = [
            (Running, Running, 61, Some(LagCause::Latency)),
            // Strictly over.
            (Running, Running, 60, None),
            // Paused, or being paused: not the operator's concern any more.
            (Running, Stopped, 600, None),
            (Stopped, Stopped, 600, None),
            (Starting, Running, 600, None),
            // An offline agent makes the connectors meant to run lag.
            (Unknown, Running, 0, Some(LagCause::AgentOffline)),
            (Unknown, Stopped, 0, None),
        ];
        for (state, desired, latency, cause) in cases {
            let connector = connector(state, desired, latency);
            assert_eq!(
                lag_cause(&connector, ALERT),
                cause,
                "{state:?} (desired {desired:?}), {latency} s"
            );
        }
    }

    #[test]
    fn the_flag_leads_the_agents_message() {
        use ConnectorState::*;
        let mut lagging = connector(Running, Running, 125);
        lagging.status_message = "applying binlog".to_owned();
        assert_eq!(
            flagged_message(&lagging, ALERT),
            "LAGGING: latency 2m 5s is over the 1m alert threshold; agent: applying binlog"
        );
        assert_eq!(
            flagged_message(&connector(Unknown, Running, 0), ALERT),
            "AGENT OFFLINE: agent a1 has not reported since 2026-11-24T09:30:00Z"
        );
        // Rounded up: just over the threshold never reads as equal to it.
        let mut barely = connector(Running, Running, 60);
        barely.latency = Some(Duration::from_millis(60_400));
        assert_eq!(
            flagged_message(&barely, ALERT),
            "LAGGING: latency 1m 1s is over the 1m alert threshold"
        );
        let mut fine = connector(Running, Running, 5);
        fine.status_message = "ok".to_owned();
        assert_eq!(flagged_message(&fine, ALERT), "ok");
    }
}
