//! This replica among the others: its heartbeat row, wake-ups it owes
//! them, the leader lease and the leader-only work, draining and retiring.

use super::{Fleet, Outgoing};
use crate::store::{FleetStore, Lease, StoreError, Wakeup};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

impl<S: FleetStore> Fleet<S> {
    /// Sends the wake-ups other replicas need, batched: one statement for
    /// whatever accumulated while the previous one ran.
    pub(super) async fn publish_loop(
        self: Arc<Self>,
        mut outbox: mpsc::UnboundedReceiver<Outgoing>,
    ) {
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
    pub(super) async fn refresh_peers(&self) {
        let me = self.store.replica_id().to_owned();
        let began = self.signals.peers.look();
        let found = match self.store.list_replicas(self.replica_ttl()).await {
            Ok(replicas) => replicas
                .iter()
                .any(|replica| replica.alive && replica.id != me),
            Err(error) => {
                warn!(%error, "listing the replicas failed; waking the others anyway");
                true
            }
        };
        if let Some(peers) = self.signals.peers.looked(began, found) {
            debug!(peers, "other live replicas");
        }
    }

    /// This replica's heartbeat, then leader-only work while it holds the
    /// lease, once per heartbeat interval. Each database call is bounded by
    /// the interval, so that a hung connection cannot stall the loop.
    pub(super) async fn replica_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let bound = self.heartbeat_interval;
        let timed_out = || StoreError::Unavailable(format!("no answer within {bound:?}").into());
        let mut last_alive = Instant::now();
        // The lease held, and until when this leader grants agents a grace.
        // A new term starts a new grace, and so does the database coming
        // back after calls failed (a failover, an outage): the agents'
        // heartbeats could not be recorded meanwhile.
        let mut leader: Option<(Lease, Instant)> = None;
        let mut outage = false;
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
                    outage = self.distrust_lease();
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
                    *self.lease.lock().unwrap() = None;
                    if let Some((lease, _)) = leader.take() {
                        info!(term = lease.term, "another replica holds the leader lease");
                    }
                    continue;
                }
                Err(error) => {
                    warn!(%error, "renewing the leader lease failed");
                    outage = self.distrust_lease();
                    continue;
                }
            };
            let grace_until = match leader {
                Some((held, until)) if held == lease && !outage => until,
                Some((held, _)) if held == lease => {
                    info!(
                        term = lease.term,
                        grace = ?self.offline_after(),
                        "the leader lease is renewed after the database failed calls"
                    );
                    Instant::now() + self.offline_after()
                }
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
            outage = false;
            *self.lease.lock().unwrap() = Some(lease);
            match tokio::time::timeout(bound, self.lead(lease, grace_until))
                .await
                .unwrap_or_else(|_| Err(timed_out()))
            {
                Ok(()) => {}
                Err(StoreError::NotLeader { term }) => {
                    info!(term, "the leader lease was lost; stepping down");
                    leader = None;
                    *self.lease.lock().unwrap() = None;
                }
                Err(error) => {
                    warn!(%error, "leader work failed; retrying next round");
                    outage = self.distrust_lease();
                }
            }
        }
    }

    /// The database failed a call: the lease is not trusted until renewed
    /// (perhaps on another server after a failover). Returns true, for the
    /// loop's `outage`: the renewal grants agents a new grace.
    fn distrust_lease(&self) -> bool {
        *self.lease.lock().unwrap() = None;
        true
    }

    /// Leader-only: marks silent agents (and those of dead replicas)
    /// offline, and redelivers commands stuck without an answer. Both
    /// writes are fenced by the lease's term.
    pub(super) async fn lead(&self, lease: Lease, grace_until: Instant) -> Result<(), StoreError> {
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
        let pruned = self
            .store
            .prune_changes(lease, self.options.watch_retention)
            .await?;
        if pruned > 0 {
            debug!(pruned, "changes older than the watch retention were pruned");
        }
        Ok(())
    }

    /// Leader-only, once per restart interval: a round of automatic
    /// starts (`Leadership::restart_round`). The commands it issues are
    /// delivered like any other.
    pub(super) async fn restart_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.options.restart_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let bound = self.heartbeat_interval;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Some(lease) = *self.lease.lock().unwrap() else {
                continue;
            };
            let round = self.store.restart_round(lease, chrono::Utc::now());
            match tokio::time::timeout(bound, round).await {
                Ok(Ok(round)) => {
                    for outcome in &round.started {
                        info!(
                            connector_id = %outcome.connector.id,
                            command_id = %outcome.command.id,
                            reason = %outcome.command.reason,
                            "automatic start"
                        );
                        self.signals
                            .command_added(&outcome.command.region, &outcome.connector.agent_id);
                    }
                    if round.scheduled + round.cancelled + round.reset > 0 {
                        debug!(
                            scheduled = round.scheduled,
                            cancelled = round.cancelled,
                            reset = round.reset,
                            "automatic starts planned"
                        );
                    }
                }
                Ok(Err(StoreError::NotLeader { term })) => {
                    info!(
                        term,
                        "the leader lease was lost during a round of automatic starts"
                    );
                    let mut held = self.lease.lock().unwrap();
                    if *held == Some(lease) {
                        *held = None;
                    }
                }
                Ok(Err(error)) => warn!(%error, "a round of automatic starts failed; retrying"),
                Err(_) => warn!(
                    ?bound,
                    "a round of automatic starts took too long; retrying"
                ),
            }
        }
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

    /// After this long without writing its heartbeat, this replica ends its
    /// sessions: the others may soon count it dead and its agents' sessions
    /// as ended. One interval earlier than they would, to be safe.
    pub(super) fn presumed_dead_after(&self) -> Duration {
        self.replica_ttl().saturating_sub(self.heartbeat_interval)
    }

    /// Asks every agent connected here to reconnect.
    pub(super) fn end_all_sessions(&self) {
        let previous = std::mem::take(&mut *self.reset.lock().unwrap());
        previous.cancel();
    }

    /// Asks the agents of these sessions (agent id, epoch) to reconnect.
    pub(super) fn recycle(&self, ended: &[(String, i64)]) {
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

    /// Retries the session ends that could not be recorded. Each stays
    /// listed until recorded, so that a cancelled retry loses none.
    pub(super) async fn close_unclosed(&self) {
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
}
