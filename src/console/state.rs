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
use std::time::Duration;

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
    pub store: S,
    /// Served over TLS: cookies are Secure and links https.
    pub tls: bool,
    /// Turns true when the server drains: live streams end.
    pub draining: tokio::sync::watch::Receiver<bool>,
    /// The server's health service, read: the server checks its database
    /// every second and reports it here; live pages show what it says.
    pub health: tonic_health::server::HealthService,
    /// The region selector's list, read at most every `REGIONS_FRESH`.
    pub regions: RegionCache,
    /// How fast each address may try sign-in tokens.
    pub sign_ins: sign_in::Throttle,
}

/// How long the region list is shown without being read again. Counting
/// connectors by region reads the whole table (tens of milliseconds at a
/// million connectors); regions come and go far more slowly than that.
const REGIONS_FRESH: Duration = Duration::from_secs(15);

/// The regions as last read, and when; refreshed in the background once
/// stale, so that no page waits for the count.
#[derive(Default)]
pub struct RegionCache {
    last: std::sync::Mutex<Option<(tokio::time::Instant, Vec<crate::proto::v1::Region>)>>,
    refreshing: std::sync::atomic::AtomicBool,
}

impl RegionCache {
    /// The cached list if there is one (and whether it is stale).
    pub fn get(&self) -> Option<(Vec<crate::proto::v1::Region>, bool)> {
        let last = self.last.lock().unwrap();
        last.as_ref()
            .map(|(at, regions)| (regions.clone(), at.elapsed() > REGIONS_FRESH))
    }

    pub fn put(&self, regions: Vec<crate::proto::v1::Region>) {
        *self.last.lock().unwrap() = Some((tokio::time::Instant::now(), regions));
    }

    /// True for the one caller that is to refresh the list.
    pub fn begin_refresh(&self) -> bool {
        !self
            .refreshing
            .swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    pub fn end_refresh(&self) {
        self.refreshing
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

impl<S: FleetStore> Console<S> {
    /// The regions for the selector: the cached list (refreshed in the
    /// background once stale), read through ListRegions as `caller`.
    pub async fn regions(self: &Arc<Self>, caller: &Caller) -> Vec<v1::Region> {
        let read = |c: Arc<Self>, request| async move {
            let regions = ConnectorService::list_regions(&c.connectors, request)
                .await
                .map(|r| r.into_inner().regions);
            if let Ok(regions) = &regions {
                c.regions.put(regions.clone());
            }
            regions.unwrap_or_default()
        };
        let request = || caller.request(v1::ListRegionsRequest {});
        match self.regions.get() {
            None => read(self.clone(), request()).await,
            Some((regions, stale)) => {
                if stale && self.regions.begin_refresh() {
                    let (c, request) = (self.clone(), request());
                    tokio::spawn(async move {
                        read(c.clone(), request).await;
                        c.regions.end_refresh();
                    });
                }
                regions
            }
        }
    }
}
