//! The embedded store's one process among replicas: always alive and the
//! leader, and no wake-ups to send (see PostgreSQL's `leader.rs`).

use super::EMBEDDED;
use super::error::translate;
use super::reads::online_since;
use super::rows::text;
use super::{SqliteStore, now};
use crate::domain::Replica;
use crate::store::{Leadership, Lease, RestartRound, StoreError, Wakeup, WakeupHandler};
use chrono::{DateTime, Utc};
use rusqlite::params;
use std::time::Duration;

impl Leadership for SqliteStore {
    fn replica_id(&self) -> &str {
        EMBEDDED
    }

    /// The one process that owns the file, always alive and leading.
    async fn list_replicas(&self, _replica_ttl: Duration) -> Result<Vec<Replica>, StoreError> {
        let sessions: i64 = self
            .with(|connection| {
                connection
                    .query_row(
                        "SELECT count(*) FROM agents WHERE disconnect_time IS NULL",
                        [],
                        |row| row.get(0),
                    )
                    .map_err(translate)
            })
            .await?;
        Ok(vec![Replica {
            id: EMBEDDED.to_owned(),
            address: String::new(),
            start_time: self.opened,
            heartbeat_time: now(),
            alive: true,
            draining: false,
            leader_term: Some(1),
            agents: sessions,
        }])
    }

    async fn replica_heartbeat(&self, _address: &str, _draining: bool) -> Result<(), StoreError> {
        Ok(())
    }

    async fn retire_replica(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn acquire_lease(&self, _ttl: Duration) -> Result<Option<Lease>, StoreError> {
        Ok(Some(Lease { term: 1 }))
    }

    /// One process owns the file (see `open`): it is always the leader, and
    /// sessions of other replicas cannot exist.
    async fn sweep_offline(
        &self,
        _lease: Lease,
        offline_after: Duration,
        _replica_ttl: Duration,
    ) -> Result<u64, StoreError> {
        self.write(move |tx| {
            let cutoff = online_since(offline_after);
            let requeued = tx
                .execute(
                    "UPDATE commands SET status = 'PENDING'
                     WHERE status = 'DELIVERED' AND agent_id IN
                         (SELECT id FROM agents WHERE last_heartbeat_time <= ?1)",
                    [&cutoff],
                )
                .map_err(translate)?;
            let unknown = tx
                .execute(
                    // Not a connector whose status was written within the
                    // silence (see PostgreSQL).
                    "UPDATE connectors SET state = 'UNKNOWN', update_time = ?2
                     WHERE state IN ('RUNNING', 'FAILED') AND update_time <= ?1 AND agent_id IN
                         (SELECT id FROM agents WHERE last_heartbeat_time <= ?1)",
                    params![cutoff, text(now())],
                )
                .map_err(translate)?;
            Ok((requeued + unknown) as u64)
        })
        .await
    }

    async fn expire_deliveries(&self, _lease: Lease, timeout: Duration) -> Result<u64, StoreError> {
        self.with(move |connection| {
            let cutoff = online_since(timeout);
            let expired = connection
                .execute(
                    "UPDATE commands SET status = 'PENDING'
                     WHERE status = 'DELIVERED' AND deliver_time <= ?1",
                    [&cutoff],
                )
                .map_err(translate)?;
            Ok(expired as u64)
        })
        .await
    }

    async fn restart_round(
        &self,
        lease: Lease,
        now: DateTime<Utc>,
    ) -> Result<RestartRound, StoreError> {
        self.restart_round_in(lease, now).await
    }

    async fn prune_changes(&self, _lease: Lease, keep: Duration) -> Result<u64, StoreError> {
        self.prune_changes_in(keep).await
    }

    async fn publish(&self, _wakeups: &[Wakeup]) -> Result<(), StoreError> {
        Ok(())
    }

    fn listen(
        &self,
        _handler: WakeupHandler,
        _check_every: Duration,
        _shutdown: tokio_util::sync::CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        None
    }
}
