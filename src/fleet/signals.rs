//! How the parts of this replica wake each other: the dispatcher for some
//! regions (or all), `wait: true` callers when commands complete, and the
//! other replicas (through the publisher).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};

/// A wake-up this replica owes the others, decided by the publisher.
#[derive(Debug)]
pub(super) enum Outgoing {
    /// A command for `region`; `runner` is the agent running its connector.
    Command {
        region: String,
        runner: String,
    },
    Completed(String),
}

/// Wakes the dispatcher for some regions (or all), and tells `wait: true`
/// callers that commands completed. Cheap to clone; the API holds one.
#[derive(Clone, Debug)]
pub struct Signals {
    pub(super) regions: Arc<Mutex<Option<HashSet<String>>>>,
    pub(super) dispatch: Arc<Notify>,
    pub(super) completed: Arc<watch::Sender<u64>>,
    /// Wake-ups for other replicas; None when polling only.
    pub(super) outbox: Option<mpsc::UnboundedSender<Outgoing>>,
    /// Whether another replica was alive at this replica's last heartbeat:
    /// with none, no wake-up is sent (a replica that joins meanwhile polls
    /// until the next heartbeat tells this one about it).
    pub(super) peers: Arc<std::sync::atomic::AtomicBool>,
    /// How often to look again without a signal (the poll interval).
    pub(super) recheck: Duration,
}

impl Signals {
    pub(super) fn new(outbox: Option<mpsc::UnboundedSender<Outgoing>>, recheck: Duration) -> Self {
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
    pub(super) fn to_peers(&self) -> Option<&mpsc::UnboundedSender<Outgoing>> {
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
    pub(super) fn take_regions(&self) -> Option<HashSet<String>> {
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
