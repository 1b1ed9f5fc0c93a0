//! Row <-> domain mapping for the embedded store. Times are text in one
//! fixed-width UTC format, so that text order is time order.

use crate::domain::{
    Command, CommandKind, CommandStatus, Connector, ConnectorKind, ConnectorState, Endpoint,
    TimeRange, trace_context_from_text,
};
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use rusqlite::Row;
use std::time::Duration;

pub const CONNECTOR_COLUMNS: &str = "id, name, project_id, project_name, kind, \
    source_type, source_region, source_address, \
    destination_type, destination_region, destination_address, \
    region, server_ip, agent_id, state, desired_state, generation, \
    checkpoint_time, latency_us, store_earliest_time, store_latest_time, \
    status_message, create_time, update_time, \
    (SELECT a.last_heartbeat_time FROM agents a WHERE a.id = connectors.agent_id) \
    AS last_heartbeat_time";

pub const COMMAND_COLUMNS: &str = "id, connector_id, kind, pull_back_time, region, generation, \
    request_id, reason, status, agent_id, error_reason, error_message, create_time, complete_time, \
    trace_context, late_result, late_result_time";

/// The stored form of a time.
pub fn text(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn parse_time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Internal(format!("stored time {text:?}: {e}").into()))
}

fn get<T: rusqlite::types::FromSql>(row: &Row<'_>, column: &str) -> Result<T, StoreError> {
    row.get(column)
        .map_err(|e| StoreError::Internal(format!("reading {column}: {e}").into()))
}

fn time(row: &Row<'_>, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    get::<Option<String>>(row, column)?
        .map(|t| parse_time(&t))
        .transpose()
}

/// A time that must be set: a NULL is an error, never the epoch.
fn required_time(row: &Row<'_>, column: &str) -> Result<DateTime<Utc>, StoreError> {
    time(row, column)?.ok_or_else(|| StoreError::Internal(format!("{column} is NULL").into()))
}

fn parse<T>(row: &Row<'_>, column: &str, f: impl Fn(&str) -> Option<T>) -> Result<T, StoreError> {
    let value: String = get(row, column)?;
    f(&value)
        .ok_or_else(|| StoreError::Internal(format!("unexpected {column} value {value:?}").into()))
}

pub fn connector_from_row(row: &Row<'_>) -> Result<Connector, StoreError> {
    let latency_us: Option<i64> = get(row, "latency_us")?;
    Ok(Connector {
        id: get(row, "id")?,
        name: get(row, "name")?,
        project_id: get(row, "project_id")?,
        project_name: get(row, "project_name")?,
        kind: parse(row, "kind", ConnectorKind::parse)?,
        source: Endpoint {
            kind: get(row, "source_type")?,
            region: get(row, "source_region")?,
            address: get(row, "source_address")?,
        },
        destination: Endpoint {
            kind: get(row, "destination_type")?,
            region: get(row, "destination_region")?,
            address: get(row, "destination_address")?,
        },
        region: get(row, "region")?,
        server_ip: get(row, "server_ip")?,
        agent_id: get(row, "agent_id")?,
        state: parse(row, "state", ConnectorState::parse)?,
        desired_state: parse(row, "desired_state", ConnectorState::parse)?,
        generation: get(row, "generation")?,
        checkpoint_time: time(row, "checkpoint_time")?,
        latency: latency_us.map(|us| Duration::from_micros(us.max(0).unsigned_abs())),
        store_range: time(row, "store_earliest_time")?
            .zip(time(row, "store_latest_time")?)
            .map(|(earliest, latest)| TimeRange { earliest, latest }),
        status_message: get(row, "status_message")?,
        create_time: required_time(row, "create_time")?,
        update_time: required_time(row, "update_time")?,
        last_heartbeat_time: time(row, "last_heartbeat_time")?,
    })
}

pub fn command_from_row(row: &Row<'_>) -> Result<Command, StoreError> {
    Ok(Command {
        id: get(row, "id")?,
        connector_id: get(row, "connector_id")?,
        kind: parse(row, "kind", CommandKind::parse)?,
        pull_back_time: time(row, "pull_back_time")?,
        region: get(row, "region")?,
        generation: get(row, "generation")?,
        request_id: get(row, "request_id")?,
        reason: get(row, "reason")?,
        status: parse(row, "status", CommandStatus::parse)?,
        agent_id: get(row, "agent_id")?,
        error_reason: get(row, "error_reason")?,
        error_message: get(row, "error_message")?,
        create_time: required_time(row, "create_time")?,
        complete_time: time(row, "complete_time")?,
        trace_context: trace_context_from_text(&get::<String>(row, "trace_context")?),
        late_result: CommandStatus::parse(&get::<String>(row, "late_result")?)
            .zip(time(row, "late_result_time")?),
    })
}
