//! The embedded backend: one SQLite file (bundled SQLite, WAL journal), one
//! writer. For a control plane that needs no database server: a laptop, a
//! demo, a small single-replica deployment. A second process on the same
//! file is refused: an exclusive `flock` on the database file itself, so
//! that it holds for the file (its inode), whatever path, symbolic or hard
//! link reaches it.
//!
//! Every operation runs on a blocking thread holding the one connection, so
//! operations are serialised; the domain rules are the same as PostgreSQL's
//! (`crate::domain`, `store::Change`), only the SQL differs.

mod rows;

use super::{
    CommandOutcome, FleetStore, Lease, MetricsSample, OpenCommands, Page, Seen, Store, StoreError,
    Wakeup, WakeupHandler, escape_like, fold,
};
use crate::domain::fleet::{
    Candidate, Deliverable, ResultDisposition, SessionEnd, assign_local, result_disposition,
    result_effect, session_ended, session_started, status_effect,
};
use crate::domain::{
    Agent, AuditAction, AuditEvent, AuditFilter, Change, Command, CommandReport, CommandStatus,
    Connector, ConnectorUpdate, Cursor, Hello, NewAuditEvent, NewConnector, ObservedStatus,
    RegionSummary, Replica, SearchFilter, Session, trace_context_to_text,
};
use crate::domain::{ConnectorState, LagCause, micros};
use anyhow::Context;
use chrono::{DateTime, Utc};
use rows::{COMMAND_COLUMNS, CONNECTOR_COLUMNS, command_from_row, connector_from_row, text};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

refinery::embed_migrations!("src/store/sqlite/migrations");

/// The replica id of the embedded store's one process.
const EMBEDDED: &str = "embedded";

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
    path: PathBuf,
    opened: DateTime<Utc>,
}

/// The connection and the lock, released in this order: the lock's file
/// descriptor is closed only after SQLite closed its own (closing another
/// descriptor of the file while SQLite's is open would drop SQLite's POSIX
/// locks).
struct Inner {
    connection: Mutex<Connection>,
    /// Held for the store's lifetime: the single-replica guarantee.
    _lock: std::fs::File,
    /// The lock earlier versions took (`<file>.lock`), held too, so that
    /// an older binary cannot open the file during an upgrade. To be
    /// dropped once no such binary runs.
    _legacy_lock: std::fs::File,
}

/// The lock earlier versions took: `<canonical path>.lock`.
fn legacy_lock(path: &Path) -> anyhow::Result<std::fs::File> {
    let canonical = std::fs::canonicalize(path)
        .with_context(|| format!("cannot resolve {}", path.display()))?;
    let lock_path = PathBuf::from(format!("{}.lock", canonical.display()));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "{} is in use by an older connector-control process (it holds {}); stop it first",
            path.display(),
            lock_path.display()
        ),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("cannot lock {}", lock_path.display()))
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn translate(error: rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(error.to_string())
        }
        _ => StoreError::Internal(error.to_string()),
    }
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

