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

/// Whether another replica is alive to be woken. A heartbeat's look at the
/// replicas table says so; a replica that joins says so at once, by its
/// announcement. An announcement may be lost (this replica was not
/// listening then), so every (re)listen counts as one; and an announcement
/// heard while a look was under way wins over what the look found.
#[derive(Debug)]
pub(super) struct Peers(Mutex<PeersSeen>);

#[derive(Debug)]
struct PeersSeen {
    present: bool,
    /// Announcements heard so far.
    announced: u64,
}

impl Default for Peers {
    /// Until the first look, assume someone: a needless wake-up costs
    /// little, a missing one a poll interval.
    fn default() -> Self {
        Self(Mutex::new(PeersSeen {
            present: true,
            announced: 0,
        }))
    }
}

impl Peers {
    pub(super) fn present(&self) -> bool {
        self.0.lock().unwrap().present
    }

    /// Another replica joined (or may have, unheard).
    pub(super) fn announced(&self) {
        let mut seen = self.0.lock().unwrap();
        seen.announced += 1;
        seen.present = true;
    }

    /// Where a look at the replicas table begins: pass it to `looked`.
    pub(super) fn look(&self) -> u64 {
        self.0.lock().unwrap().announced
    }

    /// What the look begun at `began` found: whether another replica is
    /// alive, unless one announced itself since. Returns the answer if it
    /// changed.
    pub(super) fn looked(&self, began: u64, found: bool) -> Option<bool> {
        let mut seen = self.0.lock().unwrap();
        let present = found || seen.announced != began;
        (std::mem::replace(&mut seen.present, present) != present).then_some(present)
    }
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
    /// Whether another replica may be alive: with none, no wake-up is
    /// sent.
    pub(super) peers: Arc<Peers>,
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
            peers: Arc::new(Peers::default()),
            recheck,
        }
    }

    /// The outbox, when there is another replica to wake.
    pub(super) fn to_peers(&self) -> Option<&mpsc::UnboundedSender<Outgoing>> {
        self.outbox.as_ref().filter(|_| self.peers.present())
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

#[cfg(test)]
mod tests {
    use super::Peers;

    #[test]
    fn a_look_says_whether_peers_are_alive() {
        let peers = Peers::default();
        assert!(peers.present(), "someone is assumed until the first look");
        assert_eq!(peers.looked(peers.look(), false), Some(false));
        assert!(!peers.present());
        assert_eq!(peers.looked(peers.look(), false), None, "no change");
        assert_eq!(peers.looked(peers.look(), true), Some(true));
        assert!(peers.present());
    }

    #[test]
    fn an_announcement_during_a_look_wins_over_what_it_found() {
        let peers = Peers::default();
        peers.looked(peers.look(), false);
        let began = peers.look();
        // Heard while the replicas table was being read, before the
        // newcomer's row was there to be found.
        peers.announced();
        assert_eq!(peers.looked(began, false), None, "still present");
        assert!(peers.present());
        // The next look finds the row (or the newcomer is gone again).
        assert_eq!(peers.looked(peers.look(), false), Some(false));
        assert!(!peers.present());
    }
}
