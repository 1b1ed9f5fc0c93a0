//! One sample connector and agent session, for the unit tests and the fuzz
//! targets: a field added to `Connector` is added here once.

use super::fleet::{ObservedStatus, Session};
use super::model::{Connector, ConnectorKind, ConnectorState, Endpoint};
use chrono::Utc;

/// An endpoint in `region`.
pub fn endpoint(region: &str) -> Endpoint {
    Endpoint {
        kind: "MYSQL".into(),
        region: region.into(),
        address: "h:1".into(),
    }
}

/// Connector `c1` in `state`: INCREMENTAL_SYNC from eu-1 to eu-2, where it
/// runs; generation 3, meant to be stopped, with no agent and nothing
/// reported yet.
pub fn connector(state: ConnectorState) -> Connector {
    Connector {
        id: "c1".into(),
        name: "c1".into(),
        project_id: "p".into(),
        project_name: "P".into(),
        kind: ConnectorKind::IncrementalSync,
        source: endpoint("eu-1"),
        destination: endpoint("eu-2"),
        region: "eu-2".into(),
        server_ip: String::new(),
        agent_id: String::new(),
        state,
        desired_state: ConnectorState::Stopped,
        generation: 3,
        checkpoint_time: None,
        latency: None,
        store_range: None,
        status_message: String::new(),
        create_time: Utc::now(),
        update_time: Utc::now(),
        last_heartbeat_time: None,
        restart: Default::default(),
        fenced_below: 0,
        version: 1,
    }
}

/// Connector `c1` in `state` at `generation`, meant to run in eu-1, where
/// [`session`]'s agent is.
pub fn connector_in_eu_1(generation: i64, state: ConnectorState) -> Connector {
    Connector {
        destination: endpoint("eu-1"),
        region: "eu-1".into(),
        desired_state: ConnectorState::Running,
        generation,
        ..connector(state)
    }
}

/// Agent `a1`'s first session, in eu-1 at 10.0.0.1.
pub fn session() -> Session {
    Session {
        agent_id: "a1".into(),
        session_id: "s".into(),
        epoch: 1,
        region: "eu-1".into(),
        server_ip: "10.0.0.1".into(),
        actor: Default::default(),
    }
}

/// What agent `a1` reports of connector `c1`: `state` at `generation`, and
/// nothing else known.
pub fn status(state: ConnectorState, generation: i64) -> ObservedStatus {
    ObservedStatus {
        connector_id: "c1".into(),
        state,
        checkpoint_time: None,
        latency: None,
        store_range: None,
        generation,
        message: String::new(),
        retriable: None,
    }
}
