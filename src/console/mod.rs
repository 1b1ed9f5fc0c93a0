//! The web console: the Connector, Agents and Audit tabs, served over HTTP
//! by the same process and through the same service layer as the gRPC API.
//!
//! Every handler calls the API services (`ConnectorApi`, `AgentApi`,
//! `AuditApi`) as a gRPC call would, with the session's principal in the
//! request: permissions, validation, rate limits, audit and idempotency are
//! theirs, and a refusal reaches the page as the API's reason and message.
//! Pages are rendered on the server (maud); a small embedded script opens
//! dialogs, posts their forms and follows `WatchConnectors` through
//! server-sent events, replacing rows as connectors change. Nothing is
//! fetched from elsewhere: the script and the style sheet are inside the
//! binary.
//!
//! Module map:
//! - here: the router and `serve`; `listener`: the accept loop and bounds
//!   the gRPC port uses; `state`: what every handler shares (`Console`).
//! - who asks: `access` (a page's viewer, a change's caller with its CSRF
//!   check, as handler arguments), `caller` (the caller, and API requests
//!   on its behalf), `session` and `sign_in` (cookies, CSRF tokens, where a
//!   sign-in may lead, its throttle).
//! - pages, each with its handler and markup: `connectors_tab`,
//!   `connector_page`, `agents_tab`, `audit_tab`, `login`; `live`: the
//!   Connector tab's server-sent events.
//! - changes: `dialog` (the frame every connector dialog shares) with
//!   `start`, `pause`, `mark_stopped`, `restart_policy`; `bulk`; and
//!   `actions`, where a start or a pause, one or many, is made (one
//!   function each).
//! - what requests say: `params`, `forms`, `filter`; what pages show:
//!   `layout`, `row`, `format`, `urls`, `failure`, `words`; `contract`: the
//!   names the script shares with the server; `assets`: the script, style
//!   sheet, icon and security headers.

mod access;
mod actions;
mod agents_tab;
mod assets;
mod audit_tab;
mod bulk;
mod caller;
mod connector_page;
mod connectors_tab;
mod contract;
mod dialog;
mod failure;
mod filter;
mod format;
mod forms;
mod layout;
mod listener;
mod live;
mod login;
mod mark_stopped;
mod params;
mod pause;
mod restart_policy;
mod row;
mod session;
mod sign_in;
mod start;
mod state;
mod urls;
mod words;

pub use listener::ConsoleListener;
pub use session::Sessions;
pub use state::Console;

use crate::store::FleetStore;
use axum::Router;
use axum::routing::{get, post};
use mark_stopped::MarkStopped;
use pause::Pause;
use restart_policy::RestartPolicy;
use start::Start;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Where and how `serve` serves the console.
#[derive(Clone, Debug)]
pub struct ConsoleOptions {
    /// Already bound (so that a test can use port 0, and a taken port
    /// fails the start-up, not later).
    pub listener: Arc<std::net::TcpListener>,
    /// How long a sign-in lasts.
    pub session_ttl: Duration,
    /// A connection with no traffic either way for this long is closed.
    pub idle_timeout: Duration,
    /// TLS for the console (no client certificates: people sign in with
    /// their token); None serves plain HTTP.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

fn router<S: FleetStore>(console: Arc<Console<S>>) -> Router {
    Router::new()
        .route("/", get(connectors_tab::page::<S>))
        .route("/events", get(live::events::<S>))
        .route("/connectors/{id}", get(connector_page::page::<S>))
        .route(&dialog::pattern::<Start>(), dialog::methods::<S, Start>())
        .route(&dialog::pattern::<Pause>(), dialog::methods::<S, Pause>())
        .route(
            &dialog::pattern::<MarkStopped>(),
            dialog::methods::<S, MarkStopped>(),
        )
        .route(
            &dialog::pattern::<RestartPolicy>(),
            dialog::methods::<S, RestartPolicy>(),
        )
        .route("/bulk", post(bulk::submit::<S>))
        .route("/agents", get(agents_tab::page::<S>))
        .route("/audit", get(audit_tab::page::<S>))
        .route(
            "/login",
            get(login::login_page::<S>).post(login::login::<S>),
        )
        .route("/logout", post(login::logout::<S>))
        .route("/assets/console.js", get(assets::script))
        .route("/assets/console.css", get(assets::style))
        .route("/favicon.ico", get(assets::favicon))
        .fallback(assets::not_found)
        .layer(axum::middleware::map_response(assets::security_headers))
        .with_state(console)
}

/// Serves the console until `stop` is cancelled, then lets open requests
/// finish (live streams end when the server drains).
pub async fn serve<S: FleetStore>(
    options: ConsoleOptions,
    console: Console<S>,
    limits: crate::connections::ConnectionLimits,
    stop: CancellationToken,
) {
    let listener = match options.listener.try_clone().and_then(|listener| {
        listener.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(listener)
    }) {
        Ok(listener) => listener,
        Err(error) => {
            warn!(%error, "the console listener is unusable; the console is not served");
            return;
        }
    };
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |addr| addr.to_string());
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    info!(addr = %addr, url = %format!("{scheme}://{addr}/"), "serving the console");
    let app = router(Arc::new(console)).into_make_service_with_connect_info::<SocketAddr>();
    let listener = ConsoleListener::new(listener, options.tls, limits, options.idle_timeout);
    use axum::serve::ListenerExt;
    let result = axum::serve(listener.tap_io(|_| {}), app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(error) = result {
        warn!(%error, "the console stopped");
    }
}
