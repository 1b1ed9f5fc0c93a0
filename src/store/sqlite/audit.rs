//! The audit trail in the embedded store.

use super::error::translate;
use super::rows::{AUDIT_COLUMNS, audit_event_from_row, fetch_for, page, text};
use super::{SqliteStore, now};
use crate::domain::{AuditEvent, AuditFilter, NewAuditEvent};
use crate::store::{AuditLog, StoreError};
use rusqlite::{Connection, params};

/// Appends `event` inside the caller's transaction (or on its own).
pub(super) fn insert_audit(
    connection: &Connection,
    event: &NewAuditEvent,
) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO audit_events
               (time, principal, action, connector_id, request_id, outcome, reason, peer, detail,
                count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(translate)?
        .execute(params![
            text(now()),
            event.actor.principal,
            event.action.as_str(),
            event.connector_id,
            event.request_id,
            event.outcome,
            event.reason,
            event.actor.peer,
            event.detail,
            i64::try_from(event.count).unwrap_or(i64::MAX).max(1),
        ])
        .map_err(translate)?;
    Ok(())
}

impl AuditLog for SqliteStore {
    async fn append_audit(&self, event: &NewAuditEvent) -> Result<(), StoreError> {
        let event = event.clone();
        self.with(move |connection| insert_audit(connection, &event))
            .await
    }

    async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        limit: usize,
    ) -> Result<(Vec<AuditEvent>, bool), StoreError> {
        let filter = filter.clone();
        self.with(move |connection| {
            page(
                connection,
                &format!(
                    "SELECT {AUDIT_COLUMNS}
                     FROM audit_events
                     WHERE (?1 IS NULL OR connector_id = ?1)
                       AND (?2 IS NULL OR principal = ?2)
                       AND (?3 IS NULL OR time >= ?3)
                       AND (?4 IS NULL OR time < ?4)
                       AND (?5 IS NULL OR id < ?5)
                     ORDER BY id DESC
                     LIMIT ?6"
                ),
                params![
                    filter.connector_id,
                    filter.principal,
                    filter.start_time.map(text),
                    filter.end_time.map(text),
                    filter.before_id,
                    fetch_for(limit),
                ],
                limit,
                |row| audit_event_from_row(row),
            )
        })
        .await
    }
}
