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

use crate::domain::{ObservedStatus, Session, SessionEnd};
use crate::proto::v1::ControlMessage;
use crate::store::refusals::RefusalLog;
use crate::store::{FleetStore, Lease, Seen, StoreError, Wakeup};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

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
        }
    }
}

/// A session and the newest status it reported of each connector.
type QueuedStatuses = (Session, HashMap<String, ObservedStatus>);

/// How often changed statuses from heartbeats are written, at most (one
/// transaction for every session's changes): with the heartbeat times'
/// flush, heartbeats cost well under one write transaction a second.
const STATUS_FLUSH: Duration = Duration::from_secs(2);

/// Adds statuses `session` reported to `queue`. A session newer than the
/// queued one's replaces its reports. `newer` reports replace queued ones
/// of the same connector; others (put back after a failed write) only fill
/// gaps, and are dropped if a newer session has reported since.
fn enqueue(
    queue: &mut HashMap<String, QueuedStatuses>,
    session: &Session,
    statuses: Vec<ObservedStatus>,
    newer: bool,
) {
    let entry = queue
        .entry(session.agent_id.clone())
        .or_insert_with(|| (session.clone(), HashMap::new()));
    if entry.0.epoch != session.epoch {
        if !newer {
            return;
        }
        *entry = (session.clone(), HashMap::new());
    }
    for status in statuses {
        let queued = entry.1.entry(status.connector_id.clone());
        if newer {
            queued.insert_entry(status);
        } else {
            queued.or_insert(status);
        }
    }
}

/// A wake-up this replica owes the others, decided by the publisher.
#[derive(Debug)]
enum Outgoing {
    /// A command for `region`; `runner` is the agent running its connector.
    Command {
        region: String,
        runner: String,
    },
    Completed(String),
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

/// Wakes the dispatcher for some regions (or all), and tells `wait: true`
/// callers that commands completed. Cheap to clone; the API holds one.
#[derive(Clone, Debug)]
pub struct Signals {
    regions: Arc<Mutex<Option<HashSet<String>>>>,
    dispatch: Arc<Notify>,
    completed: Arc<watch::Sender<u64>>,
    /// Wake-ups for other replicas; None when polling only.
    outbox: Option<mpsc::UnboundedSender<Outgoing>>,
    /// Whether another replica was alive at this replica's last heartbeat:
    /// with none, no wake-up is sent (a replica that joins meanwhile polls
    /// until the next heartbeat tells this one about it).
    peers: Arc<std::sync::atomic::AtomicBool>,
    /// How often to look again without a signal (the poll interval).
    recheck: Duration,
}

impl Signals {
    fn new(outbox: Option<mpsc::UnboundedSender<Outgoing>>, recheck: Duration) -> Self {
        Self {
            regions: Arc::new(Mutex::new(Some(HashSet::new()))),
            dispatch: Arc::new(Notify::new()),
            completed: Arc::new(watch::channel(0).0),
            outbox,
            peers: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            recheck,
        }
    }

