//! The change feed of this replica: one loop reads the connector changes
//! every replica commits (in commit order, `store::Feed`), with each
//! changed connector as it is now, into a bounded ring that every watch
//! stream here reads. A watcher behind the ring reads the store instead;
//! the loop never waits for a watcher.

use super::Fleet;
use crate::domain::Connector;
use crate::domain::watch::Searchable;
use crate::store::{FleetStore, StoreError};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::Notify;
use tokio::sync::watch;
use tracing::{debug, warn};

/// One change, with the connector as it was read after it.
#[derive(Clone, Debug)]
pub struct FeedItem {
    pub seq: i64,
    pub connector_id: String,
    /// The connector's version this change made (`Connector::version`;
    /// 0 when not recorded).
    pub version: i64,
    /// What a search saw before the change (None: it is new).
    pub before: Option<Searchable>,
    /// The connector as it is now (None: it is gone).
    pub now: Option<Connector>,
}

/// Changes read per statement.
pub const FEED_BATCH: usize = 1000;
/// How often a replica that sequenced changes reclaims the space they
/// took while waiting (`Feed::tidy_changes`).
const TIDY_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

struct Ring {
    /// Every change after this position is in `items` (or came later).
    complete_after: i64,
    items: VecDeque<Arc<FeedItem>>,
}

/// The feed loop's rounds, for calls that answer only once their change
/// is in the feed (`Feed::sequenced`).
#[derive(Default)]
struct Rounds {
    /// Whether a feed loop runs rounds.
    served: AtomicBool,
    /// Rounds begun.
    begun: AtomicU64,
    /// The last round done.
    done: watch::Sender<u64>,
    /// Asks the sequencer for a round now.
    wake: Notify,
    /// Tells the reader that a round gave changes their positions.
    moved: Notify,
}

/// How long a call waits for its change to be in the feed at most (a
/// database that does not answer: the change is in it later).
const SEQUENCED_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The ring of recent changes and the newest position read.
#[derive(Clone)]
pub struct Feed {
    ring: Arc<RwLock<Ring>>,
    head: watch::Sender<i64>,
    capacity: usize,
    rounds: Arc<Rounds>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("head", &*self.head.borrow())
            .finish_non_exhaustive()
    }
}

impl Feed {
    pub fn new(capacity: usize) -> Self {
        Feed {
            ring: Arc::new(RwLock::new(Ring {
                complete_after: i64::MAX,
                items: VecDeque::new(),
            })),
            head: watch::Sender::new(0),
            capacity,
            rounds: Arc::default(),
        }
    }

    /// Returns once every change committed before the call is in the feed
    /// (has its position: a watch resumed from a token read now, or a
    /// snapshot's head, covers it), by waiting for a round of the feed loop
    /// that begins after the call; rounds are shared by every caller
    /// waiting. Mutating calls wait so that what they changed is in the
    /// feed when they answer, as it was when positions were given at
    /// commit. At most `SEQUENCED_WAIT`; at once where no loop runs.
    pub async fn sequenced(&self) {
        let rounds = &self.rounds;
        if !rounds.served.load(Ordering::SeqCst) {
            return;
        }
        // A round begun after this read begins after the caller's commit.
        let target = rounds.begun.load(Ordering::SeqCst) + 1;
        let mut done = rounds.done.subscribe();
        rounds.wake.notify_one();
        let _ = tokio::time::timeout(SEQUENCED_WAIT, done.wait_for(|done| *done >= target)).await;
    }

    /// Changes to the newest position read (for watchers to wait on).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.head.subscribe()
    }

    /// The newest position read, once the loop has read one: every change
    /// up to it is committed, so a watch resumed from it misses nothing
    /// committed later (and may replay a few that a page read after it
    /// already shows).
    pub fn position(&self) -> Option<i64> {
        let started = self.ring.read().unwrap().complete_after != i64::MAX;
        started.then(|| *self.head.borrow())
    }

    /// Up to `limit` changes after `after`, from the ring; None when the
    /// ring no longer (or does not yet) hold all of them.
    pub fn after(&self, after: i64, limit: usize) -> Option<Vec<Arc<FeedItem>>> {
        let ring = self.ring.read().unwrap();
        if after < ring.complete_after {
            return None;
        }
        let start = ring.items.partition_point(|item| item.seq <= after);
        Some(ring.items.range(start..).take(limit).cloned().collect())
    }

    /// Starts the ring over at `head` (at start-up, or after the loop fell
    /// behind the pruning).
    fn reset(&self, head: i64) {
        let mut ring = self.ring.write().unwrap();
        ring.items.clear();
        ring.complete_after = head;
        drop(ring);
        self.head.send_replace(head);
    }

    fn push(&self, items: Vec<FeedItem>) {
        let Some(last) = items.last().map(|item| item.seq) else {
            return;
        };
        let mut ring = self.ring.write().unwrap();
        ring.items.extend(items.into_iter().map(Arc::new));
        while ring.items.len() > self.capacity {
            let dropped = ring.items.pop_front().expect("over capacity");
            ring.complete_after = dropped.seq;
        }
        drop(ring);
        self.head.send_replace(last);
    }
}

