//! Connector changes on the embedded store (migration V11 records them):
//! reading them for watchers, and pruning.

use super::SqliteStore;
use super::connectors::get_connector;
use super::error::translate;
use super::now;
use super::rows::{all, change_from_row, text};
use crate::domain::Connector;
use crate::store::{ChangeEntry, Feed, StoreError};
use rusqlite::params;
use std::time::Duration;

impl Feed for SqliteStore {
    async fn change_head(&self) -> Result<i64, StoreError> {
        self.with(|connection| {
            connection
                .query_row(
                    "SELECT max(coalesce((SELECT max(seq) FROM connector_changes), 0),
                                (SELECT pruned_through FROM connector_changes_horizon))",
                    [],
                    |row| row.get(0),
                )
                .map_err(translate)
        })
        .await
    }

    async fn changes_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ChangeEntry>, StoreError> {
        self.with(move |connection| {
            let tx = connection.transaction().map_err(translate)?;
            let pruned_through: i64 = tx
                .query_row(
                    "SELECT pruned_through FROM connector_changes_horizon",
                    [],
                    |row| row.get(0),
                )
                .map_err(translate)?;
            if after < pruned_through {
                return Err(StoreError::ChangesPruned {
                    after,
                    pruned_through,
                });
            }
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            all(
                &tx,
                "SELECT seq, connector_id, version, before FROM connector_changes
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                params![after, limit],
                |row| change_from_row(row),
            )
        })
        .await
    }

    async fn sequence_changes(&self, _up_to: usize) -> Result<usize, StoreError> {
        Ok(0)
    }

    async fn tidy_changes(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn connectors_by_id(&self, ids: &[String]) -> Result<Vec<Connector>, StoreError> {
        let ids = ids.to_vec();
        self.with(move |connection| {
            let mut connectors = Vec::with_capacity(ids.len());
            for id in &ids {
                if let Some(connector) = get_connector(connection, id)? {
                    connectors.push(connector);
                }
            }
            Ok(connectors)
        })
        .await
    }
}

impl SqliteStore {
    pub(super) async fn prune_changes_in(&self, keep: Duration) -> Result<u64, StoreError> {
        self.with(move |connection| {
            let cutoff =
                now() - chrono::TimeDelta::from_std(keep).unwrap_or(chrono::TimeDelta::MAX);
            let tx = connection.transaction().map_err(translate)?;
            let last: Option<i64> = tx
                .query_row(
                    "SELECT max(seq) FROM connector_changes
                     WHERE change_time < ?1 AND seq < (SELECT max(seq) FROM connector_changes)",
                    [text(cutoff)],
                    |row| row.get(0),
                )
                .map_err(translate)?;
            let Some(last) = last else {
                return Ok(0);
            };
            let pruned = tx
                .execute("DELETE FROM connector_changes WHERE seq <= ?1", [last])
                .map_err(translate)?;
            tx.execute(
                "UPDATE connector_changes_horizon SET pruned_through = ?1",
                [last],
            )
            .map_err(translate)?;
            tx.commit().map_err(translate)?;
            Ok(pruned as u64)
        })
        .await
    }
}
