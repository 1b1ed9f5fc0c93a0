//! Connectors on PostgreSQL: create, read, restart policies, marking
//! stopped, and their commands' history; `transitions`, where commands are
//! written, runs `transitions.rs`.

use super::PgStore;
use super::audit::insert_audit;
use super::conn::{Db, Params};
use super::error::is_unique_violation;
use super::rows::{
    COMMAND_COLUMNS, CONNECTOR_COLUMNS, command_from_row, connector_from_row, fetch_for,
};
use crate::domain::{
    AuditAction, Change, Command, Connector, HistoryQuery, MarkStoppedRequest, NewAuditEvent,
    NewConnector, RestartPolicyRequest,
};
use crate::store::retries::AuditedCall;
use crate::store::rows::policy_values;
use crate::store::{Connectors, Outcomes, StoreError, Write, fold};
use tracing::instrument;

impl Connectors for PgStore {
    #[instrument(skip_all, fields(connector_id = %new.id))]
    async fn create_connector(&self, new: NewConnector) -> Result<Connector, StoreError> {
        let mut client = self.client().await?;
        let client = client.transaction().await?;
        let (mode, max_restarts, initial, max_backoff, reset) = policy_values(&new.restart_policy);
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO connectors
                       (id, name, project_id, project_name, name_folded, project_name_folded, kind,
                        source_type, source_region, source_address,
                        destination_type, destination_region, destination_address,
                        region, state, desired_state,
                        restart_mode, max_restarts, initial_backoff_ms, max_backoff_ms,
                        reset_after_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $12,
                             'STOPPED', 'STOPPED', $14, $15, $16, $17, $18)
                     RETURNING {CONNECTOR_COLUMNS}"
                ),
                &[
                    &new.id,
                    &new.name,
                    &new.project_id,
                    &new.project_name,
                    &fold(&new.name),
                    &fold(&new.project_name),
                    &new.kind.as_str(),
                    &new.source.kind,
                    &new.source.region,
                    &new.source.address,
                    &new.destination.kind,
                    &new.destination.region,
                    &new.destination.address,
                    &mode,
                    &max_restarts,
                    &initial,
                    &max_backoff,
                    &reset,
                ],
            )
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::ConnectorAlreadyExists(new.id.clone())
                } else {
                    e
                }
            })?;
        let connector = connector_from_row(&row)?;
        insert_audit(
            &client,
            &NewAuditEvent::ok(&new.actor, AuditAction::CreateConnector, &connector.id),
        )
        .await?;
        client.commit().await?;
        Ok(connector)
    }

    #[instrument(skip_all, fields(connector_id = %id))]
    async fn get_connector(&self, id: &str) -> Result<Connector, StoreError> {
        let sql = format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE id = $1");
        self.by_id(&sql, id, connector_from_row, StoreError::ConnectorNotFound)
            .await
    }

    async fn transitions(&self, changes: &[Change], write: Write) -> Result<Outcomes, StoreError> {
        self.retrying(|| self.transitions_once(changes, write))
            .await
    }

    #[instrument(skip_all, fields(connector_id = %request.connector_id))]
    async fn update_restart_policy(
        &self,
        request: &RestartPolicyRequest,
    ) -> Result<Connector, StoreError> {
        let (id, policy) = (request.connector_id.as_str(), &request.policy);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let (mode, max_restarts, initial, max_backoff, reset) = policy_values(policy);
        // The connector first (a retry racing its original waits for it),
        // then whether this request id was used: a retry of the same
        // principal's call changes nothing, anyone else's is refused.
        if tx
            .query_opt("SELECT 1 FROM connectors WHERE id = $1 FOR UPDATE", &[&id])
            .await?
            .is_none()
        {
            return Err(StoreError::ConnectorNotFound(id.to_owned()));
        }
        let action = AuditAction::UpdateRestartPolicy;
        let call = AuditedCall::new(action, id, request.request_id.as_deref(), &request.actor);
        if is_retry(&tx, call).await? {
            drop(tx);
            return self.get_connector(id).await;
        }
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE connectors
                     SET restart_mode = $2, max_restarts = $3, initial_backoff_ms = $4,
                         max_backoff_ms = $5, reset_after_ms = $6, update_time = now()
                     WHERE id = $1
                     RETURNING {CONNECTOR_COLUMNS}"
                ),
                &[&id, &mode, &max_restarts, &initial, &max_backoff, &reset],
            )
            .await?
            .ok_or_else(|| StoreError::ConnectorNotFound(id.to_owned()))?;
        let connector = connector_from_row(&row)?;
        insert_audit(
            &tx,
            &NewAuditEvent {
                request_id: request.request_id.clone().unwrap_or_default(),
                detail: format!("restart policy: {policy}"),
                ..NewAuditEvent::ok(&request.actor, action, id)
            },
        )
        .await?;
        tx.commit().await?;
        Ok(connector)
    }

    #[instrument(skip_all, fields(connector_id = %request.connector_id))]
    async fn mark_stopped(
        &self,
        request: &MarkStoppedRequest,
        preview: bool,
    ) -> Result<(Connector, bool), StoreError> {
        self.retrying(|| async move {
            let id = request.connector_id.as_str();
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let connector = match tx
                .query_opt(
                    &format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE id = $1 FOR UPDATE"),
                    &[&id],
                )
                .await?
            {
                Some(row) => connector_from_row(&row)?,
                None => return Err(StoreError::ConnectorNotFound(id.to_owned())),
            };
            // Under the lock: a retry racing its original sees it done.
            let action = AuditAction::MarkConnectorStopped;
            let call = AuditedCall::new(action, id, request.request_id.as_deref(), &request.actor);
            if is_retry(&tx, call).await? {
                drop(tx);
                return Ok((self.get_connector(id).await?, true));
            }
            // The agent running it, or answering its command in flight, heard
            // from within `offline_after` (the sweep's notion of online).
            let online_agent: Option<String> = tx
                .query_opt(
                    "SELECT a.id FROM agents a
                     WHERE (a.id = $2 OR a.id IN (SELECT agent_id FROM commands
                                                 WHERE connector_id = $1 AND status = 'DELIVERED'))
                       AND a.id <> '' AND a.disconnect_time IS NULL
                       AND a.last_heartbeat_time > now() - make_interval(secs => $3)
                     ORDER BY a.id LIMIT 1",
                    &[
                        &id,
                        &connector.agent_id,
                        &request.offline_after.as_secs_f64(),
                    ],
                )
                .await?
                .map(|row| row.get(0));
            let marked = crate::domain::mark_stopped::decide_mark_stopped(
                &connector,
                request,
                online_agent.as_deref(),
            )?;
            if preview {
                return Ok((marked.applied_to(&connector, chrono::Utc::now()), false));
            }
            tx.execute(super::transitions::sql::SUPERSEDE, &[&vec![id]])
                .await?;
            let row = tx
                .query_one(
                    &format!(
                        "UPDATE connectors
                         SET state = 'STOPPED', desired_state = 'STOPPED', generation = $2,
                             fenced_below = $2, status_message = $3, next_restart_time = NULL,
                             update_time = now()
                         WHERE id = $1
                         RETURNING {CONNECTOR_COLUMNS}"
                    ),
                    &[&id, &marked.generation, &marked.status_message],
                )
                .await?;
            insert_audit(&tx, &marked.audit_event(request, &connector)).await?;
            tx.commit().await?;
            Ok((connector_from_row(&row)?, false))
        })
        .await
    }

    #[instrument(skip_all, fields(connector_id = %query.connector_id))]
    async fn list_commands(
        &self,
        query: &HistoryQuery,
    ) -> Result<(Vec<Command>, bool), StoreError> {
        let sql = format!(
            "SELECT {COMMAND_COLUMNS} FROM commands
             WHERE connector_id = $1 AND generation < $2
             ORDER BY generation DESC LIMIT $3"
        );
        let before = query.before_generation.unwrap_or(i64::MAX);
        let fetch = fetch_for(query.page_size);
        let params: Params<'_> = &[&query.connector_id, &before, &fetch];
        let (commands, more) = self
            .page(&sql, params, query.page_size, command_from_row)
            .await?;
        if commands.is_empty() {
            // None at all: is there a connector?
            self.get_connector(&query.connector_id).await?;
        }
        Ok((commands, more))
    }

    #[instrument(skip_all, fields(command_id = %id))]
    async fn get_command(&self, id: &str) -> Result<Command, StoreError> {
        let sql = format!("SELECT {COMMAND_COLUMNS} FROM commands WHERE id = $1");
        self.by_id(&sql, id, command_from_row, StoreError::CommandNotFound)
            .await
    }

    async fn page_token_key(&self) -> Result<Vec<u8>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT key FROM server_keys WHERE name = 'page_token'", &[])
            .await?;
        Ok(row.get(0))
    }
}

/// Whether `call` retries the call that wrote its audit event (nothing
/// more to do; `AuditedCall::repeats`).
async fn is_retry(client: &impl Db, call: Option<AuditedCall<'_>>) -> Result<bool, StoreError> {
    let Some(call) = call else {
        return Ok(false);
    };
    let first: Option<String> = client
        .query_opt(
            "SELECT principal FROM audit_events
             WHERE connector_id = $1 AND action = $2 AND request_id = $3 AND outcome = 'OK'
             ORDER BY id LIMIT 1",
            &[&call.connector_id, &call.action.as_str(), &call.request_id],
        )
        .await?
        .map(|row| row.get(0));
    call.repeats(first.as_deref())
}
