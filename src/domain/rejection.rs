//! Why a start, pause or mark is refused: one variant per stable error
//! reason, each with a message that names the way out.

use super::model::{ConnectorKind, ConnectorState, TimeRange};
use super::pull_back::{checkpoint_message, pull_back_message};
use chrono::{DateTime, Utc};

/// Why a well-formed request cannot be carried out in the connector's
/// current situation. Each maps to one stable error reason.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error(
        "connector {connector_id} is {state}; only a STOPPED or FAILED connector can be started{hint}",
        hint = start_hint(*state)
    )]
    NotStopped {
        connector_id: String,
        state: ConnectorState,
    },
    #[error(
        "connector {connector_id} is {state}; only a RUNNING, STARTING or FAILED connector can be paused{hint}",
        hint = pause_hint(*state)
    )]
    NotRunning {
        connector_id: String,
        state: ConnectorState,
    },
    #[error(
        "connector {connector_id} is a {kind} connector; pull-back applies only to INCREMENTAL_SYNC connectors: start it without pull_back_time"
    )]
    PullBackNotSupported {
        connector_id: String,
        kind: ConnectorKind,
    },
    #[error(
        "connector {connector_id} would run in region {region}, where agent(s) {} cannot pull back: their driver ({}) cannot replay from a time, as its hello says. Start it without pull_back_time, or run it where the agents can (region)",
        agents.join(", "),
        drivers.join(", ")
    )]
    PullBackNotSupportedByAgents {
        connector_id: String,
        /// Where the start would run.
        region: String,
        /// The connected agents there whose driver cannot pull back.
        agents: Vec<String>,
        /// Their drivers, as their hellos name them.
        drivers: Vec<String>,
    },
    #[error("{}", pull_back_message(connector_id, *requested, range.as_ref(), *now))]
    PullBackOutOfRange {
        connector_id: String,
        requested: DateTime<Utc>,
        /// What the connector's store holds, when its agent reported it.
        range: Option<TimeRange>,
        /// The server's clock when the start was decided.
        now: DateTime<Utc>,
    },
    #[error("{}", checkpoint_message(connector_id, *checkpoint, range))]
    CheckpointOutOfRange {
        connector_id: String,
        /// Where the connector would resume.
        checkpoint: DateTime<Utc>,
        /// What its store holds now (as last reported).
        range: TimeRange,
    },
    #[error(
        "no connector endpoint and no agent is in region '{region}': check the spelling, or leave region empty to run in the destination's region"
    )]
    UnknownRegion { region: String },
    #[error(
        "request_id '{request_id}' was already used on connector {connector_id} for a different call ({previous}); use a new request_id for a new call"
    )]
    RequestIdReused {
        connector_id: String,
        request_id: String,
        previous: String,
    },
    #[error(
        "connector {connector_id} is run by agent {agent_id}, which is online: pause it instead \
         (mark stopped is for a connector whose agent is gone and cannot be told)"
    )]
    AgentOnline {
        connector_id: String,
        agent_id: String,
    },
    #[error("connector {connector_id} is already STOPPED; there is nothing to mark")]
    AlreadyStopped { connector_id: String },
    /// An automatic start found its connector changed since it was
    /// planned (started, paused, recovered, its policy changed): the
    /// control plane's own precondition, never a caller's error.
    #[error(
        "connector {connector_id} changed since automatic start {attempt} was planned; it is not started"
    )]
    RestartObsolete { connector_id: String, attempt: u32 },
}

fn start_hint(state: ConnectorState) -> &'static str {
    match state {
        ConnectorState::Running | ConnectorState::Starting => {
            " (it is already running or starting)"
        }
        ConnectorState::Pausing => " (wait until the pause completes, then start it)",
        ConnectorState::Unknown => " (its agent is silent; wait until it reports again)",
        _ => "",
    }
}

fn pause_hint(state: ConnectorState) -> &'static str {
    match state {
        ConnectorState::Stopped | ConnectorState::Pausing => " (it is already stopped or stopping)",
        ConnectorState::Unknown => " (its agent is silent; wait until it reports again)",
        _ => "",
    }
}
