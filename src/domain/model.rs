//! The things the control plane reasons about, free of gRPC and SQL types.

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::time::Duration;

/// Declares a closed set of values with the stable text form used in storage
/// and error metadata (the proto enum name without its prefix).
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// What a connector does; pull-back applies to incremental sync only.
    ConnectorKind {
        IncrementalSync => "INCREMENTAL_SYNC",
        FullMigration => "FULL_MIGRATION",
    }
);

text_enum!(
    /// Lifecycle state of a connector (see the proto for each meaning).
    ConnectorState {
        Stopped => "STOPPED",
        Starting => "STARTING",
        Running => "RUNNING",
        Pausing => "PAUSING",
        Failed => "FAILED",
        Unknown => "UNKNOWN",
    }
);

text_enum!(
    /// What a command asks an agent to do.
    CommandKind {
        Start => "START",
        Pause => "PAUSE",
    }
);

text_enum!(
    /// Where a command is in its delivery.
    CommandStatus {
        Pending => "PENDING",
        Delivered => "DELIVERED",
        Succeeded => "SUCCEEDED",
        Failed => "FAILED",
        Superseded => "SUPERSEDED",
    }
);

impl CommandStatus {
    /// Whether the command has reached a status it never leaves.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Superseded)
    }
}

/// A data source a connector reads from or writes to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// The proto's `type` ("MYSQL", "OCEANBASE", ...).
    pub kind: String,
    pub region: String,
    pub address: String,
}

/// The change data a connector's store still holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    pub earliest: DateTime<Utc>,
    pub latest: DateTime<Utc>,
}

impl std::fmt::Display for TimeRange {
    /// "from 2026-11-24T09:30:00+00:00 to 2026-11-24T10:30:00+00:00".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "from {} to {}",
            self.earliest.to_rfc3339(),
            self.latest.to_rfc3339()
        )
    }
}

