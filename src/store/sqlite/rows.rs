//! Reading SQLite rows for the shared row mapping (`store::rows`). Times
//! are text in one fixed-width UTC format, so that text order is time
//! order.

use crate::domain::{Command, Connector};
use crate::store::StoreError;
use crate::store::rows::{ReadRow, command_from, connector_from};
use chrono::{DateTime, Utc};
use rusqlite::Row;

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
    fn text(&self, column: &str) -> Result<String, StoreError> {
        get(self, column)
    }

    fn optional_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        get(self, column)
    }

    fn integer(&self, column: &str) -> Result<i64, StoreError> {
        get(self, column)
    }

    fn optional_integer(&self, column: &str) -> Result<Option<i64>, StoreError> {
        get(self, column)
    }

    fn flag(&self, column: &str) -> Result<bool, StoreError> {
        get(self, column)
    }

    fn optional_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        get::<Option<String>>(self, column)?
            .map(|t| parse_time(&t))
            .transpose()
    }
}

pub fn connector_from_row(row: &Row<'_>) -> Result<Connector, StoreError> {
    connector_from(row)
}

pub fn command_from_row(row: &Row<'_>) -> Result<Command, StoreError> {
    command_from(row)
}
