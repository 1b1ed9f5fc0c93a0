//! Agent sessions over PostgreSQL: epochs for fencing, command claiming,
//! results, batched heartbeats and the liveness sweep.

use super::error::translate;
use super::listen;
use super::rows::{COMMAND_COLUMNS, CONNECTOR_COLUMNS, command_from_row, connector_from_row};
use super::{PgStore, insert_audit};
use crate::domain::fleet::{
    Candidate, Deliverable, ResultDisposition, assign_local, result_disposition, result_effect,
    status_effect,
};
use crate::domain::fleet::{SessionEnd, session_ended, session_started};
use crate::domain::{
    Agent, Command, CommandReport, CommandStatus, ConnectorUpdate, Hello, ObservedStatus,
    RegionSummary, Replica, Session,
};
use crate::domain::{ConnectorState, LagCause, micros};
use crate::store::{
    FleetStore, Lease, MetricsSample, OpenCommands, Seen, StoreError, Wakeup, WakeupHandler,
};
use deadpool_postgres::GenericClient;
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, instrument};

/// The leader lease if `$1` (this process's lease holder name) still holds
/// it in term `$2`. The
/// share lock keeps another replica from taking it over until the
/// statement's transaction ends, so the check holds for the whole write.
const LEASE_CTE: &str = "lease AS (
    SELECT 1 FROM leases
    WHERE name = 'leader' AND holder = $1 AND term = $2 AND expire_time > now()
    FOR SHARE)";

/// SQL true when agent `a` counts as online; `$secs` is `offline_after`.
fn online(secs: usize) -> String {
    format!(
        "(a.disconnect_time IS NULL \
          AND a.last_heartbeat_time > now() - make_interval(secs => ${secs}))"
    )
}

/// Fails with `Fenced` unless `session` is the agent's current session;
/// holds a share lock on the agent row until the transaction ends, so that
/// a newer session cannot start half-way through this write.
async fn fence(client: &impl GenericClient, session: &Session) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached("SELECT session_epoch FROM agents WHERE id = $1 FOR SHARE")
        .await
        .map_err(translate)?;
    let epoch: Option<i64> = client
        .query_opt(&statement, &[&session.agent_id])
        .await
        .map_err(translate)?
        .map(|row| row.get(0));
    if epoch == Some(session.epoch) {
        Ok(())
    } else {
        Err(StoreError::Fenced {
            agent_id: session.agent_id.clone(),
            epoch: session.epoch,
        })
    }
}

