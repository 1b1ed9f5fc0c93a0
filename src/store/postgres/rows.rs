//! Reading PostgreSQL rows for the shared row mapping (`store::rows`).

use crate::store::StoreError;
use crate::store::rows::ReadRow;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;

pub(super) use crate::store::rows::{
    AUDIT_COLUMNS, RUNNER, agent_from_row, audit_event_from_row, change_from_row, command_from_row,
    connector_from_row, fetch_for, page_of, region_from_row,
};
pub use crate::store::rows::{COMMAND_COLUMNS, CONNECTOR_COLUMNS};

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    column: &str,
) -> Result<T, StoreError> {
    row.try_get(column)
        .map_err(|error| StoreError::Internal(error.into()))
}

impl ReadRow for Row {
    fn optional_text(&self, column: &str) -> Result<Option<String>, StoreError> {
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
