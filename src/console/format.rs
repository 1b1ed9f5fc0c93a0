//! How values read on a page: times to the second in UTC, durations,
//! enum values by their short names, a connector's state as a badge, and
//! text from agents with its control characters visible.

use crate::domain::ConnectorState;
use crate::proto::{short_name, v1};
use maud::{Markup, html};

/// A state's name without its prefix.
pub fn state_name(state: i32) -> String {
    short_name::<v1::ConnectorState>(state)
}

pub fn domain_state(state: i32) -> Option<ConnectorState> {
    ConnectorState::parse(&state_name(state))
}

pub fn kind_name(kind: i32) -> String {
    short_name::<v1::ConnectorKind>(kind)
}

pub fn command_kind(kind: i32) -> String {
    short_name::<v1::CommandKind>(kind)
}

pub fn command_status(status: i32) -> String {
    short_name::<v1::CommandStatus>(status)
}

/// Text from agents (status messages, errors, versions), shown with its
/// control and display-changing characters (a right-to-left override,
/// say) as visible escapes: what the page shows reads as what was sent.
pub fn shown(text: &str) -> String {
    crate::domain::validate::agent_text(text)
}

pub fn time_text(time: &prost_types::Timestamp) -> String {
    crate::proto::convert::timestamp(time).map_or_else(
        |_| "?".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

pub fn rfc3339(time: &prost_types::Timestamp) -> String {
    crate::proto::convert::timestamp(time).map_or_else(
        |_| String::new(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

pub fn time_cell(time: Option<&prost_types::Timestamp>) -> Markup {
    match time {
        Some(time) => html! { time datetime=(rfc3339(time)) { (time_text(time)) } },
        None => html! { span.muted { "—" } },
    }
}

pub fn duration_text(duration: Option<&prost_types::Duration>) -> String {
    match duration {
        None => "—".to_owned(),
        Some(d) => {
            let seconds = d.seconds as f64 + f64::from(d.nanos) / 1e9;
            if seconds < 1.0 {
                format!("{:.0} ms", seconds * 1000.0)
            } else if seconds < 120.0 {
                format!("{seconds:.1} s")
            } else if seconds < 7200.0 {
                format!("{:.1} min", seconds / 60.0)
            } else {
                format!("{:.1} h", seconds / 3600.0)
            }
        }
    }
}

pub fn state_badge(connector: &v1::Connector) -> Markup {
    let state = state_name(connector.state);
    let lag = v1::LagCause::try_from(connector.lag_cause).unwrap_or_default();
    html! {
        span class={ "state state-" (state.to_ascii_lowercase()) } { (state) }
        @match lag {
            v1::LagCause::Latency => { " " span.badge.badge-lagging { "LAGGING" } }
            v1::LagCause::AgentOffline => { " " span.badge.badge-offline { "AGENT OFFLINE" } }
            v1::LagCause::Unspecified => {}
        }
    }
}
