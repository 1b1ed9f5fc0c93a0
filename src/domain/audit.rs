//! The audit trail: who did what, to which connector, from where, and how
//! it ended.

use chrono::{DateTime, Utc};

/// Who makes a change, and from where: recorded with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// The principal's name (`anonymous` without an auth file).
    pub principal: String,
    /// The caller's address, as the server saw it.
    pub peer: String,
}

impl Default for Actor {
    /// Changes the control plane makes by itself (the demo seed, tests).
    fn default() -> Self {
        Actor {
            principal: "system".to_owned(),
            peer: String::new(),
        }
    }
}

/// What was done. Stored by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditAction {
    CreateConnector,
    StartConnector,
    PauseConnector,
    AgentSessionStart,
    AgentSessionEnd,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::CreateConnector => "CREATE_CONNECTOR",
            AuditAction::StartConnector => "START_CONNECTOR",
            AuditAction::PauseConnector => "PAUSE_CONNECTOR",
            AuditAction::AgentSessionStart => "AGENT_SESSION_START",
            AuditAction::AgentSessionEnd => "AGENT_SESSION_END",
        }
    }
}

/// An event to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAuditEvent {
    pub actor: Actor,
    pub action: AuditAction,
    pub connector_id: String,
    pub request_id: String,
    /// `OK`, or the gRPC code of a refused call (`PERMISSION_DENIED`, ...).
    pub outcome: String,
    /// The refusal's ErrorInfo reason, or the reason an operator gave.
    pub reason: String,
    /// The command created, or the agent session's id and epoch.
    pub detail: String,
}

impl NewAuditEvent {
    /// A change that was made.
    pub fn ok(actor: &Actor, action: AuditAction, connector_id: &str) -> Self {
        NewAuditEvent {
            actor: actor.clone(),
            action,
            connector_id: connector_id.to_owned(),
            request_id: String::new(),
            outcome: "OK".to_owned(),
            reason: String::new(),
            detail: String::new(),
        }
    }
}

/// A recorded event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: i64,
    pub time: DateTime<Utc>,
    pub principal: String,
    pub action: String,
    pub connector_id: String,
    pub request_id: String,
    pub outcome: String,
    pub reason: String,
    pub peer: String,
    pub detail: String,
}

/// Which events to list: every filter that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub connector_id: Option<String>,
    pub principal: Option<String>,
    /// Inclusive.
    pub start_time: Option<DateTime<Utc>>,
    /// Exclusive.
    pub end_time: Option<DateTime<Utc>>,
    /// Events older than this id only (the page token): newest first.
    pub before_id: Option<i64>,
}
