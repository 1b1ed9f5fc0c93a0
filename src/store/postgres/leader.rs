//! This replica among the others, on PostgreSQL: its heartbeat row, the
//! leader lease and the leader-only work it fences (the liveness sweep,
//! expiring stuck deliveries), and wake-ups (LISTEN/NOTIFY, `listen.rs`).

use super::PgStore;
use super::conn::{Db, Params};
use super::listen;
use super::sessions::audit_ended;
use crate::domain::Replica;
use crate::domain::fleet::SessionEnd;
use crate::store::{Leadership, Lease, RestartRound, StoreError, Wakeup, WakeupHandler};
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use tokio_util::sync::CancellationToken;

/// The leader lease if `$1` (this process's lease holder name) still holds
/// it in term `$2`. The
/// share lock keeps another replica from taking it over until the
/// statement's transaction ends, so the check holds for the whole write.
pub(super) const LEASE_CTE: &str = "lease AS (
    SELECT 1 FROM leases
    WHERE name = 'leader' AND holder = $1 AND term = $2 AND expire_time > now()
    FOR SHARE)";

impl PgStore {
    /// Runs a leader-only statement (`WITH {LEASE_CTE}, ...`, its writes
    /// guarded by the lease) whose first column says whether the lease was
    /// held: `$1` and `$2` bound to this process's holder name and the
    /// lease's term, `params` from `$3` on. `NotLeader` when it was not held.
    pub(super) async fn as_leader(
        &self,
        client: &impl Db,
        lease: Lease,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Row, StoreError> {
        let holder: &str = &self.lease_holder;
        let fenced: Vec<&(dyn ToSql + Sync)> = [&holder as &(dyn ToSql + Sync), &lease.term]
            .into_iter()
            .chain(params.iter().copied())
            .collect();
        let row = client.query_one(sql, &fenced).await?;
        if !row.get::<_, bool>(0) {
            return Err(StoreError::NotLeader { term: lease.term });
        }
        Ok(row)
    }
}

impl Leadership for PgStore {
    fn replica_id(&self) -> &str {
        &self.replica_id
    }

    async fn list_replicas(&self, replica_ttl: Duration) -> Result<Vec<Replica>, StoreError> {
        self.all(
            "SELECT r.id, r.address, r.start_time, r.heartbeat_time,
                    r.heartbeat_time > now() - make_interval(secs => $1) AS alive,
                    r.draining,
                    (SELECT l.term FROM leases l
                     WHERE l.name = 'leader' AND split_part(l.holder, '/', 1) = r.id
                       AND l.expire_time > now()) AS leader_term,
                    (SELECT count(*) FROM agents a
                     WHERE a.replica_id = r.id AND a.disconnect_time IS NULL) AS agents
             FROM replicas r
             ORDER BY r.id",
            &[&replica_ttl.as_secs_f64()],
            |row| {
                Ok(Replica {
                    id: row.get("id"),
                    address: row.get("address"),
                    start_time: row.get("start_time"),
                    heartbeat_time: row.get("heartbeat_time"),
                    alive: row.get("alive"),
                    draining: row.get("draining"),
                    leader_term: row.get("leader_term"),
                    agents: row.get("agents"),
                })
            },
        )
        .await
    }

    async fn replica_heartbeat(&self, address: &str, draining: bool) -> Result<(), StoreError> {
        self.run(
            "INSERT INTO replicas (id, address, draining) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET heartbeat_time = now(),
                 address = EXCLUDED.address, draining = EXCLUDED.draining",
            &[&&*self.replica_id, &address, &draining],
        )
        .await
    }

    async fn retire_replica(&self) -> Result<(), StoreError> {
        self.run(
            "WITH released AS (
                 UPDATE leases SET expire_time = now()
                 WHERE holder = $2 AND expire_time > now() RETURNING 1)
             DELETE FROM replicas WHERE id = $1",
            &[&&*self.replica_id, &&*self.lease_holder],
        )
        .await
    }

    async fn acquire_lease(&self, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let client = self.client().await?;
        // Renewing keeps the term; taking over (or coming back after the
        // lease lapsed) starts a new one.
        let row = client
            .query_opt(
                "UPDATE leases SET
                     term = CASE WHEN holder = $1 AND expire_time > now()
                                 THEN term ELSE term + 1 END,
                     acquire_time = CASE WHEN holder = $1 AND expire_time > now()
                                         THEN acquire_time ELSE now() END,
                     holder = $1,
                     expire_time = now() + make_interval(secs => $2)
                 WHERE name = 'leader' AND (holder = $1 OR expire_time <= now())
                 RETURNING term",
                &[&&*self.lease_holder, &ttl.as_secs_f64()],
            )
            .await?;
        Ok(row.map(|row| Lease { term: row.get(0) }))
    }

