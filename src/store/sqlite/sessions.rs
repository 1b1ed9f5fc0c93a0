//! Agent sessions in the embedded store (see PostgreSQL's `sessions.rs`).

use super::audit::insert_audit;
use super::connectors::get_connector;
use super::error::translate;
use super::rows::text;
use super::{SqliteStore, now};
use crate::domain::fleet::{SessionEnd, session_ended, session_started};
use crate::domain::presence::gone_effect;
use crate::domain::reports::status_effect;
use crate::domain::{ConnectorUpdate, Gone, Hello, ObservedStatus, Session, SessionReport, micros};
use crate::store::{PendingHeartbeat, Sessions, StoreError};
use rusqlite::{Connection, OptionalExtension, params};
use std::time::Duration;

pub(super) fn requeue_delivered(
    connection: &Connection,
    agent_id: &str,
) -> Result<usize, StoreError> {
    connection
        .prepare_cached(
            "UPDATE commands SET status = 'PENDING' WHERE agent_id = ?1 AND status = 'DELIVERED'",
        )
        .map_err(translate)?
        .execute([agent_id])
        .map_err(translate)
}

/// The agent's current session, if it has not ended.
pub(super) fn live_session(
    connection: &Connection,
    agent_id: &str,
) -> Result<Option<Session>, StoreError> {
    connection
        .prepare_cached(
            "SELECT session_id, session_epoch, region, server_ip, principal, peer
             FROM agents WHERE id = ?1 AND disconnect_time IS NULL",
        )
        .map_err(translate)?
        .query_row([agent_id], |row| {
            Ok(Session {
                agent_id: agent_id.to_owned(),
                session_id: row.get(0)?,
                epoch: row.get(1)?,
                region: row.get(2)?,
                server_ip: row.get(3)?,
                actor: crate::domain::Actor {
                    principal: row.get(4)?,
                    peer: row.get(5)?,
                },
            })
        })
        .optional()
        .map_err(translate)
}

/// The agent's current epoch must be the session's.
pub(super) fn fence(connection: &Connection, session: &Session) -> Result<(), StoreError> {
    let epoch: Option<i64> = connection
        .prepare_cached("SELECT session_epoch FROM agents WHERE id = ?1")
        .map_err(translate)?
        .query_row([&session.agent_id], |row| row.get(0))
        .optional()
        .map_err(translate)?;
    StoreError::fence(session, epoch)
}

pub(super) fn apply_update(
    connection: &Connection,
    connector_id: &str,
    update: &ConnectorUpdate,
) -> Result<(), StoreError> {
    let observed = update.observed.as_ref();
    let range = observed.and_then(|o| o.store_range);
    connection
        .prepare_cached(
            "UPDATE connectors SET
                 state = COALESCE(?2, state),
                 desired_state = COALESCE(?3, desired_state),
                 agent_id = COALESCE(?4, agent_id),
                 server_ip = COALESCE(?5, server_ip),
                 region = COALESCE(?6, region),
                 checkpoint_time = COALESCE(?7, checkpoint_time),
                 latency_us = CASE WHEN ?13 THEN ?8 ELSE latency_us END,
                 store_earliest_time = COALESCE(?9, store_earliest_time),
                 store_latest_time = COALESCE(?10, store_latest_time),
                 status_message = COALESCE(?11, status_message),
                 update_time = ?12
             WHERE id = ?1",
        )
        .map_err(translate)?
        .execute(params![
            connector_id,
            update.state.map(|s| s.as_str()),
            update.desired_state.map(|s| s.as_str()),
            update.placement.as_ref().map(|p| p.agent_id.as_str()),
            update.placement.as_ref().map(|p| p.server_ip.as_str()),
            update.placement.as_ref().map(|p| p.region.as_str()),
            observed.and_then(|o| o.checkpoint_time).map(text),
            observed.and_then(|o| o.latency).map(micros),
            range.map(|r| text(r.earliest)),
            range.map(|r| text(r.latest)),
            update.status_message,
            text(now()),
            observed.is_some(),
        ])
        .map_err(translate)?;
    Ok(())
}

