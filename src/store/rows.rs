//! Row -> domain mapping, once for both backends: each backend says how to
//! read a text, an integer, a flag and a time from its rows (`ReadRow`),
//! and the mapping of columns to connectors, commands, audit events,
//! agents, regions and recorded changes lives here, next to the column
//! lists both backends select.

use crate::domain::fleet::Capabilities;
use crate::domain::{
    Agent, AuditEvent, Command, CommandKind, CommandStatus, Connector, ConnectorKind,
    ConnectorState, Endpoint, RegionSummary, RestartMode, RestartPolicy, Restarts, TimeRange,
    trace_context_from_text,
};
use crate::store::{ChangeEntry, StoreError};
use chrono::{DateTime, Utc};
use std::time::Duration;

pub const CONNECTOR_COLUMNS: &str = "id, name, project_id, project_name, kind, \
    source_type, source_region, source_address, \
    destination_type, destination_region, destination_address, \
    region, server_ip, agent_id, state, desired_state, generation, \
    checkpoint_time, latency_us, store_earliest_time, store_latest_time, \
    status_message, create_time, update_time, \
    restart_mode, max_restarts, initial_backoff_ms, max_backoff_ms, reset_after_ms, \
    restart_count, next_restart_time, fenced_below, version, \
    (SELECT a.last_heartbeat_time FROM agents a WHERE a.id = connectors.agent_id) \
    AS last_heartbeat_time";

pub const COMMAND_COLUMNS: &str = "id, connector_id, kind, pull_back_time, region, generation, \
    request_id, reason, status, agent_id, error_reason, error_message, create_time, complete_time, \
    trace_context, late_result, late_result_time, principal, skip_to_earliest";

/// Who a pending command `c` of connector `k` goes to, as both backends'
/// claims select it: the agent still holding an unanswered command it
/// superseded (which may be carrying that out), else the connector's.
pub(crate) const RUNNER: &str = "COALESCE(
    (SELECT CASE WHEN p.status = 'SUPERSEDED' AND p.late_result = '' THEN p.agent_id END
     FROM commands p
     WHERE p.connector_id = c.connector_id
       AND p.generation < c.generation AND p.agent_id <> ''
     ORDER BY p.generation DESC LIMIT 1),
    k.agent_id)";

pub const AUDIT_COLUMNS: &str =
    "id, time, principal, action, connector_id, request_id, outcome, reason, peer, detail, count";

/// How a backend reads one column of its rows: the four kinds of value
/// the store keeps. A NULL reads as None.
pub(crate) trait ReadRow {
    fn optional_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn optional_integer(&self, column: &str) -> Result<Option<i64>, StoreError>;
    fn flag(&self, column: &str) -> Result<bool, StoreError>;
    fn optional_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Text that must be set.
    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.optional_text(column)?.ok_or_else(|| null(column))
    }

    /// An integer that must be set.
    fn integer(&self, column: &str) -> Result<i64, StoreError> {
        self.optional_integer(column)?.ok_or_else(|| null(column))
    }

    /// A time that must be set: a NULL is an error, never the epoch.
    fn time(&self, column: &str) -> Result<DateTime<Utc>, StoreError> {
        self.optional_time(column)?.ok_or_else(|| null(column))
    }

    /// A text column holding one of a closed set of values.
    fn parsed<T>(&self, column: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, StoreError> {
        let text = self.text(column)?;
        parse(&text).ok_or_else(|| {
            StoreError::Internal(format!("unexpected {column} value {text:?}").into())
        })
    }
}

/// How many rows to ask for to fill a page of `limit`: one more, which
/// tells whether another page follows (`page_of`).
pub(crate) fn fetch_for(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1)
}

/// The first `limit` of `rows`, fetched with `fetch_for`, and whether more
/// followed.
pub(crate) fn page_of<T>(mut rows: Vec<T>, limit: usize) -> (Vec<T>, bool) {
    let more = rows.len() > limit;
    rows.truncate(limit);
    (rows, more)
}

fn null(column: &str) -> StoreError {
    StoreError::Internal(format!("{column} is NULL").into())
}

