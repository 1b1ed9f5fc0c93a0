//! The frame every dialog about one connector shares (Start, Pause, Mark
//! stopped, Restart policy), written once: GET shows the dialog (to
//! operators; a viewer is told why not), POST checks the caller, makes
//! the change and answers "done", or shows the dialog again with the
//! refusal. Each dialog says only what is its own (`ConnectorDialog`).
//! The script gets a dialog's content; a browser without it, a page.

use super::access::{Posted, Viewer, caller_or_return};
use super::actions::Target;
use super::caller::Caller;
use super::contract::Finish;
use super::failure::{ShownFailure, failure_box};
use super::format::{kind_name, state_badge};
use super::forms::DialogForm;
use super::layout::{Tab, layout};
use super::row::row;
use super::state::{Console, Shared};
use super::urls;
use crate::domain::AuditAction;
use crate::proto::v1::{self, connector_service_server::ConnectorService};
use crate::store::FleetStore;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, get};
use maud::{Markup, html};
use std::future::Future;
use std::sync::Arc;

/// What one dialog about a connector is: its names, its form, and the
/// change it makes. The frame does the rest.
pub trait ConnectorDialog: 'static {
    /// Its names and its place.
    const META: DialogMeta;

    /// What the form holds, as typed.
    type Form: DialogForm;

    /// The form's heading and its fields (the frame adds the refusal and
    /// the buttons).
    fn fields<S: FleetStore>(
        view: DialogView<'_, S, Self::Form>,
    ) -> impl Future<Output = (Markup, Markup)> + Send;

    /// The change the form asks for on the connector: what was done, or
    /// why not.
    fn submit<S: FleetStore>(
        to: Target<'_, S>,
        form: &Self::Form,
    ) -> impl Future<Output = Result<Done, ShownFailure>> + Send;
}

/// A dialog's names and its place.
pub struct DialogMeta {
    /// The action, as a refusal's title names it.
    pub title: &'static str,
    /// The title of the dialog opened as a page of its own.
    pub page_title: &'static str,
    /// Its last path segment (`urls::START`, ...).
    pub path: &'static str,
    /// What a post refused before it reaches the API (no session, a
    /// failed CSRF check) is audited as.
    pub action: AuditAction,
    /// The submit button's label.
    pub submit: &'static str,
    /// Said under a refusal, above the buttons.
    pub note: Option<&'static str>,
}

/// What a dialog's fields are drawn from.
pub struct DialogView<'a, S, F> {
    pub console: &'a Console<S>,
    pub caller: &'a Caller,
    pub connector: &'a v1::Connector,
    /// As typed, or as the dialog opens.
    pub form: &'a F,
    /// Why the last post was refused.
    pub failure: Option<&'a ShownFailure>,
}

/// A completed change: the connector as it left it, and what was done (not
/// the state it left: the row shows that, live, and it may already have
/// moved on).
pub struct Done {
    pub connector: v1::Connector,
    pub message: String,
}

/// The router's pattern of dialog `D`: `/connectors/{id}/start`, ...
pub fn pattern<D: ConnectorDialog>() -> String {
    format!("/connectors/{{id}}/{}", D::META.path)
}

/// Dialog `D`'s handlers: GET shows it, POST submits it.
pub fn methods<S: FleetStore, D: ConnectorDialog>() -> MethodRouter<Arc<Console<S>>> {
    get(show::<S, D>).post(submit::<S, D>)
}

/// GET /connectors/{id}/<path>: the dialog.
async fn show<S: FleetStore, D: ConnectorDialog>(
    State(c): Shared<S>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
) -> Response {
    // A dialog a viewer cannot use says so instead of offering a form the
    // API would refuse (it still decides, should the form be posted anyway).
    if !caller.can_operate() {
        let principal = &caller.session.principal;
        let failure = ShownFailure::local(
            tonic::Code::PermissionDenied,
            v1::ErrorReason::PermissionDenied,
            &format!(
                "principal {} (role {}) may not start or pause connectors: that needs \
                 permission connectors.operate (roles operator or admin)",
                principal.name,
                principal.role.as_str()
            ),
        );
        return refusal(&caller, D::META.title, &failure);
    }
    frame::<S, D>(&c, &caller, &id, None, None).await
}

