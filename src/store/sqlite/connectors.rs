//! Connectors in the embedded store: create, read, and `transitions`, where
//! commands are written (see PostgreSQL's `connectors.rs` and
//! `transitions.rs`).

use super::audit::insert_audit;
use super::error::is_unique_violation;
use super::error::translate;
use super::rows::{
    COMMAND_COLUMNS, CONNECTOR_COLUMNS, all, command_from_row, connector_from_row, fetch_for,
    first, page, text,
};
use super::{SqliteStore, now};
use crate::domain::rules;
use crate::domain::{
    AuditAction, Change, Command, Connector, HistoryQuery, MarkStoppedRequest, NewAuditEvent,
    NewConnector, RestartPolicyRequest, trace_context_to_text,
};
use crate::store::retries::AuditedCall;
use crate::store::rows::policy_values;
use crate::store::{CommandOutcome, Connectors, Outcomes, StoreError, Write, fold};
use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

pub(super) fn get_connector(
    connection: &Connection,
    id: &str,
) -> Result<Option<Connector>, StoreError> {
    let sql = format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE id = ?1");
    first(connection, &sql, [id], |row| connector_from_row(row))
}

pub(super) fn get_command(
    connection: &Connection,
    id: &str,
) -> Result<Option<Command>, StoreError> {
    let sql = format!("SELECT {COMMAND_COLUMNS} FROM commands WHERE id = ?1");
    first(connection, &sql, [id], |row| command_from_row(row))
}

/// The connected agents of `region` whose driver cannot pull back.
fn agents_without_pull_back(
    connection: &Connection,
    region: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    all(
        connection,
        "SELECT id, driver FROM agents
         WHERE region = ?1 AND pull_back = 0 AND disconnect_time IS NULL ORDER BY id",
        [region],
        |row| {
            Ok((
                row.get(0).map_err(translate)?,
                row.get(1).map_err(translate)?,
            ))
        },
    )
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

/// Supersedes every older unanswered command of the connector, delivered
/// or not (see PostgreSQL's `sql::SUPERSEDE`).
fn supersede_open_commands(
    connection: &Connection,
    connector_id: &str,
    at: &str,
) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "UPDATE commands SET status = 'SUPERSEDED', complete_time = ?2
             WHERE connector_id = ?1 AND status IN ('PENDING', 'DELIVERED')",
        )
        .map_err(translate)?
        .execute(params![connector_id, at])
        .map_err(translate)?;
    Ok(())
}

/// `Connectors::transitions` (see PostgreSQL's).
fn transitions(
    connection: &mut Connection,
    changes: &[Change],
    write: Write,
) -> Result<Outcomes, StoreError> {
    let tx = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(translate)?;
    let mut outcomes = Vec::with_capacity(changes.len());
    for change in changes {
        match transition_in(&tx, change, write) {
            Err(error @ (StoreError::Rejected(_) | StoreError::ConnectorNotFound(_))) => {
                outcomes.push(Err(error))
            }
            Err(error) => return Err(error),
            Ok(outcome) => outcomes.push(Ok(outcome)),
        }
    }
    if write == Write::Commit {
        tx.commit().map_err(translate)?;
    }
    Ok(outcomes)
}

/// One change of `transitions` inside an open transaction, which the caller
/// commits.
pub(super) fn transition_in(
    tx: &rusqlite::Transaction<'_>,
    change: &Change,
    write: Write,
) -> Result<CommandOutcome, StoreError> {
    let connector_id = change.connector_id();
    let Some(connector) = get_connector(tx, connector_id)? else {
        return Err(StoreError::ConnectorNotFound(connector_id.to_owned()));
    };
    if let Some(request_id) = change.request_id() {
        let sql = format!(
            "SELECT {COMMAND_COLUMNS} FROM commands WHERE connector_id = ?1 AND request_id = ?2"
        );
        let previous = first(tx, &sql, [connector_id, request_id], |row| {
            command_from_row(row)
        })?;
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
        Some(region) => region_exists(tx, region)?,
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
    if let Some(region) = change.pull_back_region(&connector) {
        let agents = agents_without_pull_back(tx, region)?;
        rules::check_pull_back_capable(&connector, region, agents)?;
    }
    if write == Write::Preview {
        // Dropping the transaction rolls it back: only reads ran.
        let (connector, command) = change.preview(&connector, &transition, now());
        return Ok(CommandOutcome {
            connector,
            command,
            replayed: false,
        });
    }
    let at = text(now());
    supersede_open_commands(tx, connector_id, &at)?;
    let command_id = uuid::Uuid::now_v7().to_string();
    let command = tx
        .prepare_cached(&format!(
            "INSERT INTO commands (id, connector_id, kind, pull_back_time, region, previous_region,
                                   generation, request_id, reason, status, create_time,
                                   trace_context, principal, skip_to_earliest)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'PENDING', ?10, ?11, ?12, ?13)
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
                change.actor().principal,
                transition.skip_to_earliest,
            ],
            |row| Ok(command_from_row(row)),
        )
        .map_err(translate)??;
    tx.prepare_cached(
        "UPDATE connectors SET state = ?2, desired_state = ?3, generation = ?4, region = ?5,
                               update_time = ?6, next_restart_time = NULL,
                               restart_count = COALESCE(?7, restart_count)
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
        change.restart_count(),
    ])
    .map_err(translate)?;
    let connector = get_connector(tx, connector_id)?.expect("locked above");
    insert_audit(tx, &change.audit_event(&command.id, &transition))?;
    Ok(CommandOutcome {
        connector,
        command,
        replayed: false,
    })
}

