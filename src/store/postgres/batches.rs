//! Batch calls on PostgreSQL: the record that makes a retried batch
//! return its first answer.

use super::PgStore;
use super::conn::Db;
use crate::store::{BatchRecord, Batches, NewBatch, StoreError};

fn record(row: &tokio_postgres::Row) -> BatchRecord {
    BatchRecord {
        fingerprint: row.get("fingerprint"),
        principal: row.get("principal"),
        connector_ids: row.get("connector_ids"),
        response: row.get("response"),
    }
}

impl Batches for PgStore {
    async fn begin_batch(&self, batch: NewBatch<'_>) -> Result<BatchRecord, StoreError> {
        let request_id = batch.request_id;
        let client = self.client().await?;
        // Inserted, or the row another call inserted first, so that two
        // retries racing agree on one selection.
        let row = client
            .query_opt(
                "WITH inserted AS (
                   INSERT INTO batches (request_id, fingerprint, connector_ids, principal)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (request_id) DO NOTHING
                   RETURNING fingerprint, connector_ids, response, principal)
                 SELECT fingerprint, connector_ids, response, principal FROM inserted
                 UNION ALL
                 SELECT fingerprint, connector_ids, response, principal FROM batches
                 WHERE request_id = $1 AND NOT EXISTS (SELECT 1 FROM inserted)",
                &[
                    &request_id,
                    &batch.fingerprint,
                    &batch.connector_ids,
                    &batch.principal,
                ],
            )
            .await?;
        match row {
            Some(row) => Ok(record(&row)),
            // The other call committed after this statement's snapshot.
            None => self
                .find_batch(request_id)
                .await?
                .ok_or_else(|| StoreError::Internal(format!("batch {request_id} vanished").into())),
        }
    }

    async fn find_batch(&self, request_id: &str) -> Result<Option<BatchRecord>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                "SELECT fingerprint, connector_ids, response, principal FROM batches
                 WHERE request_id = $1",
                &[&request_id],
            )
            .await?
            .as_ref()
            .map(record))
    }

    async fn finish_batch(&self, request_id: &str, response: &[u8]) -> Result<(), StoreError> {
        self.run(
            "UPDATE batches SET response = $2 WHERE request_id = $1",
            &[&request_id, &response],
        )
        .await
    }
}