    async fn sweep_offline(
        &self,
        lease: Lease,
        offline_after: Duration,
        replica_ttl: Duration,
    ) -> Result<u64, StoreError> {
        self.retrying(|| async move {
            let sql = format!(
                "WITH {LEASE_CTE},
                 offline AS (
                     SELECT a.id, dead.replica AS dead_replica FROM agents a,
                         LATERAL (SELECT a.disconnect_time IS NULL AND a.replica_id <> ''
                                  AND NOT EXISTS (
                                      SELECT 1 FROM replicas r WHERE r.id = a.replica_id
                                      AND r.heartbeat_time > now() - make_interval(secs => $4))
                                  AS replica) dead
                     WHERE EXISTS (SELECT 1 FROM lease)
                       AND (a.last_heartbeat_time <= now() - make_interval(secs => $3)
                            OR dead.replica)
                     -- An agent reconnecting right now holds its row: skip
                     -- it rather than mark its fresh session's work.
                     FOR UPDATE OF a SKIP LOCKED),
                 -- Sessions of a dead replica end here; their agents come
                 -- back through another replica with a new epoch.
                 ended AS (
                     UPDATE agents SET disconnect_time = now()
                     WHERE id IN (SELECT id FROM offline) AND disconnect_time IS NULL
                       AND replica_id <> ''
                       AND NOT EXISTS (
                           SELECT 1 FROM replicas r WHERE r.id = agents.replica_id
                           AND r.heartbeat_time > now() - make_interval(secs => $4))
                     RETURNING id, session_id, session_epoch, region, principal, peer),
                 {},
                 requeued AS (
                     UPDATE commands SET status = 'PENDING'
                     WHERE status = 'DELIVERED' AND agent_id IN (SELECT id FROM offline)
                     RETURNING 1),
                 -- A connector whose status was written within the
                 -- silence is not stale: its agent reported it after its
                 -- last recorded heartbeat (those are flushed later).
                 unknown AS (
                     UPDATE connectors SET state = 'UNKNOWN', update_time = now()
                     WHERE state IN ('RUNNING', 'FAILED')
                       AND EXISTS (SELECT 1 FROM offline o WHERE o.id = connectors.agent_id
                                   AND (o.dead_replica
                                        OR connectors.update_time
                                           <= now() - make_interval(secs => $3)))
                     RETURNING 1),
                 forgotten AS (
                     DELETE FROM replicas
                     WHERE heartbeat_time < now() - interval '1 day' AND EXISTS (SELECT 1 FROM lease)
                     RETURNING 1)
                 SELECT EXISTS (SELECT 1 FROM lease), (SELECT count(*) FROM unknown),
                        (SELECT count(*) FROM requeued), (SELECT count(*) FROM ended),
                        (SELECT count(*) FROM forgotten), (SELECT count(*) FROM audited)",
                audit_ended(5)
            );
            let params: Params = &[
                &offline_after.as_secs_f64(),
                &replica_ttl.as_secs_f64(),
                &SessionEnd::ReplicaDead.reason(),
            ];
            let client = self.client().await?;
            let row = self.as_leader(&client, lease, &sql, params).await?;
            let (unknown, requeued, ended): (i64, i64, i64) = (row.get(1), row.get(2), row.get(3));
            if unknown > 0 || requeued > 0 || ended > 0 {
                tracing::info!(
                    unknown,
                    requeued,
                    sessions_of_dead_replicas = ended,
                    "agents went silent"
                );
            }
            Ok(u64::try_from(unknown + requeued + ended).unwrap_or(0))
        })
        .await
    }

    async fn expire_deliveries(&self, lease: Lease, timeout: Duration) -> Result<u64, StoreError> {
        self.retrying(|| async move {
            let sql = format!(
                "WITH {LEASE_CTE},
                 expired AS (
                     UPDATE commands SET status = 'PENDING'
                     WHERE status = 'DELIVERED'
                       AND deliver_time <= now() - make_interval(secs => $3)
                       AND EXISTS (SELECT 1 FROM lease)
                     RETURNING id)
                 SELECT EXISTS (SELECT 1 FROM lease), (SELECT count(*) FROM expired)"
            );
            let client = self.client().await?;
            let row = self
                .as_leader(&client, lease, &sql, &[&timeout.as_secs_f64()])
                .await?;
            let expired: i64 = row.get(1);
            if expired > 0 {
                tracing::warn!(
                    expired,
                    ?timeout,
                    "deliveries unanswered for too long were made pending again"
                );
            }
            Ok(u64::try_from(expired).unwrap_or(0))
        })
        .await
    }

    async fn restart_round(
        &self,
        lease: Lease,
        now: DateTime<Utc>,
    ) -> Result<RestartRound, StoreError> {
        self.retrying(|| self.restart_round_once(lease, now)).await
    }

    async fn prune_changes(&self, lease: Lease, keep: Duration) -> Result<u64, StoreError> {
        self.retrying(|| self.prune_changes_once(lease, keep)).await
    }

    async fn publish(&self, wakeups: &[Wakeup]) -> Result<(), StoreError> {
        let (channels, payloads): (Vec<&str>, Vec<&str>) =
            wakeups.iter().filter_map(listen::channel_of).unzip();
        if channels.is_empty() {
            return Ok(());
        }
        let client = self.client().await?;
        // Its own short transaction: NOTIFY serialises commits that send
        // one, so it never rides on a Start or Pause transaction.
        client
            .query_one(
                "SELECT count(pg_notify(c, p)) FROM unnest($1::text[], $2::text[]) AS t(c, p)",
                &[&channels, &payloads],
            )
            .await?;
        Ok(())
    }

    fn listen(
        &self,
        handler: WakeupHandler,
        check_every: Duration,
        shutdown: CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        Some(tokio::spawn(listen::run(
            self.config.clone(),
            self.replica_id.to_string(),
            handler,
            check_every,
            shutdown,
        )))
    }
}
