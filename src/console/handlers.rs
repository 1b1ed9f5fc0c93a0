//! The console's HTTP handlers: each reads the session, calls the API
//! services with its principal, and renders what they answer.

use super::caller::Caller;
use super::failure::{ShownFailure, failure_box};
use super::filter::Filter;
use super::forms::{BulkForm, StartForm};
use super::pages;
use super::params::Params;
use super::sign_in::safe_next;
use super::state::{Console, Shared};
use crate::auth::Permission;
use crate::domain::{Actor, AuditAction, NewAuditEvent};
use crate::proto::v1::{
    self, agent_service_server::AgentService, audit_service_server::AuditService,
    connector_service_server::ConnectorService,
};
use crate::store::FleetStore;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::StreamExt;
use maud::Markup;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tonic::Status;

/// What a request without a usable session gets instead (boxed: a
/// response is large).
type Refused = Box<Response>;

/// The header the script sends when it wants a dialog's content rather
/// than a whole page.
const FRAGMENT: &str = "x-console-fragment";
/// Set on an answer that completed the dialog's action.
const DONE: &str = "x-console-done";
/// How long a browser waits before reconnecting a live stream.
const RECONNECT: Duration = Duration::from_secs(2);

fn is_fragment(headers: &HeaderMap) -> bool {
    headers.get(FRAGMENT).is_some_and(|v| v.as_bytes() == b"1")
}

impl<S: FleetStore> Console<S> {
    /// The caller of a page: its session; without an auth file a new
    /// anonymous one; else a redirect to the sign-in page.
    pub(super) fn viewer(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
        uri: &Uri,
    ) -> Result<Caller, Refused> {
        let fragment = is_fragment(headers);
        let cookie = headers.get(header::COOKIE).and_then(|v| v.to_str().ok());
        let signed_in = self.sessions.auth_enabled();
        if let Some(session) = self.sessions.from_cookie_header(cookie) {
            let csrf = self.sessions.csrf(&session);
            return Ok(Caller {
                session,
                csrf,
                peer,
                set_cookie: None,
                fragment,
                signed_in,
            });
        }
        if signed_in {
            let next = uri.path_and_query().map_or("/", |pq| pq.as_str());
            let target = format!("/login?{}", super::params::query(&[("next", next)]));
            if fragment {
                // The script follows it to the sign-in page.
                let mut response = StatusCode::UNAUTHORIZED.into_response();
                if let Ok(value) = HeaderValue::from_str(&target) {
                    response.headers_mut().insert(header::LOCATION, value);
                }
                return Err(Box::new(response));
            }
            return Err(Box::new(Redirect::to(&target).into_response()));
        }
        let (session, cookie) = self.sessions.create(crate::auth::Principal::anonymous());
        let csrf = self.sessions.csrf(&session);
        Ok(Caller {
            session,
            csrf,
            peer,
            set_cookie: Some(cookie),
            fragment,
            signed_in,
        })
    }

    /// The caller of a change: a session, and proof that the request comes
    /// from the console's own page (its CSRF token, and no foreign
    /// `Origin` or `Sec-Fetch-Site`). A refusal from a known session is
    /// audited under its principal, as a refused API call is.
    pub(super) async fn changer(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
        params: &Params,
        action: Option<AuditAction>,
        connector_id: &str,
    ) -> Result<Caller, Refused> {
        let fragment = is_fragment(headers);
        let cookie = headers.get(header::COOKIE).and_then(|v| v.to_str().ok());
        let Some(session) = self.sessions.from_cookie_header(cookie) else {
            let failure = ShownFailure::local(
                tonic::Code::Unauthenticated,
                "SESSION_REQUIRED",
                "no console session came with this request (it expired, you logged out, or it \
                 came from another site); reload the page and sign in again",
            );
            return Err(Box::new(pages::bare_failure(
                StatusCode::UNAUTHORIZED,
                &failure,
            )));
        };
        let token = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| params.get("csrf"));
        let problem = if !self.sessions.csrf_matches(&session, token) {
            Some("the request carries no valid CSRF token of this session")
        } else if cross_site(headers, self.tls) {
            Some("the request comes from another site (Origin / Sec-Fetch-Site)")
        } else {
            None
        };
        if let Some(problem) = problem {
            if let Some(action) = action {
                let actor = Actor {
                    principal: session.principal.name.clone(),
                    peer: peer.to_string(),
                };
                let message = format!("console: {problem}");
                let refusal = crate::domain::Refused {
                    code: "PERMISSION_DENIED",
                    reason: "CSRF_CHECK_FAILED",
                    message: &message,
                    reason_given: "",
                };
                let event = NewAuditEvent::refused(&actor, action, connector_id, "", refusal);
                self.refusals.record(&self.store, event).await;
            }
            tracing::warn!(principal = %session.principal.name, %peer, problem, "console request refused");
            let failure = ShownFailure::local(
                tonic::Code::PermissionDenied,
                "CSRF_CHECK_FAILED",
                &format!(
                    "refused: {problem}. Changes are accepted only from the console's own pages; \
                     reload the page and try again"
                ),
            );
            return Err(Box::new(pages::bare_failure(
                StatusCode::FORBIDDEN,
                &failure,
            )));
        }
        let csrf = self.sessions.csrf(&session);
        Ok(Caller {
            session,
            csrf,
            peer,
            set_cookie: None,
            fragment,
            signed_in: self.sessions.auth_enabled(),
        })
    }
}

