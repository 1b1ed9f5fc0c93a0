//! Signing in and out: the sign-in page (GET /login), the token checked
//! as the API checks it (POST /login, throttled per address and refused
//! from another site), and logging out (POST /logout).

use super::access::{Posted, caller_or_return, cross_site};
use super::failure::{ShownFailure, failure_box};
use super::layout::document;
use super::params::Query;
use super::sign_in::safe_next;
use super::state::Shared;
use crate::auth::Permission;
use crate::proto::v1::ErrorReason;
use crate::store::FleetStore;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use tonic::Status;

/// GET /login.
pub async fn login_page<S: FleetStore>(State(c): Shared<S>, Query(query): Query) -> Response {
    if !c.sessions.auth_enabled() {
        return Redirect::to("/").into_response();
    }
    let next = safe_next(query.get("next"));
    (StatusCode::OK, markup(&next, None)).into_response()
}

/// POST /login: the token, as the API authenticates it.
pub async fn login<S: FleetStore>(State(c): Shared<S>, posted: Posted) -> Response {
    let Posted {
        headers,
        peer,
        params,
    } = &posted;
    let next = safe_next(params.get("next"));
    if !c.sessions.auth_enabled() {
        return Redirect::to(&next).into_response();
    }
    if cross_site(headers, c.tls) {
        let failure = ShownFailure::local(
            tonic::Code::PermissionDenied,
            ErrorReason::CsrfCheckFailed,
            "sign in from the console's own page",
        );
        return refused(&next, &failure);
    }
    // Every attempt counts against its address, before the token is
    // looked at: tokens cannot be tried faster than the throttle allows.
    if let Err(wait) = c.sign_ins.attempt(peer.ip()) {
        let seconds = wait.as_secs().max(1);
        tracing::warn!(%peer, "sign-in attempts throttled");
        let failure = ShownFailure::local(
            tonic::Code::ResourceExhausted,
            ErrorReason::TooManySignIns,
            &format!(
                "too many sign-in attempts from {}: try again in {seconds} s",
                peer.ip()
            ),
        );
        let mut response = refused(&next, &failure);
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
                return (StatusCode::UNAUTHORIZED, markup(&next, Some(&failure))).into_response();
            }
        };
    if !principal.allows(Permission::ConnectorsRead) {
        let failure = ShownFailure::local(
            tonic::Code::PermissionDenied,
            ErrorReason::PermissionDenied,
            &format!(
                "principal {} (role {}) may not use the console: it needs permission \
                 connectors.read (roles viewer, operator or admin)",
                principal.name,
                principal.role.as_str()
            ),
        );
        return refused(&next, &failure);
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
pub async fn logout<S: FleetStore>(State(c): Shared<S>, posted: Posted) -> Response {
    let caller = caller_or_return!(c.changer(&posted, None, "").await);
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

/// The sign-in page again, with why the sign-in was refused.
fn refused(next: &str, failure: &ShownFailure) -> Response {
    (failure.http_status(), markup(next, Some(failure))).into_response()
}

fn markup(next: &str, failure: Option<&ShownFailure>) -> Markup {
    let body = html! {
                main #main .login {
                    h1 { "connector-control" }
                    form.panel method="post" action="/login" {
                        input type="hidden" name="next" value=(next);
                        div.field {
                            label for="token" { "Token" }
                            input #token type="password" name="token" required autocomplete="current-password" autofocus
                                aria-describedby="token-hint";
                            p.hint #token-hint { "The bearer token you use with grpcurl or the CLI; the same roles apply." }
                        }
                        @if let Some(failure) = failure { (failure_box(failure)) }
                        div.buttons { button.primary type="submit" { "Sign in" } }
                    }
                }
    };
    document("Sign in", None, body)
}
