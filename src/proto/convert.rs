//! domain -> proto for what the services send, and the checked reading of
//! a timestamp: used by the API and by the fleet (which hands commands to
//! agents), so it sits beside the generated code that both use.

use super::v1;
use crate::domain::{
    Command, CommandKind, CommandStatus, Connector, ConnectorKind, ConnectorState, Endpoint,
    TimeRange,
};
use chrono::{DateTime, Utc};

/// A well-formed timestamp: within the proto's valid range (years 1 to
/// 9999), with nanos in [0, 1e9).
pub fn timestamp(ts: &prost_types::Timestamp) -> Result<DateTime<Utc>, String> {
    const MIN_SECONDS: i64 = -62_135_596_800;
    const MAX_SECONDS: i64 = 253_402_300_799;
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(format!("has nanos {}; must be in [0, 999999999]", ts.nanos));
    }
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&ts.seconds) {
        return Err(format!(
            "has seconds {}; must be between years 1 and 9999",
            ts.seconds
        ));
    }
    DateTime::from_timestamp(ts.seconds, ts.nanos as u32)
        .ok_or_else(|| "is not a valid time".to_owned())
}

pub fn timestamp_to_proto(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

pub fn time_range_to_proto(range: TimeRange) -> v1::TimeRange {
    v1::TimeRange {
        earliest_time: Some(timestamp_to_proto(range.earliest)),
        latest_time: Some(timestamp_to_proto(range.latest)),
    }
}

fn state_to_proto(state: ConnectorState) -> v1::ConnectorState {
    match state {
        ConnectorState::Stopped => v1::ConnectorState::Stopped,
        ConnectorState::Starting => v1::ConnectorState::Starting,
        ConnectorState::Running => v1::ConnectorState::Running,
        ConnectorState::Pausing => v1::ConnectorState::Pausing,
        ConnectorState::Failed => v1::ConnectorState::Failed,
        ConnectorState::Unknown => v1::ConnectorState::Unknown,
    }
}

fn endpoint_to_proto(endpoint: Endpoint) -> v1::Endpoint {
    v1::Endpoint {
        r#type: endpoint.kind,
        region: endpoint.region,
        address: endpoint.address,
    }
}

pub fn connector_to_proto(c: Connector) -> v1::Connector {
    let resumable_until = crate::domain::resumable::resumable_until(&c).map(timestamp_to_proto);
    v1::Connector {
        resumable_until,
        id: c.id,
        name: c.name,
        project_id: c.project_id,
        project_name: c.project_name,
        kind: match c.kind {
            ConnectorKind::IncrementalSync => v1::ConnectorKind::IncrementalSync,
            ConnectorKind::FullMigration => v1::ConnectorKind::FullMigration,
        } as i32,
        source: Some(endpoint_to_proto(c.source)),
        destination: Some(endpoint_to_proto(c.destination)),
        region: c.region,
        server_ip: c.server_ip,
        agent_id: c.agent_id,
        state: state_to_proto(c.state) as i32,
        desired_state: state_to_proto(c.desired_state) as i32,
        generation: c.generation,
        checkpoint_time: c.checkpoint_time.map(timestamp_to_proto),
        latency: c.latency.map(|latency| prost_types::Duration {
            seconds: latency.as_secs() as i64,
            nanos: latency.subsec_nanos() as i32,
        }),
        store_range: c.store_range.map(time_range_to_proto),
        status_message: c.status_message,
        create_time: Some(timestamp_to_proto(c.create_time)),
        update_time: Some(timestamp_to_proto(c.update_time)),
        last_heartbeat_time: c.last_heartbeat_time.map(timestamp_to_proto),
        // Set by the API, which knows the alert threshold.
        lag_cause: v1::LagCause::Unspecified as i32,
        restart_policy: Some(policy_to_proto(&c.restart.policy)),
        restart_count: i32::try_from(c.restart.count).unwrap_or(i32::MAX),
        next_restart_time: c.restart.next_time.map(timestamp_to_proto),
        version: c.version,
    }
}

pub fn policy_to_proto(policy: &crate::domain::RestartPolicy) -> v1::RestartPolicy {
    let duration = |d: std::time::Duration| prost_types::Duration::try_from(d).ok();
    v1::RestartPolicy {
        mode: match policy.mode {
            crate::domain::RestartMode::Never => v1::RestartMode::Never,
            crate::domain::RestartMode::OnFailure => v1::RestartMode::OnFailure,
        } as i32,
        max_restarts: i32::try_from(policy.max_restarts).unwrap_or(i32::MAX),
        initial_backoff: duration(policy.initial_backoff),
        max_backoff: duration(policy.max_backoff),
        reset_after: duration(policy.reset_after),
    }
}

pub fn command_to_proto(c: Command) -> v1::Command {
    v1::Command {
        id: c.id,
        connector_id: c.connector_id,
        kind: match c.kind {
            CommandKind::Start => v1::CommandKind::Start,
            CommandKind::Pause => v1::CommandKind::Pause,
        } as i32,
        pull_back_time: c.pull_back_time.map(timestamp_to_proto),
        region: c.region,
        generation: c.generation,
        request_id: c.request_id.unwrap_or_default(),
        status: command_status(c.status) as i32,
        agent_id: c.agent_id,
        error_reason: c.error_reason,
        error_message: c.error_message,
        create_time: Some(timestamp_to_proto(c.create_time)),
        complete_time: c.complete_time.map(timestamp_to_proto),
        trace_context: c.trace_context,
        reason: c.reason,
        late_result: c
            .late_result
            .map_or(v1::CommandStatus::Unspecified, |(status, _)| {
                command_status(status)
            }) as i32,
        late_result_time: c.late_result.map(|(_, time)| timestamp_to_proto(time)),
        principal: c.principal,
        skip_to_earliest: c.skip_to_earliest,
        // Set by dispatch, as the command is delivered.
        checkpoint_time: None,
    }
}

fn command_status(status: CommandStatus) -> v1::CommandStatus {
    match status {
        CommandStatus::Pending => v1::CommandStatus::Pending,
        CommandStatus::Delivered => v1::CommandStatus::Delivered,
        CommandStatus::Succeeded => v1::CommandStatus::Succeeded,
        CommandStatus::Failed => v1::CommandStatus::Failed,
        CommandStatus::Superseded => v1::CommandStatus::Superseded,
    }
}

pub fn agent_to_proto(a: crate::domain::Agent) -> v1::Agent {
    v1::Agent {
        id: a.id,
        region: a.region,
        server_ip: a.server_ip,
        state: if a.online {
            v1::AgentState::Online
        } else {
            v1::AgentState::Offline
        } as i32,
        last_heartbeat_time: Some(timestamp_to_proto(a.last_heartbeat_time)),
        connectors: i32::try_from(a.connectors).unwrap_or(i32::MAX),
        version: a.version,
        replica_id: a.replica_id,
        capabilities: Some(v1::AgentCapabilities {
            driver: a.capabilities.driver,
            pull_back: a.capabilities.pull_back,
        }),
    }
}

pub fn replica_to_proto(r: crate::domain::Replica) -> v1::Replica {
    let state = match (r.alive, r.draining) {
        (false, _) => v1::ReplicaState::Dead,
        (true, true) => v1::ReplicaState::Draining,
        (true, false) => v1::ReplicaState::Alive,
    };
    v1::Replica {
        id: r.id,
        address: r.address,
        start_time: Some(timestamp_to_proto(r.start_time)),
        heartbeat_time: Some(timestamp_to_proto(r.heartbeat_time)),
        state: state as i32,
        leader: r.leader_term.is_some(),
        leader_term: r.leader_term.unwrap_or(0),
        agents: i32::try_from(r.agents).unwrap_or(i32::MAX),
    }
}

pub fn region_to_proto(r: crate::domain::RegionSummary) -> v1::Region {
    v1::Region {
        name: r.name,
        online_agents: i32::try_from(r.online_agents).unwrap_or(i32::MAX),
        connectors: i32::try_from(r.connectors).unwrap_or(i32::MAX),
    }
}

/// A restart policy in words: "ON_FAILURE, at most 5 in a row, after 30s
/// doubling to 5m, reset after 10m running".
pub fn restart_policy_text(policy: &v1::RestartPolicy) -> String {
    let seconds = |d: Option<&prost_types::Duration>| {
        d.and_then(|d| std::time::Duration::try_from(*d).ok())
            .map(|d| humantime::format_duration(d).to_string())
            .unwrap_or_else(|| "-".to_owned())
    };
    let mode = super::short_name::<v1::RestartMode>(policy.mode);
    if policy.mode == v1::RestartMode::Never as i32 {
        return format!("{mode}: started by hand only");
    }
    let limit = match policy.max_restarts {
        0 => "unlimited".to_owned(),
        n => format!("at most {n} in a row"),
    };
    format!(
        "{mode}, {limit}, after {} doubling to {}, reset after {} running",
        seconds(policy.initial_backoff.as_ref()),
        seconds(policy.max_backoff.as_ref()),
        seconds(policy.reset_after.as_ref())
    )
}