/// POST /connectors/{id}/<path>: the change; the dialog closes, or
/// stays open with the refusal.
async fn submit<S: FleetStore, D: ConnectorDialog>(
    State(c): Shared<S>,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    let caller = caller_or_return!(c.changer(&posted, Some(D::META.action), &id).await);
    let form = D::Form::read(&posted.params);
    let to = Target {
        console: &c,
        caller: &caller,
        id: &id,
    };
    match D::submit(to, &form).await {
        Ok(done) => done_response(&caller, &done),
        Err(failure) => frame::<S, D>(&c, &caller, &id, Some(&form), Some(failure)).await,
    }
}

/// The dialog for connector `id`, read as `caller` (its refusal shown
/// instead): the form as typed (else as it opens), with `failure`.
async fn frame<S: FleetStore, D: ConnectorDialog>(
    c: &Console<S>,
    caller: &Caller,
    id: &str,
    typed: Option<&D::Form>,
    failure: Option<ShownFailure>,
) -> Response {
    let connector = match ConnectorService::get_connector(
        &c.connectors,
        caller.request(v1::GetConnectorRequest { id: id.to_owned() }),
    )
    .await
    {
        Ok(connector) => connector.into_inner(),
        Err(status) => return refusal(caller, D::META.title, &ShownFailure::from(&status)),
    };
    let opened;
    let form = match typed {
        Some(form) => form,
        None => {
            opened = D::Form::open(&connector);
            &opened
        }
    };
    let failure = failure.as_ref();
    let (heading, fields) = D::fields(DialogView {
        console: c,
        caller,
        connector: &connector,
        form,
        failure,
    })
    .await;
    let body = html! {
        form.dialog-form method="post" action=(urls::connector_action(&connector.id, D::META.path)) data-dialog-form {
            input type="hidden" name="csrf" value=(caller.csrf);
            input type="hidden" name="request_id" value=(form.request_id());
            h2 #dialog-title { (heading) }
            (fields)
            @if let Some(failure) = failure { (failure_box(failure)) }
            @if let Some(note) = D::META.note { p.hint { (note) } }
            div.buttons {
                button.primary type="submit" { (D::META.submit) }
                button type="button" data-close { "Cancel" }
            }
        }
    };
    let status = failure.map_or(StatusCode::OK, ShownFailure::http_status);
    caller.page(status, dialog_or_page(caller, D::META.page_title, body))
}

/// The answer to a completed change: the script closes the dialog and
/// puts the row in place; without it, the connector's page.
fn done_response(caller: &Caller, done: &Done) -> Response {
    if !caller.fragment {
        return Redirect::to(&urls::connector(&done.connector.id)).into_response();
    }
    let mut response = caller.page(
        StatusCode::OK,
        rows_to_put(
            &done.message,
            std::slice::from_ref(&done.connector),
            caller.can_operate(),
        ),
    );
    Finish::Close.mark(&mut response);
    response
}

/// A dialog that shows only why it cannot be used.
pub fn refusal(caller: &Caller, title: &str, failure: &ShownFailure) -> Response {
    let body = closable(title, failure_box(failure));
    caller.page(failure.http_status(), dialog_or_page(caller, title, body))
}

/// A dialog's content with a title and a Close button.
fn closable(title: &str, body: Markup) -> Markup {
    html! {
        h2 #dialog-title { (title) }
        (body)
        div.buttons { button type="button" data-close { "Close" } }
    }
}

/// The script's dialog gets the content alone; a browser without it, a page.
pub fn dialog_or_page(caller: &Caller, title: &str, body: Markup) -> Markup {
    if caller.fragment {
        body
    } else {
        // A dialog opened as a page of its own: its form posts as a page
        // too (the script opens no dialog over it).
        layout(
            caller,
            title,
            Tab::None,
            html! { div.panel data-standalone { (body) } },
        )
    }
}

/// What a dialog says of the connector it is about.
pub fn facts(connector: &v1::Connector) -> Markup {
    html! {
        dl.facts {
            dt { "Connector" } dd { (connector.name) " " small.mono { (connector.id) } }
            dt { "Project" } dd { (connector.project_name) " " small.mono { (connector.project_id) } }
            dt { "State" } dd { (state_badge(connector)) }
            dt { "Kind" } dd { (kind_name(connector.kind)) }
        }
    }
}

/// A completed action: a message, and the rows to put in place.
pub fn rows_to_put(message: &str, connectors: &[v1::Connector], can_operate: bool) -> Markup {
    html! {
        div data-done {
            p.done { (message) }
            @for connector in connectors {
                template data-row=(connector.id) { table { tbody { (row(connector, can_operate)) } } }
            }
        }
    }
}
