//! Agent sessions on this replica: the registry of connected agents, command
//! dispatch, coalesced heartbeats and the liveness sweep.
//!
//! Each session is one task that `select!`s over the agent's messages and a
//! cancellation token; commands reach it through a small bounded channel,
//! and a full channel (a slow agent) only means the command waits in the
//! database for the next dispatch round. Nothing here blocks on an agent.

mod session;

use crate::domain::Session;
use crate::proto::v1::ControlMessage;
use crate::store::{FleetStore, Seen, StoreError};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub use session::connect;

/// An agent is offline after this many missed heartbeats.
pub const MISSED_HEARTBEATS: u32 = 4;

/// Messages queued per session. Small on purpose: a command waits in the
/// database, not in memory, while an agent is slow to read.
const SESSION_QUEUE: usize = 16;

/// The outbound half of a connected session.
type Outbound = mpsc::Sender<Result<ControlMessage, tonic::Status>>;

struct LocalSession {
    session: Session,
    outbound: Outbound,
    /// Cancelled when a newer session of the agent replaces this one.
    superseded: CancellationToken,
}

/// Wakes the dispatcher for some regions (or all), and tells `wait: true`
/// callers that commands completed. Cheap to clone; the API holds one.
#[derive(Clone, Debug)]
pub struct Signals {
    regions: Arc<Mutex<Option<HashSet<String>>>>,
    dispatch: Arc<Notify>,
    completed: Arc<watch::Sender<u64>>,
}

impl Default for Signals {
    fn default() -> Self {
        Self {
            regions: Arc::new(Mutex::new(Some(HashSet::new()))),
            dispatch: Arc::new(Notify::new()),
            completed: Arc::new(watch::channel(0).0),
        }
    }
}

impl Signals {
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

    fn take_regions(&self) -> Option<HashSet<String>> {
        self.regions
            .lock()
            .unwrap()
            .replace(HashSet::new())
            .filter(|regions| !regions.is_empty())
            .or(None)
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
    heartbeat_interval: Duration,
    signals: Signals,
    sessions: Mutex<HashMap<String, LocalSession>>,
    seen: Mutex<HashMap<String, Seen>>,
    shutdown: CancellationToken,
}

impl<S: FleetStore> Fleet<S> {
    pub fn new(store: S, heartbeat_interval: Duration, shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            store,
            heartbeat_interval,
            signals: Signals::default(),
            sessions: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            shutdown,
        })
    }

    pub fn signals(&self) -> Signals {
        self.signals.clone()
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
        vec![
            tokio::spawn(self.clone().dispatch_loop()),
            tokio::spawn(self.clone().flush_loop()),
            tokio::spawn(self.clone().sweep_loop()),
        ]
    }

    /// Registers a session, ending the agent's previous one on this replica.
    fn register(&self, session: Session, outbound: Outbound) -> CancellationToken {
        let superseded = CancellationToken::new();
        let previous = self.sessions.lock().unwrap().insert(
            session.agent_id.clone(),
            LocalSession {
                session,
                outbound,
                superseded: superseded.clone(),
            },
        );
        if let Some(previous) = previous {
            previous.superseded.cancel();
        }
        superseded
    }

    /// Removes the session if it is still the registered one.
    fn unregister(&self, session: &Session) {
        let mut sessions = self.sessions.lock().unwrap();
        if sessions
            .get(&session.agent_id)
            .is_some_and(|local| local.session.session_id == session.session_id)
        {
            sessions.remove(&session.agent_id);
        }
    }

    fn saw(&self, session: &Session) {
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
    /// accepted Start/Pause, session start and result; the interval tick is
    /// the safety net for commands written by other replicas.
    async fn dispatch_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let regions = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.signals.dispatch.notified() => self.signals.take_regions(),
                _ = tick.tick() => None,
            };
            let targets: Vec<(Session, Outbound, CancellationToken)> = self
                .sessions
                .lock()
                .unwrap()
                .values()
                .filter(|local| {
                    regions
                        .as_ref()
                        .is_none_or(|regions| regions.contains(&local.session.region))
                })
                .map(|local| {
                    (
                        local.session.clone(),
                        local.outbound.clone(),
                        local.superseded.clone(),
                    )
                })
                .collect();
            for (session, outbound, superseded) in targets {
                self.deliver(&session, &outbound, &superseded).await;
            }
        }
    }

    async fn deliver(
        &self,
        session: &Session,
        outbound: &Outbound,
        superseded: &CancellationToken,
    ) {
        let room = outbound.capacity();
        if room == 0 {
            debug!(agent_id = %session.agent_id, "session queue full; commands wait");
            return;
        }
        let commands = match self
            .store
            .claim_commands(session, room, self.offline_after())
            .await
        {
            Ok(commands) => commands,
            Err(StoreError::Fenced { .. }) => {
                superseded.cancel();
                return;
            }
            Err(error) => {
                warn!(%error, agent_id = %session.agent_id, "claiming commands failed");
                return;
            }
        };
        for command in commands {
            let id = command.id.clone();
            debug!(agent_id = %session.agent_id, command_id = %id, "delivering command");
            let message = ControlMessage {
                message: Some(crate::proto::v1::control_message::Message::Command(
                    crate::api::command_to_proto(command),
                )),
            };
            if outbound.try_send(Ok(message)).is_err()
                && let Err(error) = self.store.release_command(session, &id).await
            {
                warn!(%error, command_id = %id, "releasing an unsent command failed");
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
            if let Err(error) = self.store.flush_heartbeats(&seen).await {
                warn!(%error, agents = seen.len(), "flushing heartbeats failed; retrying next round");
                let mut pending = self.seen.lock().unwrap();
                for entry in seen {
                    pending.entry(entry.agent_id.clone()).or_insert(entry);
                }
            }
        }
    }

    /// Marks the connectors of silent agents UNKNOWN and requeues what they
    /// were sent, once per interval.
    async fn sweep_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.store.sweep_offline(self.offline_after()).await {
                Ok(0) => {}
                Ok(_) => self.signals.wake_all(),
                Err(error) => warn!(%error, "liveness sweep failed"),
            }
        }
    }
}
