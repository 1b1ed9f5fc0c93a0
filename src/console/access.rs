//! Who a request comes from, checked once for every handler: a page's
//! viewer (its session; without an auth file a new anonymous one; else the
//! way to the sign-in page), and a change's caller, who must also prove
//! that the request comes from the console's own page (its CSRF token, no
//! foreign `Origin` or `Sec-Fetch-Site`). A refused change is audited as a
//! refused API call is.

use super::caller::Caller;
use super::contract;
use super::failure::ShownFailure;
use super::layout::bare_failure;
use super::params::Params;
use super::session::Session;
use super::state::Console;
use crate::domain::{Actor, AuditAction, NewAuditEvent};
use crate::proto::v1::ErrorReason;
use crate::store::FleetStore;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use std::net::SocketAddr;
use std::sync::Arc;

/// What a request without a usable session gets instead (boxed: a
/// response is large).
pub type Refused = Box<Response>;

/// The caller of a page, as a handler's argument: a request without a
/// session is answered with the way to the sign-in page instead.
pub struct Viewer(pub Caller);

impl<S: FleetStore> FromRequestParts<Arc<Console<S>>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console<S>>,
    ) -> Result<Self, Response> {
        let peer = peer(&parts.extensions).map_err(|refused| *refused)?;
        console
            .viewer(&parts.headers, peer, &parts.uri)
            .map(Viewer)
            .map_err(|refused| *refused)
    }
}

/// A posted form, as a handler's argument: what `Console::changer` checks
/// and the form's fields.
pub struct Posted {
    pub headers: HeaderMap,
    pub peer: SocketAddr,
    pub params: Params,
}

impl<S: Send + Sync> FromRequest<S> for Posted {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let peer = peer(request.extensions()).map_err(|refused| *refused)?;
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Posted {
            headers,
            peer,
            params: Params::parse(&String::from_utf8_lossy(&body)),
        })
    }
}

/// The browser's address (the console is served with connect info; a
/// request without it is a bug, answered 500).
fn peer(extensions: &axum::http::Extensions) -> Result<SocketAddr, Refused> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer)
        .ok_or_else(|| Box::new(StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

fn is_fragment(headers: &HeaderMap) -> bool {
    headers
        .get(contract::FRAGMENT_HEADER)
        .is_some_and(|v| v.as_bytes() == contract::FRAGMENT_VALUE.as_bytes())
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::COOKIE).and_then(|v| v.to_str().ok())
}

impl<S: FleetStore> Console<S> {
    fn caller(
        &self,
        session: Session,
        headers: &HeaderMap,
        peer: SocketAddr,
        set_cookie: Option<String>,
    ) -> Caller {
        Caller {
            csrf: self.sessions.csrf(&session),
            session,
            peer,
            set_cookie,
            fragment: is_fragment(headers),
            signed_in: self.sessions.auth_enabled(),
        }
    }

    /// The caller of a page: its session; without an auth file a new
    /// anonymous one; else a redirect to the sign-in page.
    pub fn viewer(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
        uri: &Uri,
    ) -> Result<Caller, Refused> {
        if let Some(session) = self.sessions.from_cookie_header(cookie(headers)) {
            return Ok(self.caller(session, headers, peer, None));
        }
        if self.sessions.auth_enabled() {
            let next = uri.path_and_query().map_or("/", |pq| pq.as_str());
            let target = format!("/login?{}", super::params::query(&[("next", next)]));
            if is_fragment(headers) {
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
        Ok(self.caller(session, headers, peer, Some(cookie)))
    }

    /// The caller of a change: a session, and proof that the request comes
    /// from the console's own page (its CSRF token, and no foreign
    /// `Origin` or `Sec-Fetch-Site`). A refusal from a known session is
    /// audited under its principal, as a refused API call is.
    pub async fn changer(
        &self,
        posted: &Posted,
        action: Option<AuditAction>,
        connector_id: &str,
    ) -> Result<Caller, Refused> {
        let Posted {
            headers,
            peer,
            params,
        } = posted;
        let Some(session) = self.sessions.from_cookie_header(cookie(headers)) else {
            let failure = ShownFailure::local(
                tonic::Code::Unauthenticated,
                ErrorReason::SessionRequired,
                "no console session came with this request (it expired, you logged out, or it \
                 came from another site); reload the page and sign in again",
            );
            return Err(Box::new(bare_failure(&failure)));
        };
        let token = headers
            .get(contract::CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| params.get("csrf"));
        let problem = if !self.sessions.csrf_matches(&session, token) {
            Some("the request carries no valid CSRF token of this session")
        } else if cross_site(headers, self.tls) {
            Some("the request comes from another site (Origin / Sec-Fetch-Site)")
        } else {
            None
        };
        let Some(problem) = problem else {
            return Ok(self.caller(session, headers, *peer, None));
        };
        let failure = ShownFailure::local(
            tonic::Code::PermissionDenied,
            ErrorReason::CsrfCheckFailed,
            &format!(
                "refused: {problem}. Changes are accepted only from the console's own pages; \
                 reload the page and try again"
            ),
        );
        if let Some(action) = action {
            let actor = Actor {
                principal: session.principal.name.clone(),
                peer: peer.to_string(),
            };
            let message = format!("console: {problem}");
            let refusal = crate::domain::Refused {
                code: failure.code_name(),
                reason: &failure.reason,
                message: &message,
                reason_given: "",
            };
            let event = NewAuditEvent::refused(&actor, action, connector_id, "", refusal);
            self.refusals.record(&self.store, event).await;
        }
        tracing::warn!(principal = %session.principal.name, %peer, problem, "console request refused");
        Err(Box::new(bare_failure(&failure)))
    }
}

/// Whether the browser says the request was made by another site.
pub fn cross_site(headers: &HeaderMap, tls: bool) -> bool {
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

/// The caller a `Console::changer` result holds, or the refusal returned.
macro_rules! caller_or_return {
    ($result:expr) => {
        match $result {
            Ok(caller) => caller,
            Err(refused) => return *refused,
        }
    };
}
pub(super) use caller_or_return;
