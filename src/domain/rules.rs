//! The state machine: whether a start or pause is allowed, what it changes,
//! and whether a retried request matches the call it repeats. Pure: the
//! store loads the connector under a row lock, asks here, and persists.

use super::model::{
    CommandKind, Connector, ConnectorKind, ConnectorState, PauseRequest, StartRequest, TimeRange,
};
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
        "connector {connector_id}'s store holds data from {earliest} to {latest}; cannot pull back to {requested}: choose a pull_back_time at or after {earliest}",
        earliest = range.earliest.to_rfc3339(),
        latest = range.latest.to_rfc3339(),
        requested = requested.to_rfc3339()
    )]
    PullBackOutOfRange {
        connector_id: String,
        requested: DateTime<Utc>,
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

/// What an accepted start or pause writes, all in one transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub state: ConnectorState,
    pub desired_state: ConnectorState,
    pub generation: i64,
    /// The region the connector runs in from now on, and the command's.
    pub region: String,
    pub command_kind: CommandKind,
    pub pull_back_time: Option<DateTime<Utc>>,
}

/// The region a start targets: the override, else the destination's region.
pub fn start_region<'a>(connector: &'a Connector, request: &'a StartRequest) -> &'a str {
    request
        .region
        .as_deref()
        .unwrap_or(&connector.destination.region)
}

/// The region override the store must confirm exists before `decide_start`
/// (None when the start targets the destination's own region).
pub fn region_to_verify<'a>(connector: &Connector, request: &'a StartRequest) -> Option<&'a str> {
    request
        .region
        .as_deref()
        .filter(|region| *region != connector.destination.region)
}

/// Decides a start. `region_known` answers `region_to_verify` (true when
/// there was nothing to verify).
pub fn decide_start(
    connector: &Connector,
    request: &StartRequest,
    region_known: bool,
) -> Result<Transition, Rejection> {
    if !matches!(
        connector.state,
        ConnectorState::Stopped | ConnectorState::Failed
    ) {
        return Err(Rejection::NotStopped {
            connector_id: connector.id.clone(),
            state: connector.state,
        });
    }
    if let Some(requested) = request.pull_back_time {
        if connector.kind != ConnectorKind::IncrementalSync {
            return Err(Rejection::PullBackNotSupported {
                connector_id: connector.id.clone(),
                kind: connector.kind,
            });
        }
        // An unknown range is checked by the agent, which fails the command
        // with the same reason.
        if let Some(range) = connector.store_range
            && requested < range.earliest
        {
            return Err(Rejection::PullBackOutOfRange {
                connector_id: connector.id.clone(),
                requested,
                range,
            });
        }
    }
    let region = start_region(connector, request);
    if !region_known {
        return Err(Rejection::UnknownRegion {
            region: region.to_owned(),
        });
    }
    Ok(Transition {
        state: ConnectorState::Starting,
        desired_state: ConnectorState::Running,
        generation: connector.generation + 1,
        region: region.to_owned(),
        command_kind: CommandKind::Start,
        pull_back_time: request.pull_back_time,
    })
}

/// Decides a pause. It goes where the connector runs: its region, unless the
/// pause supersedes a start that no agent received, whose region change
/// never took effect (`undelivered_start_from` is the region before it).
pub fn decide_pause(
    connector: &Connector,
    _request: &PauseRequest,
    undelivered_start_from: Option<&str>,
) -> Result<Transition, Rejection> {
    if !matches!(
        connector.state,
        ConnectorState::Running | ConnectorState::Starting | ConnectorState::Failed
    ) {
        return Err(Rejection::NotRunning {
            connector_id: connector.id.clone(),
            state: connector.state,
        });
    }
    Ok(Transition {
        state: ConnectorState::Pausing,
        desired_state: ConnectorState::Stopped,
        generation: connector.generation + 1,
        region: undelivered_start_from
            .unwrap_or(&connector.region)
            .to_owned(),
        command_kind: CommandKind::Pause,
        pull_back_time: None,
    })
}

/// What a retried call asks for, to compare with the command its
/// `request_id` already produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Intent {
    pub kind: CommandKind,
    pub pull_back_time: Option<DateTime<Utc>>,
    pub region: String,
}

impl Intent {
    pub fn start(connector: &Connector, request: &StartRequest) -> Self {
        Intent {
            kind: CommandKind::Start,
            pull_back_time: request.pull_back_time,
            region: start_region(connector, request).to_owned(),
        }
    }

    pub fn pause(connector: &Connector) -> Self {
        Intent {
            kind: CommandKind::Pause,
            pull_back_time: None,
            region: connector.region.clone(),
        }
    }
}

/// Whether a retry with a used `request_id` repeats the original call (then
/// the original command is returned) or asks for something else.
pub fn check_replay(
    connector_id: &str,
    request_id: &str,
    previous: &Intent,
    retry: &Intent,
) -> Result<(), Rejection> {
    // A pause is identified by its kind alone: the connector's region may
    // have been changed by a later start.
    let same = previous.kind == retry.kind
        && (retry.kind == CommandKind::Pause
            || (previous.pull_back_time == retry.pull_back_time
                && previous.region == retry.region));
    if same {
        return Ok(());
    }
    let previous = match previous.pull_back_time {
        Some(time) => format!(
            "{} in region {} pulling back to {}",
            previous.kind,
            previous.region,
            time.to_rfc3339()
        ),
        None => format!("{} in region {}", previous.kind, previous.region),
    };
    Err(Rejection::RequestIdReused {
        connector_id: connector_id.to_owned(),
        request_id: request_id.to_owned(),
        previous,
    })
}