/// A row of `CONNECTOR_COLUMNS`.
pub(crate) fn connector_from_row(row: &impl ReadRow) -> Result<Connector, StoreError> {
    let endpoint = |prefix: &str| -> Result<Endpoint, StoreError> {
        Ok(Endpoint {
            kind: row.text(&format!("{prefix}_type"))?,
            region: row.text(&format!("{prefix}_region"))?,
            address: row.text(&format!("{prefix}_address"))?,
        })
    };
    Ok(Connector {
        id: row.text("id")?,
        name: row.text("name")?,
        project_id: row.text("project_id")?,
        project_name: row.text("project_name")?,
        kind: row.parsed("kind", ConnectorKind::parse)?,
        source: endpoint("source")?,
        destination: endpoint("destination")?,
        region: row.text("region")?,
        server_ip: row.text("server_ip")?,
        agent_id: row.text("agent_id")?,
        state: row.parsed("state", ConnectorState::parse)?,
        desired_state: row.parsed("desired_state", ConnectorState::parse)?,
        generation: row.integer("generation")?,
        checkpoint_time: row.optional_time("checkpoint_time")?,
        latency: row
            .optional_integer("latency_us")?
            .map(|us| Duration::from_micros(us.max(0).unsigned_abs())),
        store_range: row
            .optional_time("store_earliest_time")?
            .zip(row.optional_time("store_latest_time")?)
            .map(|(earliest, latest)| TimeRange { earliest, latest }),
        status_message: row.text("status_message")?,
        create_time: row.time("create_time")?,
        update_time: row.time("update_time")?,
        last_heartbeat_time: row.optional_time("last_heartbeat_time")?,
        restart: Restarts {
            policy: RestartPolicy {
                mode: row.parsed("restart_mode", RestartMode::parse)?,
                max_restarts: count(row.integer("max_restarts")?),
                initial_backoff: millis(row.integer("initial_backoff_ms")?),
                max_backoff: millis(row.integer("max_backoff_ms")?),
                reset_after: millis(row.integer("reset_after_ms")?),
            },
            count: count(row.integer("restart_count")?),
            next_time: row.optional_time("next_restart_time")?,
        },
        fenced_below: row.integer("fenced_below")?,
        version: row.integer("version")?,
    })
}

/// A restart policy's columns: mode, max_restarts, initial_backoff_ms,
/// max_backoff_ms, reset_after_ms.
pub(crate) fn policy_values(policy: &RestartPolicy) -> (&'static str, i64, i64, i64, i64) {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    (
        policy.mode.as_str(),
        i64::from(policy.max_restarts),
        ms(policy.initial_backoff),
        ms(policy.max_backoff),
        ms(policy.reset_after),
    )
}

fn count(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

fn millis(value: i64) -> Duration {
    Duration::from_millis(value.max(0).unsigned_abs())
}

/// A row of `COMMAND_COLUMNS`.
pub(crate) fn command_from_row(row: &impl ReadRow) -> Result<Command, StoreError> {
    Ok(Command {
        id: row.text("id")?,
        connector_id: row.text("connector_id")?,
        kind: row.parsed("kind", CommandKind::parse)?,
        pull_back_time: row.optional_time("pull_back_time")?,
        region: row.text("region")?,
        generation: row.integer("generation")?,
        request_id: row.optional_text("request_id")?,
        reason: row.text("reason")?,
        status: row.parsed("status", CommandStatus::parse)?,
        agent_id: row.text("agent_id")?,
        error_reason: row.text("error_reason")?,
        error_message: row.text("error_message")?,
        create_time: row.time("create_time")?,
        complete_time: row.optional_time("complete_time")?,
        trace_context: trace_context_from_text(&row.text("trace_context")?),
        late_result: CommandStatus::parse(&row.text("late_result")?)
            .zip(row.optional_time("late_result_time")?),
        principal: row.text("principal")?,
        skip_to_earliest: row.flag("skip_to_earliest")?,
    })
}

/// A row of `AUDIT_COLUMNS`.
pub(crate) fn audit_event_from_row(row: &impl ReadRow) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        id: row.integer("id")?,
        time: row.time("time")?,
        principal: row.text("principal")?,
        action: row.text("action")?,
        connector_id: row.text("connector_id")?,
        request_id: row.text("request_id")?,
        outcome: row.text("outcome")?,
        reason: row.text("reason")?,
        peer: row.text("peer")?,
        detail: row.text("detail")?,
        count: row.integer("count")?,
    })
}

/// An agent: id, region, server_ip, version, last_heartbeat_time, online,
/// connectors (how many it runs) and replica_id (whose session it is in,
/// kept only while it is online).
pub(crate) fn agent_from_row(row: &impl ReadRow) -> Result<Agent, StoreError> {
    let online = row.flag("online")?;
    Ok(Agent {
        id: row.text("id")?,
        region: row.text("region")?,
        server_ip: row.text("server_ip")?,
        version: row.text("version")?,
        last_heartbeat_time: row.time("last_heartbeat_time")?,
        online,
        connectors: row.integer("connectors")?,
        replica_id: if online {
            row.text("replica_id")?
        } else {
            String::new()
        },
        capabilities: Capabilities {
            driver: row.text("driver")?,
            pull_back: row.flag("pull_back")?,
        },
    })
}

/// A region: name, online (agents) and connectors.
pub(crate) fn region_from_row(row: &impl ReadRow) -> Result<RegionSummary, StoreError> {
    Ok(RegionSummary {
        name: row.text("name")?,
        online_agents: row.integer("online")?,
        connectors: row.integer("connectors")?,
    })
}

/// A recorded change: seq, connector_id, version (NULL before versions
/// were recorded) and before (what a search saw before it, as JSON; NULL
/// for a new connector).
pub(crate) fn change_from_row(row: &impl ReadRow) -> Result<ChangeEntry, StoreError> {
    Ok(ChangeEntry {
        seq: row.integer("seq")?,
        connector_id: row.text("connector_id")?,
        version: row.optional_integer("version")?.unwrap_or(0),
        before: row
            .optional_text("before")?
            .map(|json| serde_json::from_str(&json))
            .transpose()
            .map_err(|e| StoreError::Internal(format!("a recorded change: {e}").into()))?,
    })
}
