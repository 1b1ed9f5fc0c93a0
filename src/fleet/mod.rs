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
use crate::store::{FleetStore, Seen};
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

    /// Registers a session, ending the agent's older one on this replica.
    /// If a newer session registered first (two connects racing), the
    /// newcomer is the one ended: its token comes back cancelled.
    fn register(&self, session: Session, outbound: Outbound) -> CancellationToken {
        let superseded = CancellationToken::new();
        let mut sessions = self.sessions.lock().unwrap();
        if let Some(existing) = sessions.get(&session.agent_id)
            && existing.session.epoch > session.epoch
        {
            superseded.cancel();
            return superseded;
        }
        let previous = sessions.insert(
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

    /// Whether `session` is the agent's registered session on this replica.
    fn is_current(&self, session: &Session) -> bool {
        self.sessions
            .lock()
            .unwrap()
            .get(&session.agent_id)
            .is_some_and(|local| local.session.session_id == session.session_id)
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
    /// accepted Start/Pause (for its region), session start and result; the
    /// interval tick is the safety net for commands written by other
    /// replicas. A round costs one query when nothing is pending, and one
    /// claim per region with work and local sessions.
    async fn dispatch_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.heartbeat_interval);
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
            debug!(agent_id = %session.agent_id, command_id = %id, "delivering command");
            let message = ControlMessage {
                message: Some(crate::proto::v1::control_message::Message::Command(
                    crate::api::command_to_proto(command),
                )),
            };
            if outbound.try_send(Ok(message)).is_err()
                && let Err(error) = self.store.release_command(&session, &id).await
            {
                // Ending the session requeues it: never leave it stuck.
                warn!(%error, command_id = %id, "releasing an unsent command failed");
                session_token.cancel();
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
