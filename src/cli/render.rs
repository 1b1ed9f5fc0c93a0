//! How the people's CLI prints answers: tables for people, and for scripts
//! the proto JSON mapping (the same JSON grpcurl prints).

use crate::proto::{self, short_name, v1};
use anyhow::Context;
use chrono::Utc;
use comfy_table::{Table, presets};
use prost_reflect::{DescriptorPool, DynamicMessage};
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

impl Output {
    /// `message` as this output asks: for scripts the proto JSON mapping
    /// (`full_name` is its type), for people what `table` makes of it.
    fn render<M: prost::Message>(
        self,
        message: &M,
        full_name: &str,
        table: impl FnOnce(&M) -> String,
    ) -> anyhow::Result<String> {
        match self {
            Output::Json => json(message, full_name),
            Output::Table => Ok(table(message)),
        }
    }
}

fn pool() -> anyhow::Result<&'static DescriptorPool> {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    if let Some(pool) = POOL.get() {
        return Ok(pool);
    }
    let pool = DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET)
        .context("decoding the API descriptors")?;
    Ok(POOL.get_or_init(|| pool))
}

/// `message` in the proto JSON mapping, pretty-printed.
pub fn json(message: &impl prost::Message, full_name: &str) -> anyhow::Result<String> {
    let descriptor = pool()?
        .get_message_by_name(full_name)
        .with_context(|| format!("no descriptor for {full_name}"))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())?;
    Ok(serde_json::to_string_pretty(&dynamic)? + "\n")
}

/// Adds a row whose text is shown as what it is: control characters,
/// bidirectional controls and line separators (from rows written before
/// names were checked, or from agents' messages) are printed as escapes,
/// so that no cell can reorder or break what a person reads.
fn add_row(table: &mut Table, cells: Vec<String>) {
    table.add_row(cells.iter().map(|cell| printable(cell)).collect::<Vec<_>>());
}

/// `text` with every character that changes how text is displayed
/// written as a `\u{..}` escape.
pub fn printable(text: &str) -> String {
    crate::domain::validate::escape(text, false)
}

/// A column of a table for people: its header, and an item's cell.
type Column<'a, T> = (&'static str, &'a dyn Fn(&T) -> String);

/// A table for people: the headers, then one row per item, each cell
/// printable.
fn rows<T>(items: &[T], columns: &[Column<'_, T>]) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING).set_header(
        columns
            .iter()
            .map(|(header, _)| *header)
            .collect::<Vec<_>>(),
    );
    for item in items {
        add_row(
            &mut table,
            columns.iter().map(|(_, cell)| cell(item)).collect(),
        );
    }
    format!("{table}\n")
}

/// The line that says how to ask for the next page, when there is one.
fn next_page(token: &str, line: impl FnOnce(&str) -> String) -> String {
    if token.is_empty() {
        String::new()
    } else {
        line(token)
    }
}

fn state(value: i32) -> String {
    short_name::<v1::ConnectorState>(value)
}

/// RFC 3339 in UTC to the second: pasteable into `--pull-back`.
fn time(ts: Option<&prost_types::Timestamp>) -> String {
    ts.and_then(|ts| proto::convert::timestamp(ts).ok())
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "-".to_owned())
}

