//! A round of automatic starts on the embedded store (`store::restarts`
//! plans it): one process owns the file, so it is always the leader and
//! the round is one transaction.

use super::SqliteStore;
use super::connectors::transition_in;
use super::error::translate;
use super::now;
use super::rows::{CONNECTOR_COLUMNS, all, connector_from_row, text};
use crate::store::restarts::{CANDIDATES, RUNNING_SINCE, count, plan_round};
use crate::store::rows::ReadRow;
use crate::store::{Lease, RestartRound, StoreError, Write};
use chrono::{DateTime, Utc};
use rusqlite::params;

impl SqliteStore {
    pub(super) async fn restart_round_in(
        &self,
        _lease: Lease,
        at: DateTime<Utc>,
    ) -> Result<RestartRound, StoreError> {
        self.write(move |tx| {
            let candidates = all(
                tx,
                &format!(
                    "SELECT {CONNECTOR_COLUMNS},
                            CASE WHEN restart_count > 0 THEN ({RUNNING_SINCE}) END
                                AS running_since
                     FROM connectors WHERE {}",
                    CANDIDATES.replace("{now}", "?1")
                ),
                [text(at)],
                |row| {
                    Ok((
                        connector_from_row(row)?,
                        row.optional_time("running_since")?,
                    ))
                },
            )?;
            let plan = plan_round(candidates, at);
            let mut round = RestartRound::default();
            let mut written = Vec::new();
            for mark in &plan.marks {
                let changed = tx
                    .prepare_cached(
                        "UPDATE connectors SET
                             next_restart_time = ?4,
                             restart_count = CASE WHEN ?5 = 'RESET' THEN 0 ELSE restart_count END,
                             update_time = ?6
                         WHERE id = ?1 AND generation = ?2 AND update_time = ?3",
                    )
                    .map_err(translate)?
                    .execute(params![
                        mark.id,
                        mark.generation,
                        text(mark.update_time),
                        mark.kind.next_time().map(text),
                        mark.kind.as_str(),
                        text(now()),
                    ])
                    .map_err(translate)?;
                if changed > 0 {
                    written.push(mark.kind.as_str());
                }
            }
            count(&mut round, &written);
            for change in &plan.starts {
                match transition_in(tx, change, Write::Commit) {
                    Ok(outcome) if !outcome.replayed => round.started.push(outcome),
                    Ok(_) | Err(StoreError::Rejected(_) | StoreError::ConnectorNotFound(_)) => {}
                    Err(error) => return Err(error),
                }
            }
            Ok(round)
        })
        .await
    }
}
