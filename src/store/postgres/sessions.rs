//! Agent sessions on PostgreSQL: opening (with the epoch that fences the
//! older session), closing, the statuses agents report (applied through
//! one statement whatever their number) and heartbeats.

use super::PgStore;
use super::audit::insert_audit;
use super::conn::{Db, column};
use super::rows::{CONNECTOR_COLUMNS, connector_from_row};
use crate::domain::fleet::{SessionEnd, session_ended, session_started};
use crate::domain::presence::gone_effect;
use crate::domain::reports::status_effect;
use crate::domain::{ConnectorUpdate, Gone, Hello, ObservedStatus, Session, SessionReport, micros};
use crate::store::{PendingHeartbeat, Sessions, StoreError};
use std::collections::HashMap;
use std::time::Duration;
use tracing::{debug, instrument};

/// Fails with `Fenced` unless `session` is the agent's current session;
/// holds a share lock on the agent row until the transaction ends, so that
/// a newer session cannot start half-way through this write.
pub(super) async fn fence(client: &impl Db, session: &Session) -> Result<(), StoreError> {
    let epoch: Option<i64> = client
        .query_opt(
            "SELECT session_epoch FROM agents WHERE id = $1 FOR SHARE",
            &[&session.agent_id],
        )
        .await?
        .map(|row| row.get(0));
    StoreError::fence(session, epoch)
}

/// A CTE, `audited`, appending the `AGENT_SESSION_END` event of each
/// session in the CTE `ended` (rows of `agents`: id, session_id,
/// session_epoch, region, principal, peer), with the reason bound as
/// `$reason`. The detail is `domain::fleet::session_detail`'s form.
pub(super) fn audit_ended(reason: usize) -> String {
    format!(
        "audited AS (
             INSERT INTO audit_events (principal, action, outcome, reason, peer, detail)
             SELECT principal, 'AGENT_SESSION_END', 'OK', ${reason}, peer,
                    'agent ' || id || ' session ' || session_id || ' epoch ' || session_epoch
                    || ' region ' || region
             FROM ended
             RETURNING 1)"
    )
}

/// Makes what `agent_id` was sent and has not answered pending again.
pub(super) async fn requeue_delivered(client: &impl Db, agent_id: &str) -> Result<u64, StoreError> {
    client
        .execute(
            "UPDATE commands SET status = 'PENDING'
             WHERE agent_id = $1 AND status = 'DELIVERED'",
            &[&agent_id],
        )
        .await
}

/// Writes a report's effect on one connector row.
pub(super) async fn apply_update(
    client: &impl Db,
    connector_id: &str,
    update: &ConnectorUpdate,
) -> Result<(), StoreError> {
    apply_updates(client, &[(connector_id, update)]).await
}

/// Writes reports' effects on connector rows, in one statement.
pub(super) async fn apply_updates(
    client: &impl Db,
    updates: &[(&str, &ConnectorUpdate)],
) -> Result<(), StoreError> {
    if updates.is_empty() {
        return Ok(());
    }
    // NULL keeps a column as it is; but an observation replaces the latency
    // (none: the agent measures no lag now, a stopped simulation say).
    let ids = column(updates, |(id, _)| *id);
    client
        .execute(
            "UPDATE connectors c SET
                 state = COALESCE(v.state, c.state),
                 desired_state = COALESCE(v.desired_state, c.desired_state),
                 agent_id = COALESCE(v.agent_id, c.agent_id),
                 server_ip = COALESCE(v.server_ip, c.server_ip),
                 region = COALESCE(v.region, c.region),
                 checkpoint_time = COALESCE(v.checkpoint_time, c.checkpoint_time),
                 latency_us = CASE WHEN v.observed THEN v.latency_us ELSE c.latency_us END,
                 store_earliest_time = COALESCE(v.earliest, c.store_earliest_time),
                 store_latest_time = COALESCE(v.latest, c.store_latest_time),
                 status_message = COALESCE(v.status_message, c.status_message),
                 update_time = now()
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::timestamptz[], $8::int8[], $9::timestamptz[], $10::timestamptz[],
                         $11::text[], $12::bool[])
                  AS v(id, state, desired_state, agent_id, server_ip, region, checkpoint_time,
                       latency_us, earliest, latest, status_message, observed)
             WHERE c.id = v.id",
            &[
                &ids,
                &column(updates, |(_, u)| u.state.map(|s| s.as_str())),
                &column(updates, |(_, u)| u.desired_state.map(|s| s.as_str())),
                &column(updates, |(_, u)| {
                    u.placement.as_ref().map(|p| p.agent_id.as_str())
                }),
                &column(updates, |(_, u)| {
                    u.placement.as_ref().map(|p| p.server_ip.as_str())
                }),
                &column(updates, |(_, u)| {
                    u.placement.as_ref().map(|p| p.region.as_str())
                }),
                &column(updates, |(_, u)| u.observed.as_ref()?.checkpoint_time),
                &column(updates, |(_, u)| u.observed.as_ref()?.latency.map(micros)),
                &column(updates, |(_, u)| {
                    Some(u.observed.as_ref()?.store_range?.earliest)
                }),
                &column(updates, |(_, u)| {
                    Some(u.observed.as_ref()?.store_range?.latest)
                }),
                &column(updates, |(_, u)| u.status_message.as_deref()),
                &updates
                    .iter()
                    .map(|(_, u)| u.observed.is_some())
                    .collect::<Vec<bool>>(),
            ],
        )
        .await?;
    Ok(())
}

