//! Reading SQLite rows for the shared row mapping (`store::rows`), and a
//! query's rows mapped (`all`, `page`, `first`). Times are text in one
//! fixed-width UTC format, so that text order is time order.

use super::error::translate;
use crate::store::StoreError;
use crate::store::rows::ReadRow;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, Row};

pub(super) use crate::store::rows::{
    AUDIT_COLUMNS, RUNNER, agent_from_row, audit_event_from_row, change_from_row, command_from_row,
    connector_from_row, fetch_for, page_of, region_from_row,
};
pub use crate::store::rows::{COMMAND_COLUMNS, CONNECTOR_COLUMNS};

/// The stored form of a time.
pub fn text(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn parse_time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Internal(format!("stored time {text:?}: {e}").into()))
}

fn get<T: rusqlite::types::FromSql>(row: &Row<'_>, column: &str) -> Result<T, StoreError> {
    row.get(column)
        .map_err(|e| StoreError::Internal(format!("reading {column}: {e}").into()))
}

impl ReadRow for Row<'_> {
    fn optional_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        get(self, column)
    }

    fn optional_integer(&self, column: &str) -> Result<Option<i64>, StoreError> {
        get(self, column)
    }

    /// SQLite keeps a flag as an integer.
    fn flag(&self, column: &str) -> Result<bool, StoreError> {
        Ok(self.integer(column)? != 0)
    }

    /// Times are text (`text`).
    fn optional_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        get::<Option<String>>(self, column)?
            .map(|t| parse_time(&t))
            .transpose()
    }
}

/// Every row `sql` selects, mapped by `from_row`.
pub(super) fn all<T>(
    connection: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    from_row: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut statement = connection.prepare_cached(sql).map_err(translate)?;
    let mut rows = statement.query(params).map_err(translate)?;
    let mut all = Vec::new();
    while let Some(row) = rows.next().map_err(translate)? {
        all.push(from_row(row)?);
    }
    Ok(all)
}

/// The first `limit` rows `sql` selects (it asks for `fetch_for(limit)`),
/// mapped by `from_row`, and whether more followed.
pub(super) fn page<T>(
    connection: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    limit: usize,
    from_row: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<(Vec<T>, bool), StoreError> {
    Ok(page_of(all(connection, sql, params, from_row)?, limit))
}

/// The first row `sql` selects, if any, mapped by `from_row`.
pub(super) fn first<T>(
    connection: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    from_row: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut statement = connection.prepare_cached(sql).map_err(translate)?;
    let mut rows = statement.query(params).map_err(translate)?;
    rows.next().map_err(translate)?.map(from_row).transpose()
}