pub(super) fn record(
    connection: &Connection,
    session: &Session,
    statuses: &[ObservedStatus],
) -> Result<(), StoreError> {
    for status in statuses {
        if let Some(connector) = get_connector(connection, &status.connector_id)?
            && let Some(update) = status_effect(&connector, status, session)
        {
            apply_update(connection, &connector.id, &update)?;
        }
    }
    Ok(())
}

/// Applies what `session` no longer lists (see PostgreSQL's
/// `record_reports`); `hello`: seen in a hello.
fn record_gone(
    connection: &Connection,
    session: &Session,
    gone: &[Gone],
    hello: bool,
) -> Result<(), StoreError> {
    for gone in gone {
        if let Some(connector) = get_connector(connection, &gone.connector_id)?
            && let Some(update) = gone_effect(&connector, gone, session, hello)
        {
            apply_update(connection, &connector.id, &update)?;
        }
    }
    Ok(())
}

/// A hello's report: what it lists, and what the agent ran before and no
/// longer lists.
fn record_hello(
    connection: &Connection,
    session: &Session,
    hello: &Hello,
) -> Result<(), StoreError> {
    record(connection, session, &hello.connectors)?;
    let listed: std::collections::HashSet<&str> = hello.listed().collect();
    let gone: Vec<Gone> = connection
        .prepare_cached(
            "SELECT id FROM connectors
             WHERE agent_id = ?1 AND state IN ('RUNNING', 'FAILED', 'UNKNOWN') ORDER BY id",
        )
        .map_err(translate)?
        .query_map([&session.agent_id], |row| row.get::<_, String>(0))
        .map_err(translate)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(translate)?
        .into_iter()
        .filter(|id| !listed.contains(id.as_str()))
        .map(|connector_id| Gone {
            connector_id,
            generation: None,
        })
        .collect();
    record_gone(connection, session, &gone, true)
}