/// Whether the browser says the request was made by another site.
fn cross_site(headers: &HeaderMap, tls: bool) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let scheme = if tls { "https" } else { "http" };
    origin != format!("{scheme}://{host}")
}

macro_rules! caller_or_return {
    ($result:expr) => {
        match $result {
            Ok(caller) => caller,
            Err(response) => return *response,
        }
    };
}
pub(super) use caller_or_return;

fn params(query: &Option<String>) -> Params {
    Params::parse(query.as_deref().unwrap_or(""))
}

pub(super) fn body_params(body: &Bytes) -> Params {
    Params::parse(&String::from_utf8_lossy(body))
}

/// GET /: the Connector tab.
pub async fn connectors<S: FleetStore>(
    State(c): Shared<S>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Response {
    let caller = caller_or_return!(c.viewer(&headers, peer, &uri));
    let filter = Filter::from_params(&params(&query));
    // The token is read before the page is listed: the live stream then
    // misses nothing the page does not show. The regions meanwhile.
    let page_and_token = async {
        let token = c
            .connectors
            .watch_token_now(caller.request(filter.proto()))
            .await;
        let list =
            ConnectorService::list_connectors(&c.connectors, caller.request(filter.list_request()))
                .await
                .map(tonic::Response::into_inner);
        (token, list)
    };
    let (regions, (token, list)) = tokio::join!(regions(&c, &caller), page_and_token);
    let status = match &list {
        Ok(_) => StatusCode::OK,
        Err(status) => ShownFailure::from(status).http_status(),
    };
    let view = pages::ConnectorsView {
        filter: &filter,
        regions,
        list: list.map_err(|status| ShownFailure::from(&status)),
        watch_token: token.ok(),
    };
    caller.page(status, pages::connectors(&caller, &view))
}

/// The regions for the selector: the cached list (refreshed in the
/// background once stale), read through ListRegions as `caller`.
async fn regions<S: FleetStore>(c: &Arc<Console<S>>, caller: &Caller) -> Vec<v1::Region> {
    let read = |c: Arc<Console<S>>, request| async move {
        let regions = ConnectorService::list_regions(&c.connectors, request)
            .await
            .map(|r| r.into_inner().regions);
        if let Ok(regions) = &regions {
            c.regions.put(regions.clone());
        }
        regions.unwrap_or_default()
    };
    let request = || caller.request(v1::ListRegionsRequest {});
    match c.regions.get() {
        None => read(c.clone(), request()).await,
        Some((regions, stale)) => {
            if stale && c.regions.begin_refresh() {
                let (c, request) = (c.clone(), request());
                tokio::spawn(async move {
                    read(c.clone(), request).await;
                    c.regions.end_refresh();
                });
            }
            regions
        }
    }
}

/// GET /events: the live stream of the Connector tab's filter, as
/// server-sent events (`row`: a connector's new row; `removed`: it left the
/// filter; `unavailable`, `expired`, `failure`, `ready`, `reload`). The
/// event id is the watch's resume token, so the browser's reconnection
/// (`Last-Event-ID`) resumes where it stopped.
pub async fn events<S: FleetStore>(
    State(c): Shared<S>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Response {
    let Ok(caller) = c.viewer(&headers, peer, &uri) else {
        // 204 ends the browser's reconnections; the script reloads the
        // page, which asks to sign in.
        return StatusCode::NO_CONTENT.into_response();
    };
    let params = params(&query);
    let filter = Filter::from_params(&params);
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| params.get("resume"))
        .to_owned();
    let watch = ConnectorService::watch_connectors(
        &c.connectors,
        caller.request(v1::WatchConnectorsRequest {
            filter: Some(filter.proto()),
            resume_token: resume,
        }),
    )
    .await;
    let retry = Event::default()
        .retry(RECONNECT)
        .comment("connector-control");
    let stream: futures_util::stream::BoxStream<'static, Event> = match watch {
        Err(status) => futures_util::stream::iter([retry, ending(&status)]).boxed(),
        Ok(response) => {
            let can_operate = caller.can_operate();
            let ready = Event::default().event("ready").data("live");
            let changes = response.into_inner().map(move |item| match item {
                Ok(event) => change_event(&event, can_operate),
                Err(status) => ending(&status),
            });
            // A session's stream ends when the session does: the page
            // reloads and asks to sign in again.
            let left = Duration::from_secs(
                caller
                    .session
                    .expires
                    .saturating_sub(chrono::Utc::now().timestamp().max(0) as u64),
            );
            let mut draining = c.draining.clone();
            let end = async move {
                tokio::select! {
                    () = tokio::time::sleep(left) => {}
                    _ = draining.wait_for(|d| *d) => {}
                }
            };
            let changes = futures_util::stream::select(changes, database_health(c.store.clone()));
            futures_util::stream::iter([retry, ready])
                .chain(changes.take_until(end))
                .chain(futures_util::stream::iter([Event::default()
                    .event("reload")
                    .data("session ended")]))
                .boxed()
        }
    };
    let mut response = caller.with_cookie(
        Sse::new(stream.map(Ok::<_, Infallible>))
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response(),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// How often a live page's stream checks the database, so that an outage
/// shows as a banner while nothing changes.
const HEALTH_EVERY: Duration = Duration::from_secs(5);

/// `unavailable` when the database stops answering, `ready` when it is
/// back.
fn database_health<S: FleetStore>(store: S) -> futures_util::stream::BoxStream<'static, Event> {
    futures_util::stream::unfold((store, true), |(store, healthy)| async move {
        loop {
            tokio::time::sleep(HEALTH_EVERY).await;
            let now = store.ping().await.is_ok();
            if now != healthy {
                let event = if now {
                    Event::default().event("ready").data("live")
                } else {
                    Event::default()
                        .event("unavailable")
                        .data("the control plane cannot reach its database; changes are not shown")
                };
                return Some((event, (store, now)));
            }
        }
    })
    .boxed()
}

fn change_event(event: &v1::WatchConnectorsResponse, can_operate: bool) -> Event {
    let kind = v1::WatchEventType::try_from(event.r#type).unwrap_or_default();
    let base = if event.resume_token.is_empty() {
        Event::default()
    } else {
        Event::default().id(event.resume_token.clone())
    };
    match (kind, &event.connector) {
        (v1::WatchEventType::Removed, Some(connector)) => {
            base.event("removed").data(connector.id.clone())
        }
        (_, Some(connector)) => base
            .event("row")
            .data(pages::row(connector, can_operate).into_string()),
        _ => base.event("progress").data("-"),
    }
}

/// The last event of a stream that ends with `status`.
fn ending(status: &Status) -> Event {
    let failure = ShownFailure::from(status);
    let kind = if failure.reason == "RESUME_TOKEN_EXPIRED"
        || failure
            .fields
            .iter()
            .any(|(field, _)| field == "resume_token")
    {
        "expired"
    } else if status.code() == tonic::Code::Unavailable {
        "unavailable"
    } else {
        "failure"
    };
    Event::default()
        .event(kind)
        .data(failure.one_line().replace(['\n', '\r'], " "))
}

/// GET /connectors/{id}: one connector, its commands and audit trail.
pub async fn connector<S: FleetStore>(
    State(c): Shared<S>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    let caller = caller_or_return!(c.viewer(&headers, peer, &uri));
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
                ShownFailure::from(&status).http_status(),
                pages::failure_page(&caller, "Connector", &failure),
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
    .map_err(|s| ShownFailure::from(&s));
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
    .map_err(|s| ShownFailure::from(&s));
    caller.page(
        StatusCode::OK,
        pages::connector_page(&caller, &connector, commands, audit),
    )
}

/// GET /connectors/{id}/start: the Start dialog.
pub async fn start_dialog<S: FleetStore>(
    State(c): Shared<S>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    let caller = caller_or_return!(c.viewer(&headers, peer, &uri));
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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let params = body_params(&body);
    let caller = caller_or_return!(
        c.changer(
            &headers,
            peer,
            &params,
            Some(AuditAction::StartConnector),
            &id
        )
        .await
    );
    let form = StartForm::from_params(&params);
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
                    .map(|t| format!(", pulled back to {}", pages::time_text(&t)))
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
        return Redirect::to(&format!(
            "/connectors/{}",
            pages::path_segment(&connector.id)
        ))
        .into_response();
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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    let caller = caller_or_return!(c.viewer(&headers, peer, &uri));
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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let params = body_params(&body);
    let caller = caller_or_return!(
        c.changer(
            &headers,
            peer,
            &params,
            Some(AuditAction::PauseConnector),
            &id
        )
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

/// POST /bulk: `step=review` runs the batch call as a dry run and shows
/// what it would do, with the guard (`max_connectors`) to confirm;
/// `step=commit` runs it and shows each connector's result.
pub async fn bulk<S: FleetStore>(
    State(c): Shared<S>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = body_params(&body);
    let form = BulkForm::from_params(&params);
    let action = if form.pause {
        AuditAction::PauseConnector
    } else {
        AuditAction::StartConnector
    };
    let caller = caller_or_return!(c.changer(&headers, peer, &params, Some(action), "").await);
    let commit = params.get("step") == "commit";
    let title = if form.pause {
        "Pause connectors"
    } else {
        "Start connectors"
    };
    if form.ids.is_empty() && !form.all_matching {
        let failure = ShownFailure::local(
            tonic::Code::InvalidArgument,
            "NOTHING_SELECTED",
            "select connectors with the boxes in the first column, or tick \"all matching\"",
        );
        let body = pages::closable(title, failure_box(&failure));
        return caller.page(
            StatusCode::UNPROCESSABLE_ENTITY,
            pages::dialog_or_page(&caller, title, body),
        );
    }
    let pull_back_time = match form.start.pull_back_time() {
        Ok(time) => time,
        Err(failure) => {
            let body = pages::bulk_review(&caller, &form, None, Some(&failure));
            return caller.page(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::dialog_or_page(&caller, title, body),
            );
        }
    };
    let (filter, ids) = if form.all_matching {
        (Some(form.filter.proto()), Vec::new())
    } else {
        (None, form.ids.clone())
    };
    let result = if form.pause {
        ConnectorService::batch_pause_connectors(
            &c.connectors,
            caller.request(v1::BatchPauseConnectorsRequest {
                filter,
                ids,
                reason: form.reason.clone(),
                request_id: form.request_id.clone(),
                validate_only: !commit,
                max_connectors: form.max_connectors,
            }),
        )
        .await
    } else {
        ConnectorService::batch_start_connectors(
            &c.connectors,
            caller.request(v1::BatchStartConnectorsRequest {
                filter,
                ids,
                skip_to_earliest: form.start.skip_to_earliest && pull_back_time.is_none(),
                pull_back_time,
                region: form.start.region.clone(),
                request_id: form.request_id.clone(),
                validate_only: !commit,
                max_connectors: form.max_connectors,
            }),
        )
        .await
    };
    let (status, body) = match result {
        Ok(response) => {
            let response = response.into_inner();
            if commit {
                (
                    StatusCode::OK,
                    pages::bulk_results(&caller, &form, &response),
                )
            } else {
                (
                    StatusCode::OK,
                    pages::bulk_review(&caller, &form, Some(&response), None),
                )
            }
        }
        Err(status) => {
            let failure = ShownFailure::from(&status);
            (
                ShownFailure::from(&status).http_status(),
                pages::bulk_review(&caller, &form, None, Some(&failure)),
            )
        }
    };
    let mut response = caller.page(status, pages::dialog_or_page(&caller, title, body));
    if commit && status == StatusCode::OK {
        response
            .headers_mut()
            .insert(DONE, HeaderValue::from_static("keep"));
    }
    response
}

/// GET /agents: agents by region, and the control-plane replicas.
pub async fn agents<S: FleetStore>(
    State(c): Shared<S>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let caller = caller_or_return!(c.viewer(&headers, peer, &uri));
    let agents =
        AgentService::list_agents(&c.agents, caller.request(v1::ListAgentsRequest::default()))
            .await
            .map(|r| r.into_inner().agents)
            .map_err(|s| ShownFailure::from(&s));
    let replicas =
        AgentService::list_replicas(&c.agents, caller.request(v1::ListReplicasRequest {}))
            .await
            .map(|r| r.into_inner().replicas)
            .map_err(|s| ShownFailure::from(&s));
    caller.page(StatusCode::OK, pages::agents(&caller, agents, replicas))
}

/// GET /audit: who did what, filterable by principal and connector.
pub async fn audit<S: FleetStore>(
    State(c): Shared<S>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Response {
    let caller = caller_or_return!(c.viewer(&headers, peer, &uri));
    let params = params(&query);
    let filter = pages::AuditFilter {
        principal: params.get("principal").to_owned(),
        connector_id: params.get("connector_id").to_owned(),
        page: params.get("page").to_owned(),
    };
    let events = AuditService::list_audit_events(
        &c.audit,
        caller.request(v1::ListAuditEventsRequest {
            connector_id: filter.connector_id.clone(),
            principal: filter.principal.clone(),
            page_size: 50,
            page_token: filter.page.clone(),
            ..Default::default()
        }),
    )
    .await
    .map(tonic::Response::into_inner)
    .map_err(|s| ShownFailure::from(&s));
    caller.page(StatusCode::OK, pages::audit(&caller, &filter, events))
}

/// GET /login.
pub async fn login_page<S: FleetStore>(State(c): Shared<S>, RawQuery(query): RawQuery) -> Response {
    if !c.sessions.auth_enabled() {
        return Redirect::to("/").into_response();
    }
    let next = safe_next(params(&query).get("next"));
    (StatusCode::OK, pages::login(&next, None)).into_response()
}

/// POST /login: the token, as the API authenticates it.
pub async fn login<S: FleetStore>(
    State(c): Shared<S>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = body_params(&body);
    let next = safe_next(params.get("next"));
    if !c.sessions.auth_enabled() {
        return Redirect::to(&next).into_response();
    }
    if cross_site(&headers, c.tls) {
        let failure = ShownFailure::local(
            tonic::Code::PermissionDenied,
            "CSRF_CHECK_FAILED",
            "sign in from the console's own page",
        );
        return (StatusCode::FORBIDDEN, pages::login(&next, Some(&failure))).into_response();
    }
    // Every attempt counts against its address, before the token is
    // looked at: tokens cannot be tried faster than the throttle allows.
    if let Err(wait) = c.sign_ins.attempt(peer.ip()) {
        let seconds = wait.as_secs().max(1);
        tracing::warn!(%peer, "sign-in attempts throttled");
        let failure = ShownFailure::local(
            tonic::Code::ResourceExhausted,
            "TOO_MANY_SIGN_INS",
            &format!(
                "too many sign-in attempts from {}: try again in {seconds} s",
                peer.ip()
            ),
        );
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            pages::login(&next, Some(&failure)),
        )
            .into_response();
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let mut metadata = tonic::metadata::MetadataMap::new();
    if let Ok(value) = format!("Bearer {}", params.get("token")).parse() {
        metadata.insert("authorization", value);
    }
    let principal =
        match c
            .sessions
            .authenticator()
            .authenticate_call(&metadata, &[], Some(peer.ip()))
        {
            Ok(principal) => principal,
            Err(error) => {
                let status = Status::from(crate::api::ApiError::from(error));
                let failure = ShownFailure::from(&status);
                return (
                    StatusCode::UNAUTHORIZED,
                    pages::login(&next, Some(&failure)),
                )
                    .into_response();
            }
        };
    if !principal.allows(Permission::ConnectorsRead) {
        let failure = ShownFailure::local(
            tonic::Code::PermissionDenied,
            "PERMISSION_DENIED",
            &format!(
                "principal {} (role {}) may not use the console: it needs permission \
                 connectors.read (roles viewer, operator or admin)",
                principal.name,
                principal.role.as_str()
            ),
        );
        return (StatusCode::FORBIDDEN, pages::login(&next, Some(&failure))).into_response();
    }
    tracing::info!(principal = %principal.name, %peer, "console sign-in");
    let (_, cookie) = c.sessions.create(principal);
    let mut response = Redirect::to(&next).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// POST /logout.
pub async fn logout<S: FleetStore>(
    State(c): Shared<S>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = body_params(&body);
    let caller = caller_or_return!(c.changer(&headers, peer, &params, None, "").await);
    c.sessions.end(&caller.session);
    let target = if c.sessions.auth_enabled() {
        "/login"
    } else {
        "/"
    };
    let mut response = Redirect::to(target).into_response();
    if let Ok(value) = HeaderValue::from_str(&c.sessions.clear_cookie()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
}

pub async fn style() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    )
}

/// GET /favicon.ico: the console's icon (browsers ask for it on every
/// page), an SVG of a connector.
pub async fn favicon() -> Response {
    asset(
        "image/svg+xml",
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
         <rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#0b5cad\"/>\
         <path d=\"M3 8h4M9 8h4M7 5v6M9 5v6\" stroke=\"#fff\" stroke-width=\"2\"/></svg>",
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub async fn not_found() -> Response {
    let failure = ShownFailure::local(
        tonic::Code::NotFound,
        "NOT_FOUND",
        "no such page in the console",
    );
    pages::bare_failure(StatusCode::NOT_FOUND, &failure)
}

/// Headers on every answer: no framing, no foreign scripts or styles, no
/// sniffing, pages not cached.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