/// Now, to the microsecond, as stored.
fn now() -> DateTime<Utc> {
    chrono::SubsecRound::trunc_subsecs(Utc::now(), 6)
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and applies its
    /// migrations. Fails if another process holds the file.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        // The lock is on the database file itself (flock, which SQLite's
        // own fcntl locks do not interact with on Linux): a second server
        // reaching it through another path, a symbolic or a hard link, is
        // refused, instead of opening it with a WAL of its own.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot create the embedded store {}", path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "{} is in use by another connector-control process; the embedded store serves \
                 one process at a time (use PostgreSQL, --database-url, for several replicas)",
                path.display()
            ),
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(error).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        let legacy = legacy_lock(path)?;
        let mut connection = Connection::open(path)
            .with_context(|| format!("cannot open the embedded store {}", path.display()))?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA busy_timeout = 5000;",
            )
            .with_context(|| format!("configuring {}", path.display()))?;
        migrations::runner()
            .set_abort_divergent(true)
            .run(&mut connection)
            .with_context(|| format!("migrating {}", path.display()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                connection: Mutex::new(connection),
                _lock: lock,
                _legacy_lock: legacy,
            }),
            path: path.to_owned(),
            opened: now(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` on a blocking thread with the connection.
    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // A panic mid-operation rolled its transaction back when the
            // transaction was dropped: the connection is still sound.
            let mut connection = inner
                .connection
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            work(&mut connection)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
    }
}

fn get_connector(connection: &Connection, id: &str) -> Result<Option<Connector>, StoreError> {
    connection
        .prepare_cached(&format!(
            "SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE id = ?1"
        ))
        .map_err(translate)?
        .query_row([id], |row| Ok(connector_from_row(row)))
        .optional()
        .map_err(translate)?
        .transpose()
}

fn get_command(connection: &Connection, id: &str) -> Result<Option<Command>, StoreError> {
    connection
        .prepare_cached(&format!(
            "SELECT {COMMAND_COLUMNS} FROM commands WHERE id = ?1"
        ))
        .map_err(translate)?
        .query_row([id], |row| Ok(command_from_row(row)))
        .optional()
        .map_err(translate)?
        .transpose()
}

fn region_exists(connection: &Connection, region: &str) -> Result<bool, StoreError> {
    connection
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM connectors WHERE destination_region = ?1
                              OR source_region = ?1 OR region = ?1)
                 OR EXISTS (SELECT 1 FROM agents WHERE region = ?1)",
        )
        .map_err(translate)?
        .query_row([region], |row| row.get(0))
        .map_err(translate)
}

fn transition(connection: &mut Connection, change: &Change) -> Result<CommandOutcome, StoreError> {
    let tx = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(translate)?;
    let connector_id = change.connector_id();
    let Some(connector) = get_connector(&tx, connector_id)? else {
        return Err(StoreError::ConnectorNotFound(connector_id.to_owned()));
    };
    if let Some(request_id) = change.request_id() {
        let previous = tx
            .prepare_cached(&format!(
                "SELECT {COMMAND_COLUMNS} FROM commands WHERE connector_id = ?1 AND request_id = ?2"
            ))
            .map_err(translate)?
            .query_row([connector_id, request_id], |row| Ok(command_from_row(row)))
            .optional()
            .map_err(translate)?
            .transpose()?;
        if let Some(command) = previous {
            change.check_replay(&connector, &command)?;
            return Ok(CommandOutcome {
                connector,
                command,
                replayed: true,
            });
        }
    }
    let region_known = match change.region_to_verify(&connector) {
        Some(region) => region_exists(&tx, region)?,
        None => true,
    };
    let undelivered_start_from: Option<String> = match change {
        Change::Pause(_) => tx
            .prepare_cached(
                "SELECT previous_region FROM commands
                 WHERE connector_id = ?1 AND kind = 'START' AND status = 'PENDING'
                 ORDER BY generation DESC LIMIT 1",
            )
            .map_err(translate)?
            .query_row([connector_id], |row| row.get(0))
            .optional()
            .map_err(translate)?,
        Change::Start(_) => None,
    };
    let transition = change.decide(
        &connector,
        region_known,
        undelivered_start_from.as_deref(),
        Utc::now(),
    )?;
    let at = text(now());
    // Every older unanswered command, delivered or not (see PostgreSQL).
    tx.prepare_cached(
        "UPDATE commands SET status = 'SUPERSEDED', complete_time = ?2
         WHERE connector_id = ?1 AND status IN ('PENDING', 'DELIVERED')",
    )
    .map_err(translate)?
    .execute(params![connector_id, at])
    .map_err(translate)?;
    let command_id = uuid::Uuid::now_v7().to_string();
    let command = tx
        .prepare_cached(&format!(
            "INSERT INTO commands (id, connector_id, kind, pull_back_time, region, previous_region,
                                   generation, request_id, reason, status, create_time,
                                   trace_context)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'PENDING', ?10, ?11)
             RETURNING {COMMAND_COLUMNS}"
        ))
        .map_err(translate)?
        .query_row(
            params![
                command_id,
                connector_id,
                transition.command_kind.as_str(),
                transition.pull_back_time.map(text),
                transition.region,
                connector.region,
                transition.generation,
                change.request_id(),
                change.reason(),
                at,
                trace_context_to_text(change.trace_context()),
            ],
            |row| Ok(command_from_row(row)),
        )
        .map_err(translate)??;
    tx.prepare_cached(
        "UPDATE connectors SET state = ?2, desired_state = ?3, generation = ?4, region = ?5,
                               update_time = ?6
         WHERE id = ?1",
    )
    .map_err(translate)?
    .execute(params![
        connector_id,
        transition.state.as_str(),
        transition.desired_state.as_str(),
        transition.generation,
        transition.region,
        at,
    ])
    .map_err(translate)?;
    let connector = get_connector(&tx, connector_id)?.expect("locked above");
    insert_audit(&tx, &change.audit_event(&command.id))?;
    tx.commit().map_err(translate)?;
    Ok(CommandOutcome {
        connector,
        command,
        replayed: false,
    })
}

/// The rule of `domain::lag` in SQL; `?n` is the alert threshold in µs.
fn lagging_condition(n: usize) -> String {
    format!(
        "(desired_state = 'RUNNING'
          AND (state = 'UNKNOWN' OR (state = 'RUNNING' AND latency_us > CAST(?{n} AS INTEGER))))"
    )
}

/// The WHERE clause of a search and its values (LIKE patterns escaped with
/// a backslash, as in the PostgreSQL backend).
fn search_condition(filter: &SearchFilter) -> (String, Vec<String>) {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    if !filter.query.is_empty() {
        let needle = escape_like(&fold(&filter.query));
        values.push(format!("%{needle}%"));
        values.push(format!("{needle}%"));
        let (sub, pre) = (values.len() - 1, values.len());
        conditions.push(format!(
            "(name_folded LIKE ?{sub} ESCAPE '\\' OR project_name_folded LIKE ?{sub} ESCAPE '\\'
              OR lower(id) LIKE ?{pre} ESCAPE '\\' OR lower(project_id) LIKE ?{pre} ESCAPE '\\'
              OR server_ip LIKE ?{pre} ESCAPE '\\')"
        ));
    }
    if !filter.region.is_empty() {
        values.push(filter.region.clone());
        conditions.push(format!("region = ?{}", values.len()));
    }
    if !filter.states.is_empty() {
        let first = values.len() + 1;
        let placeholders: Vec<String> = filter
            .states
            .iter()
            .enumerate()
            .map(|(i, state)| {
                values.push(state.as_str().to_owned());
                format!("?{}", first + i)
            })
            .collect();
        conditions.push(format!("state IN ({})", placeholders.join(", ")));
    }
    if let Some(alert) = filter.lagging_over {
        values.push(micros(alert).to_string());
        conditions.push(lagging_condition(values.len()));
    }
    if conditions.is_empty() {
        conditions.push("1".to_owned());
    }
    (conditions.join(" AND "), values)
}

impl Store for SqliteStore {
    async fn create_connector(&self, new: NewConnector) -> Result<Connector, StoreError> {
        self.with(move |connection| {
            let at = text(now());
            let tx = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(translate)?;
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO connectors
                       (id, name, project_id, project_name, name_folded, project_name_folded, kind,
                        source_type, source_region, source_address,
                        destination_type, destination_region, destination_address,
                        region, state, desired_state, create_time, update_time)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?12,
                             'STOPPED', 'STOPPED', ?14, ?14)",
                )
                .map_err(translate)?
                .execute(params![
                    new.id,
                    new.name,
                    new.project_id,
                    new.project_name,
                    fold(&new.name),
                    fold(&new.project_name),
                    new.kind.as_str(),
                    new.source.kind,
                    new.source.region,
                    new.source.address,
                    new.destination.kind,
                    new.destination.region,
                    new.destination.address,
                    at,
                ]);
            match inserted {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::ConnectorAlreadyExists(new.id.clone()));
                }
                Err(e) => return Err(translate(e)),
            }
            let connector = get_connector(&tx, &new.id)?
                .ok_or_else(|| StoreError::Internal("inserted row vanished".to_owned()))?;
            insert_audit(
                &tx,
                &NewAuditEvent::ok(&new.actor, AuditAction::CreateConnector, &new.id),
            )?;
            tx.commit().map_err(translate)?;
            Ok(connector)
        })
        .await
    }

    async fn get_connector(&self, id: &str) -> Result<Connector, StoreError> {
        let id = id.to_owned();
        self.with(move |connection| {
            get_connector(connection, &id)?.ok_or(StoreError::ConnectorNotFound(id))
        })
        .await
    }

    async fn list_connectors(
        &self,
        filter: &SearchFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let (condition, values) = search_condition(filter);
        let after = after.cloned();
        self.with(move |connection| {
            let mut page_values = values.clone();
            let mut sql = format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE {condition}");
            if let Some(after) = after {
                page_values.push(after.name);
                page_values.push(after.id);
                sql.push_str(&format!(
                    " AND (name, id) > (?{}, ?{})",
                    page_values.len() - 1,
                    page_values.len()
                ));
            }
            page_values.push((limit + 1).to_string());
            sql.push_str(&format!(
                " ORDER BY name, id LIMIT CAST(?{} AS INTEGER)",
                page_values.len()
            ));
            let mut statement = connection.prepare_cached(&sql).map_err(translate)?;
            let rows = statement
                .query_map(params_from_iter(page_values.iter()), |row| {
                    Ok(connector_from_row(row))
                })
                .map_err(translate)?;
            let mut connectors = Vec::new();
            for row in rows {
                connectors.push(row.map_err(translate)??);
            }
            let more = connectors.len() > limit;
            connectors.truncate(limit);
            let total: i64 = connection
                .prepare_cached(&format!(
                    "SELECT count(*) FROM connectors WHERE {condition}"
                ))
                .map_err(translate)?
                .query_row(params_from_iter(values.iter()), |row| row.get(0))
                .map_err(translate)?;
            Ok(Page {
                connectors,
                more,
                total,
            })
        })
        .await
    }

    async fn issue_command(&self, change: &Change) -> Result<CommandOutcome, StoreError> {
        let change = change.clone();
        self.with(move |connection| transition(connection, &change))
            .await
    }

    async fn get_command(&self, id: &str) -> Result<Command, StoreError> {
        let id = id.to_owned();
        self.with(move |connection| {
            get_command(connection, &id)?.ok_or(StoreError::CommandNotFound(id))
        })
        .await
    }

    async fn page_token_key(&self) -> Result<Vec<u8>, StoreError> {
        self.with(|connection| {
            connection
                .query_row(
                    "SELECT key FROM server_keys WHERE name = 'page_token'",
                    [],
                    |row| row.get(0),
                )
                .map_err(translate)
        })
        .await
    }

    async fn append_audit(&self, event: &NewAuditEvent) -> Result<(), StoreError> {
        let event = event.clone();
        self.with(move |connection| insert_audit(connection, &event))
            .await
    }

    async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        limit: usize,
    ) -> Result<(Vec<AuditEvent>, bool), StoreError> {
        let filter = filter.clone();
        self.with(move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT id, time, principal, action, connector_id, request_id, outcome,
                            reason, peer, detail, count
                     FROM audit_events
                     WHERE (?1 IS NULL OR connector_id = ?1)
                       AND (?2 IS NULL OR principal = ?2)
                       AND (?3 IS NULL OR time >= ?3)
                       AND (?4 IS NULL OR time < ?4)
                       AND (?5 IS NULL OR id < ?5)
                     ORDER BY id DESC
                     LIMIT ?6",
                )
                .map_err(translate)?;
            let rows = statement
                .query_map(
                    params![
                        filter.connector_id,
                        filter.principal,
                        filter.start_time.map(text),
                        filter.end_time.map(text),
                        filter.before_id,
                        i64::try_from(limit).unwrap_or(i64::MAX) + 1,
                    ],
                    |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, String>(1)?,
                            [
                                row.get::<_, String>(2)?,
                                row.get::<_, String>(3)?,
                                row.get::<_, String>(4)?,
                                row.get::<_, String>(5)?,
                                row.get::<_, String>(6)?,
                                row.get::<_, String>(7)?,
                                row.get::<_, String>(8)?,
                                row.get::<_, String>(9)?,
                            ],
                            row.get::<_, i64>(10)?,
                        ))
                    },
                )
                .map_err(translate)?;
            let mut events = Vec::new();
            for row in rows {
                let (
                    id,
                    time,
                    [
                        principal,
                        action,
                        connector_id,
                        request_id,
                        outcome,
                        reason,
                        peer,
                        detail,
                    ],
                    count,
                ) = row.map_err(translate)?;
                events.push(AuditEvent {
                    id,
                    time: rows::parse_time(&time)?,
                    principal,
                    action,
                    connector_id,
                    request_id,
                    outcome,
                    reason,
                    peer,
                    detail,
                    count,
                });
            }
            let more = events.len() > limit;
            events.truncate(limit);
            Ok((events, more))
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with(|connection| {
            connection
                .query_row("SELECT 1", [], |_| Ok(()))
                .map_err(translate)
        })
        .await
    }
}

/// Makes what `agent_id` was sent and has not answered pending again.
/// Appends `event` inside the caller's transaction (or on its own).
fn insert_audit(connection: &Connection, event: &NewAuditEvent) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO audit_events
               (time, principal, action, connector_id, request_id, outcome, reason, peer, detail,
                count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(translate)?
        .execute(params![
            text(now()),
            event.actor.principal,
            event.action.as_str(),
            event.connector_id,
            event.request_id,
            event.outcome,
            event.reason,
            event.actor.peer,
            event.detail,
            i64::try_from(event.count).unwrap_or(i64::MAX).max(1),
        ])
        .map_err(translate)?;
    Ok(())
}

fn requeue_delivered(connection: &Connection, agent_id: &str) -> Result<usize, StoreError> {
    connection
        .prepare_cached(
            "UPDATE commands SET status = 'PENDING' WHERE agent_id = ?1 AND status = 'DELIVERED'",
        )
        .map_err(translate)?
        .execute([agent_id])
        .map_err(translate)
}

/// The agent's current session, if it has not ended.
fn live_session(connection: &Connection, agent_id: &str) -> Result<Option<Session>, StoreError> {
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
fn fence(connection: &Connection, session: &Session) -> Result<(), StoreError> {
    let epoch: Option<i64> = connection
        .prepare_cached("SELECT session_epoch FROM agents WHERE id = ?1")
        .map_err(translate)?
        .query_row([&session.agent_id], |row| row.get(0))
        .optional()
        .map_err(translate)?;
    if epoch == Some(session.epoch) {
        Ok(())
    } else {
        Err(StoreError::Fenced {
            agent_id: session.agent_id.clone(),
            epoch: session.epoch,
        })
    }
}

fn apply_update(
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
                 latency_us = COALESCE(?8, latency_us),
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
        ])
        .map_err(translate)?;
    Ok(())
}

fn record(
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

/// Online: connected, and heard from within `offline_after` of `now`.
fn online_since(offline_after: Duration) -> String {
    let cutoff =
        now() - chrono::Duration::from_std(offline_after).unwrap_or(chrono::Duration::seconds(40));
    text(cutoff)
}

impl FleetStore for SqliteStore {
    async fn open_session(&self, hello: &Hello) -> Result<Session, StoreError> {
        let hello = hello.clone();
        self.with(move |connection| {
            let tx = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(translate)?;
            let session_id = uuid::Uuid::now_v7().to_string();
            let at = text(now());
            // The session this one replaces, if it had not ended: it ends
            // here, audited with whoever opened it.
            let previous = live_session(&tx, &hello.agent_id)?;
            let epoch: Option<i64> = tx
                .prepare_cached(
                    "INSERT INTO agents (id, region, server_ip, instance_id, version, session_id,
                                         session_epoch, connect_time, last_heartbeat_time,
                                         principal, peer)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7, ?8, ?9)
                     ON CONFLICT (id) DO UPDATE SET
                         region = excluded.region, server_ip = excluded.server_ip,
                         instance_id = excluded.instance_id, version = excluded.version,
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
                insert_audit(&tx, &session_ended(previous, &SessionEnd::Superseded))?;
            }
            insert_audit(&tx, &session_started(&session))?;
            requeue_delivered(&tx, &hello.agent_id)?;
            record(&tx, &session, &hello.connectors)?;
            tx.commit().map_err(translate)?;
            Ok(session)
        })
        .await
    }

    async fn close_session(&self, session: &Session, end: &SessionEnd) -> Result<u64, StoreError> {
        let (session, end) = (session.clone(), end.clone());
        self.with(move |connection| {
            let tx = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(translate)?;
            match fence(&tx, &session) {
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
            insert_audit(&tx, &session_ended(&session, &end))?;
            let requeued = requeue_delivered(&tx, &session.agent_id)?;
            tx.commit().map_err(translate)?;
            Ok(requeued as u64)
        })
        .await
    }

    async fn record_statuses(
        &self,
        session: &Session,
        statuses: &[ObservedStatus],
    ) -> Result<(), StoreError> {
        let (session, statuses) = (session.clone(), statuses.to_vec());
        self.with(move |connection| {
            let tx = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(translate)?;
            fence(&tx, &session)?;
            record(&tx, &session, &statuses)?;
            tx.commit().map_err(translate)
        })
        .await
    }

    /// Sessions are only ever ended by this process here: none to report.
    async fn flush_heartbeats(&self, seen: &[Seen]) -> Result<Vec<(String, i64)>, StoreError> {
        if seen.is_empty() {
            return Ok(Vec::new());
        }
        let seen = seen.to_vec();
        self.with(move |connection| {
            let tx = connection.transaction().map_err(translate)?;
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
            tx.commit().map_err(translate)?;
            Ok(Vec::new())
        })
        .await
    }

    async fn pending_regions(&self) -> Result<Vec<String>, StoreError> {
        self.with(|connection| {
            let mut statement = connection
                .prepare_cached("SELECT DISTINCT region FROM commands WHERE status = 'PENDING'")
                .map_err(translate)?;
            let regions = statement
                .query_map([], |row| row.get(0))
                .map_err(translate)?
                .collect::<Result<Vec<String>, _>>()
                .map_err(translate)?;
            Ok(regions)
        })
        .await
    }

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
        let (region, sessions) = (region.to_owned(), sessions.to_vec());
        self.with(move |connection| {
            let tx = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(translate)?;
            let deliverable: Vec<Deliverable> = tx
                .prepare_cached(
                    // The runner as in PostgreSQL's claim.
                    "SELECT c.id,
                            COALESCE((SELECT CASE WHEN p.status = 'SUPERSEDED'
                                                       AND p.late_result = ''
                                                  THEN p.agent_id END
                                      FROM commands p
                                      WHERE p.connector_id = c.connector_id
                                        AND p.generation < c.generation AND p.agent_id <> ''
                                      ORDER BY p.generation DESC LIMIT 1),
                                     k.agent_id)
                     FROM commands c JOIN connectors k ON k.id = c.connector_id
                     WHERE c.status = 'PENDING' AND c.region = ?1
                     ORDER BY c.create_time
                     LIMIT ?2",
                )
                .map_err(translate)?
                .query_map(params![region, room as i64], |row| {
                    Ok(Deliverable {
                        command_id: row.get(0)?,
                        runner: row.get(1)?,
                    })
                })
                .map_err(translate)?
                .collect::<Result<_, _>>()
                .map_err(translate)?;
            if deliverable.is_empty() {
                return Ok(Vec::new());
            }
            let agents: Vec<(String, i64, i64)> = tx
                .prepare_cached(
                    "SELECT a.id, a.session_epoch,
                            (SELECT count(*) FROM connectors x
                             WHERE x.agent_id = a.id AND x.state <> 'STOPPED')
                          + (SELECT count(*) FROM commands y
                             WHERE y.agent_id = a.id AND y.status = 'DELIVERED')
                     FROM agents a
                     WHERE a.region = ?1 AND a.disconnect_time IS NULL
                       AND a.last_heartbeat_time > ?2
                     ORDER BY a.id",
                )
                .map_err(translate)?
                .query_map(params![region, online_since(offline_after)], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .map_err(translate)?
                .collect::<Result<_, _>>()
                .map_err(translate)?;
            let candidates: Vec<Candidate> = agents
                .into_iter()
                .map(|(agent_id, epoch, load)| Candidate {
                    agent_id,
                    epoch,
                    load,
                })
                .collect();
            let mut delivered = Vec::new();
            let at = text(now());
            for (command_id, session) in assign_local(&deliverable, &candidates, &sessions) {
                let command = tx
                    .prepare_cached(&format!(
                        "UPDATE commands SET status = 'DELIVERED', agent_id = ?2, deliver_time = ?3,
                                             delivery_attempts = delivery_attempts + 1
                         WHERE id = ?1
                         RETURNING {COMMAND_COLUMNS}"
                    ))
                    .map_err(translate)?
                    .query_row(params![command_id, session.agent_id, at], |row| {
                        Ok(command_from_row(row))
                    })
                    .map_err(translate)??;
                delivered.push((session, command));
            }
            tx.commit().map_err(translate)?;
            delivered.sort_by_key(|(_, command): &(Session, Command)| command.generation);
            Ok(delivered)
        })
        .await
    }

    async fn release_command(&self, session: &Session, command_id: &str) -> Result<(), StoreError> {
        let (session, command_id) = (session.clone(), command_id.to_owned());
        self.with(move |connection| {
            let tx = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(translate)?;
            fence(&tx, &session)?;
            tx.execute(
                "UPDATE commands SET status = 'PENDING'
                 WHERE id = ?1 AND agent_id = ?2 AND status = 'DELIVERED'",
                params![command_id, session.agent_id],
            )
            .map_err(translate)?;
            tx.commit().map_err(translate)
        })
        .await
    }

    async fn complete_command(
        &self,
        session: &Session,
        report: &CommandReport,
    ) -> Result<Option<Command>, StoreError> {
        let (session, report) = (session.clone(), report.clone());
        self.with(move |connection| {
            let tx = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(translate)?;
            fence(&tx, &session)?;
            let Some(command) = get_command(&tx, &report.command_id)? else {
                return Ok(None);
            };
            let complete = match result_disposition(&command, &session) {
                ResultDisposition::Ignore => return Ok(None),
                ResultDisposition::Complete => {
                    "UPDATE commands SET status = ?2, error_reason = ?3, error_message = ?4,
                                         complete_time = ?5"
                }
                // The status stays SUPERSEDED; the answer is kept.
                ResultDisposition::Late => {
                    "UPDATE commands SET late_result = ?2, error_reason = ?3, error_message = ?4,
                                         late_result_time = ?5"
                }
            };
            let connector = get_connector(&tx, &command.connector_id)?
                .ok_or_else(|| StoreError::Internal("a command without connector".to_owned()))?;
            let outcome = if report.success {
                CommandStatus::Succeeded
            } else {
                CommandStatus::Failed
            };
            let completed = tx
                .prepare_cached(&format!(
                    "{complete} WHERE id = ?1 RETURNING {COMMAND_COLUMNS}"
                ))
                .map_err(translate)?
                .query_row(
                    params![
                        command.id,
                        outcome.as_str(),
                        report.error_reason,
                        report.error_message,
                        text(now())
                    ],
                    |row| Ok(command_from_row(row)),
                )
                .map_err(translate)??;
            if let Some(update) = result_effect(&connector, &command, &report, &session) {
                apply_update(&tx, &connector.id, &update)?;
            }
            tx.commit().map_err(translate)?;
            Ok(Some(completed))
        })
        .await
    }

    /// One process owns the file (see `open`): it is always the leader, and
    /// sessions of other replicas cannot exist.
    async fn sweep_offline(
        &self,
        _lease: Lease,
        offline_after: Duration,
        _replica_ttl: Duration,
    ) -> Result<u64, StoreError> {
        self.with(move |connection| {
            let tx = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(translate)?;
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
            tx.commit().map_err(translate)?;
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

    /// The one process that owns the file: every session recorded as open
    /// is left over from the process before it.
    async fn end_orphaned_sessions(&self, _replica_ttl: Duration) -> Result<u64, StoreError> {
        self.with(|connection| {
            let tx = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(translate)?;
            let ids: Vec<String> = tx
                .prepare("SELECT id FROM agents WHERE disconnect_time IS NULL ORDER BY id")
                .map_err(translate)?
                .query_map([], |row| row.get(0))
                .map_err(translate)?
                .collect::<Result<_, _>>()
                .map_err(translate)?;
            for id in &ids {
                let Some(session) = live_session(&tx, id)? else {
                    continue;
                };
                tx.execute(
                    "UPDATE agents SET disconnect_time = ?2 WHERE id = ?1",
                    params![id, text(now())],
                )
                .map_err(translate)?;
                insert_audit(&tx, &session_ended(&session, &SessionEnd::ReplicaRestarted))?;
                requeue_delivered(&tx, id)?;
            }
            tx.commit().map_err(translate)?;
            Ok(ids.len() as u64)
        })
        .await
    }

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

    async fn list_agents(
        &self,
        region: Option<&str>,
        offline_after: Duration,
    ) -> Result<Vec<Agent>, StoreError> {
        let region = region.map(str::to_owned);
        self.with(move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT a.id, a.region, a.server_ip, a.version, a.last_heartbeat_time,
                            (a.disconnect_time IS NULL AND a.last_heartbeat_time > ?2),
                            (SELECT count(*) FROM connectors c
                             WHERE c.agent_id = a.id AND c.state <> 'STOPPED')
                     FROM agents a
                     WHERE ?1 IS NULL OR a.region = ?1
                     ORDER BY a.region, a.id",
                )
                .map_err(translate)?;
            let rows = statement
                .query_map(params![region, online_since(offline_after)], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, bool>(5)?,
                        row.get::<_, i64>(6)?,
                    ))
                })
                .map_err(translate)?;
            let mut agents = Vec::new();
            for row in rows {
                let (id, region, server_ip, version, last, online, connectors) =
                    row.map_err(translate)?;
                agents.push(Agent {
                    id,
                    region,
                    server_ip,
                    version,
                    last_heartbeat_time: rows::parse_time(&last)?,
                    online,
                    connectors,
                    replica_id: if online { EMBEDDED } else { "" }.to_owned(),
                });
            }
            Ok(agents)
        })
        .await
    }

    async fn metrics_sample(&self, latency_alert: Duration) -> Result<MetricsSample, StoreError> {
        self.with(move |connection| {
            let mut sample = MetricsSample::default();
            let count = |n: i64| n.max(0).unsigned_abs();
            let mut statement = connection
                .prepare_cached(
                    "SELECT region, state, count(*) FROM connectors GROUP BY region, state",
                )
                .map_err(translate)?;
            let mut rows = statement.query([]).map_err(translate)?;
            while let Some(row) = rows.next().map_err(translate)? {
                let state: String = row.get(1).map_err(translate)?;
                if let Some(state) = ConnectorState::parse(&state) {
                    sample.connectors.insert(
                        (row.get(0).map_err(translate)?, state),
                        count(row.get(2).map_err(translate)?),
                    );
                }
            }
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT region, state = 'UNKNOWN', count(*) FROM connectors
                     WHERE {} GROUP BY 1, 2",
                    lagging_condition(1)
                ))
                .map_err(translate)?;
            let mut rows = statement
                .query([micros(latency_alert).to_string()])
                .map_err(translate)?;
            while let Some(row) = rows.next().map_err(translate)? {
                let cause = if row.get(1).map_err(translate)? {
                    LagCause::AgentOffline
                } else {
                    LagCause::Latency
                };
                sample.lagging.insert(
                    (row.get(0).map_err(translate)?, cause),
                    count(row.get(2).map_err(translate)?),
                );
            }
            let mut statement = connection
                .prepare_cached(
                    "SELECT region, status, count(*), min(create_time) FROM commands
                     WHERE status IN ('PENDING', 'DELIVERED') GROUP BY region, status",
                )
                .map_err(translate)?;
            let mut rows = statement.query([]).map_err(translate)?;
            let now = now();
            while let Some(row) = rows.next().map_err(translate)? {
                let status: String = row.get(1).map_err(translate)?;
                let oldest: String = row.get(3).map_err(translate)?;
                let oldest = chrono::DateTime::parse_from_rfc3339(&oldest)
                    .map(|at| {
                        (now - at.with_timezone(&chrono::Utc))
                            .to_std()
                            .unwrap_or_default()
                    })
                    .unwrap_or_default();
                if let Some(status) = CommandStatus::parse(&status) {
                    sample.open_commands.insert(
                        (row.get(0).map_err(translate)?, status),
                        OpenCommands {
                            count: count(row.get(2).map_err(translate)?),
                            oldest_age: oldest,
                        },
                    );
                }
            }
            Ok(sample)
        })
        .await
    }

    async fn list_regions(
        &self,
        offline_after: Duration,
    ) -> Result<Vec<RegionSummary>, StoreError> {
        self.with(move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "WITH names AS (SELECT region AS name FROM connectors
                                    UNION SELECT region FROM agents)
                     SELECT n.name,
                            (SELECT count(*) FROM agents a WHERE a.region = n.name
                               AND a.disconnect_time IS NULL AND a.last_heartbeat_time > ?1),
                            (SELECT count(*) FROM connectors c WHERE c.region = n.name)
                     FROM names n ORDER BY n.name",
                )
                .map_err(translate)?;
            let regions = statement
                .query_map([online_since(offline_after)], |row| {
                    Ok(RegionSummary {
                        name: row.get(0)?,
                        online_agents: row.get(1)?,
                        connectors: row.get(2)?,
                    })
                })
                .map_err(translate)?
                .collect::<Result<_, _>>()
                .map_err(translate)?;
            Ok(regions)
        })
        .await
    }
}
