//! What every handler of the console shares: the API services it calls,
//! the sessions, the refusal log, and the server's state (draining, the
//! store's health).

use super::caller::Caller;
use super::session::Sessions;
use super::sign_in;
use crate::api::{AgentApi, AuditApi, ConnectorApi};
use crate::proto::v1::{self, connector_service_server::ConnectorService};
use crate::store::FleetStore;
use crate::store::refusals::RefusalLog;
use axum::extract::State;
use std::sync::Arc;

/// How a handler receives the console.
pub type Shared<S> = State<Arc<Console<S>>>;

/// What the handlers share.
pub struct Console<S> {
    pub connectors: ConnectorApi<S>,
    pub agents: AgentApi<S>,
    pub audit: AuditApi<S>,
    pub sessions: Sessions,
    /// Refused cross-site requests are recorded here, as API refusals are.
    pub refusals: RefusalLog,
    /// Where the refusals are recorded.
    pub store: S,
    /// Served over TLS: cookies are Secure and links https.
    pub tls: bool,
    /// Turns true when the server drains: live streams end.
    pub draining: tokio::sync::watch::Receiver<bool>,
    /// The server's health service, read: the server checks its database
    /// every second and reports it here; live pages show what it says.
    pub health: tonic_health::server::HealthService,
    /// How fast each address may try sign-in tokens.
    pub sign_ins: sign_in::Throttle,
}

impl<S: FleetStore> Console<S> {
    /// The regions, for the Connector tab's selector and the Start
    /// dialog: ListRegions as `caller` (the API keeps no cache of them; a
    /// refusal or an outage shows none).
    pub async fn regions(&self, caller: &Caller) -> Vec<v1::Region> {
        ConnectorService::list_regions(&self.connectors, caller.request(v1::ListRegionsRequest {}))
            .await
            .map(|r| r.into_inner().regions)
            .unwrap_or_default()
    }
}