/// Applies reports inside the caller's transaction: locks the reported
/// connector rows in id order (so that concurrent writers cannot
/// deadlock), decides each report's effect and writes them all in one
/// statement. Several reports of one connector: the last with an effect
/// counts (two agents may name one connector; only its runner's, or an
/// adopter's, has one). `gone` are connectors sessions no longer list
/// (`domain::presence::gone_effect`; the flag: seen in a hello).
pub(super) async fn record_reports(
    client: &impl Db,
    reports: &[(&Session, &ObservedStatus)],
    gone: &[(&Session, &Gone, bool)],
) -> Result<(), StoreError> {
    if reports.is_empty() && gone.is_empty() {
        return Ok(());
    }
    let mut by_connector: HashMap<&str, Vec<(&Session, &ObservedStatus)>> = HashMap::new();
    for &(session, status) in reports {
        by_connector
            .entry(status.connector_id.as_str())
            .or_default()
            .push((session, status));
    }
    let mut gone_by_connector: HashMap<&str, Vec<(&Session, &Gone, bool)>> = HashMap::new();
    for &(session, gone, hello) in gone {
        gone_by_connector
            .entry(gone.connector_id.as_str())
            .or_default()
            .push((session, gone, hello));
    }
    let ids: Vec<&str> = by_connector
        .keys()
        .chain(gone_by_connector.keys())
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut updates = Vec::new();
    let lock = format!(
        "SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE id = ANY($1) ORDER BY id FOR UPDATE"
    );
    for row in client.query(&lock, &[&ids]).await? {
        let connector = connector_from_row(&row)?;
        let reported = by_connector.get(connector.id.as_str()).and_then(|reports| {
            reports
                .iter()
                .rev()
                .find_map(|(session, status)| status_effect(&connector, status, session))
        });
        let effect = reported.or_else(|| {
            gone_by_connector
                .get(connector.id.as_str())
                .and_then(|gone| {
                    gone.iter().rev().find_map(|(session, gone, hello)| {
                        gone_effect(&connector, gone, session, *hello)
                    })
                })
        });
        if let Some(update) = effect {
            updates.push((connector.id, update));
        }
    }
    let updates: Vec<(&str, &ConnectorUpdate)> = updates
        .iter()
        .map(|(id, update)| (id.as_str(), update))
        .collect();
    apply_updates(client, &updates).await
}

/// `record_reports` for one session's statuses.
pub(super) async fn record(
    client: &impl Db,
    session: &Session,
    statuses: &[ObservedStatus],
) -> Result<(), StoreError> {
    let reports: Vec<_> = statuses.iter().map(|status| (session, status)).collect();
    record_reports(client, &reports, &[]).await
}

/// A hello's report: what it lists, and what the agent ran before and no
/// longer lists (it is not running).
async fn record_hello(
    client: &impl Db,
    session: &Session,
    hello: &Hello,
) -> Result<(), StoreError> {
    let listed: Vec<&str> = hello.listed().collect();
    let gone: Vec<Gone> = client
        .query(
            "SELECT id FROM connectors
             WHERE agent_id = $1 AND state IN ('RUNNING', 'FAILED', 'UNKNOWN')
               AND NOT (id = ANY($2))",
            &[&session.agent_id, &listed],
        )
        .await?
        .iter()
        .map(|row| Gone {
            connector_id: row.get(0),
            generation: None,
        })
        .collect();
    let reports: Vec<_> = hello
        .connectors
        .iter()
        .map(|status| (session, status))
        .collect();
    let gone: Vec<_> = gone.iter().map(|gone| (session, gone, true)).collect();
    record_reports(client, &reports, &gone).await
}