    /// The outbox, when there is another replica to wake.
    fn to_peers(&self) -> Option<&mpsc::UnboundedSender<Outgoing>> {
        self.outbox
            .as_ref()
            .filter(|_| self.peers.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// How often a waiter should look again in case a signal was lost.
    pub fn recheck_every(&self) -> Duration {
        self.recheck
    }

    /// A command for `region` was committed; `runner` is the agent running
    /// its connector ("" if none). Wakes this replica's dispatcher at once,
    /// and the others unless the runner is connected here.
    pub fn command_added(&self, region: &str, runner: &str) {
        self.wake(region);
        if let Some(outbox) = self.to_peers() {
            let _ = outbox.send(Outgoing::Command {
                region: region.to_owned(),
                runner: runner.to_owned(),
            });
        }
    }

    /// A command completed here: local waiters and other replicas' hear.
    pub fn completed_here(&self, command_id: &str) {
        self.command_completed();
        if let Some(outbox) = self.to_peers() {
            let _ = outbox.send(Outgoing::Completed(command_id.to_owned()));
        }
    }

    /// A command for `region` became deliverable.
    pub fn wake(&self, region: &str) {
        if let Some(regions) = self.regions.lock().unwrap().as_mut() {
            regions.insert(region.to_owned());
        }
        self.dispatch.notify_one();
    }

    /// Re-examine every session (a session opened, a result arrived).
    pub fn wake_all(&self) {
        *self.regions.lock().unwrap() = None;
        self.dispatch.notify_one();
    }

    /// The regions to dispatch since the last call: Some (possibly empty:
    /// a wake-up whose regions an earlier round already took), or None
    /// when every region must be looked at.
    fn take_regions(&self) -> Option<HashSet<String>> {
        self.regions.lock().unwrap().replace(HashSet::new())
    }

    /// Some command reached a final status.
    pub fn command_completed(&self) {
        self.completed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever a command completes.
    pub fn completions(&self) -> watch::Receiver<u64> {
        self.completed.subscribe()
    }
}

/// The agents connected to this replica, and the loops that serve them.
pub struct Fleet<S> {
    store: S,
    options: FleetOptions,
    heartbeat_interval: Duration,
    signals: Signals,
    outbox: Mutex<Option<mpsc::UnboundedReceiver<Outgoing>>>,
    sessions: Mutex<HashMap<String, LocalSession>>,
    seen: Mutex<HashMap<String, Seen>>,
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
        })
    }

    /// How long the leader lease lasts, and after how long the others
    /// count a silent replica as dead.
    pub fn replica_ttl(&self) -> Duration {
        self.heartbeat_interval * MISSED_REPLICA_HEARTBEATS
    }

