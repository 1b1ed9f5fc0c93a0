//! Reading PostgreSQL rows for the shared row mapping (`store::rows`).

use crate::domain::{Command, Connector};
use crate::store::StoreError;
use crate::store::rows::{ReadRow, command_from, connector_from};
use chrono::{DateTime, Utc};
use tokio_postgres::Row;

pub use crate::store::rows::{COMMAND_COLUMNS, CONNECTOR_COLUMNS};

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    column: &str,
) -> Result<T, StoreError> {
    row.try_get(column)
        .map_err(|error| StoreError::Internal(error.into()))
}

impl ReadRow for Row {
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
        get(self, column)
    }
}

pub fn connector_from_row(row: &Row) -> Result<Connector, StoreError> {
    connector_from(row)
}

pub fn command_from_row(row: &Row) -> Result<Command, StoreError> {
    command_from(row)
}
