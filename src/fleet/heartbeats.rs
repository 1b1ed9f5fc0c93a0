//! Heartbeats: the changed statuses sessions report, written for every
//! session together at most every `STATUS_FLUSH`, and the last-seen times,
//! written once per heartbeat interval.

use super::Fleet;
use crate::domain::{Gone, ObservedStatus, Session, SessionReport};
use crate::store::{FleetStore, PendingHeartbeat, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// The newest a session said of one connector: a status, or that it no
/// longer lists it.
#[derive(Clone, Debug)]
pub(super) enum Reported {
    Status(ObservedStatus),
    Gone(Gone),
}

impl Reported {
    fn connector_id(&self) -> &str {
        match self {
            Reported::Status(status) => &status.connector_id,
            Reported::Gone(gone) => &gone.connector_id,
        }
    }
}

/// A session and the newest report of each connector.
pub(super) type QueuedStatuses = (Session, HashMap<String, Reported>);

fn report(reported: impl IntoIterator<Item = Reported>) -> SessionReport {
    let mut report = SessionReport::default();
    for entry in reported {
        match entry {
            Reported::Status(status) => report.statuses.push(status),
            Reported::Gone(gone) => report.gone.push(gone),
        }
    }
    report
}

fn report_of(entry: Reported) -> SessionReport {
    report(std::iter::once(entry))
}

fn entries(report: SessionReport) -> impl Iterator<Item = Reported> {
    report
        .statuses
        .into_iter()
        .map(Reported::Status)
        .chain(report.gone.into_iter().map(Reported::Gone))
}

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
    statuses: impl IntoIterator<Item = Reported>,
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
        let queued = entry.1.entry(status.connector_id().to_owned());
        if newer {
            queued.insert_entry(status);
        } else {
            queued.or_insert(status);
        }
    }
}

impl<S: FleetStore> Fleet<S> {
    /// Queues what a heartbeat of `session` reported (the statuses that
    /// changed, the connectors it no longer lists); the newest report of
    /// each connector wins.
    pub fn queue_statuses(&self, session: &Session, report: SessionReport) {
        enqueue(
            &mut self.statuses.lock().unwrap(),
            session,
            entries(report),
            true,
        );
    }

    /// Writes the queued statuses of every session in one transaction, at
    /// most once per `STATUS_FLUSH`: 10,000 agents reporting changes cost
    /// one write every two seconds, not one per heartbeat. Sessions found
    /// superseded end.
    pub(super) async fn status_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(STATUS_FLUSH.min(self.heartbeat_interval));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let batch: Vec<(Session, SessionReport)> = self
                .statuses
                .lock()
                .unwrap()
                .drain()
                .map(|(_, (session, statuses))| (session, report(statuses.into_values())))
                .collect();
            if batch.is_empty() {
                continue;
            }
            let count: usize = batch.iter().map(|(_, report)| report.len()).sum();
            let started = std::time::Instant::now();
            let written = self.write_statuses(&batch).await;
            crate::telemetry::metrics::heartbeat_write("statuses", count, started);
            match written {
                Ok(fenced) => self.end_superseded(fenced),
                Err(error) if error.is_transient() => self.requeue(batch, &error, count),
                // Not the database's state but something in the batch: one
                // bad row must never hold up every agent's reports.
                Err(error) => {
                    warn!(%error, statuses = count,
                          "recording heartbeat statuses failed; writing them one session at a time");
                    self.write_apart(batch).await;
                }
            }
        }
    }

    /// One write of `batch`, bounded in time (a stuck database is an
    /// outage, retried).
    async fn write_statuses(
        &self,
        batch: &[(Session, SessionReport)],
    ) -> Result<Vec<Session>, StoreError> {
        tokio::time::timeout(
            self.heartbeat_interval.max(Duration::from_secs(1)),
            self.store.record_status_batch(batch),
        )
        .await
        .unwrap_or_else(|_| Err(StoreError::Unavailable("no answer in time".into())))
    }

    /// Back in the queue, under anything reported since: the next round
    /// writes it.
    fn requeue(&self, batch: Vec<(Session, SessionReport)>, error: &StoreError, count: usize) {
        warn!(%error, statuses = count, "recording heartbeat statuses failed; retrying next round");
        let mut queue = self.statuses.lock().unwrap();
        for (session, report) in batch {
            enqueue(&mut queue, &session, entries(report), false);
        }
    }

    /// After a batch failed for what it holds: each session's reports
    /// alone, then each report of a session that still fails alone. A
    /// report the database refuses on its own is dropped, logged and
    /// counted (`unwritable`); everything else is written (or, in an
    /// outage, queued again).
    async fn write_apart(&self, batch: Vec<(Session, SessionReport)>) {
        for (session, report) in batch {
            let one = [(session, report)];
            match self.write_statuses(&one).await {
                Ok(fenced) => {
                    self.end_superseded(fenced);
                    continue;
                }
                Err(error) if error.is_transient() => {
                    let count = one[0].1.len();
                    self.requeue(one.into(), &error, count);
                    continue;
                }
                Err(_) => {}
            }
            let [(session, report)] = one;
            for entry in entries(report) {
                let connector_id = entry.connector_id().to_owned();
                let single = [(session.clone(), report_of(entry))];
                match self.write_statuses(&single).await {
                    Ok(fenced) => self.end_superseded(fenced),
                    Err(error) if error.is_transient() => self.requeue(single.into(), &error, 1),
                    Err(error) => {
                        tracing::error!(%error, agent_id = %session.agent_id, %connector_id,
                                        "an agent's report could not be recorded; dropped");
                        crate::telemetry::metrics::report_refused("unwritable", 1);
                    }
                }
            }
        }
    }

    /// Ends the local sessions the store found superseded (a newer session
    /// of their agent exists, on another replica).
    fn end_superseded(&self, fenced: Vec<Session>) {
        for session in fenced {
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

    /// Writes the heartbeat times collected in memory, once per interval,
    /// in one statement.
    pub(super) async fn flush_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let seen: Vec<PendingHeartbeat> =
                self.seen.lock().unwrap().drain().map(|(_, s)| s).collect();
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
}
