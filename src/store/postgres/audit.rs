//! The audit trail on PostgreSQL.

use super::PgStore;
use super::conn::Db;
use super::rows::{AUDIT_COLUMNS, audit_event_from_row, fetch_for};
use crate::domain::{AuditEvent, AuditFilter, NewAuditEvent};
use crate::store::{AuditLog, StoreError};

/// $1 principal, $2 action, $3 connector id, $4 request id, $5 outcome,
/// $6 reason, $7 peer, $8 detail, $9 count.
pub const INSERT_AUDIT: &str = "INSERT INTO audit_events
       (principal, action, connector_id, request_id, outcome, reason, peer, detail, count)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Appends `event` inside the caller's transaction (or on its own).
pub(super) async fn insert_audit(
    client: &impl Db,
    event: &NewAuditEvent,
) -> Result<(), StoreError> {
    client
        .execute(
            INSERT_AUDIT,
            &[
                &event.actor.principal,
                &event.action.as_str(),
                &event.connector_id,
                &event.request_id,
                &event.outcome,
                &event.reason,
                &event.actor.peer,
                &event.detail,
                &i64::try_from(event.count).unwrap_or(i64::MAX).max(1),
            ],
        )
        .await?;
    Ok(())
}

impl AuditLog for PgStore {
    async fn append_audit(&self, event: &NewAuditEvent) -> Result<(), StoreError> {
        insert_audit(&self.client().await?, event).await
    }

    async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        limit: usize,
    ) -> Result<(Vec<AuditEvent>, bool), StoreError> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS}
             FROM audit_events
             WHERE ($1::text IS NULL OR connector_id = $1)
               AND ($2::text IS NULL OR principal = $2)
               AND ($3::timestamptz IS NULL OR time >= $3)
               AND ($4::timestamptz IS NULL OR time < $4)
               AND ($5::int8 IS NULL OR id < $5)
             ORDER BY id DESC
             LIMIT $6"
        );
        self.page(
            &sql,
            &[
                &filter.connector_id,
                &filter.principal,
                &filter.start_time,
                &filter.end_time,
                &filter.before_id,
                &fetch_for(limit),
            ],
            limit,
            audit_event_from_row,
        )
        .await
    }
}
