//! Agent sessions on this replica: the registry of connected agents, command
//! dispatch, coalesced heartbeats, and this replica's part among several:
//! wake-ups to and from the others, its own heartbeat, and the leader-only
//! work (liveness sweep, expiry of stuck deliveries) while it holds the
//! lease.
//!
//! Each session is one task (`api::session`, which serves the stream) that
//! `select!`s over the agent's messages and cancellation tokens registered
//! here; commands reach it through a small bounded channel, and a full
//! channel (a slow agent) only means the command waits in the database for
//! the next dispatch round. Nothing here blocks on an agent.
//!
//! Delivery never depends on a wake-up arriving: every replica polls for
//! pending commands each `poll_interval`, and wake-ups (in-process when the
//! target agent is here, LISTEN/NOTIFY otherwise) only make it sooner.
//!
//! This file holds the registry of local sessions; `dispatch.rs` hands
//! commands to them, `heartbeats.rs` writes what they report,
//! `replicas.rs` is this replica's part among the others (and the
//! leader's work), `signals.rs` how the parts wake each other.

use crate::domain::{Session, SessionEnd};
use crate::proto::v1::ControlMessage;
use crate::store::refusals::RefusalLog;
use crate::store::{FleetStore, PendingHeartbeat, Wakeup};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

mod dispatch;
pub mod feed;
mod heartbeats;
mod replicas;
mod signals;

use heartbeats::QueuedStatuses;
use signals::Outgoing;
pub use signals::Signals;

/// An agent is offline after this many missed heartbeats.
pub const MISSED_HEARTBEATS: u32 = 4;

/// The leader lease and a replica's heartbeat row go stale after this many
/// heartbeat intervals.
pub const MISSED_REPLICA_HEARTBEATS: u32 = 3;

/// How this replica serves agents and works with the other replicas.
#[derive(Clone, Debug)]
pub struct FleetOptions {
    /// How often agents send heartbeats (and this replica its own).
    pub heartbeat_interval: Duration,
    /// How often pending commands are looked for without a wake-up: the
    /// bound on delivery delay when every wake-up is lost.
    pub poll_interval: Duration,
    /// No LISTEN/NOTIFY (a database or pooler without it): polling only.
    pub poll_only: bool,
    /// Agent streams older than this (plus or minus 10%) are asked to
    /// reconnect, so that agents spread over replicas added later.
    pub max_stream_age: Option<Duration>,
    /// A delivered command unanswered this long is delivered again.
    pub delivery_timeout: Duration,
    /// Where this replica serves, as recorded for operators.
    pub address: String,
    /// How often the leader looks for failed connectors to start again
    /// (automatic starts are due to the second).
    pub restart_interval: Duration,
    /// How often the change feed looks for new changes (a watcher hears of
    /// a change within about this long).
    pub watch_poll_interval: Duration,
    /// How long recorded changes are kept for watchers to resume.
    pub watch_retention: Duration,
    /// How long a watch stream's full buffer waits for its reader before
    /// the stream ends (WATCHER_TOO_SLOW).
    pub watch_grace: Duration,
    /// Reported latency over this flags a connector LAGGING: a report
    /// crossing it is written at once (`domain::progress`). The server sets
    /// it to its own `latency_alert`.
    pub latency_alert: Duration,
    /// A connector's progress alone (checkpoint, store range, small latency
    /// moves) is written at most this often (`domain::progress`).
    pub progress_refresh: Duration,
}

impl FleetOptions {
    /// The defaults (`crate::defaults`) around `heartbeat_interval`; the
    /// poll interval is no longer than it. Streams are not recycled (tests
    /// rely on streams that stay): `serve` sets `--max-stream-age`.
    pub fn new(heartbeat_interval: Duration) -> Self {
        use crate::defaults::{self, duration};
        Self {
            heartbeat_interval,
            poll_interval: duration(defaults::POLL_INTERVAL).min(heartbeat_interval),
            poll_only: false,
            max_stream_age: None,
            delivery_timeout: duration(defaults::DELIVERY_TIMEOUT),
            address: String::new(),
            restart_interval: duration(defaults::RESTART_INTERVAL).min(heartbeat_interval),
            watch_poll_interval: duration(defaults::WATCH_POLL_INTERVAL),
            watch_retention: duration(defaults::WATCH_RETENTION),
            watch_grace: duration(defaults::WATCH_GRACE),
            latency_alert: duration(defaults::LATENCY_ALERT),
            progress_refresh: defaults::progress_refresh(heartbeat_interval),
        }
    }
}

