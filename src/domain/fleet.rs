//! Agents, their sessions and what they report: hello, statuses, command
//! results, and the audit rows of a session's start and end. What a report
//! changes is decided in `reports.rs`.

use super::model::{ConnectorState, TimeRange};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// What an agent observes of one connector.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedStatus {
    pub connector_id: String,
    pub state: ConnectorState,
    pub checkpoint_time: Option<DateTime<Utc>>,
    pub latency: Option<Duration>,
    pub store_range: Option<TimeRange>,
    /// The newest command generation the agent has applied.
    pub generation: i64,
    pub message: String,
    /// FAILED only: false when starting it again cannot help.
    pub retriable: Option<bool>,
}

/// A validated `hello`.
#[derive(Clone, Debug)]
pub struct Hello {
    pub agent_id: String,
    pub instance_id: String,
    pub region: String,
    pub server_ip: String,
    pub version: String,
    pub connectors: Vec<ObservedStatus>,
    /// What its connector runtime can do.
    pub capabilities: Capabilities,
    /// Who opens the session (its token's principal) and from where.
    pub actor: super::Actor,
}

/// What an agent's connector runtime (its driver) can do, as its hello
/// said. The default is an agent that said nothing: able to do everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// The driver's name; empty when not said.
    pub driver: String,
    /// Whether a start may carry a pull-back time.
    pub pull_back: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            driver: String::new(),
            pull_back: true,
        }
    }
}

/// An accepted session: what every write on its behalf is fenced with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub agent_id: String,
    pub session_id: String,
    pub epoch: i64,
    pub region: String,
    pub server_ip: String,
    /// Who opened it and from where (audited when it ends).
    pub actor: super::Actor,
}

impl Hello {
    /// The session this hello opens, as `session_id` at `epoch`.
    pub fn session(&self, session_id: String, epoch: i64) -> Session {
        Session {
            agent_id: self.agent_id.clone(),
            session_id,
            epoch,
            region: self.region.clone(),
            server_ip: self.server_ip.clone(),
            actor: self.actor.clone(),
        }
    }

    /// The ids of the connectors the hello lists.
    pub fn listed(&self) -> impl Iterator<Item = &str> {
        self.connectors
            .iter()
            .map(|status| status.connector_id.as_str())
    }
}

/// A validated `result`.
#[derive(Clone, Debug)]
pub struct CommandReport {
    pub command_id: String,
    pub success: bool,
    pub error_reason: String,
    pub error_message: String,
    pub status: Option<ObservedStatus>,
    /// The agent's trace of its handling, continued when recording it.
    pub trace_context: super::TraceContext,
    /// Whether the agent says a retry may succeed (unset: by the reason).
    pub retriable: Option<bool>,
}

impl CommandReport {
    /// Whether an automatic start may follow this failure.
    pub fn retriable(&self) -> bool {
        self.success || super::restart::retriable(&self.error_reason, self.retriable)
    }
}

/// An agent as operators see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Agent {
    pub id: String,
    pub region: String,
    pub server_ip: String,
    pub online: bool,
    pub last_heartbeat_time: DateTime<Utc>,
    pub connectors: i64,
    pub version: String,
    /// The replica holding its session; empty when offline.
    pub replica_id: String,
    pub capabilities: Capabilities,
}

/// A control-plane replica as operators see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Replica {
    pub id: String,
    pub address: String,
    pub start_time: DateTime<Utc>,
    pub heartbeat_time: DateTime<Utc>,
    /// Heard from within its time to live.
    pub alive: bool,
    pub draining: bool,
    /// The lease term while it leads.
    pub leader_term: Option<i64>,
    /// Agent sessions it holds.
    pub agents: i64,
}

/// A region and what runs in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionSummary {
    pub name: String,
    pub online_agents: i64,
    pub connectors: i64,
}

/// How a report changes a connector row.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectorUpdate {
    /// New state; None keeps the current one.
    pub state: Option<ConnectorState>,
    pub desired_state: Option<ConnectorState>,
    /// Where it runs now: the reporting agent, its server and region.
    pub placement: Option<Placement>,
    /// Observed metrics to record (checkpoint, latency, store range).
    pub observed: Option<ObservedStatus>,
    pub status_message: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub agent_id: String,
    pub server_ip: String,
    pub region: String,
}

impl Placement {
    pub(super) fn of(session: &Session, region: &str) -> Self {
        Placement {
            agent_id: session.agent_id.clone(),
            server_ip: session.server_ip.clone(),
            region: region.to_owned(),
        }
    }
}

/// Why a session ended: the `reason` of its `AGENT_SESSION_END` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// The agent closed its stream, or the connection broke.
    Disconnected,
    /// A newer session of the same agent replaced it.
    Superseded,
    /// Its replica shut down and asked the agent to reconnect elsewhere.
    Draining,
    /// The agent was asked to reconnect (stream age, or the replica was
    /// cut off from the database).
    Recycled,
    /// The agent broke the protocol; the status reason it was sent.
    Violation(String),
    /// Its principal was removed from the auth file, or may no longer
    /// connect this agent.
    Revoked,
    /// The replica holding it stopped heartbeating; the leader ended it.
    ReplicaDead,
    /// An earlier run of its replica held it (found at start-up).
    ReplicaRestarted,
    /// The control plane could not hand over a command or record a report
    /// (the agent reconnects; its commands are delivered again).
    ControlPlaneFailure,
}

impl SessionEnd {
    pub fn reason(&self) -> &str {
        match self {
            SessionEnd::Disconnected => "AGENT_DISCONNECTED",
            SessionEnd::Superseded => "SESSION_SUPERSEDED",
            SessionEnd::Draining => "REPLICA_DRAINING",
            SessionEnd::Recycled => "RECONNECT_REQUESTED",
            SessionEnd::Violation(reason) => reason,
            SessionEnd::Revoked => "CREDENTIALS_REVOKED",
            SessionEnd::ReplicaDead => "REPLICA_DEAD",
            SessionEnd::ReplicaRestarted => "REPLICA_RESTARTED",
            SessionEnd::ControlPlaneFailure => "CONTROL_PLANE_FAILURE",
        }
    }
}

/// How an audit event names a session (the store's SQL that ends
/// sessions on its own writes the same form).
pub fn session_detail(agent_id: &str, session_id: &str, epoch: i64, region: &str) -> String {
    format!("agent {agent_id} session {session_id} epoch {epoch} region {region}")
}

/// The audit event of a session starting.
pub fn session_started(session: &Session) -> super::NewAuditEvent {
    super::NewAuditEvent {
        detail: session_detail(
            &session.agent_id,
            &session.session_id,
            session.epoch,
            &session.region,
        ),
        ..super::NewAuditEvent::ok(&session.actor, super::AuditAction::AgentSessionStart, "")
    }
}

/// The audit event of a session ending, and why.
pub fn session_ended(session: &Session, end: &SessionEnd) -> super::NewAuditEvent {
    super::NewAuditEvent {
        action: super::AuditAction::AgentSessionEnd,
        reason: end.reason().to_owned(),
        ..session_started(session)
    }
}