fn latency(d: Option<&prost_types::Duration>) -> String {
    d.and_then(|d| std::time::Duration::try_from(*d).ok())
        .map(|d| {
            humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
        })
        .unwrap_or_else(|| "-".to_owned())
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

/// The state, with the control plane's lag flag ("RUNNING LAGGING",
/// "UNKNOWN AGENT OFFLINE").
fn flagged_state(c: &v1::Connector) -> String {
    match v1::LagCause::try_from(c.lag_cause) {
        Ok(v1::LagCause::Latency) => format!("{} LAGGING", state(c.state)),
        Ok(v1::LagCause::AgentOffline) => format!("{} AGENT OFFLINE", state(c.state)),
        _ => state(c.state),
    }
}

pub fn connectors(page: &v1::ListConnectorsResponse, output: Output) -> anyhow::Result<String> {
    output.render(page, "connector.v1.ListConnectorsResponse", |page| {
        let table = rows(
            &page.connectors,
            &[
                ("ID", &|c| c.id.clone()),
                ("NAME", &|c| c.name.clone()),
                ("PROJECT", &|c| c.project_name.clone()),
                ("REGION", &|c| c.region.clone()),
                ("STATE", &flagged_state),
                ("SERVER IP", &|c| or_dash(&c.server_ip).to_owned()),
                ("LATENCY", &|c| latency(c.latency.as_ref())),
                ("CHECKPOINT", &|c| time(c.checkpoint_time.as_ref())),
            ],
        );
        format!(
            "{table}{} shown, {} matching\n{}",
            page.connectors.len(),
            page.total_size,
            next_page(&page.next_page_token, |token| {
                format!("more: add --page-token {token} (or --all)\n")
            })
        )
    })
}

pub fn connector(c: &v1::Connector, output: Output) -> anyhow::Result<String> {
    output.render(c, "connector.v1.Connector", fields)
}

/// One connector for people: a line a field.
fn fields(c: &v1::Connector) -> String {
    let endpoint = |e: Option<&v1::Endpoint>| {
        e.map(|e| format!("{} {} ({})", e.r#type, e.address, e.region))
            .unwrap_or_default()
    };
    let kind = short_name::<v1::ConnectorKind>(c.kind);
    let range = c
        .store_range
        .as_ref()
        .map(|r| {
            format!(
                "{} .. {}",
                time(r.earliest_time.as_ref()),
                time(r.latest_time.as_ref())
            )
        })
        .unwrap_or_else(|| "-".to_owned());
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    for (field, value) in [
        ("ID", c.id.clone()),
        ("NAME", c.name.clone()),
        ("PROJECT", format!("{} ({})", c.project_name, c.project_id)),
        ("KIND", kind),
        ("SOURCE", endpoint(c.source.as_ref())),
        ("DESTINATION", endpoint(c.destination.as_ref())),
        ("REGION", c.region.clone()),
        (
            "STATE",
            format!("{} (desired {})", state(c.state), state(c.desired_state)),
        ),
        ("GENERATION", c.generation.to_string()),
        ("AGENT", or_dash(&c.agent_id).to_owned()),
        ("SERVER IP", or_dash(&c.server_ip).to_owned()),
        ("LATENCY", latency(c.latency.as_ref())),
        ("CHECKPOINT", time(c.checkpoint_time.as_ref())),
        ("STORE RANGE", range),
        ("MESSAGE", or_dash(&c.status_message).to_owned()),
        (
            "RESTART POLICY",
            crate::proto::convert::restart_policy_text(&c.restart_policy.unwrap_or_default()),
        ),
        (
            "RESTARTS",
            match &c.next_restart_time {
                Some(next) => format!("{} in a row; next at {}", c.restart_count, time(Some(next))),
                None => format!("{} in a row", c.restart_count),
            },
        ),
        ("LAST HEARTBEAT", time(c.last_heartbeat_time.as_ref())),
        ("UPDATED", time(c.update_time.as_ref())),
    ] {
        add_row(&mut table, vec![field.to_owned(), value]);
    }
    format!("{table}\n")
}

/// The answer of a Start or Pause (`dry_run`: of its validate_only form),
/// for people.
pub fn command_outcome(
    connector: Option<&v1::Connector>,
    command: Option<&v1::Command>,
    dry_run: bool,
) -> String {
    let (Some(connector), Some(command)) = (connector, command) else {
        return String::new();
    };
    let kind = command_kind(command.kind);
    let status = command_status(command.status);
    if dry_run {
        return format!(
            "dry run, nothing changed: connector {} would be {} (desired {})\n\
             command {} generation {} in {} would be issued\n",
            connector.id,
            state(connector.state),
            state(connector.desired_state),
            kind,
            command.generation,
            command.region,
        );
    }
    let mut out = format!(
        "connector {} is {} (desired {})\ncommand {} {} generation {} in {}: {}\n",
        connector.id,
        state(connector.state),
        state(connector.desired_state),
        command.id,
        kind,
        command.generation,
        command.region,
        status
    );
    if !command.error_reason.is_empty() {
        out.push_str(&format!(
            "agent: {}: {}\n",
            printable(&command.error_reason),
            printable(&command.error_message)
        ));
    }
    out
}

/// A MarkConnectorStopped answer.
pub fn marked_stopped(
    response: &v1::MarkConnectorStoppedResponse,
    output: Output,
) -> anyhow::Result<String> {
    output.render(
        response,
        "connector.v1.MarkConnectorStoppedResponse",
        marked,
    )
}

/// A MarkConnectorStopped answer for people: the connector as it is now
/// (or would be).
fn marked(response: &v1::MarkConnectorStoppedResponse) -> String {
    let Some(connector) = &response.connector else {
        return String::new();
    };
    let (lead, verb) = if response.validate_only {
        ("dry run, nothing changed: connector", "would be")
    } else {
        ("connector", "is")
    };
    format!(
        "{lead} {} {verb} {} (desired {}) at generation {}: {}\n",
        connector.id,
        state(connector.state),
        state(connector.desired_state),
        connector.generation,
        printable(&connector.status_message)
    )
}

fn command_kind(value: i32) -> String {
    short_name::<v1::CommandKind>(value)
}

fn command_status(value: i32) -> String {
    short_name::<v1::CommandStatus>(value)
}

/// A batch call's answer: each connector's outcome, then the counts.
pub fn batch(response: &v1::BatchConnectorsResponse, output: Output) -> anyhow::Result<String> {
    output.render(
        response,
        "connector.v1.BatchConnectorsResponse",
        batch_results,
    )
}

fn batch_results(response: &v1::BatchConnectorsResponse) -> String {
    let dry_run = response.validate_only;
    let outcome = |r: &v1::BatchResult| {
        match v1::BatchOutcome::try_from(r.outcome) {
            Ok(v1::BatchOutcome::Changed) if dry_run => "WOULD CHANGE",
            Ok(v1::BatchOutcome::Changed) => "CHANGED",
            Ok(v1::BatchOutcome::Unchanged) => "UNCHANGED",
            _ => "FAILED",
        }
        .to_owned()
    };
    let state = |r: &v1::BatchResult| {
        r.connector
            .as_ref()
            .map_or_else(|| "-".to_owned(), flagged_state)
    };
    let server_ip = |r: &v1::BatchResult| {
        r.connector
            .as_ref()
            .map_or("-", |c| or_dash(&c.server_ip))
            .to_owned()
    };
    let table = rows(
        &response.results,
        &[
            ("CONNECTOR", &|r| r.connector_id.clone()),
            ("OUTCOME", &outcome),
            ("STATE", &state),
            ("SERVER IP", &server_ip),
            ("COMMAND OR ERROR", &batch_what),
        ],
    );
    format!(
        "{table}{} selected: {} {}, {} unchanged, {} failed{}\n",
        response.selected,
        response.changed,
        if dry_run { "would change" } else { "changed" },
        response.unchanged,
        response.failed,
        if dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    )
}

/// What a batch did to one connector: the command issued, or the error.
fn batch_what(r: &v1::BatchResult) -> String {
    match (&r.command, &r.error) {
        (Some(c), _) => format!(
            "{} generation {} in {}{}",
            command_kind(c.kind),
            c.generation,
            c.region,
            if c.id.is_empty() {
                String::new()
            } else {
                format!(" ({})", c.id)
            }
        ),
        (None, Some(error)) => {
            let reason = error
                .details
                .iter()
                .filter(|any| any.type_url.ends_with("/google.rpc.ErrorInfo"))
                .find_map(|any| {
                    <tonic_types::pb::ErrorInfo as prost::Message>::decode(any.value.as_slice())
                        .ok()
                })
                .map_or_else(|| "ERROR".to_owned(), |info| info.reason);
            format!("{reason}: {}", error.message)
        }
        (None, None) => "-".to_owned(),
    }
}

/// One WatchConnectors event: a line for people (time, event, connector,
/// state, region, server, message), one JSON object per line for scripts.
pub fn watch_event(event: &v1::WatchConnectorsResponse, output: Output) -> anyhow::Result<String> {
    if output == Output::Json {
        let pretty = json(event, "connector.v1.WatchConnectorsResponse")?;
        let value: serde_json::Value = serde_json::from_str(&pretty)?;
        return Ok(format!("{value}\n"));
    }
    let kind = short_name::<v1::WatchEventType>(event.r#type);
    let now = Utc::now().format("%H:%M:%S");
    Ok(match &event.connector {
        None if kind == "SNAPSHOT_END" => format!(
            "{now} -- snapshot complete; changes follow (resume with --resume-token {})\n",
            event.resume_token
        ),
        None => format!("{now} {kind}\n"),
        Some(c) => {
            printable(&format!(
                "{now} {kind:<8} {} ({}) {} region {} server {} {}",
                c.id,
                c.name,
                flagged_state(c),
                c.region,
                or_dash(&c.server_ip),
                c.status_message
            )) + "\n"
        }
    })
}

/// A connector's commands, newest first.
pub fn commands(response: &v1::ListCommandsResponse, output: Output) -> anyhow::Result<String> {
    output.render(response, "connector.v1.ListCommandsResponse", |response| {
        let error = |c: &v1::Command| match (c.error_reason.as_str(), c.error_message.as_str()) {
            ("", "") => "-".to_owned(),
            (reason, message) => format!("{reason}: {message}"),
        };
        let table = rows(
            &response.commands,
            &[
                ("GENERATION", &|c| c.generation.to_string()),
                ("KIND", &|c| command_kind(c.kind)),
                ("STATUS", &|c| command_status(c.status)),
                ("BY", &|c| or_dash(&c.principal).to_owned()),
                ("REASON", &|c| or_dash(&c.reason).to_owned()),
                ("PULL BACK", &|c| time(c.pull_back_time.as_ref())),
                ("REGION", &|c| c.region.clone()),
                ("AGENT", &|c| or_dash(&c.agent_id).to_owned()),
                ("ERROR", &error),
                ("CREATED", &|c| time(c.create_time.as_ref())),
                ("COMPLETED", &|c| time(c.complete_time.as_ref())),
            ],
        );
        table
            + &next_page(&response.next_page_token, |token| {
                format!("older commands: --page-token {token}\n")
            })
    })
}

pub fn agents(response: &v1::ListAgentsResponse, output: Output) -> anyhow::Result<String> {
    output.render(response, "connector.v1.ListAgentsResponse", |response| {
        rows(
            &response.agents,
            &[
                ("ID", &|a| a.id.clone()),
                ("REGION", &|a| a.region.clone()),
                ("SERVER IP", &|a| a.server_ip.clone()),
                ("STATE", &|a| short_name::<v1::AgentState>(a.state)),
                ("CONNECTORS", &|a| a.connectors.to_string()),
                ("LAST HEARTBEAT", &|a| time(a.last_heartbeat_time.as_ref())),
                ("VERSION", &|a| or_dash(&a.version).to_owned()),
                ("REPLICA", &|a| or_dash(&a.replica_id).to_owned()),
            ],
        )
    })
}

pub fn replicas(response: &v1::ListReplicasResponse, output: Output) -> anyhow::Result<String> {
    output.render(response, "connector.v1.ListReplicasResponse", |response| {
        let leader = |r: &v1::Replica| {
            if r.leader {
                format!("yes (term {})", r.leader_term)
            } else {
                "-".to_owned()
            }
        };
        rows(
            &response.replicas,
            &[
                ("REPLICA", &|r| r.id.clone()),
                ("ADDRESS", &|r| or_dash(&r.address).to_owned()),
                ("STATE", &|r| short_name::<v1::ReplicaState>(r.state)),
                ("LEADER", &leader),
                ("AGENTS", &|r| r.agents.to_string()),
                ("LAST HEARTBEAT", &|r| time(r.heartbeat_time.as_ref())),
                ("STARTED", &|r| time(r.start_time.as_ref())),
            ],
        )
    })
}

pub fn regions(response: &v1::ListRegionsResponse, output: Output) -> anyhow::Result<String> {
    output.render(response, "connector.v1.ListRegionsResponse", |response| {
        rows(
            &response.regions,
            &[
                ("REGION", &|r| r.name.clone()),
                ("ONLINE AGENTS", &|r| r.online_agents.to_string()),
                ("CONNECTORS", &|r| r.connectors.to_string()),
            ],
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_cannot_reorder_or_break_what_is_printed() {
        for (text, printed) in [
            ("orders → warehouse", "orders → warehouse"),
            ("ab\u{202E}cd", "ab\\u{202e}cd"),
            ("a\nb\u{2028}c", "a\\u{a}b\\u{2028}c"),
        ] {
            assert_eq!(printable(text), printed, "{text:?}");
        }
    }
}
