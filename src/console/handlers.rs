//! The Start and Pause dialogs, and the frame every dialog about one
//! connector shares.

use super::access::{Posted, Viewer, caller_or_return};
use super::caller::Caller;
use super::failure::{ShownFailure, failure_box};
use super::format::time_text;
use super::forms::StartForm;
use super::pages;
use super::state::{Console, Shared};
use super::urls;
use crate::domain::AuditAction;
use crate::proto::v1::{self, connector_service_server::ConnectorService};
use crate::store::FleetStore;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::Markup;
use tonic::Status;

/// Set on an answer that completed the dialog's action.
pub const DONE: &str = "x-console-done";

/// GET /connectors/{id}/start: the Start dialog.
pub async fn start_dialog<S: FleetStore>(
    State(c): Shared<S>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = may_not_operate(&caller, "Start") {
        return refused;
    }
    let form = StartForm {
        request_id: uuid::Uuid::new_v4().to_string(),
        ..Default::default()
    };
    start_form(&c, &caller, &id, &form, None, StatusCode::OK).await
}

async fn start_form<S: FleetStore>(
    c: &Console<S>,
    caller: &Caller,
    id: &str,
    form: &StartForm,
    failure: Option<ShownFailure>,
    status: StatusCode,
) -> Response {
    let regions =
        ConnectorService::list_regions(&c.connectors, caller.request(v1::ListRegionsRequest {}))
            .await
            .map(|r| r.into_inner().regions)
            .unwrap_or_default();
    connector_dialog(
        c,
        caller,
        id,
        "Start",
        "Start connector",
        status,
        |connector| pages::start_form(caller, connector, &regions, form, failure.as_ref()),
    )
    .await
}

/// A dialog a viewer cannot use says so instead of offering a form the API
/// would refuse (it still decides, should the form be posted anyway).
pub(super) fn may_not_operate(caller: &Caller, title: &str) -> Option<Response> {
    if caller.can_operate() {
        return None;
    }
    let principal = &caller.session.principal;
    let failure = ShownFailure::local(
        tonic::Code::PermissionDenied,
        "PERMISSION_DENIED",
        &format!(
            "principal {} (role {}) may not start or pause connectors: that needs permission \
             connectors.operate (roles operator or admin)",
            principal.name,
            principal.role.as_str()
        ),
    );
    let body = pages::closable(title, failure_box(&failure));
    Some(caller.page(
        StatusCode::FORBIDDEN,
        pages::dialog_or_page(caller, title, body),
    ))
}

fn dialog_failure(caller: &Caller, title: &str, status: &Status) -> Response {
    let failure = ShownFailure::from(status);
    let body = failure_box(&failure);
    caller.page(
        ShownFailure::from(status).http_status(),
        pages::dialog_or_page(caller, title, pages::closable(title, body)),
    )
}

/// POST /connectors/{id}/start: a dry run, then the start; a refusal of
/// either is shown in the dialog, which stays open.
pub async fn start<S: FleetStore>(
    State(c): Shared<S>,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    let params = &posted.params;
    let caller = caller_or_return!(
        c.changer(&posted, Some(AuditAction::StartConnector), &id)
            .await
    );
    let form = StartForm::from_params(params);
    let pull_back_time = match form.pull_back_time() {
        Ok(time) => time,
        Err(failure) => {
            return start_form(
                &c,
                &caller,
                &id,
                &form,
                Some(failure),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    let request = |validate_only| v1::StartConnectorRequest {
        id: id.clone(),
        pull_back_time,
        region: form.region.clone(),
        request_id: form.request_id.clone(),
        wait: false,
        validate_only,
        // A pull-back skips nothing: the choice counts without one only.
        skip_to_earliest: form.skip_to_earliest && pull_back_time.is_none(),
    };
    let mut result =
        ConnectorService::start_connector(&c.connectors, caller.request(request(true))).await;
    if result.is_ok() {
        result =
            ConnectorService::start_connector(&c.connectors, caller.request(request(false))).await;
    }
    match result {
        Ok(response) => {
            let response = response.into_inner();
            let connector = response.connector.unwrap_or_default();
            // What was done, not the state it left (the row shows that,
            // live, and it may already have moved on).
            let message = format!(
                "Start issued for {} in region {}{}",
                connector.name,
                connector.region,
                response
                    .command
                    .and_then(|command| command.pull_back_time)
                    .map(|t| format!(", pulled back to {}", time_text(&t)))
                    .unwrap_or_default()
            );
            done(&caller, &connector, &message)
        }
        Err(status) => {
            let failure = ShownFailure::from(&status);
            start_form(
                &c,
                &caller,
                &id,
                &form,
                Some(failure),
                ShownFailure::from(&status).http_status(),
            )
            .await
        }
    }
}

/// The answer to a completed single action: the script closes the dialog
/// and puts the row in place; without it, the connector's page.
pub(super) fn done(caller: &Caller, connector: &v1::Connector, message: &str) -> Response {
    if !caller.fragment {
        return Redirect::to(&urls::connector(&connector.id)).into_response();
    }
    let mut response = caller.page(
        StatusCode::OK,
        pages::done(
            message,
            std::slice::from_ref(connector),
            caller.can_operate(),
        ),
    );
    response
        .headers_mut()
        .insert(DONE, HeaderValue::from_static("close"));
    response
}

/// GET /connectors/{id}/pause: the Pause dialog.
pub async fn pause_dialog<S: FleetStore>(
    State(c): Shared<S>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = may_not_operate(&caller, "Pause") {
        return refused;
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    pause_form(&c, &caller, &id, "", &request_id, None, StatusCode::OK).await
}

async fn pause_form<S: FleetStore>(
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
        "Pause",
        "Pause connector",
        status,
        |connector| pages::pause_form(caller, connector, reason, request_id, failure.as_ref()),
    )
    .await
}

/// A dialog about one connector: the connector, read as `caller` (its
/// refusal shown instead), and `body` for it, as a dialog or a page of its
/// own (`title` names the action, `page_title` the page).
pub(super) async fn connector_dialog<S: FleetStore>(
    c: &Console<S>,
    caller: &Caller,
    id: &str,
    title: &str,
    page_title: &str,
    status: StatusCode,
    body: impl FnOnce(&v1::Connector) -> Markup,
) -> Response {
    let connector = match ConnectorService::get_connector(
        &c.connectors,
        caller.request(v1::GetConnectorRequest { id: id.to_owned() }),
    )
    .await
    {
        Ok(connector) => connector.into_inner(),
        Err(status) => return dialog_failure(caller, title, &status),
    };
    caller.page(
        status,
        pages::dialog_or_page(caller, page_title, body(&connector)),
    )
}

/// POST /connectors/{id}/pause.
pub async fn pause<S: FleetStore>(
    State(c): Shared<S>,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    let params = &posted.params;
    let caller = caller_or_return!(
        c.changer(&posted, Some(AuditAction::PauseConnector), &id)
            .await
    );
    let reason = params.get("reason");
    let request_id = params.get("request_id");
    let result = ConnectorService::pause_connector(
        &c.connectors,
        caller.request(v1::PauseConnectorRequest {
            id: id.clone(),
            reason: reason.to_owned(),
            request_id: request_id.to_owned(),
            wait: false,
            validate_only: false,
        }),
    )
    .await;
    match result {
        Ok(response) => {
            let connector = response.into_inner().connector.unwrap_or_default();
            let message = format!("Pause issued for {}", connector.name);
            done(&caller, &connector, &message)
        }
        Err(status) => {
            let failure = ShownFailure::from(&status);
            pause_form(
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