    /// After this long without writing its heartbeat, this replica ends its
    /// sessions: the others may soon count it dead and its agents' sessions
    /// as ended. One interval earlier than they would, to be safe.
    fn presumed_dead_after(&self) -> Duration {
        self.replica_ttl().saturating_sub(self.heartbeat_interval)
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
                        signals
                            .peers
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                Wakeup::All => {
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

    /// Retries the session ends that could not be recorded. Each stays
    /// listed until recorded, so that a cancelled retry loses none.
    async fn close_unclosed(&self) {
        let unclosed = self.unclosed.lock().unwrap().clone();
        for (session, end) in unclosed {
            match self.store.close_session(&session, &end).await {
                Ok(_) => {
                    self.unclosed
                        .lock()
                        .unwrap()
                        .retain(|(s, _)| s.session_id != session.session_id);
                    info!(agent_id = %session.agent_id, reason = end.reason(), "session end recorded late");
                    self.signals.wake(&session.region);
                }
                Err(error) => {
                    debug!(%error, agent_id = %session.agent_id, "recording a session end failed again");
                    return;
                }
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

    /// Asks every agent connected here to reconnect.
    fn end_all_sessions(&self) {
        let previous = std::mem::take(&mut *self.reset.lock().unwrap());
        previous.cancel();
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

    /// Asks the agents of these sessions (agent id, epoch) to reconnect.
    fn recycle(&self, ended: &[(String, i64)]) {
        let sessions = self.sessions.lock().unwrap();
        for (agent_id, epoch) in ended {
            if let Some(local) = sessions.get(agent_id)
                && local.session.epoch == *epoch
            {
                warn!(%agent_id, epoch, "this session was recorded as ended elsewhere; asking the agent to reconnect");
                local.recycle.cancel();
            }
        }
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
            Seen {
                agent_id: session.agent_id.clone(),
                epoch: session.epoch,
                time: chrono::Utc::now(),
            },
        );
    }

    /// Hands pending commands to connected agents. Woken after every
    /// accepted Start/Pause (for its region, here or on another replica),
    /// session start and result; the poll tick is the safety net. A round costs one query when nothing is pending, and one
    /// claim per region with work and local sessions.
    async fn dispatch_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.options.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let regions = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.signals.dispatch.notified() => self.signals.take_regions(),
                _ = tick.tick() => None,
            };
            let regions: HashSet<String> = match regions {
                Some(regions) => regions,
                None => match self.store.pending_regions().await {
                    Ok(regions) => regions.into_iter().collect(),
                    Err(error) => {
                        warn!(%error, "listing regions with pending commands failed");
                        continue;
                    }
                },
            };
            for region in regions {
                self.deliver(&region).await;
            }
        }
    }

    /// One claim for `region`: commands go straight into the sessions'
    /// queues; one that does not fit goes back to pending.
    async fn deliver(&self, region: &str) {
        let local: Vec<(Session, Outbound, CancellationToken)> = self
            .sessions
            .lock()
            .unwrap()
            .values()
            .filter(|local| local.session.region == region)
            .map(|local| {
                (
                    local.session.clone(),
                    local.outbound.clone(),
                    local.superseded.clone(),
                )
            })
            .collect();
        if local.is_empty() {
            return;
        }
        let rooms: Vec<(Session, usize)> = local
            .iter()
            .map(|(session, outbound, _)| (session.clone(), outbound.capacity()))
            .collect();
        let claimed = match self
            .store
            .claim_commands(region, &rooms, self.offline_after())
            .await
        {
            Ok(claimed) => claimed,
            Err(error) => {
                warn!(%error, %region, "claiming commands failed");
                return;
            }
        };
        for (session, command) in claimed {
            let Some((_, outbound, session_token)) = local
                .iter()
                .find(|(s, _, _)| s.session_id == session.session_id)
            else {
                continue;
            };
            let id = command.id.clone();
            // Joins the trace of the call that issued the command.
            let span = tracing::info_span!(
                "deliver command",
                otel.kind = "producer",
                command_id = %id,
                connector_id = %command.connector_id,
                agent_id = %session.agent_id,
            );
            crate::telemetry::continue_trace(&span, &command.trace_context);
            let created = command.create_time;
            let attributes = [
                opentelemetry::KeyValue::new("region", region.to_owned()),
                opentelemetry::KeyValue::new("kind", command.kind.as_str()),
            ];
            let message = ControlMessage {
                message: Some(crate::proto::v1::control_message::Message::Command(
                    crate::proto::convert::command_to_proto(command),
                )),
            };
            let sent = span.in_scope(|| {
                debug!("delivering command");
                outbound.try_send(Ok(message)).is_ok()
            });
            if sent {
                let delay = (chrono::Utc::now() - created).to_std().unwrap_or_default();
                crate::telemetry::metrics::instruments()
                    .delivery_delay
                    .record(delay.as_secs_f64(), &attributes);
            } else {
                if let Err(error) = self.store.release_command(&session, &id).await {
                    // Ending the session requeues it: never leave it stuck.
                    warn!(%error, command_id = %id, "releasing an unsent command failed");
                    session_token.cancel();
                }
            }
        }
    }

    /// Queues the changed statuses a heartbeat of `session` reported; the
    /// newest report of each connector wins.
    pub fn queue_statuses(&self, session: &Session, statuses: Vec<ObservedStatus>) {
        enqueue(&mut self.statuses.lock().unwrap(), session, statuses, true);
    }

    /// Writes the queued statuses of every session in one transaction, at
    /// most once per `STATUS_FLUSH`: 10,000 agents reporting changes cost
    /// one write every two seconds, not one per heartbeat. Sessions found
    /// superseded end.
    async fn status_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(STATUS_FLUSH.min(self.heartbeat_interval));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let batch: Vec<(Session, Vec<ObservedStatus>)> = self
                .statuses
                .lock()
                .unwrap()
                .drain()
                .map(|(_, (session, statuses))| (session, statuses.into_values().collect()))
                .collect();
            if batch.is_empty() {
                continue;
            }
            let count: usize = batch.iter().map(|(_, statuses)| statuses.len()).sum();
            let started = std::time::Instant::now();
            let written = tokio::time::timeout(
                self.heartbeat_interval.max(Duration::from_secs(1)),
                self.store.record_status_batch(&batch),
            )
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("no answer in time".into())));
            crate::telemetry::metrics::heartbeat_write("statuses", count, started);
            match written {
                Ok(fenced) => {
                    for session in fenced {
                        // A newer session exists (on another replica):
                        // this one ends as superseded.
                        let token = self
                            .sessions
                            .lock()
                            .unwrap()
                            .get(&session.agent_id)
                            .filter(|local| local.session.session_id == session.session_id)
                            .map(|local| local.superseded.clone());
                        self.unregister(&session);
                        if let Some(token) = token {
                            token.cancel();
                        }
                    }
                }
                Err(error) => {
                    warn!(%error, statuses = count, "recording heartbeat statuses failed; retrying next round");
                    // Back in the queue, under anything reported since.
                    let mut queue = self.statuses.lock().unwrap();
                    for (session, statuses) in batch {
                        enqueue(&mut queue, &session, statuses, false);
                    }
                }
            }
        }
    }

    /// Writes the heartbeat times collected in memory, once per interval,
    /// in one statement.
    async fn flush_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let seen: Vec<Seen> = self.seen.lock().unwrap().drain().map(|(_, s)| s).collect();
            if seen.is_empty() {
                continue;
            }
            let started = std::time::Instant::now();
            let flushed = self.store.flush_heartbeats(&seen).await;
            crate::telemetry::metrics::heartbeat_write("times", seen.len(), started);
            match flushed {
                Ok(ended) => self.recycle(&ended),
                Err(error) => {
                    warn!(%error, agents = seen.len(), "flushing heartbeats failed; retrying next round");
                    let mut pending = self.seen.lock().unwrap();
                    for entry in seen {
                        pending.entry(entry.agent_id.clone()).or_insert(entry);
                    }
                }
            }
        }
    }

    /// Sends the wake-ups other replicas need, batched: one statement for
    /// whatever accumulated while the previous one ran.
    async fn publish_loop(self: Arc<Self>, mut outbox: mpsc::UnboundedReceiver<Outgoing>) {
        const BATCH: usize = 512;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let received = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                received = outbox.recv_many(&mut batch, BATCH) => received,
            };
            if received == 0 {
                return;
            }
            let mut wakeups: Vec<Wakeup> = Vec::with_capacity(batch.len());
            for outgoing in batch.drain(..) {
                let wakeup = match outgoing {
                    // The dispatcher here already has it.
                    Outgoing::Command { region, runner } if self.runs_here(&region, &runner) => {
                        continue;
                    }
                    Outgoing::Command { region, .. } => Wakeup::Region(region),
                    Outgoing::Completed(command_id) => Wakeup::Completed(command_id),
                };
                if !wakeups.contains(&wakeup) {
                    wakeups.push(wakeup);
                }
            }
            if let Err(error) = self.store.publish(&wakeups).await {
                debug!(%error, "waking other replicas failed; their polling delivers");
            }
        }
    }

    /// Records this replica in the database; `serve` calls it before
    /// accepting connections, so that no session exists for a replica the
    /// others cannot see.
    pub async fn register_replica(&self) -> Result<(), StoreError> {
        // Before the first heartbeat, which would make this id look alive.
        let orphaned = self.store.end_orphaned_sessions(self.replica_ttl()).await?;
        if orphaned > 0 {
            info!(
                orphaned,
                "sessions left by an earlier run of this replica were recorded as ended"
            );
        }
        self.store
            .replica_heartbeat(&self.options.address, false)
            .await?;
        self.refresh_peers().await;
        // The others learn at once that there is someone to wake.
        if !self.options.poll_only
            && let Err(error) = self
                .store
                .publish(&[Wakeup::Joined(self.store.replica_id().to_owned())])
                .await
        {
            debug!(%error, "announcing this replica failed; the others learn at their next heartbeat");
        }
        Ok(())
    }

    /// Looks whether another replica is alive (to be woken). On error it
    /// assumes one is: a needless wake-up costs little, a missing one a
    /// poll interval.
    async fn refresh_peers(&self) {
        let me = self.store.replica_id().to_owned();
        let peers = match self.store.list_replicas(self.replica_ttl()).await {
            Ok(replicas) => replicas
                .iter()
                .any(|replica| replica.alive && replica.id != me),
            Err(error) => {
                warn!(%error, "listing the replicas failed; waking the others anyway");
                true
            }
        };
        let before = self
            .signals
            .peers
            .swap(peers, std::sync::atomic::Ordering::Relaxed);
        if before != peers {
            debug!(peers, "other live replicas");
        }
    }

    /// This replica's heartbeat, then leader-only work while it holds the
    /// lease, once per heartbeat interval. Each database call is bounded by
    /// the interval, so that a hung connection cannot stall the loop.
    async fn replica_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let bound = self.heartbeat_interval;
        let timed_out = || StoreError::Unavailable(format!("no answer within {bound:?}").into());
        let mut last_alive = Instant::now();
        // The lease held, and until when this leader grants agents a grace.
        // Kept through transient errors: only a new term starts a new grace.
        let mut leader: Option<(Lease, Instant)> = None;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let heartbeat = self.store.replica_heartbeat(&self.options.address, false);
            match tokio::time::timeout(bound, heartbeat)
                .await
                .unwrap_or_else(|_| Err(timed_out()))
            {
                Ok(()) => {
                    last_alive = Instant::now();
                    let _ = tokio::time::timeout(bound, self.refresh_peers()).await;
                    let _ = tokio::time::timeout(bound, self.close_unclosed()).await;
                }
                Err(error) => {
                    warn!(%error, "recording this replica's heartbeat failed");
                    if last_alive.elapsed() >= self.presumed_dead_after() {
                        warn!(
                            "other replicas may count this one dead; asking its agents to reconnect"
                        );
                        self.end_all_sessions();
                        last_alive = Instant::now();
                    }
                    continue;
                }
            }
            let acquired =
                tokio::time::timeout(bound, self.store.acquire_lease(self.replica_ttl()))
                    .await
                    .unwrap_or_else(|_| Err(timed_out()));
            let lease = match acquired {
                Ok(Some(lease)) => lease,
                Ok(None) => {
                    if let Some((lease, _)) = leader.take() {
                        info!(term = lease.term, "another replica holds the leader lease");
                    }
                    continue;
                }
                Err(error) => {
                    warn!(%error, "renewing the leader lease failed");
                    continue;
                }
            };
            let grace_until = match leader {
                Some((held, until)) if held == lease => until,
                _ => {
                    // Agents of a replica that just died, or of a whole
                    // restarted cluster, get time to come back before
                    // anything is marked offline.
                    info!(
                        term = lease.term,
                        grace = ?self.offline_after(),
                        "this replica is the leader"
                    );
                    Instant::now() + self.offline_after()
                }
            };
            leader = Some((lease, grace_until));
            match tokio::time::timeout(bound, self.lead(lease, grace_until))
                .await
                .unwrap_or_else(|_| Err(timed_out()))
            {
                Ok(()) => {}
                Err(StoreError::NotLeader { term }) => {
                    info!(term, "the leader lease was lost; stepping down");
                    leader = None;
                }
                Err(error) => warn!(%error, "leader work failed; retrying next round"),
            }
        }
    }

    /// Leader-only: marks silent agents (and those of dead replicas)
    /// offline, and redelivers commands stuck without an answer. Both
    /// writes are fenced by the lease's term.
    async fn lead(&self, lease: Lease, grace_until: Instant) -> Result<(), StoreError> {
        if Instant::now() >= grace_until {
            let changed = self
                .store
                .sweep_offline(lease, self.offline_after(), self.replica_ttl())
                .await?;
            if changed > 0 {
                self.signals.wake_all();
            }
        }
        if self
            .store
            .expire_deliveries(lease, self.options.delivery_timeout)
            .await?
            > 0
        {
            self.signals.wake_all();
        }
        Ok(())
    }

    /// Shutdown began: other replicas see this one draining.
    pub async fn draining(&self) {
        let record = self.store.replica_heartbeat(&self.options.address, true);
        if let Ok(Err(error)) = tokio::time::timeout(Duration::from_secs(1), record).await {
            debug!(%error, "recording the drain failed");
        }
    }

    /// Clean stop: the row goes, and the lease with it, so that another
    /// replica takes over at once. Bounded: a stop never hangs on this.
    pub async fn retire(&self) {
        match tokio::time::timeout(Duration::from_secs(2), self.store.retire_replica()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                warn!(%error, "removing this replica's record failed; it expires by itself");
            }
            Err(_) => warn!("removing this replica's record timed out; it expires by itself"),
        }
    }
}
