//! Batch calls in the embedded store (see PostgreSQL's `batches.rs`).

use super::error::translate;
use super::rows::text;
use super::{SqliteStore, now};
use crate::store::{BatchRecord, Batches, NewBatch, StoreError};
use rusqlite::{Connection, OptionalExtension, params};

fn find(connection: &Connection, request_id: &str) -> Result<Option<BatchRecord>, StoreError> {
    let row: Option<(String, String, Option<Vec<u8>>, String)> = connection
        .prepare_cached(
            "SELECT fingerprint, connector_ids, response, principal FROM batches
             WHERE request_id = ?1",
        )
        .map_err(translate)?
        .query_row([request_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()
        .map_err(translate)?;
    row.map(|(fingerprint, ids, response, principal)| {
        Ok(BatchRecord {
            fingerprint,
            principal,
            connector_ids: serde_json::from_str(&ids)
                .map_err(|e| StoreError::Internal(e.into()))?,
            response,
        })
    })
    .transpose()
}

impl Batches for SqliteStore {
    async fn begin_batch(&self, batch: NewBatch<'_>) -> Result<BatchRecord, StoreError> {
        let (request_id, fingerprint) = (batch.request_id.to_owned(), batch.fingerprint.to_owned());
        let principal = batch.principal.to_owned();
        let ids = serde_json::to_string(batch.connector_ids)
            .map_err(|e| StoreError::Internal(e.into()))?;
        self.with(move |connection| {
            connection
                .prepare_cached(
                    "INSERT INTO batches (request_id, fingerprint, connector_ids, create_time,
                                          principal)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (request_id) DO NOTHING",
                )
                .map_err(translate)?
                .execute(params![
                    request_id,
                    fingerprint,
                    ids,
                    text(now()),
                    principal
                ])
                .map_err(translate)?;
            find(connection, &request_id)?
                .ok_or_else(|| StoreError::Internal(format!("batch {request_id} vanished").into()))
        })
        .await
    }

    async fn find_batch(&self, request_id: &str) -> Result<Option<BatchRecord>, StoreError> {
        let request_id = request_id.to_owned();
        self.with(move |connection| find(connection, &request_id))
            .await
    }

    async fn finish_batch(&self, request_id: &str, response: &[u8]) -> Result<(), StoreError> {
        let (request_id, response) = (request_id.to_owned(), response.to_vec());
        self.with(move |connection| {
            connection
                .prepare_cached("UPDATE batches SET response = ?2 WHERE request_id = ?1")
                .map_err(translate)?
                .execute(params![request_id, response])
                .map_err(translate)?;
            Ok(())
        })
        .await
    }
}
