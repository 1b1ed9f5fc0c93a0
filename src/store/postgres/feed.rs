//! Connector changes on PostgreSQL (migration V14 records them in commit
//! order): reading them for watchers, and the leader's pruning.

use super::PgStore;
use super::conn::Db;
use super::leader::LEASE_CTE;
use super::rows::{CONNECTOR_COLUMNS, change_from_row, connector_from_row};
use crate::domain::Connector;
use crate::store::{ChangeEntry, Feed, Lease, StoreError};
use std::time::Duration;

impl Feed for PgStore {
    async fn change_head(&self) -> Result<i64, StoreError> {
        // Changes committed before this call get their positions first, so
        // that the head covers them (a snapshot read after it shows them).
        self.sequence_all().await?;
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT greatest((SELECT max(seq) FROM connector_changes),
                                 (SELECT pruned_through FROM connector_changes_horizon))",
                &[],
            )
            .await?;
        Ok(row.get(0))
    }

    async fn changes_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ChangeEntry>, StoreError> {
        let client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                "SELECT seq, connector_id, version, before::text AS before,
                        (SELECT pruned_through FROM connector_changes_horizon) AS pruned_through
                 FROM connector_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &limit],
            )
            .await?;
        let pruned_through: i64 = match rows.first() {
            Some(row) => row.get("pruned_through"),
            None => client
                .query_one("SELECT pruned_through FROM connector_changes_horizon", &[])
                .await?
                .get(0),
        };
        if after < pruned_through {
            return Err(StoreError::ChangesPruned {
                after,
                pruned_through,
            });
        }
        rows.iter().map(change_from_row).collect()
    }

    async fn sequence_changes(&self, up_to: usize) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let up_to = i64::try_from(up_to).unwrap_or(i64::MAX);
        let row = client
            .query_one("SELECT connector_changes_sequence($1)", &[&up_to])
            .await?;
        Ok(usize::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    async fn tidy_changes(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .simple_query("VACUUM (SKIP_LOCKED) connector_changes_pending")
            .await?;
        Ok(())
    }

    async fn connectors_by_id(&self, ids: &[String]) -> Result<Vec<Connector>, StoreError> {
        self.all(
            &format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE id = ANY($1)"),
            &[&ids],
            connector_from_row,
        )
        .await
    }
}

impl PgStore {
    pub(super) async fn prune_changes_once(
        &self,
        lease: Lease,
        keep: Duration,
    ) -> Result<u64, StoreError> {
        let sql = format!(
            "WITH {LEASE_CTE},
             last AS (
                 SELECT max(seq) AS seq FROM connector_changes
                 WHERE change_time < now() - make_interval(secs => $3)
                   AND seq < (SELECT max(seq) FROM connector_changes)
                   AND EXISTS (SELECT 1 FROM lease)),
             pruned AS (
                 DELETE FROM connector_changes
                 WHERE seq <= (SELECT seq FROM last) RETURNING 1),
             horizon AS (
                 UPDATE connector_changes_horizon SET pruned_through = (SELECT seq FROM last)
                 WHERE (SELECT seq FROM last) IS NOT NULL RETURNING 1)
             SELECT EXISTS (SELECT 1 FROM lease), (SELECT count(*) FROM pruned),
                    (SELECT count(*) FROM horizon)"
        );
        let client = self.client().await?;
        let row = self
            .as_leader(&client, lease, &sql, &[&keep.as_secs_f64()])
            .await?;
        Ok(u64::try_from(row.get::<_, i64>(1)).unwrap_or(0))
    }
}