impl SqliteStore {
    /// What `find` finds under `id`, or `missing(id)` when it finds
    /// nothing (see PostgreSQL's `by_id`).
    async fn by_id<T: Send + 'static>(
        &self,
        id: &str,
        find: fn(&Connection, &str) -> Result<Option<T>, StoreError>,
        missing: fn(String) -> StoreError,
    ) -> Result<T, StoreError> {
        let id = id.to_owned();
        self.with(move |connection| find(connection, &id)?.ok_or_else(|| missing(id)))
            .await
    }
}

impl Connectors for SqliteStore {
    async fn create_connector(&self, new: NewConnector) -> Result<Connector, StoreError> {
        self.write(move |tx| {
            let at = text(now());
            let (mode, max_restarts, initial, max_backoff, reset) =
                policy_values(&new.restart_policy);
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO connectors
                       (id, name, project_id, project_name, name_folded, project_name_folded, kind,
                        source_type, source_region, source_address,
                        destination_type, destination_region, destination_address,
                        region, state, desired_state, create_time, update_time,
                        restart_mode, max_restarts, initial_backoff_ms, max_backoff_ms,
                        reset_after_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?12,
                             'STOPPED', 'STOPPED', ?14, ?14, ?15, ?16, ?17, ?18, ?19)",
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
                    mode,
                    max_restarts,
                    initial,
                    max_backoff,
                    reset,
                ]);
            match inserted {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::ConnectorAlreadyExists(new.id.clone()));
                }
                Err(e) => return Err(translate(e)),
            }
            let connector = get_connector(tx, &new.id)?
                .ok_or_else(|| StoreError::Internal("inserted row vanished".into()))?;
            insert_audit(
                tx,
                &NewAuditEvent::ok(&new.actor, AuditAction::CreateConnector, &new.id),
            )?;
            Ok(connector)
        })
        .await
    }

    async fn get_connector(&self, id: &str) -> Result<Connector, StoreError> {
        self.by_id(id, get_connector, StoreError::ConnectorNotFound)
            .await
    }

    async fn transitions(&self, changes: &[Change], write: Write) -> Result<Outcomes, StoreError> {
        let changes = changes.to_vec();
        self.with(move |connection| transitions(connection, &changes, write))
            .await
    }

    async fn update_restart_policy(
        &self,
        request: &RestartPolicyRequest,
    ) -> Result<Connector, StoreError> {
        let request = request.clone();
        self.write(move |tx| {
            let (id, policy) = (request.connector_id.clone(), &request.policy);
            let action = AuditAction::UpdateRestartPolicy;
            let call = AuditedCall::new(action, &id, request.request_id.as_deref(), &request.actor);
            if is_retry(tx, call)? {
                return get_connector(tx, &id)?.ok_or(StoreError::ConnectorNotFound(id));
            }
            let (mode, max_restarts, initial, max_backoff, reset) = policy_values(policy);
            let updated = tx
                .prepare_cached(
                    "UPDATE connectors
                     SET restart_mode = ?2, max_restarts = ?3, initial_backoff_ms = ?4,
                         max_backoff_ms = ?5, reset_after_ms = ?6, update_time = ?7
                     WHERE id = ?1",
                )
                .map_err(translate)?
                .execute(params![
                    id,
                    mode,
                    max_restarts,
                    initial,
                    max_backoff,
                    reset,
                    text(now())
                ])
                .map_err(translate)?;
            if updated == 0 {
                return Err(StoreError::ConnectorNotFound(id));
            }
            insert_audit(
                tx,
                &NewAuditEvent {
                    request_id: request.request_id.clone().unwrap_or_default(),
                    detail: format!("restart policy: {policy}"),
                    ..NewAuditEvent::ok(&request.actor, action, &id)
                },
            )?;
            let connector = get_connector(tx, &id)?.ok_or(StoreError::ConnectorNotFound(id))?;
            Ok(connector)
        })
        .await
    }

    async fn mark_stopped(
        &self,
        request: &MarkStoppedRequest,
        preview: bool,
    ) -> Result<(Connector, bool), StoreError> {
        let request = request.clone();
        self.write(move |tx| {
            let id = request.connector_id.clone();
            let action = AuditAction::MarkConnectorStopped;
            let call = AuditedCall::new(action, &id, request.request_id.as_deref(), &request.actor);
            if is_retry(tx, call)? {
                let connector = get_connector(tx, &id)?.ok_or(StoreError::ConnectorNotFound(id))?;
                return Ok((connector, true));
            }
            let connector =
                get_connector(tx, &id)?.ok_or_else(|| StoreError::ConnectorNotFound(id.clone()))?;
            let heard_since = now()
                - chrono::TimeDelta::from_std(request.offline_after)
                    .unwrap_or(chrono::TimeDelta::MAX);
            let online_agent: Option<String> = tx
                .prepare_cached(
                    "SELECT a.id FROM agents a
                     WHERE (a.id = ?2 OR a.id IN (SELECT agent_id FROM commands
                                                 WHERE connector_id = ?1 AND status = 'DELIVERED'))
                       AND a.id <> '' AND a.disconnect_time IS NULL
                       AND a.last_heartbeat_time > ?3
                     ORDER BY a.id LIMIT 1",
                )
                .map_err(translate)?
                .query_row(params![id, connector.agent_id, text(heard_since)], |row| {
                    row.get(0)
                })
                .optional()
                .map_err(translate)?;
            let marked = crate::domain::mark_stopped::decide_mark_stopped(
                &connector,
                &request,
                online_agent.as_deref(),
            )?;
            if preview {
                return Ok((marked.applied_to(&connector, now()), false));
            }
            let at = text(now());
            supersede_open_commands(tx, &id, &at)?;
            tx.prepare_cached(
                "UPDATE connectors
                 SET state = 'STOPPED', desired_state = 'STOPPED', generation = ?2,
                     fenced_below = ?2, status_message = ?3, next_restart_time = NULL,
                     update_time = ?4
                 WHERE id = ?1",
            )
            .map_err(translate)?
            .execute(params![id, marked.generation, marked.status_message, at])
            .map_err(translate)?;
            insert_audit(tx, &marked.audit_event(&request, &connector))?;
            let after = get_connector(tx, &id)?.ok_or(StoreError::ConnectorNotFound(id))?;
            Ok((after, false))
        })
        .await
    }

    async fn list_commands(
        &self,
        query: &HistoryQuery,
    ) -> Result<(Vec<Command>, bool), StoreError> {
        let query = query.clone();
        self.with(move |connection| {
            let (commands, more) = page(
                connection,
                &format!(
                    "SELECT {COMMAND_COLUMNS} FROM commands
                     WHERE connector_id = ?1 AND generation < ?2
                     ORDER BY generation DESC LIMIT ?3"
                ),
                params![
                    query.connector_id,
                    query.before_generation.unwrap_or(i64::MAX),
                    fetch_for(query.page_size)
                ],
                query.page_size,
                |row| command_from_row(row),
            )?;
            if commands.is_empty() && get_connector(connection, &query.connector_id)?.is_none() {
                return Err(StoreError::ConnectorNotFound(query.connector_id));
            }
            Ok((commands, more))
        })
        .await
    }

    async fn get_command(&self, id: &str) -> Result<Command, StoreError> {
        self.by_id(id, get_command, StoreError::CommandNotFound)
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
}

/// Whether `call` retries the call that wrote its audit event (see
/// PostgreSQL's).
fn is_retry(connection: &Connection, call: Option<AuditedCall<'_>>) -> Result<bool, StoreError> {
    let Some(call) = call else {
        return Ok(false);
    };
    let first: Option<String> = connection
        .prepare_cached(
            "SELECT principal FROM audit_events
             WHERE connector_id = ?1 AND action = ?2 AND request_id = ?3 AND outcome = 'OK'
             ORDER BY id LIMIT 1",
        )
        .map_err(translate)?
        .query_row(
            params![call.connector_id, call.action.as_str(), call.request_id],
            |row| row.get(0),
        )
        .optional()
        .map_err(translate)?;
    call.repeats(first.as_deref())
}
