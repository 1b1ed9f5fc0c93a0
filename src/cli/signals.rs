//! The process signals the long-running commands listen for: SIGINT and
//! SIGTERM stop them, SIGHUP reloads `serve`'s auth file.

use crate::auth::Authenticator;
use tracing::info;

/// Reloads the auth file on each SIGHUP; calls and streams in progress are
/// not touched, and a bad file leaves the principals in force.
pub(super) async fn reload_on_sighup(auth: Authenticator) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGHUP; the auth file will not be reloaded");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        match auth.reload() {
            Ok(principals) => info!(principals, "auth file reloaded"),
            Err(error) => {
                tracing::error!(%error, "auth file not reloaded; the previous principals stay in force");
            }
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what orchestrators send).
pub(super) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("received SIGINT"),
        _ = terminate.recv() => info!("received SIGTERM"),
    }
}