/// A CTE, `audited`, appending the `AGENT_SESSION_END` event of each
/// session in the CTE `ended` (rows of `agents`: id, session_id,
/// session_epoch, region, principal, peer), with the reason bound as
/// `$reason`. The detail is `domain::fleet::session_detail`'s form.
fn audit_ended(reason: usize) -> String {
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
async fn requeue_delivered(client: &impl GenericClient, agent_id: &str) -> Result<u64, StoreError> {
    let statement = client
        .prepare_cached(
            "UPDATE commands SET status = 'PENDING'
             WHERE agent_id = $1 AND status = 'DELIVERED'",
        )
        .await
        .map_err(translate)?;
    client
        .execute(&statement, &[&agent_id])
        .await
        .map_err(translate)
}

/// Writes a report's effect on one connector row.
async fn apply_update(
    client: &impl GenericClient,
    connector_id: &str,
    update: &ConnectorUpdate,
) -> Result<(), StoreError> {
    apply_updates(client, &[(connector_id, update)]).await
}

/// Writes reports' effects on connector rows, in one statement.
async fn apply_updates(
    client: &impl GenericClient,
    updates: &[(&str, &ConnectorUpdate)],
) -> Result<(), StoreError> {
    if updates.is_empty() {
        return Ok(());
    }
    let statement = client
        .prepare_cached(
            "UPDATE connectors c SET
                 state = COALESCE(v.state, c.state),
                 desired_state = COALESCE(v.desired_state, c.desired_state),
                 agent_id = COALESCE(v.agent_id, c.agent_id),
                 server_ip = COALESCE(v.server_ip, c.server_ip),
                 region = COALESCE(v.region, c.region),
                 checkpoint_time = COALESCE(v.checkpoint_time, c.checkpoint_time),
                 latency_us = COALESCE(v.latency_us, c.latency_us),
                 store_earliest_time = COALESCE(v.earliest, c.store_earliest_time),
                 store_latest_time = COALESCE(v.latest, c.store_latest_time),
                 status_message = COALESCE(v.status_message, c.status_message),
                 update_time = now()
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::timestamptz[], $8::int8[], $9::timestamptz[], $10::timestamptz[],
                         $11::text[])
                  AS v(id, state, desired_state, agent_id, server_ip, region, checkpoint_time,
                       latency_us, earliest, latest, status_message)
             WHERE c.id = v.id",
        )
        .await
        .map_err(translate)?;
    // One array per column, element i for `updates[i]`; NULL keeps the
    // column as it is.
    fn column<'a, T>(
        updates: &[(&'a str, &'a ConnectorUpdate)],
        value: impl Fn(&'a ConnectorUpdate) -> Option<T>,
    ) -> Vec<Option<T>> {
        updates.iter().map(|(_, update)| value(update)).collect()
    }
    let ids: Vec<&str> = updates.iter().map(|(id, _)| *id).collect();
    client
        .execute(
            &statement,
            &[
                &ids,
                &column(updates, |u| u.state.map(|s| s.as_str())),
                &column(updates, |u| u.desired_state.map(|s| s.as_str())),
                &column(updates, |u| {
                    u.placement.as_ref().map(|p| p.agent_id.as_str())
                }),
                &column(updates, |u| {
                    u.placement.as_ref().map(|p| p.server_ip.as_str())
                }),
                &column(updates, |u| u.placement.as_ref().map(|p| p.region.as_str())),
                &column(updates, |u| u.observed.as_ref()?.checkpoint_time),
                &column(updates, |u| u.observed.as_ref()?.latency.map(micros)),
                &column(updates, |u| {
                    Some(u.observed.as_ref()?.store_range?.earliest)
                }),
                &column(updates, |u| Some(u.observed.as_ref()?.store_range?.latest)),
                &column(updates, |u| u.status_message.as_deref()),
            ],
        )
        .await
        .map_err(translate)?;
    Ok(())
}