/// The changes after `after` (up to `limit`), each with its connector as
/// it is now: one read of the changes, one of the connectors.
pub async fn read_changes<S: crate::store::Feed>(
    store: &S,
    after: i64,
    limit: usize,
) -> Result<Vec<FeedItem>, StoreError> {
    let entries = store.changes_after(after, limit).await?;
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids: Vec<String> = entries.iter().map(|e| e.connector_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let now: HashMap<String, Connector> = store
        .connectors_by_id(&ids)
        .await?
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect();
    Ok(entries
        .into_iter()
        .map(|entry| FeedItem {
            now: now.get(&entry.connector_id).cloned(),
            seq: entry.seq,
            version: entry.version,
            connector_id: entry.connector_id,
            before: entry.before,
        })
        .collect())
}

impl<S: FleetStore> Fleet<S> {
    /// The feed watch streams on this replica read.
    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// Every `watch_poll_interval`, and at once when a call asks
    /// (`Feed::sequenced`): gives the changes committed since their
    /// positions (any replica may: `store::Feed::sequence_changes`) and
    /// wakes the reader if there were any.
    pub(super) async fn sequencer_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.options.watch_poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut untidy = false;
        let mut last_tidy = tokio::time::Instant::now();
        let rounds = self.feed.rounds.clone();
        rounds.served.store(true, Ordering::SeqCst);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    rounds.served.store(false, Ordering::SeqCst);
                    rounds.done.send_replace(u64::MAX);
                    return;
                }
                _ = tick.tick() => {}
                _ = rounds.wake.notified() => {}
            }
            let round = rounds.begun.fetch_add(1, Ordering::SeqCst) + 1;
            let moved = self.sequence().await;
            rounds.done.send_replace(round);
            if moved {
                rounds.moved.notify_one();
            }
            untidy |= moved;
            if untidy && last_tidy.elapsed() >= TIDY_EVERY {
                if let Err(error) = self.store.tidy_changes().await {
                    debug!(%error, "reclaiming the space of sequenced changes failed");
                }
                untidy = false;
                last_tidy = tokio::time::Instant::now();
            }
        }
    }

    /// Every `watch_poll_interval`, and at once when the sequencer gave
    /// changes their positions: reads new changes into the feed.
    pub(super) async fn feed_loop(self: Arc<Self>) {
        let mut head = None;
        let mut tick = tokio::time::interval(self.options.watch_poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let rounds = self.feed.rounds.clone();
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
                _ = rounds.moved.notified() => {}
            }
            let after = match head {
                Some(after) => after,
                None => match self.store.change_head().await {
                    Ok(now) => {
                        self.feed.reset(now);
                        head = Some(now);
                        continue;
                    }
                    Err(error) => {
                        debug!(%error, "reading the newest change failed; retrying");
                        continue;
                    }
                },
            };
            // Drain what accumulated, batch by batch.
            let mut after = after;
            loop {
                match read_changes(&self.store, after, FEED_BATCH).await {
                    Ok(items) => {
                        let full = items.len() == FEED_BATCH;
                        if let Some(last) = items.last() {
                            after = last.seq;
                        }
                        self.feed.push(items);
                        if !full {
                            break;
                        }
                    }
                    Err(StoreError::ChangesPruned { .. }) => {
                        warn!("the change feed fell behind the pruning; starting over");
                        head = None;
                        break;
                    }
                    Err(error) => {
                        debug!(%error, "reading changes failed; retrying");
                        break;
                    }
                }
            }
            if head.is_some() {
                head = Some(after);
            }
        }
    }

    /// Gives every change committed so far its position; true if there
    /// were any.
    async fn sequence(&self) -> bool {
        match self.store.sequence_all().await {
            Ok(0) => false,
            Ok(done) => {
                crate::telemetry::metrics::changes_sequenced(done);
                true
            }
            Err(error) => {
                debug!(%error, "sequencing changes failed; retrying");
                false
            }
        }
    }
}
