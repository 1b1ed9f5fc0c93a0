//! The ConnectorService's state and how it is built: the store, the
//! signals, the limits and the settings every RPC body reads. The bodies
//! are in their topic files; `service.rs` lists them.

use super::{limits, watch_limits};
use crate::auth;
use crate::domain::PageTokenCodec;
use crate::fleet::Signals;
use crate::store::FleetStore;
use std::time::Duration;
use tokio::sync::watch;

/// The ConnectorService implementation over any `Store`.
#[derive(Clone, Debug)]
pub struct ConnectorApi<S> {
    pub(super) store: S,
    pub(super) tokens: PageTokenCodec,
    pub(super) max_wait: Duration,
    pub(super) draining: watch::Receiver<bool>,
    pub(super) signals: Signals,
    pub(super) offline_after: Duration,
    pub(super) limiter: limits::MutationLimiter,
    pub(super) latency_alert: Duration,
    /// `wait` calls are checked again against it at every reload.
    pub(super) auth: auth::Authenticator,
    /// Refused calls, aggregated for the audit trail.
    pub(super) refusals: crate::store::refusals::RefusalLog,
    /// The change feed watch streams read.
    pub(super) feed: crate::fleet::feed::Feed,
    /// How long a watch stream's full buffer waits for its reader.
    pub(super) watch_grace: Duration,
    /// Caps on open watches, and their turns at the database.
    pub(super) watch_limits: watch_limits::WatchLimits,
}

impl<S: FleetStore> ConnectorApi<S> {
    /// `max_wait` bounds a `wait: true` call that carries no deadline of
    /// its own; `draining` turning true ends every wait at once, so that a
    /// shutdown is not held up by calls waiting for agents.
    /// `signals` wakes the dispatcher after each accepted command and tells
    /// waiting calls about completions; `offline_after` is the agents'
    /// liveness bound, for ListRegions.
    pub fn new(
        store: S,
        tokens: PageTokenCodec,
        max_wait: Duration,
        draining: watch::Receiver<bool>,
        signals: Signals,
        offline_after: Duration,
    ) -> Self {
        Self {
            store,
            tokens,
            max_wait,
            draining,
            signals,
            offline_after,
            limiter: limits::MutationLimiter::default(),
            latency_alert: crate::defaults::duration(crate::defaults::LATENCY_ALERT),
            auth: auth::Authenticator::open(),
            refusals: Default::default(),
            feed: crate::fleet::feed::Feed::new(crate::defaults::WATCH_FEED_CAPACITY),
            watch_grace: crate::defaults::duration(crate::defaults::WATCH_GRACE),
            watch_limits: Default::default(),
        }
    }

    /// Caps on open watches, and how many read the database at once.
    pub fn with_watch_limits(mut self, limits: watch_limits::WatchLimits) -> Self {
        self.watch_limits = limits;
        self
    }

    /// Where refused calls are recorded (shared with the agent sessions).
    pub fn with_refusals(mut self, refusals: crate::store::refusals::RefusalLog) -> Self {
        self.refusals = refusals;
        self
    }

    /// Ends `wait` calls of principals a reload of `auth` revokes.
    pub fn with_auth(mut self, auth: auth::Authenticator) -> Self {
        self.auth = auth;
        self
    }

    /// Connectors reporting more latency than this are flagged as lagging.
    pub fn with_latency_alert(mut self, alert: Duration) -> Self {
        self.latency_alert = alert;
        self
    }

    /// The change feed watch streams read (`serve` passes the fleet's), and
    /// how long a watcher's full buffer waits for it before its stream
    /// ends.
    pub fn with_watch(mut self, feed: crate::fleet::feed::Feed, grace: Duration) -> Self {
        self.feed = feed;
        self.watch_grace = grace;
        self
    }

    /// Limits each principal's changes (create, start, pause).
    pub fn with_limiter(mut self, limiter: limits::MutationLimiter) -> Self {
        self.limiter = limiter;
        self
    }
}