/// Applies reports inside the caller's transaction: locks the reported
/// connector rows in id order (so that concurrent writers cannot
/// deadlock), decides each report's effect and writes them all in one
/// statement. Several reports of one connector: the last with an effect
/// counts (two agents may name one connector; only its runner's, or an
/// adopter's, has one).
async fn record_reports(
    client: &impl GenericClient,
    reports: &[(&Session, &ObservedStatus)],
) -> Result<(), StoreError> {
    if reports.is_empty() {
        return Ok(());
    }
    let mut by_connector: HashMap<&str, Vec<(&Session, &ObservedStatus)>> = HashMap::new();
    for &(session, status) in reports {
        by_connector
            .entry(status.connector_id.as_str())
            .or_default()
            .push((session, status));
    }
    let ids: Vec<&str> = by_connector.keys().copied().collect();
    let lock = client
        .prepare_cached(&format!(
            "SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE id = ANY($1) ORDER BY id FOR UPDATE"
        ))
        .await
        .map_err(translate)?;
    let mut updates = Vec::new();
    for row in client.query(&lock, &[&ids]).await.map_err(translate)? {
        let connector = connector_from_row(&row)?;
        let effect = by_connector.get(connector.id.as_str()).and_then(|reports| {
            reports
                .iter()
                .rev()
                .find_map(|(session, status)| status_effect(&connector, status, session))
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
async fn record(
    client: &impl GenericClient,
    session: &Session,
    statuses: &[ObservedStatus],
) -> Result<(), StoreError> {
    let reports: Vec<_> = statuses.iter().map(|status| (session, status)).collect();
    record_reports(client, &reports).await
}

impl FleetStore for PgStore {
    #[instrument(skip_all, fields(agent_id = %hello.agent_id))]
    async fn open_session(&self, hello: &Hello) -> Result<Session, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(translate)?;
        let session_id = uuid::Uuid::now_v7().to_string();
        // The session this one replaces, if it had not ended: it ends here,
        // and its end is audited with whoever opened it.
        let previous = tx
            .prepare_cached(
                "SELECT session_id, session_epoch, region, server_ip, principal, peer
                 FROM agents WHERE id = $1 AND disconnect_time IS NULL
                 FOR UPDATE",
            )
            .await
            .map_err(translate)?;
        let previous = tx
            .query_opt(&previous, &[&hello.agent_id])
            .await
            .map_err(translate)?
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
        let upsert = tx
            .prepare_cached(
                "INSERT INTO agents (id, region, server_ip, instance_id, version, session_id,
                                     replica_id, session_epoch, connect_time,
                                     last_heartbeat_time, principal, peer)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 1, now(), now(), $8, $9)
                 ON CONFLICT (id) DO UPDATE SET
                     region = EXCLUDED.region, server_ip = EXCLUDED.server_ip,
                     instance_id = EXCLUDED.instance_id, version = EXCLUDED.version,
                     session_id = EXCLUDED.session_id, replica_id = EXCLUDED.replica_id,
                     session_epoch = agents.session_epoch + 1,
                     connect_time = now(), last_heartbeat_time = now(), disconnect_time = NULL,
                     principal = EXCLUDED.principal, peer = EXCLUDED.peer
                 -- An agent id belongs to one region: no row comes back.
                 WHERE agents.region = EXCLUDED.region
                 RETURNING session_epoch",
            )
            .await
            .map_err(translate)?;
        let epoch: Option<i64> = tx
            .query_opt(
                &upsert,
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
                ],
            )
            .await
            .map_err(translate)?
            .map(|row| row.get(0));
        let Some(epoch) = epoch else {
            let registered: String = tx
                .query_one(
                    "SELECT region FROM agents WHERE id = $1",
                    &[&hello.agent_id],
                )
                .await
                .map_err(translate)?
                .get(0);
            return Err(StoreError::AgentInOtherRegion {
                agent_id: hello.agent_id.clone(),
                registered,
                claimed: hello.region.clone(),
            });
        };
        let session = Session {
            agent_id: hello.agent_id.clone(),
            session_id,
            epoch,
            region: hello.region.clone(),
            server_ip: hello.server_ip.clone(),
            actor: hello.actor.clone(),
        };
        if let Some(previous) = &previous {
            insert_audit(&tx, &session_ended(previous, &SessionEnd::Superseded)).await?;
        }
        insert_audit(&tx, &session_started(&session)).await?;
        // What an earlier session received but never answered is delivered
        // again (same command id): at-least-once across reconnects.
        let requeued = requeue_delivered(&tx, &hello.agent_id).await?;
        record(&tx, &session, &hello.connectors).await?;
        tx.commit().await.map_err(translate)?;
        debug!(epoch, requeued, "session opened");
        Ok(session)
    }

    async fn close_session(&self, session: &Session, end: &SessionEnd) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(translate)?;
        match fence(&tx, session).await {
            Ok(()) => {}
            // A newer session owns the agent now; nothing to close (the
            // newer session recorded this one's end).
            Err(StoreError::Fenced { .. }) => return Ok(0),
            Err(error) => return Err(error),
        }
        let disconnect = tx
            .prepare_cached(
                "UPDATE agents SET disconnect_time = now()
                 WHERE id = $1 AND disconnect_time IS NULL",
            )
            .await
            .map_err(translate)?;
        if tx
            .execute(&disconnect, &[&session.agent_id])
            .await
            .map_err(translate)?
            == 0
        {
            // Already ended elsewhere (the leader's sweep), and audited.
            return Ok(0);
        }
        insert_audit(&tx, &session_ended(session, end)).await?;
        // Unanswered commands go back to the queue at once, for another
        // agent of the region or for this one when it returns.
        let requeued = requeue_delivered(&tx, &session.agent_id).await?;
        tx.commit().await.map_err(translate)?;
        Ok(requeued)
    }

    #[instrument(skip_all, fields(agent_id = %session.agent_id, statuses = statuses.len()))]
    async fn record_statuses(
        &self,
        session: &Session,
        statuses: &[ObservedStatus],
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(translate)?;
        fence(&tx, session).await?;
        record(&tx, session, statuses).await?;
        tx.commit().await.map_err(translate)
    }

    #[instrument(skip_all, fields(sessions = batch.len()))]
    async fn record_status_batch(
        &self,
        batch: &[(Session, Vec<ObservedStatus>)],
    ) -> Result<Vec<Session>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(translate)?;
        // Three statements whatever the batch's size: fence every session,
        // lock every reported connector, write every change.
        let fence_all = tx
            .prepare_cached(
                "SELECT id, session_epoch FROM agents WHERE id = ANY($1) ORDER BY id FOR SHARE",
            )
            .await
            .map_err(translate)?;
        let agent_ids: Vec<&str> = batch.iter().map(|(s, _)| s.agent_id.as_str()).collect();
        let epochs: HashMap<String, i64> = tx
            .query(&fence_all, &[&agent_ids])
            .await
            .map_err(translate)?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let (current, fenced): (Vec<_>, Vec<_>) = batch
            .iter()
            .partition(|(session, _)| epochs.get(&session.agent_id) == Some(&session.epoch));
        let reports: Vec<(&Session, &ObservedStatus)> = current
            .iter()
            .flat_map(|(session, statuses)| statuses.iter().map(move |status| (session, status)))
            .collect();
        record_reports(&tx, &reports).await?;
        tx.commit().await.map_err(translate)?;
        Ok(fenced
            .into_iter()
            .map(|(session, _)| session.clone())
            .collect())
    }

    async fn flush_heartbeats(&self, seen: &[Seen]) -> Result<Vec<(String, i64)>, StoreError> {
        if seen.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "UPDATE agents SET last_heartbeat_time = GREATEST(agents.last_heartbeat_time, v.time)
                 FROM unnest($1::text[], $2::int8[], $3::timestamptz[]) AS v(id, epoch, time)
                 WHERE agents.id = v.id AND agents.session_epoch = v.epoch
                 RETURNING agents.id, agents.session_epoch, agents.disconnect_time IS NOT NULL",
            )
            .await
            .map_err(translate)?;
        let ids: Vec<&str> = seen.iter().map(|s| s.agent_id.as_str()).collect();
        let epochs: Vec<i64> = seen.iter().map(|s| s.epoch).collect();
        let times: Vec<_> = seen.iter().map(|s| s.time).collect();
        let rows = client
            .query(&statement, &[&ids, &epochs, &times])
            .await
            .map_err(translate)?;
        Ok(rows
            .iter()
            .filter(|row| row.get::<_, bool>(2))
            .map(|row| (row.get(0), row.get(1)))
            .collect())
    }

    async fn pending_regions(&self) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT DISTINCT region FROM commands WHERE status = 'PENDING'")
            .await
            .map_err(translate)?;
        let rows = client.query(&statement, &[]).await.map_err(translate)?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    #[instrument(skip_all, fields(region = %region))]
    async fn claim_commands(
        &self,
        region: &str,
        sessions: &[(Session, usize)],
        offline_after: Duration,
    ) -> Result<Vec<(Session, Command)>, StoreError> {
        let room: usize = sessions.iter().map(|(_, room)| room).sum();
        if room == 0 {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(translate)?;
        // Pending commands: each is its connector's only open one (a newer
        // command supersedes the older ones). Rows another claim or a
        // Start/Pause holds are skipped, never waited for. The runner is
        // the agent still holding an unanswered command this one
        // superseded (it may be carrying it out), else the connector's.
        let candidates = tx
            .prepare_cached(
                "SELECT c.id,
                        COALESCE((SELECT CASE WHEN p.status = 'SUPERSEDED' AND p.late_result = ''
                                              THEN p.agent_id END
                                  FROM commands p
                                  WHERE p.connector_id = c.connector_id
                                    AND p.generation < c.generation AND p.agent_id <> ''
                                  ORDER BY p.generation DESC LIMIT 1),
                                 k.agent_id)
                 FROM commands c JOIN connectors k ON k.id = c.connector_id
                 WHERE c.status = 'PENDING' AND c.region = $1
                 ORDER BY c.create_time
                 LIMIT $2
                 FOR UPDATE OF c, k SKIP LOCKED",
            )
            .await
            .map_err(translate)?;
        let limit = i64::try_from(room).unwrap_or(i64::MAX);
        let deliverable: Vec<Deliverable> = tx
            .query(&candidates, &[&region, &limit])
            .await
            .map_err(translate)?
            .iter()
            .map(|row| Deliverable {
                command_id: row.get(0),
                runner: row.get(1),
            })
            .collect();
        if deliverable.is_empty() {
            return Ok(Vec::new());
        }
        // Online agents of the region and their load. The share lock makes
        // a concurrent new session of one of them wait for this claim, so
        // that its requeue sees what is delivered here.
        let agents = tx
            .prepare_cached(&format!(
                "SELECT a.id, a.session_epoch,
                        (SELECT count(*) FROM connectors x
                         WHERE x.agent_id = a.id AND x.state <> 'STOPPED')
                      + (SELECT count(*) FROM commands y
                         WHERE y.agent_id = a.id AND y.status = 'DELIVERED') AS load
                 FROM agents a
                 WHERE a.region = $1 AND {}
                 ORDER BY a.id
                 FOR SHARE OF a",
                online(2)
            ))
            .await
            .map_err(translate)?;
        let rows = tx
            .query(&agents, &[&region, &offline_after.as_secs_f64()])
            .await
            .map_err(translate)?;
        let candidates: Vec<Candidate> = rows
            .iter()
            .map(|row| Candidate {
                agent_id: row.get(0),
                epoch: row.get(1),
                load: row.get(2),
            })
            .collect();
        let local = assign_local(&deliverable, &candidates, sessions);
        let sessions: HashMap<String, Session> = local
            .iter()
            .map(|(_, session)| (session.agent_id.clone(), session.clone()))
            .collect();
        let (ids, targets): (Vec<String>, Vec<String>) = local
            .into_iter()
            .map(|(command_id, session)| (command_id, session.agent_id))
            .unzip();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let deliver = tx
            .prepare_cached(&format!(
                "UPDATE commands SET status = 'DELIVERED', agent_id = t.agent_id,
                                     deliver_time = now(),
                                     delivery_attempts = delivery_attempts + 1
                 FROM unnest($1::text[], $2::text[]) AS t(id, agent_id)
                 WHERE commands.id = t.id
                 RETURNING {}",
                COMMAND_COLUMNS
                    .split(',')
                    .map(|column| format!("commands.{}", column.trim()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .await
            .map_err(translate)?;
        let rows = tx
            .query(&deliver, &[&ids, &targets])
            .await
            .map_err(translate)?;
        let mut delivered = Vec::with_capacity(rows.len());
        for row in &rows {
            let command = command_from_row(row)?;
            let session = sessions[&command.agent_id].clone();
            delivered.push((session, command));
        }
        tx.commit().await.map_err(translate)?;
        delivered.sort_by_key(|(_, command)| command.generation);
        Ok(delivered)
    }

    async fn release_command(&self, session: &Session, command_id: &str) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(translate)?;
        fence(&tx, session).await?;
        let statement = tx
            .prepare_cached(
                "UPDATE commands SET status = 'PENDING'
                 WHERE id = $1 AND agent_id = $2 AND status = 'DELIVERED'",
            )
            .await
            .map_err(translate)?;
        tx.execute(&statement, &[&command_id, &session.agent_id])
            .await
            .map_err(translate)?;
        tx.commit().await.map_err(translate)
    }

    #[instrument(skip_all, fields(agent_id = %session.agent_id, command_id = %report.command_id))]
    async fn complete_command(
        &self,
        session: &Session,
        report: &CommandReport,
    ) -> Result<Option<Command>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(translate)?;
        fence(&tx, session).await?;
        let find = tx
            .prepare_cached("SELECT connector_id FROM commands WHERE id = $1")
            .await
            .map_err(translate)?;
        let Some(row) = tx
            .query_opt(&find, &[&report.command_id])
            .await
            .map_err(translate)?
        else {
            return Ok(None);
        };
        let connector_id: String = row.get(0);
        // Connector first, then command: the same lock order as Start/Pause.
        let lock_connector = tx
            .prepare_cached(&format!(
                "SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE id = $1 FOR UPDATE"
            ))
            .await
            .map_err(translate)?;
        let connector = connector_from_row(
            &tx.query_one(&lock_connector, &[&connector_id])
                .await
                .map_err(translate)?,
        )?;
        let lock_command = tx
            .prepare_cached(&format!(
                "SELECT {COMMAND_COLUMNS} FROM commands WHERE id = $1 FOR UPDATE"
            ))
            .await
            .map_err(translate)?;
        let command = command_from_row(
            &tx.query_one(&lock_command, &[&report.command_id])
                .await
                .map_err(translate)?,
        )?;
        let outcome = if report.success {
            CommandStatus::Succeeded
        } else {
            CommandStatus::Failed
        };
        let complete = match result_disposition(&command, session) {
            ResultDisposition::Ignore => return Ok(None),
            ResultDisposition::Complete => {
                "UPDATE commands SET status = $2, error_reason = $3, error_message = $4,
                                     complete_time = now()"
            }
            // The status stays SUPERSEDED; the answer is kept.
            ResultDisposition::Late => {
                "UPDATE commands SET late_result = $2, error_reason = $3, error_message = $4,
                                     late_result_time = now()"
            }
        };
        let complete = tx
            .prepare_cached(&format!(
                "{complete} WHERE id = $1 RETURNING {COMMAND_COLUMNS}"
            ))
            .await
            .map_err(translate)?;
        let completed = command_from_row(
            &tx.query_one(
                &complete,
                &[
                    &command.id,
                    &outcome.as_str(),
                    &report.error_reason,
                    &report.error_message,
                ],
            )
            .await
            .map_err(translate)?,
        )?;
        if let Some(update) = result_effect(&connector, &command, report, session) {
            apply_update(&tx, &connector.id, &update).await?;
        }
        tx.commit().await.map_err(translate)?;
        Ok(Some(completed))
    }

    async fn sweep_offline(
        &self,
        lease: Lease,
        offline_after: Duration,
        replica_ttl: Duration,
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
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
            ))
            .await
            .map_err(translate)?;
        let row = client
            .query_one(
                &statement,
                &[
                    &&*self.lease_holder,
                    &lease.term,
                    &offline_after.as_secs_f64(),
                    &replica_ttl.as_secs_f64(),
                    &SessionEnd::ReplicaDead.reason(),
                ],
            )
            .await
            .map_err(translate)?;
        if !row.get::<_, bool>(0) {
            return Err(StoreError::NotLeader { term: lease.term });
        }
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
    }

    async fn expire_deliveries(&self, lease: Lease, timeout: Duration) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "WITH {LEASE_CTE},
                 expired AS (
                     UPDATE commands SET status = 'PENDING'
                     WHERE status = 'DELIVERED'
                       AND deliver_time <= now() - make_interval(secs => $3)
                       AND EXISTS (SELECT 1 FROM lease)
                     RETURNING id)
                 SELECT EXISTS (SELECT 1 FROM lease), (SELECT count(*) FROM expired)"
            ))
            .await
            .map_err(translate)?;
        let row = client
            .query_one(
                &statement,
                &[&&*self.lease_holder, &lease.term, &timeout.as_secs_f64()],
            )
            .await
            .map_err(translate)?;
        if !row.get::<_, bool>(0) {
            return Err(StoreError::NotLeader { term: lease.term });
        }
        let expired: i64 = row.get(1);
        if expired > 0 {
            tracing::warn!(
                expired,
                ?timeout,
                "deliveries unanswered for too long were made pending again"
            );
        }
        Ok(u64::try_from(expired).unwrap_or(0))
    }

    async fn end_orphaned_sessions(&self, replica_ttl: Duration) -> Result<u64, StoreError> {
        let client = self.client().await?;
        // Only when no live process heartbeats under this replica id: two
        // processes started with one id must not end each other's sessions.
        let statement = client
            .prepare_cached(&format!(
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
            ))
            .await
            .map_err(translate)?;
        let row = client
            .query_one(
                &statement,
                &[
                    &&*self.replica_id,
                    &SessionEnd::ReplicaRestarted.reason(),
                    &replica_ttl.as_secs_f64(),
                ],
            )
            .await
            .map_err(translate)?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    fn replica_id(&self) -> &str {
        &self.replica_id
    }

    async fn list_replicas(&self, replica_ttl: Duration) -> Result<Vec<Replica>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
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
            )
            .await
            .map_err(translate)?;
        let rows = client
            .query(&statement, &[&replica_ttl.as_secs_f64()])
            .await
            .map_err(translate)?;
        Ok(rows
            .iter()
            .map(|row| Replica {
                id: row.get("id"),
                address: row.get("address"),
                start_time: row.get("start_time"),
                heartbeat_time: row.get("heartbeat_time"),
                alive: row.get("alive"),
                draining: row.get("draining"),
                leader_term: row.get("leader_term"),
                agents: row.get("agents"),
            })
            .collect())
    }

    async fn replica_heartbeat(&self, address: &str, draining: bool) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO replicas (id, address, draining) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET heartbeat_time = now(),
                     address = EXCLUDED.address, draining = EXCLUDED.draining",
            )
            .await
            .map_err(translate)?;
        client
            .execute(&statement, &[&&*self.replica_id, &address, &draining])
            .await
            .map_err(translate)?;
        Ok(())
    }

    async fn retire_replica(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "WITH released AS (
                     UPDATE leases SET expire_time = now()
                     WHERE holder = $2 AND expire_time > now() RETURNING 1)
                 DELETE FROM replicas WHERE id = $1",
                &[&&*self.replica_id, &&*self.lease_holder],
            )
            .await
            .map_err(translate)?;
        Ok(())
    }

    async fn acquire_lease(&self, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let client = self.client().await?;
        // Renewing keeps the term; taking over (or coming back after the
        // lease lapsed) starts a new one.
        let statement = client
            .prepare_cached(
                "UPDATE leases SET
                     term = CASE WHEN holder = $1 AND expire_time > now()
                                 THEN term ELSE term + 1 END,
                     acquire_time = CASE WHEN holder = $1 AND expire_time > now()
                                         THEN acquire_time ELSE now() END,
                     holder = $1,
                     expire_time = now() + make_interval(secs => $2)
                 WHERE name = 'leader' AND (holder = $1 OR expire_time <= now())
                 RETURNING term",
            )
            .await
            .map_err(translate)?;
        let row = client
            .query_opt(&statement, &[&&*self.lease_holder, &ttl.as_secs_f64()])
            .await
            .map_err(translate)?;
        Ok(row.map(|row| Lease { term: row.get(0) }))
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
        let statement = client
            .prepare_cached(
                "SELECT count(pg_notify(c, p)) FROM unnest($1::text[], $2::text[]) AS t(c, p)",
            )
            .await
            .map_err(translate)?;
        client
            .query_one(&statement, &[&channels, &payloads])
            .await
            .map_err(translate)?;
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

    async fn list_agents(
        &self,
        region: Option<&str>,
        offline_after: Duration,
    ) -> Result<Vec<Agent>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT a.id, a.region, a.server_ip, a.version, a.last_heartbeat_time,
                        a.replica_id, {} AS online,
                        (SELECT count(*) FROM connectors c
                         WHERE c.agent_id = a.id AND c.state <> 'STOPPED') AS connectors
                 FROM agents a
                 WHERE $1::text IS NULL OR a.region = $1
                 ORDER BY a.region, a.id",
                online(2)
            ))
            .await
            .map_err(translate)?;
        let rows = client
            .query(&statement, &[&region, &offline_after.as_secs_f64()])
            .await
            .map_err(translate)?;
        Ok(rows
            .iter()
            .map(|row| Agent {
                id: row.get("id"),
                region: row.get("region"),
                server_ip: row.get("server_ip"),
                version: row.get("version"),
                last_heartbeat_time: row.get("last_heartbeat_time"),
                online: row.get("online"),
                connectors: row.get("connectors"),
                replica_id: if row.get("online") {
                    row.get("replica_id")
                } else {
                    String::new()
                },
            })
            .collect())
    }

    async fn list_regions(
        &self,
        offline_after: Duration,
    ) -> Result<Vec<RegionSummary>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "WITH running AS (SELECT region AS name, count(*) AS connectors
                                  FROM connectors GROUP BY region),
                      serving AS (SELECT a.region AS name, count(*) FILTER (WHERE {}) AS online
                                  FROM agents a GROUP BY a.region)
                 SELECT COALESCE(r.name, s.name) AS name,
                        COALESCE(s.online, 0) AS online, COALESCE(r.connectors, 0) AS connectors
                 FROM running r FULL JOIN serving s ON s.name = r.name
                 ORDER BY 1",
                online(1)
            ))
            .await
            .map_err(translate)?;
        let rows = client
            .query(&statement, &[&offline_after.as_secs_f64()])
            .await
            .map_err(translate)?;
        Ok(rows
            .iter()
            .map(|row| RegionSummary {
                name: row.get("name"),
                online_agents: row.get("online"),
                connectors: row.get("connectors"),
            })
            .collect())
    }

    #[instrument(skip_all)]
    async fn metrics_sample(&self, latency_alert: Duration) -> Result<MetricsSample, StoreError> {
        let client = self.client().await?;
        let by_state = client
            .prepare_cached(
                "SELECT region, state, count(*) AS n FROM connectors GROUP BY region, state",
            )
            .await
            .map_err(translate)?;
        let lagging = client
            .prepare_cached(&format!(
                "SELECT region, state = 'UNKNOWN' AS offline, count(*) AS n
                 FROM connectors WHERE {} GROUP BY 1, 2",
                super::lagging_condition(1)
            ))
            .await
            .map_err(translate)?;
        let open = client
            .prepare_cached(
                "SELECT region, status, count(*) AS n,
                        EXTRACT(EPOCH FROM now() - min(create_time))::float8 AS oldest
                 FROM commands WHERE status IN ('PENDING', 'DELIVERED')
                 GROUP BY region, status",
            )
            .await
            .map_err(translate)?;
        let alert = micros(latency_alert);
        let alert_param: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&alert];
        // Pipelined: three statements, one round trip's worth of waiting.
        let (by_state, lagging, open) = tokio::try_join!(
            client.query(&by_state, &[]),
            client.query(&lagging, &alert_param),
            client.query(&open, &[]),
        )
        .map_err(translate)?;
        let count = |row: &tokio_postgres::Row| row.get::<_, i64>("n").max(0).unsigned_abs();
        let mut sample = MetricsSample::default();
        for row in &by_state {
            if let Some(state) = ConnectorState::parse(row.get("state")) {
                sample
                    .connectors
                    .insert((row.get("region"), state), count(row));
            }
        }
        for row in &lagging {
            let cause = if row.get("offline") {
                LagCause::AgentOffline
            } else {
                LagCause::Latency
            };
            sample
                .lagging
                .insert((row.get("region"), cause), count(row));
        }
        for row in &open {
            if let Some(status) = CommandStatus::parse(row.get("status")) {
                let oldest: f64 = row.get("oldest");
                sample.open_commands.insert(
                    (row.get("region"), status),
                    OpenCommands {
                        count: count(row),
                        oldest_age: Duration::try_from_secs_f64(oldest.max(0.0))
                            .unwrap_or_default(),
                    },
                );
            }
        }
        Ok(sample)
    }
}
