//! The Mark stopped dialog: the way out for a connector whose agent is
//! gone (MarkConnectorStopped; the API decides and audits).

use super::access::{Posted, Viewer, caller_or_return};
use super::caller::Caller;
use super::failure::{ShownFailure, failure_box};
use super::format::state_name;
use super::handlers::{connector_dialog, done, may_not_operate};
use super::state::{Console, Shared};
use super::urls;
use crate::domain::AuditAction;
use crate::proto::v1::{self, connector_service_server::ConnectorService};
use crate::store::FleetStore;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

const TITLE: &str = "Mark stopped";

/// GET /connectors/{id}/mark-stopped: the dialog.
pub async fn dialog<S: FleetStore>(
    State(c): Shared<S>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = may_not_operate(&caller, TITLE) {
        return refused;
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    form_page(&c, &caller, &id, "", &request_id, None, StatusCode::OK).await
}

async fn form_page<S: FleetStore>(
    c: &Console<S>,
    caller: &Caller,
    id: &str,
    reason: &str,
    request_id: &str,
    failure: Option<ShownFailure>,
    status: StatusCode,
) -> Response {
    connector_dialog(
        c,
        caller,
        id,
        TITLE,
        "Mark connector stopped",
        status,
        |connector| form(caller, connector, reason, request_id, failure.as_ref()),
    )
    .await
}

/// POST /connectors/{id}/mark-stopped.
pub async fn submit<S: FleetStore>(
    State(c): Shared<S>,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    let params = &posted.params;
    let caller = caller_or_return!(
        c.changer(&posted, Some(AuditAction::MarkConnectorStopped), &id)
            .await
    );
    let (reason, request_id) = (params.get("reason"), params.get("request_id"));
    let result = ConnectorService::mark_connector_stopped(
        &c.connectors,
        caller.request(v1::MarkConnectorStoppedRequest {
            id: id.clone(),
            reason: reason.to_owned(),
            request_id: request_id.to_owned(),
            validate_only: false,
        }),
    )
    .await;
    match result {
        Ok(response) => {
            let connector = response.into_inner().connector.unwrap_or_default();
            let message = format!(
                "{} marked {}: it can be started again",
                connector.name,
                state_name(connector.state)
            );
            done(&caller, &connector, &message)
        }
        Err(status) => {
            let failure = ShownFailure::from(&status);
            form_page(
                &c,
                &caller,
                &id,
                reason,
                request_id,
                Some(failure),
                ShownFailure::from(&status).http_status(),
            )
            .await
        }
    }
}

fn form(
    caller: &Caller,
    connector: &v1::Connector,
    reason: &str,
    request_id: &str,
    failure: Option<&ShownFailure>,
) -> Markup {
    html! {
        form.dialog-form method="post" action=(urls::connector_action(&connector.id, urls::MARK_STOPPED)) data-dialog-form {
            input type="hidden" name="csrf" value=(caller.csrf);
            input type="hidden" name="request_id" value=(request_id);
            h2 #dialog-title { "Mark " (connector.name) " stopped?" }
            p {
                "For a connector whose agent is gone: it is recorded STOPPED without telling any agent, "
                "so that it can be started again (on another agent). What the lost agent says later "
                "about it changes nothing. While its agent is online, pause it instead."
            }
            div.field {
                label for="mark-reason" { "Reason (required, kept in the audit trail)" }
                textarea #mark-reason name="reason" maxlength="1000" rows="2" required
                    placeholder="for example INC-4711: host of agent eu-2a lost" { (reason) }
            }
            @if let Some(failure) = failure { (failure_box(failure)) }
            div.buttons {
                button.primary type="submit" { "Mark stopped" }
                button type="button" data-close { "Cancel" }
            }
        }
    }
}
