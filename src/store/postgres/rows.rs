//! Row <-> domain mapping. Column lists live next to the code that reads
//! them so that the two cannot drift apart.

use crate::domain::{
    Command, CommandKind, CommandStatus, Connector, ConnectorKind, ConnectorState, Endpoint,
    TimeRange, trace_context_from_text,
};
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio_postgres::Row;

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

fn parse_text<T>(
    row: &Row,
    column: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let text: &str = row.try_get(column).map_err(column_error)?;
    parse(text)
        .ok_or_else(|| StoreError::Internal(format!("unexpected {column} value {text:?}").into()))
}

fn column_error(error: tokio_postgres::Error) -> StoreError {
    StoreError::Internal(error.into())
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    column: &str,
) -> Result<T, StoreError> {
    row.try_get(column).map_err(column_error)
}

pub fn connector_from_row(row: &Row) -> Result<Connector, StoreError> {
    let earliest: Option<DateTime<Utc>> = get(row, "store_earliest_time")?;
    let latest: Option<DateTime<Utc>> = get(row, "store_latest_time")?;
    let latency_us: Option<i64> = get(row, "latency_us")?;
    Ok(Connector {
        id: get(row, "id")?,
        name: get(row, "name")?,
        project_id: get(row, "project_id")?,
        project_name: get(row, "project_name")?,
        kind: parse_text(row, "kind", ConnectorKind::parse)?,
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
        state: parse_text(row, "state", ConnectorState::parse)?,
        desired_state: parse_text(row, "desired_state", ConnectorState::parse)?,
        generation: get(row, "generation")?,
        checkpoint_time: get(row, "checkpoint_time")?,
        latency: latency_us.map(|us| Duration::from_micros(us.max(0).unsigned_abs())),
        store_range: earliest
            .zip(latest)
            .map(|(earliest, latest)| TimeRange { earliest, latest }),
        status_message: get(row, "status_message")?,
        create_time: get(row, "create_time")?,
        update_time: get(row, "update_time")?,
        last_heartbeat_time: get(row, "last_heartbeat_time")?,
    })
}

pub fn command_from_row(row: &Row) -> Result<Command, StoreError> {
    Ok(Command {
        id: get(row, "id")?,
        connector_id: get(row, "connector_id")?,
        kind: parse_text(row, "kind", CommandKind::parse)?,
        pull_back_time: get(row, "pull_back_time")?,
        region: get(row, "region")?,
        generation: get(row, "generation")?,
        request_id: get(row, "request_id")?,
        reason: get(row, "reason")?,
        status: parse_text(row, "status", CommandStatus::parse)?,
        agent_id: get(row, "agent_id")?,
        error_reason: get(row, "error_reason")?,
        error_message: get(row, "error_message")?,
        create_time: get(row, "create_time")?,
        complete_time: get(row, "complete_time")?,
        trace_context: trace_context_from_text(&get::<String>(row, "trace_context")?),
        late_result: CommandStatus::parse(get(row, "late_result")?).zip(get::<
            Option<DateTime<Utc>>,
        >(
            row, "late_result_time"
        )?),
    })
}
