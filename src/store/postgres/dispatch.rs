//! Dispatch on PostgreSQL: claiming pending commands for this replica's
//! agents, releasing what could not be sent, and recording results.

use super::PgStore;
use super::conn::Db;
use super::reads::online;
use super::rows::{
    COMMAND_COLUMNS, CONNECTOR_COLUMNS, RUNNER, command_from_row, connector_from_row,
};
use super::sessions::{apply_update, fence};
use crate::domain::assign::{Candidate, Deliverable, assign_local};
use crate::domain::reports::{ResultDisposition, result_disposition, result_effect};
use crate::domain::{Command, CommandReport, CommandStatus, Session};
use crate::store::{Claim, Dispatch, StoreError};
use std::collections::HashMap;
use tracing::instrument;

impl Dispatch for PgStore {
    async fn pending_regions(&self) -> Result<Vec<String>, StoreError> {
        self.all(
            "SELECT DISTINCT region FROM commands WHERE status = 'PENDING'",
            &[],
            |row| Ok(row.get(0)),
        )
        .await
    }

    #[instrument(skip_all, fields(region = %claim.region))]
    async fn claim_commands(
        &self,
        claim: Claim<'_>,
    ) -> Result<Vec<(Session, Command)>, StoreError> {
        self.retrying(|| async move {
            let room = claim.room();
            if room == 0 {
                return Ok(Vec::new());
            }
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            // Online agents of the region and their load, locked first. The
            // share lock makes a concurrent new session of one of them wait for
            // this claim, so that its requeue sees what is delivered here. Taken
            // before the commands and connectors (which are never waited for:
            // SKIP LOCKED), so that a claim holds nothing a new session needs
            // while it waits for the agents: opening a session takes its agent,
            // then its commands and connectors, and the two cannot deadlock.
            let rows = tx
                .query(
                    &format!(
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
                    ),
                    &[&claim.region, &claim.offline_after.as_secs_f64()],
                )
                .await?;
            let agents: Vec<Candidate> = rows
                .iter()
                .map(|row| Candidate {
                    agent_id: row.get(0),
                    epoch: row.get(1),
                    load: row.get(2),
                })
                .collect();
            // Pending commands: each is its connector's only open one (a newer
            // command supersedes the older ones), with its runner. Rows
            // another claim or a Start/Pause holds are skipped, never waited
            // for.
            let limit = i64::try_from(room).unwrap_or(i64::MAX);
            let deliverable: Vec<Deliverable> = tx
                .query(
                    &format!(
                        "SELECT c.id, {RUNNER}
                         FROM commands c JOIN connectors k ON k.id = c.connector_id
                         WHERE c.status = 'PENDING' AND c.region = $1
                         ORDER BY c.create_time
                         LIMIT $2
                         FOR UPDATE OF c, k SKIP LOCKED"
                    ),
                    &[&claim.region, &limit],
                )
                .await?
                .iter()
                .map(|row| Deliverable {
                    command_id: row.get(0),
                    runner: row.get(1),
                })
                .collect();
            if deliverable.is_empty() {
                return Ok(Vec::new());
            }
            let local = assign_local(&deliverable, &agents, claim.sessions);
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
            let rows = tx
                .query(
                    &format!(
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
                    ),
                    &[&ids, &targets],
                )
                .await?;
            let mut delivered = Vec::with_capacity(rows.len());
            for row in &rows {
                let command = command_from_row(row)?;
                let session = sessions[&command.agent_id].clone();
                delivered.push((session, command));
            }
            tx.commit().await?;
            delivered.sort_by_key(|(_, command)| command.generation);
            Ok(delivered)
        })
        .await
    }

    async fn release_command(&self, session: &Session, command_id: &str) -> Result<(), StoreError> {
        self.retrying(|| async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            fence(&tx, session).await?;
            tx.execute(
                "UPDATE commands SET status = 'PENDING'
                 WHERE id = $1 AND agent_id = $2 AND status = 'DELIVERED'",
                &[&command_id, &session.agent_id],
            )
            .await?;
            tx.commit().await
        })
        .await
    }

    #[instrument(skip_all, fields(agent_id = %session.agent_id, command_id = %report.command_id))]
    async fn complete_command(
        &self,
        session: &Session,
        report: &CommandReport,
    ) -> Result<Option<Command>, StoreError> {
        self.retrying(|| async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            fence(&tx, session).await?;
            let Some(row) = tx
                .query_opt(
                    "SELECT connector_id FROM commands WHERE id = $1",
                    &[&report.command_id],
                )
                .await?
            else {
                return Ok(None);
            };
            let connector_id: String = row.get(0);
            // Connector first, then command: the same lock order as Start/Pause.
            let connector = connector_from_row(
                &tx.query_one(
                    &format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE id = $1 FOR UPDATE"),
                    &[&connector_id],
                )
                .await?,
            )?;
            let command = command_from_row(
                &tx.query_one(
                    &format!("SELECT {COMMAND_COLUMNS} FROM commands WHERE id = $1 FOR UPDATE"),
                    &[&report.command_id],
                )
                .await?,
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
                                         error_retriable = $5, complete_time = now()"
                }
                // The status stays SUPERSEDED; the answer is kept.
                ResultDisposition::Late => {
                    "UPDATE commands SET late_result = $2, error_reason = $3, error_message = $4,
                                         error_retriable = $5, late_result_time = now()"
                }
            };
            let completed = command_from_row(
                &tx.query_one(
                    &format!("{complete} WHERE id = $1 RETURNING {COMMAND_COLUMNS}"),
                    &[
                        &command.id,
                        &outcome.as_str(),
                        &report.error_reason,
                        &report.error_message,
                        &report.retriable(),
                    ],
                )
                .await?,
            )?;
            if let Some(update) = result_effect(&connector, &command, report, session) {
                apply_update(&tx, &connector.id, &update).await?;
            }
            tx.commit().await?;
            Ok(Some(completed))
        })
        .await
    }
}
