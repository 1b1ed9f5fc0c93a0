//! A connector's page (GET /connectors/{id}): what the API knows of it,
//! its buttons, its latest commands and its audit trail.

use super::access::Viewer;
use super::audit_tab::audit_table;
use super::caller::Caller;
use super::failure::{ShownFailure, failure_box};
use super::format::{
    command_kind, command_status, duration_text, kind_name, shown, state_badge, state_name,
    time_cell,
};
use super::layout::{Tab, failure_page, layout};
use super::row::{action_buttons, row};
use super::state::Shared;
use super::urls;
use crate::proto::v1::{
    self, audit_service_server::AuditService, connector_service_server::ConnectorService,
};
use crate::store::FleetStore;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

/// GET /connectors/{id}: one connector, its commands and audit trail.
pub async fn page<S: FleetStore>(
    State(c): Shared<S>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
) -> Response {
    let connector = ConnectorService::get_connector(
        &c.connectors,
        caller.request(v1::GetConnectorRequest { id: id.clone() }),
    )
    .await
    .map(tonic::Response::into_inner);
    let connector = match connector {
        Ok(connector) => connector,
        Err(status) => {
            let failure = ShownFailure::from(&status);
            return caller.page(
                failure.http_status(),
                failure_page(&caller, "Connector", &failure),
            );
        }
    };
    let commands = ConnectorService::list_commands(
        &c.connectors,
        caller.request(v1::ListCommandsRequest {
            connector_id: id.clone(),
            page_size: 20,
            page_token: String::new(),
        }),
    )
    .await
    .map(|r| r.into_inner().commands)
    .map_err(ShownFailure::from);
    let audit = AuditService::list_audit_events(
        &c.audit,
        caller.request(v1::ListAuditEventsRequest {
            connector_id: id,
            page_size: 20,
            ..Default::default()
        }),
    )
    .await
    .map(|r| r.into_inner().events)
    .map_err(ShownFailure::from);
    caller.page(StatusCode::OK, markup(&caller, &connector, commands, audit))
}

fn markup(
    caller: &Caller,
    connector: &v1::Connector,
    commands: Result<Vec<v1::Command>, ShownFailure>,
    audit: Result<Vec<v1::AuditEvent>, ShownFailure>,
) -> Markup {
    let can_operate = caller.can_operate();
    let endpoint = |e: Option<&v1::Endpoint>| {
        e.map_or_else(String::new, |e| {
            format!("{} · {} · {}", e.r#type, e.region, e.address)
        })
    };
    let policy = connector.restart_policy.unwrap_or_default();
    let body = html! {
        p { a href="/" { "← Connectors" } }
        div.heading { h1 { (connector.name) } (state_badge(connector)) }
        @if can_operate {
            table.hidden-table { tbody { (row(connector, can_operate)) } }
            div.buttons { (action_buttons(connector)) }
        }
        @if !connector.status_message.is_empty() { p.status { (shown(&connector.status_message)) } }
        dl.facts.wide {
            dt { "ID" } dd.mono { (connector.id) }
            dt { "Project" } dd { (connector.project_name) " " small.mono { (connector.project_id) } }
            dt { "Kind" } dd { (kind_name(connector.kind)) }
            dt { "Region" } dd { (connector.region) }
            dt { "Source" } dd { (endpoint(connector.source.as_ref())) }
            dt { "Destination" } dd { (endpoint(connector.destination.as_ref())) }
            dt { "Agent" } dd { (connector.agent_id) " " span.mono { (connector.server_ip) } }
            dt { "Desired state" } dd { (state_name(connector.desired_state)) }
            dt { "Latency" } dd { (duration_text(connector.latency.as_ref())) }
            dt { "Checkpoint" } dd { (time_cell(connector.checkpoint_time.as_ref())) }
            dt { "Store range" } dd {
                @match &connector.store_range {
                    Some(range) => { (time_cell(range.earliest_time.as_ref())) " – " (time_cell(range.latest_time.as_ref())) }
                    None => { span.muted { "not reported" } }
                }
            }
            dt { "Last heartbeat" } dd { (time_cell(connector.last_heartbeat_time.as_ref())) }
            dt { "Restart policy" } dd #restart-policy {
                (crate::proto::convert::restart_policy_text(&policy))
                @if can_operate {
                    " "
                    a.button href=(urls::connector_action(&connector.id, urls::RESTART_POLICY)) data-dialog { "Change" }
                }
            }
            dt { "Next automatic start" } dd { (time_cell(connector.next_restart_time.as_ref())) }
            dt { "Created" } dd { (time_cell(connector.create_time.as_ref())) }
            dt { "Updated" } dd { (time_cell(connector.update_time.as_ref())) }
        }
        h2 { "Commands" }
        @match &commands {
            Err(failure) => { (failure_box(failure)) }
            Ok(commands) if commands.is_empty() => { p.muted { "No commands yet." } }
            Ok(commands) => {
                div.table-wrap { table #commands {
                    thead { tr { th scope="col" { "Created" } th scope="col" { "Kind" } th scope="col" { "Status" } th scope="col" { "Region" } th scope="col" { "Pull back" } th scope="col" { "By" } th scope="col" { "Reason / error" } } }
                    tbody {
                        @for command in commands {
                            tr {
                                td { (time_cell(command.create_time.as_ref())) }
                                td { (command_kind(command.kind)) }
                                td { (command_status(command.status)) }
                                td { (command.region) }
                                td { (time_cell(command.pull_back_time.as_ref())) }
                                td { (command.principal) }
                                td {
                                    (command.reason)
                                    @if !command.error_reason.is_empty() { " " strong { (shown(&command.error_reason)) } ": " (shown(&command.error_message)) }
                                }
                            }
                        }
                    }
                } }
            }
        }
        h2 { "Audit" }
        (audit_table(&audit))
    };
    layout(caller, &connector.name, Tab::None, body)
}