/// Messages queued per session. Small on purpose: a command waits in the
/// database, not in memory, while an agent is slow to read.
pub const SESSION_QUEUE: usize = 16;

/// The outbound half of a connected session.
pub type Outbound = mpsc::Sender<Result<ControlMessage, tonic::Status>>;

struct LocalSession {
    session: Session,
    outbound: Outbound,
    /// Cancelled when a newer session of the agent replaces this one.
    superseded: CancellationToken,
    /// Cancelled to ask the agent to reconnect: its session was recorded as
    /// ended (this replica was taken for dead). A child of `Fleet::reset`.
    recycle: CancellationToken,
}

/// The agents connected to this replica, and the loops that serve them.
pub struct Fleet<S> {
    store: S,
    options: FleetOptions,
    heartbeat_interval: Duration,
    signals: Signals,
    outbox: Mutex<Option<mpsc::UnboundedReceiver<Outgoing>>>,
    sessions: Mutex<HashMap<String, LocalSession>>,
    seen: Mutex<HashMap<String, PendingHeartbeat>>,
    /// Changed statuses reported in heartbeats, by agent, written together
    /// once per `STATUS_FLUSH` (at most).
    statuses: Mutex<HashMap<String, QueuedStatuses>>,
    /// Cancelled (and replaced) to end every session at once: this replica
    /// may have been presumed dead by the others.
    reset: Mutex<CancellationToken>,
    /// Sessions whose end could not be recorded (the database was down):
    /// retried every heartbeat interval, so that every end is recorded
    /// and audited.
    unclosed: Mutex<Vec<(Session, SessionEnd)>>,
    refusals: RefusalLog,
    shutdown: CancellationToken,
    /// The leader lease while this replica holds it (the replica loop
    /// renews it; the restart loop works under it).
    lease: Mutex<Option<crate::store::Lease>>,
    feed: feed::Feed,
}

impl<S: FleetStore> Fleet<S> {
    /// `refusals` records the sessions refused before they open.
    pub fn new(
        store: S,
        options: FleetOptions,
        refusals: RefusalLog,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let (outbox, receiver) = if options.poll_only {
            (None, None)
        } else {
            let (sender, receiver) = mpsc::unbounded_channel();
            (Some(sender), Some(receiver))
        };
        let poll_interval = options.poll_interval;
        Arc::new(Self {
            store,
            heartbeat_interval: options.heartbeat_interval,
            options,
            signals: Signals::new(outbox, poll_interval),
            outbox: Mutex::new(receiver),
            sessions: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            statuses: Mutex::new(HashMap::new()),
            reset: Mutex::new(CancellationToken::new()),
            unclosed: Mutex::new(Vec::new()),
            refusals,
            shutdown,
            lease: Mutex::new(None),
            feed: feed::Feed::new(crate::defaults::WATCH_FEED_CAPACITY),
        })
    }

    /// How long the leader lease lasts, and after how long the others
    /// count a silent replica as dead.
    pub fn replica_ttl(&self) -> Duration {
        self.heartbeat_interval * MISSED_REPLICA_HEARTBEATS
    }

    pub fn signals(&self) -> Signals {
        self.signals.clone()
    }

    /// The signals, borrowed (sessions wake the dispatcher and waiters).
    pub fn signals_ref(&self) -> &Signals {
        &self.signals
    }

    /// The store sessions record their work in.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Cancelled when the replica shuts down: sessions end with
    /// `reconnect`.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Where refused sessions are recorded.
    pub fn refusals(&self) -> &RefusalLog {
        &self.refusals
    }

    /// Streams are recycled after this long (with jitter), if set.
    pub fn max_stream_age(&self) -> Option<Duration> {
        self.options.max_stream_age
    }

    /// Where this replica serves.
    pub fn address(&self) -> &str {
        &self.options.address
    }

    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    /// What this fleet was started with.
    pub fn options(&self) -> &FleetOptions {
        &self.options
    }

    /// How long an agent may be silent before it counts as offline.
    pub fn offline_after(&self) -> Duration {
        self.heartbeat_interval * MISSED_HEARTBEATS
    }