impl Sessions for SqliteStore {
    async fn open_session(&self, hello: &Hello) -> Result<Session, StoreError> {
        let hello = hello.clone();
        self.write(move |tx| {
            let session_id = uuid::Uuid::now_v7().to_string();
            let at = text(now());
            // The session this one replaces, if it had not ended: it ends
            // here, audited with whoever opened it.
            let previous = live_session(tx, &hello.agent_id)?;
            let epoch: Option<i64> = tx
                .prepare_cached(
                    "INSERT INTO agents (id, region, server_ip, instance_id, version, session_id,
                                         session_epoch, connect_time, last_heartbeat_time,
                                         principal, peer, driver, pull_back)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (id) DO UPDATE SET
                         region = excluded.region, server_ip = excluded.server_ip,
                         instance_id = excluded.instance_id, version = excluded.version,
                         driver = excluded.driver, pull_back = excluded.pull_back,
                         session_id = excluded.session_id,
                         session_epoch = agents.session_epoch + 1,
                         connect_time = excluded.connect_time,
                         last_heartbeat_time = excluded.last_heartbeat_time,
                         disconnect_time = NULL,
                         principal = excluded.principal, peer = excluded.peer
                     -- An agent id belongs to one region: no row comes back.
                     WHERE agents.region = excluded.region
                     RETURNING session_epoch",
                )
                .map_err(translate)?
                .query_row(
                    params![
                        hello.agent_id,
                        hello.region,
                        hello.server_ip,
                        hello.instance_id,
                        hello.version,
                        session_id,
                        at,
                        hello.actor.principal,
                        hello.actor.peer,
                        hello.capabilities.driver,
                        hello.capabilities.pull_back,
                    ],
                    |row| row.get(0),
                )
                .optional()
                .map_err(translate)?;
            let Some(epoch) = epoch else {
                let registered: String = tx
                    .query_row(
                        "SELECT region FROM agents WHERE id = ?1",
                        [&hello.agent_id],
                        |row| row.get(0),
                    )
                    .map_err(translate)?;
                return Err(StoreError::agent_in_other_region(&hello, registered));
            };
            let session = hello.session(session_id, epoch);
            if let Some(previous) = &previous {
                insert_audit(tx, &session_ended(previous, &SessionEnd::Superseded))?;
            }
            insert_audit(tx, &session_started(&session))?;
            requeue_delivered(tx, &hello.agent_id)?;
            record_hello(tx, &session, &hello)?;
            Ok(session)
        })
        .await
    }

    async fn close_session(&self, session: &Session, end: &SessionEnd) -> Result<u64, StoreError> {
        let (session, end) = (session.clone(), end.clone());
        self.write(move |tx| {
            match fence(tx, &session) {
                Ok(()) => {}
                Err(StoreError::Fenced { .. }) => return Ok(0),
                Err(error) => return Err(error),
            }
            let ended = tx
                .execute(
                    "UPDATE agents SET disconnect_time = ?2
                     WHERE id = ?1 AND disconnect_time IS NULL",
                    params![session.agent_id, text(now())],
                )
                .map_err(translate)?;
            if ended == 0 {
                return Ok(0);
            }
            insert_audit(tx, &session_ended(&session, &end))?;
            let requeued = requeue_delivered(tx, &session.agent_id)?;
            Ok(requeued as u64)
        })
        .await
    }

    /// The one process that owns the file: every session recorded as open
    /// is left over from the process before it.
    async fn end_orphaned_sessions(&self, _replica_ttl: Duration) -> Result<u64, StoreError> {
        self.write(|tx| {
            let ids: Vec<String> = tx
                .prepare("SELECT id FROM agents WHERE disconnect_time IS NULL ORDER BY id")
                .map_err(translate)?
                .query_map([], |row| row.get(0))
                .map_err(translate)?
                .collect::<Result<_, _>>()
                .map_err(translate)?;
            for id in &ids {
                let Some(session) = live_session(tx, id)? else {
                    continue;
                };
                tx.execute(
                    "UPDATE agents SET disconnect_time = ?2 WHERE id = ?1",
                    params![id, text(now())],
                )
                .map_err(translate)?;
                insert_audit(tx, &session_ended(&session, &SessionEnd::ReplicaRestarted))?;
                requeue_delivered(tx, id)?;
            }
            Ok(ids.len() as u64)
        })
        .await
    }

    async fn record_statuses(
        &self,
        session: &Session,
        statuses: &[ObservedStatus],
    ) -> Result<(), StoreError> {
        let (session, statuses) = (session.clone(), statuses.to_vec());
        self.write(move |tx| {
            fence(tx, &session)?;
            record(tx, &session, &statuses)?;
            Ok(())
        })
        .await
    }

    async fn record_status_batch(
        &self,
        batch: &[(Session, SessionReport)],
    ) -> Result<Vec<Session>, StoreError> {
        let batch = batch.to_vec();
        self.write(move |tx| {
            let mut fenced = Vec::new();
            for (session, report) in &batch {
                match fence(tx, session) {
                    Ok(()) => {}
                    Err(StoreError::Fenced { .. }) => {
                        fenced.push(session.clone());
                        continue;
                    }
                    Err(error) => return Err(error),
                }
                record(tx, session, &report.statuses)?;
                record_gone(tx, session, &report.gone, false)?;
            }
            Ok(fenced)
        })
        .await
    }

    /// Sessions are only ever ended by this process here: none to report.
    async fn flush_heartbeats(
        &self,
        seen: &[PendingHeartbeat],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let seen = seen.to_vec();
        self.write(move |tx| {
            {
                let mut statement = tx
                    .prepare_cached(
                        "UPDATE agents SET last_heartbeat_time = max(last_heartbeat_time, ?3)
                         WHERE id = ?1 AND session_epoch = ?2",
                    )
                    .map_err(translate)?;
                for entry in &seen {
                    statement
                        .execute(params![entry.agent_id, entry.epoch, text(entry.time)])
                        .map_err(translate)?;
                }
            }
            Ok(Vec::new())
        })
        .await
    }
}