/// A validated CreateConnector request.
#[derive(Clone, Debug)]
pub struct NewConnector {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub project_name: String,
    pub kind: ConnectorKind,
    pub source: Endpoint,
    pub destination: Endpoint,
    pub restart_policy: super::restart_policy::RestartPolicy,
    /// Who creates it (audited with it).
    pub actor: super::Actor,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Connector {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub project_name: String,
    pub kind: ConnectorKind,
    pub source: Endpoint,
    pub destination: Endpoint,
    pub region: String,
    pub server_ip: String,
    pub agent_id: String,
    pub state: ConnectorState,
    pub desired_state: ConnectorState,
    pub generation: i64,
    pub checkpoint_time: Option<DateTime<Utc>>,
    pub latency: Option<Duration>,
    pub store_range: Option<TimeRange>,
    pub status_message: String,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub last_heartbeat_time: Option<DateTime<Utc>>,
    /// Its automatic starts: policy, count, the next one.
    pub restart: super::restart_policy::Restarts,
    /// Reports and results for generations below this change nothing: an
    /// operator marked it stopped (at this generation) while its agent was
    /// away, and what that agent says of earlier generations is stale.
    pub fenced_below: i64,
    /// Its changes counted: 1 when created, one more at every change of
    /// any field (the change feed carries the version each change made).
    pub version: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    pub id: String,
    pub connector_id: String,
    pub kind: CommandKind,
    pub pull_back_time: Option<DateTime<Utc>>,
    pub region: String,
    pub generation: i64,
    pub request_id: Option<String>,
    pub reason: String,
    pub status: CommandStatus,
    pub agent_id: String,
    pub error_reason: String,
    pub error_message: String,
    pub create_time: DateTime<Utc>,
    pub complete_time: Option<DateTime<Utc>>,
    /// W3C trace context of the call that issued it; empty when untraced.
    pub trace_context: TraceContext,
    /// SUPERSEDED only: what the agent answered after a newer command
    /// superseded it (Succeeded or Failed), and when. Recorded, never
    /// acted on.
    pub late_result: Option<(CommandStatus, DateTime<Utc>)>,
    /// Who issued it (a principal's name, or `system:auto-restart`).
    pub principal: String,
    /// START only: the caller allowed resuming from the store's earliest
    /// data when the checkpoint is no longer held (skipping what is gone).
    pub skip_to_earliest: bool,
}

/// A duration in whole microseconds, as stores keep latencies (saturating).
pub fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// W3C trace context entries (`traceparent`, `tracestate`).
pub type TraceContext = HashMap<String, String>;

/// The stored form of a trace context: JSON, or empty for none.
pub fn trace_context_to_text(context: &TraceContext) -> String {
    if context.is_empty() {
        String::new()
    } else {
        serde_json::to_string(context).unwrap_or_default()
    }
}

/// Reads what `trace_context_to_text` wrote; anything else is no context.
pub fn trace_context_from_text(text: &str) -> TraceContext {
    serde_json::from_str(text).unwrap_or_default()
}

/// A validated StartConnector request.
#[derive(Clone, Debug)]
pub struct StartRequest {
    pub connector_id: String,
    /// Truncated to microseconds, the precision the store keeps.
    pub pull_back_time: Option<DateTime<Utc>>,
    pub region: Option<String>,
    pub request_id: Option<String>,
    /// The caller's explicit choice to resume from the earliest data the
    /// store holds when it no longer holds the checkpoint (the data in
    /// between is skipped). Without it such a start is refused.
    pub skip_to_earliest: bool,
    /// Who starts it (audited with it).
    pub actor: super::Actor,
    /// The caller's trace, carried to the agent with the command.
    pub trace_context: TraceContext,
    /// Set when the control plane itself starts a failed connector.
    pub automatic: Option<super::restart_policy::AutomaticStart>,
}

/// A validated PauseConnector request.
#[derive(Clone, Debug)]
pub struct PauseRequest {
    pub connector_id: String,
    pub reason: String,
    pub request_id: Option<String>,
    /// Who pauses it (audited with it).
    pub actor: super::Actor,
    /// The caller's trace, carried to the agent with the command.
    pub trace_context: TraceContext,
}

/// A validated MarkConnectorStopped request: the way out for a connector
/// whose agent is gone (its Start and Pause wait for that agent).
#[derive(Clone, Debug)]
pub struct MarkStoppedRequest {
    pub connector_id: String,
    /// Why (required: an incident id, say); audited and shown.
    pub reason: String,
    pub request_id: Option<String>,
    /// Who marks it (audited with it).
    pub actor: super::Actor,
    /// How long an agent may be silent before it counts as offline: one
    /// heard from within it still holds the connector.
    pub offline_after: Duration,
}

/// A validated ListCommands request: up to `page_size` of a connector's
/// commands, newest (highest generation) first and below
/// `before_generation`.
#[derive(Clone, Debug)]
pub struct HistoryQuery {
    pub connector_id: String,
    pub before_generation: Option<i64>,
    pub page_size: usize,
}

/// A validated UpdateRestartPolicy request.
#[derive(Clone, Debug)]
pub struct RestartPolicyRequest {
    pub connector_id: String,
    pub policy: super::restart_policy::RestartPolicy,
    pub request_id: Option<String>,
    /// Who changes it (audited with it).
    pub actor: super::Actor,
}

/// Filters of a connector search, normalised so that equal searches compare
/// (and fingerprint) equal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchFilter {
    /// Trimmed free text; empty matches everything.
    pub query: String,
    /// Exact run region; empty matches every region.
    pub region: String,
    /// Only connectors whose server is this address or in this network.
    pub server: Option<super::ServerNet>,
    /// Sorted and deduplicated; empty matches every state.
    pub states: Vec<ConnectorState>,
    /// Only lagging connectors under this alert threshold (see
    /// `domain::lag`); None matches all.
    pub lagging_over: Option<Duration>,
    /// Only connectors with an automatic start scheduled.
    pub awaiting_restart: bool,
}

/// Where a page ends: the last (name, id) returned, in the list order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub name: String,
    pub id: String,
}
