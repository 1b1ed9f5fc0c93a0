//! ListConnectors in the embedded store.

use super::SqliteStore;
use super::error::translate;
use super::rows::{CONNECTOR_COLUMNS, connector_from_row, fetch_for, page};
use crate::domain::{Cursor, SearchFilter, micros};
use crate::store::{Page, Search, StoreError, escape_like, fold};
use rusqlite::params_from_iter;

/// The rule of `domain::lag` in SQL; `?n` is the alert threshold in µs.
pub(super) fn lagging_condition(n: usize) -> String {
    format!(
        "(desired_state = 'RUNNING'
          AND (state = 'UNKNOWN' OR (state = 'RUNNING' AND latency_us > CAST(?{n} AS INTEGER))))"
    )
}

/// The WHERE clause of a search and its values (LIKE patterns escaped with
/// a backslash, as in the PostgreSQL backend).
fn search_condition(filter: &SearchFilter) -> (String, Vec<String>) {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    if !filter.query.is_empty() {
        let needle = escape_like(&fold(&filter.query));
        values.push(format!("%{needle}%"));
        values.push(format!("{needle}%"));
        let (sub, pre) = (values.len() - 1, values.len());
        conditions.push(format!(
            "(name_folded LIKE ?{sub} ESCAPE '\\' OR project_name_folded LIKE ?{sub} ESCAPE '\\'
              OR lower(id) LIKE ?{pre} ESCAPE '\\' OR lower(project_id) LIKE ?{pre} ESCAPE '\\'
              OR server_ip LIKE ?{pre} ESCAPE '\\')"
        ));
    }
    if !filter.region.is_empty() {
        values.push(filter.region.clone());
        conditions.push(format!("region = ?{}", values.len()));
    }
    if let Some(server) = &filter.server {
        let (first, last) = server.key_bounds();
        values.push(first);
        values.push(last);
        conditions.push(format!(
            "server_ip <> '' AND server_ip_key(server_ip) BETWEEN ?{} AND ?{}",
            values.len() - 1,
            values.len()
        ));
    }
    if !filter.states.is_empty() {
        let first = values.len() + 1;
        let placeholders: Vec<String> = filter
            .states
            .iter()
            .enumerate()
            .map(|(i, state)| {
                values.push(state.as_str().to_owned());
                format!("?{}", first + i)
            })
            .collect();
        conditions.push(format!("state IN ({})", placeholders.join(", ")));
    }
    if let Some(alert) = filter.lagging_over {
        values.push(micros(alert).to_string());
        conditions.push(lagging_condition(values.len()));
    }
    if filter.awaiting_restart {
        conditions.push("next_restart_time IS NOT NULL".to_owned());
    }
    if conditions.is_empty() {
        conditions.push("1".to_owned());
    }
    (conditions.join(" AND "), values)
}

impl Search for SqliteStore {
    async fn list_connectors(
        &self,
        filter: &SearchFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let (condition, values) = search_condition(filter);
        let after = after.cloned();
        self.with(move |connection| {
            let mut page_values = values.clone();
            let mut sql = format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE {condition}");
            if let Some(after) = after {
                page_values.push(after.name);
                page_values.push(after.id);
                sql.push_str(&format!(
                    " AND (name, id) > (?{}, ?{})",
                    page_values.len() - 1,
                    page_values.len()
                ));
            }
            page_values.push(fetch_for(limit).to_string());
            sql.push_str(&format!(
                " ORDER BY name, id LIMIT CAST(?{} AS INTEGER)",
                page_values.len()
            ));
            let (connectors, more) = page(
                connection,
                &sql,
                params_from_iter(page_values.iter()),
                limit,
                |row| connector_from_row(row),
            )?;
            let total: i64 = connection
                .prepare_cached(&format!(
                    "SELECT count(*) FROM connectors WHERE {condition}"
                ))
                .map_err(translate)?
                .query_row(params_from_iter(values.iter()), |row| row.get(0))
                .map_err(translate)?;
            Ok(Page {
                connectors,
                more,
                total,
            })
        })
        .await
    }
}
