//! Reading PostgreSQL rows for the shared row mapping (`store::rows`), and
//! a query's rows mapped (`PgStore::all`, `page`, `by_id`).

use super::PgStore;
use super::conn::{Db, Params};
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

impl PgStore {
    /// Every row `sql` selects on a pooled connection, mapped by
    /// `from_row`.
    pub(super) async fn all<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        from_row: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let rows = self.client().await?.query(sql, params).await?;
        rows.iter().map(from_row).collect()
    }

    /// The first `limit` rows `sql` selects on a pooled connection (it asks
    /// for `fetch_for(limit)`), mapped by `from_row`, and whether more
    /// followed.
    pub(super) async fn page<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        limit: usize,
        from_row: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<(Vec<T>, bool), StoreError> {
        Ok(page_of(self.all(sql, params, from_row).await?, limit))
    }

    /// The row `sql` selects with `$1` = `id`, mapped by `from_row`, or
    /// `missing(id)` when there is none.
    pub(super) async fn by_id<T>(
        &self,
        sql: &str,
        id: &str,
        from_row: fn(&Row) -> Result<T, StoreError>,
        missing: fn(String) -> StoreError,
    ) -> Result<T, StoreError> {
        match self.client().await?.query_opt(sql, &[&id]).await? {
            Some(row) => from_row(&row),
            None => Err(missing(id.to_owned())),
        }
    }
}
