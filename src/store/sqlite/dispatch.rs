//! Dispatch in the embedded store (see PostgreSQL's `dispatch.rs`).

use super::connectors::{get_command, get_connector};
use super::error::translate;
use super::reads::online_since;
use super::rows::{COMMAND_COLUMNS, RUNNER, command_from_row, text};
use super::sessions::{apply_update, fence};
use super::{SqliteStore, now};
use crate::domain::assign::{Candidate, Deliverable, assign_local};
use crate::domain::reports::{ResultDisposition, result_disposition, result_effect};
use crate::domain::{Command, CommandReport, CommandStatus, Session};
use crate::store::{Claim, Dispatch, StoreError};
use rusqlite::params;

impl Dispatch for SqliteStore {
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
        claim: Claim<'_>,
    ) -> Result<Vec<(Session, Command)>, StoreError> {
        let room = claim.room();
        if room == 0 {
            return Ok(Vec::new());
        }
        let (region, sessions) = (claim.region.to_owned(), claim.sessions.to_vec());
        let offline_after = claim.offline_after;
        self.write(move |tx| {
            let deliverable: Vec<Deliverable> = tx
                .prepare_cached(&format!(
                    "SELECT c.id, {RUNNER}
                     FROM commands c JOIN connectors k ON k.id = c.connector_id
                     WHERE c.status = 'PENDING' AND c.region = ?1
                     ORDER BY c.create_time
                     LIMIT ?2"
                ))
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
            delivered.sort_by_key(|(_, command): &(Session, Command)| command.generation);
            Ok(delivered)
        })
        .await
    }

    async fn release_command(&self, session: &Session, command_id: &str) -> Result<(), StoreError> {
        let (session, command_id) = (session.clone(), command_id.to_owned());
        self.write(move |tx| {
            fence(tx, &session)?;
            tx.execute(
                "UPDATE commands SET status = 'PENDING'
                 WHERE id = ?1 AND agent_id = ?2 AND status = 'DELIVERED'",
                params![command_id, session.agent_id],
            )
            .map_err(translate)?;
            Ok(())
        })
        .await
    }

    async fn complete_command(
        &self,
        session: &Session,
        report: &CommandReport,
    ) -> Result<Option<Command>, StoreError> {
        let (session, report) = (session.clone(), report.clone());
        self.write(move |tx| {
            fence(tx, &session)?;
            let Some(command) = get_command(tx, &report.command_id)? else {
                return Ok(None);
            };
            let complete = match result_disposition(&command, &session) {
                ResultDisposition::Ignore => return Ok(None),
                ResultDisposition::Complete => {
                    "UPDATE commands SET status = ?2, error_reason = ?3, error_message = ?4,
                                         complete_time = ?5, error_retriable = ?6"
                }
                // The status stays SUPERSEDED; the answer is kept.
                ResultDisposition::Late => {
                    "UPDATE commands SET late_result = ?2, error_reason = ?3, error_message = ?4,
                                         late_result_time = ?5, error_retriable = ?6"
                }
            };
            let connector = get_connector(tx, &command.connector_id)?
                .ok_or_else(|| StoreError::Internal("a command without connector".into()))?;
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
                        text(now()),
                        report.retriable()
                    ],
                    |row| Ok(command_from_row(row)),
                )
                .map_err(translate)??;
            if let Some(update) = result_effect(&connector, &command, &report, &session) {
                apply_update(tx, &connector.id, &update)?;
            }
            Ok(Some(completed))
        })
        .await
    }
}