    /// Starts the dispatcher, the heartbeat flush and the liveness sweep;
    /// they stop with the shutdown token.
    pub fn spawn_loops(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut loops = vec![
            tokio::spawn(self.clone().dispatch_loop()),
            tokio::spawn(self.clone().flush_loop()),
            tokio::spawn(self.clone().status_loop()),
            tokio::spawn(self.clone().replica_loop()),
            tokio::spawn(self.clone().restart_loop()),
            tokio::spawn(self.clone().feed_loop()),
            tokio::spawn(self.clone().sequencer_loop()),
        ];
        if let Some(outbox) = self.outbox.lock().unwrap().take() {
            loops.push(tokio::spawn(self.clone().publish_loop(outbox)));
            let signals = self.signals.clone();
            let me = self.store.replica_id().to_owned();
            let handler: crate::store::WakeupHandler = Arc::new(move |wakeup| match wakeup {
                Wakeup::Region(region) => signals.wake(&region),
                Wakeup::Completed(_) => signals.command_completed(),
                Wakeup::Joined(replica) => {
                    if replica != me {
                        signals.peers.announced();
                    }
                }
                // (Re)listening: whatever was announced while not listening
                // went unheard, a replica joining among it.
                Wakeup::All => {
                    signals.peers.announced();
                    signals.wake_all();
                    signals.command_completed();
                }
            });
            loops.extend(self.store.listen(
                handler,
                self.heartbeat_interval,
                self.shutdown.clone(),
            ));
        }
        loops
    }

    /// Records that `session` ended, and why; if the database cannot take
    /// it now, it is retried every heartbeat interval.
    pub async fn close(&self, session: Session, end: SessionEnd) {
        match self.store.close_session(&session, &end).await {
            Ok(0) => {}
            Ok(_) => self.signals.wake(&session.region),
            Err(error) => {
                warn!(%error, agent_id = %session.agent_id,
                      "recording the session end failed; retrying");
                self.unclosed.lock().unwrap().push((session, end));
            }
        }
    }

    /// Whether `runner` (an agent id) has a session here for `region`.
    fn runs_here(&self, region: &str, runner: &str) -> bool {
        !runner.is_empty()
            && self
                .sessions
                .lock()
                .unwrap()
                .get(runner)
                .is_some_and(|local| local.session.region == region)
    }

    /// Registers a session, ending the agent's older one on this replica.
    /// If a newer session registered first (two connects racing), the
    /// newcomer is the one ended: its token comes back cancelled. Returns
    /// the session's `superseded` and `recycle` tokens.
    pub fn register(
        &self,
        session: Session,
        outbound: Outbound,
    ) -> (CancellationToken, CancellationToken) {
        let superseded = CancellationToken::new();
        let recycle = self.reset.lock().unwrap().child_token();
        let mut sessions = self.sessions.lock().unwrap();
        if let Some(existing) = sessions.get(&session.agent_id)
            && existing.session.epoch > session.epoch
        {
            superseded.cancel();
            return (superseded, recycle);
        }
        let previous = sessions.insert(
            session.agent_id.clone(),
            LocalSession {
                session,
                outbound,
                superseded: superseded.clone(),
                recycle: recycle.clone(),
            },
        );
        if let Some(previous) = previous {
            previous.superseded.cancel();
        }
        (superseded, recycle)
    }

    /// Whether `session` is the agent's registered session on this replica.
    pub fn is_current(&self, session: &Session) -> bool {
        self.sessions
            .lock()
            .unwrap()
            .get(&session.agent_id)
            .is_some_and(|local| local.session.session_id == session.session_id)
    }

    /// Removes the session if it is still the registered one.
    pub fn unregister(&self, session: &Session) {
        let mut sessions = self.sessions.lock().unwrap();
        if sessions
            .get(&session.agent_id)
            .is_some_and(|local| local.session.session_id == session.session_id)
        {
            sessions.remove(&session.agent_id);
        }
    }

    /// Agent sessions held here, by region (for the metrics).
    pub fn connected_by_region(&self) -> std::collections::BTreeMap<String, u64> {
        let mut regions = std::collections::BTreeMap::new();
        for local in self.sessions.lock().unwrap().values() {
            *regions.entry(local.session.region.clone()).or_insert(0) += 1;
        }
        regions
    }

    pub fn saw(&self, session: &Session) {
        self.seen.lock().unwrap().insert(
            session.agent_id.clone(),
            PendingHeartbeat {
                agent_id: session.agent_id.clone(),
                epoch: session.epoch,
                time: chrono::Utc::now(),
            },
        );
    }
}