impl Sessions for PgStore {
    #[instrument(skip_all, fields(agent_id = %hello.agent_id))]
    async fn open_session(&self, hello: &Hello) -> Result<Session, StoreError> {
        self.retrying(|| async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let session_id = uuid::Uuid::now_v7().to_string();
            // The session this one replaces, if it had not ended: it ends here,
            // and its end is audited with whoever opened it.
            let previous = tx
                .query_opt(
                    "SELECT session_id, session_epoch, region, server_ip, principal, peer
                     FROM agents WHERE id = $1 AND disconnect_time IS NULL
                     FOR UPDATE",
                    &[&hello.agent_id],
                )
                .await?
                .map(|row| Session {
                    agent_id: hello.agent_id.clone(),
                    session_id: row.get(0),
                    epoch: row.get(1),
                    region: row.get(2),
                    server_ip: row.get(3),
                    actor: crate::domain::Actor {
                        principal: row.get(4),
                        peer: row.get(5),
                    },
                });
            let epoch: Option<i64> = tx
                .query_opt(
                    "INSERT INTO agents (id, region, server_ip, instance_id, version, session_id,
                                         replica_id, session_epoch, connect_time,
                                         last_heartbeat_time, principal, peer, driver, pull_back)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 1, now(), now(), $8, $9, $10, $11)
                     ON CONFLICT (id) DO UPDATE SET
                         region = EXCLUDED.region, server_ip = EXCLUDED.server_ip,
                         instance_id = EXCLUDED.instance_id, version = EXCLUDED.version,
                         driver = EXCLUDED.driver, pull_back = EXCLUDED.pull_back,
                         session_id = EXCLUDED.session_id, replica_id = EXCLUDED.replica_id,
                         session_epoch = agents.session_epoch + 1,
                         connect_time = now(), last_heartbeat_time = now(), disconnect_time = NULL,
                         principal = EXCLUDED.principal, peer = EXCLUDED.peer
                     -- An agent id belongs to one region: no row comes back.
                     WHERE agents.region = EXCLUDED.region
                     RETURNING session_epoch",
                    &[
                        &hello.agent_id,
                        &hello.region,
                        &hello.server_ip,
                        &hello.instance_id,
                        &hello.version,
                        &session_id,
                        &&*self.replica_id,
                        &hello.actor.principal,
                        &hello.actor.peer,
                        &hello.capabilities.driver,
                        &hello.capabilities.pull_back,
                    ],
                )
                .await?
                .map(|row| row.get(0));
            let Some(epoch) = epoch else {
                let registered: String = tx
                    .query_one(
                        "SELECT region FROM agents WHERE id = $1",
                        &[&hello.agent_id],
                    )
                    .await?
                    .get(0);
                return Err(StoreError::agent_in_other_region(hello, registered));
            };
            let session = hello.session(session_id, epoch);
            if let Some(previous) = &previous {
                insert_audit(&tx, &session_ended(previous, &SessionEnd::Superseded)).await?;
            }
            insert_audit(&tx, &session_started(&session)).await?;
            // What an earlier session received but never answered is delivered
            // again (same command id): at-least-once across reconnects.
            let requeued = requeue_delivered(&tx, &hello.agent_id).await?;
            record_hello(&tx, &session, hello).await?;
            tx.commit().await?;
            debug!(epoch, requeued, "session opened");
            Ok(session)
        })
        .await
    }

    async fn close_session(&self, session: &Session, end: &SessionEnd) -> Result<u64, StoreError> {
        self.retrying(|| async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            match fence(&tx, session).await {
                Ok(()) => {}
                // A newer session owns the agent now; nothing to close (the
                // newer session recorded this one's end).
                Err(StoreError::Fenced { .. }) => return Ok(0),
                Err(error) => return Err(error),
            }
            if tx
                .execute(
                    "UPDATE agents SET disconnect_time = now()
                     WHERE id = $1 AND disconnect_time IS NULL",
                    &[&session.agent_id],
                )
                .await?
                == 0
            {
                // Already ended elsewhere (the leader's sweep), and audited.
                return Ok(0);
            }
            insert_audit(&tx, &session_ended(session, end)).await?;
            // Unanswered commands go back to the queue at once, for another
            // agent of the region or for this one when it returns.
            let requeued = requeue_delivered(&tx, &session.agent_id).await?;
            tx.commit().await?;
            Ok(requeued)
        })
        .await
    }

    async fn end_orphaned_sessions(&self, replica_ttl: Duration) -> Result<u64, StoreError> {
        self.retrying(|| async move {
            let client = self.client().await?;
            // Only when no live process heartbeats under this replica id: two
            // processes started with one id must not end each other's sessions.
            let row = client
                .query_one(
                    &format!(
                        "WITH ended AS (
                             UPDATE agents SET disconnect_time = now()
                             WHERE replica_id = $1 AND disconnect_time IS NULL
                               AND NOT EXISTS (
                                   SELECT 1 FROM replicas r WHERE r.id = $1
                                   AND r.heartbeat_time > now() - make_interval(secs => $3))
                             RETURNING id, session_id, session_epoch, region, principal, peer),
                         {},
                         requeued AS (
                             UPDATE commands SET status = 'PENDING'
                             WHERE status = 'DELIVERED' AND agent_id IN (SELECT id FROM ended)
                             RETURNING 1)
                         SELECT (SELECT count(*) FROM ended), (SELECT count(*) FROM audited),
                                (SELECT count(*) FROM requeued)",
                        audit_ended(2)
                    ),
                    &[
                        &&*self.replica_id,
                        &SessionEnd::ReplicaRestarted.reason(),
                        &replica_ttl.as_secs_f64(),
                    ],
                )
                .await?;
            Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
        })
        .await
    }

    #[instrument(skip_all, fields(agent_id = %session.agent_id, statuses = statuses.len()))]
    async fn record_statuses(
        &self,
        session: &Session,
        statuses: &[ObservedStatus],
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        fence(&tx, session).await?;
        record(&tx, session, statuses).await?;
        tx.commit().await
    }

    #[instrument(skip_all, fields(sessions = batch.len()))]
    async fn record_status_batch(
        &self,
        batch: &[(Session, SessionReport)],
    ) -> Result<Vec<Session>, StoreError> {
        self.retrying(|| async move {
            if batch.is_empty() {
                return Ok(Vec::new());
            }
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            // Three statements whatever the batch's size: fence every session,
            // lock every reported connector, write every change.
            let agent_ids: Vec<&str> = batch.iter().map(|(s, _)| s.agent_id.as_str()).collect();
            let epochs: HashMap<String, i64> = tx
                .query(
                    "SELECT id, session_epoch FROM agents WHERE id = ANY($1) ORDER BY id FOR SHARE",
                    &[&agent_ids],
                )
                .await?
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect();
            let (current, fenced): (Vec<_>, Vec<_>) = batch
                .iter()
                .partition(|(session, _)| epochs.get(&session.agent_id) == Some(&session.epoch));
            let reports: Vec<(&Session, &ObservedStatus)> = current
                .iter()
                .flat_map(|(session, report)| {
                    report.statuses.iter().map(move |status| (session, status))
                })
                .collect();
            let gone: Vec<(&Session, &Gone, bool)> = current
                .iter()
                .flat_map(|(session, report)| {
                    report.gone.iter().map(move |gone| (session, gone, false))
                })
                .collect();
            record_reports(&tx, &reports, &gone).await?;
            tx.commit().await?;
            Ok(fenced
                .into_iter()
                .map(|(session, _)| session.clone())
                .collect())
        })
        .await
    }

    async fn flush_heartbeats(
        &self,
        seen: &[PendingHeartbeat],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let client = self.client().await?;
        let ids = column(seen, |s| s.agent_id.as_str());
        let epochs = column(seen, |s| s.epoch);
        let times = column(seen, |s| s.time);
        let rows = client
            .query(
                "UPDATE agents
                 SET last_heartbeat_time = GREATEST(agents.last_heartbeat_time, v.time)
                 FROM unnest($1::text[], $2::int8[], $3::timestamptz[]) AS v(id, epoch, time)
                 WHERE agents.id = v.id AND agents.session_epoch = v.epoch
                 RETURNING agents.id, agents.session_epoch, agents.disconnect_time IS NOT NULL",
                &[&ids, &epochs, &times],
            )
            .await?;
        Ok(rows
            .iter()
            .filter(|row| row.get::<_, bool>(2))
            .map(|row| (row.get(0), row.get(1)))
            .collect())
    }
}
