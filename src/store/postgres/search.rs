//! ListConnectors on PostgreSQL: one WHERE clause per search, built so
//! that each predicate can use its index, and a capped count.

use super::PgStore;
use super::conn::Db;
use super::rows::{CONNECTOR_COLUMNS, connector_from_row, fetch_for, page_of};
use crate::domain::{Cursor, SearchFilter};
use crate::store::{Page, Search, StoreError, escape_like, fold};
use tokio_postgres::types::ToSql;
use tracing::instrument;

/// The rule of `domain::lag` in SQL; `$n` is the alert threshold in µs.
pub(super) fn lagging_condition(n: usize) -> String {
    // Each arm of the OR matches a partial index (migration V6).
    format!(
        "((state = 'UNKNOWN' AND desired_state = 'RUNNING')
          OR (state = 'RUNNING' AND desired_state = 'RUNNING' AND latency_us > ${n}))"
    )
}

/// Matches are counted exactly up to this many; past it, the planner's
/// estimate is reported (as AIP-158 allows for `total_size`), so that a broad
/// search over a million connectors does not pay for counting them all.
pub const EXACT_COUNT_LIMIT: i64 = 10_000;

async fn count_matches(client: &impl Db, search: &SearchSql) -> Result<i64, StoreError> {
    let params = search.params();
    let exact: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM (SELECT 1 FROM connectors WHERE {} LIMIT {}) AS capped",
                search.condition,
                EXACT_COUNT_LIMIT + 1
            ),
            &params,
        )
        .await?
        .get(0);
    if exact <= EXACT_COUNT_LIMIT {
        return Ok(exact);
    }
    let plan = client
        .query(
            &format!(
                "EXPLAIN SELECT 1 FROM connectors WHERE {}",
                search.condition
            ),
            &params,
        )
        .await?;
    let estimate = plan
        .first()
        .and_then(|row| row.try_get::<_, String>(0).ok())
        .and_then(|line| estimated_rows(&line))
        .unwrap_or(exact);
    Ok(estimate.max(exact))
}

/// The `rows=N` estimate of the top line of a text-format plan.
fn estimated_rows(plan_line: &str) -> Option<i64> {
    let rest = &plan_line[plan_line.find(" rows=")? + " rows=".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The WHERE clause of a search and the values it binds, built so that each
/// predicate can use its index (no `$1 = '' OR ...` catch-alls, which defeat
/// the planner).
struct SearchSql {
    condition: String,
    substring: String,
    prefix: String,
    region: String,
    /// The server filter's first and last address.
    server: Option<(String, String)>,
    states: Vec<&'static str>,
    lagging_over_us: Option<i64>,
    has_query: bool,
    /// Matches are few and found through an index other than (name, id).
    selective_query: bool,
}

impl SearchSql {
    fn new(filter: &SearchFilter) -> Self {
        let folded = fold(&filter.query);
        let needle = escape_like(&folded);
        let has_query = !filter.query.is_empty();
        // A text query long enough for trigram lookups, or the lagging
        // filter (its partial indexes find the few lagging connectors;
        // walking the name index instead reads half a million rows at a
        // million connectors when the lagging ones sort late).
        let selective_query = folded.chars().count() >= 3
            || filter.lagging_over.is_some()
            || filter.awaiting_restart
            || filter.server.is_some();
        let mut conditions = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        if has_query {
            let (sub, pre) = (next(), next());
            conditions.push(format!(
                "(name_folded LIKE ${sub} OR project_name_folded LIKE ${sub}
                  OR lower(id) LIKE ${pre} OR lower(project_id) LIKE ${pre}
                  OR server_ip LIKE ${pre})"
            ));
        }
        if !filter.region.is_empty() {
            conditions.push(format!("region = ${}", next()));
        }
        if filter.server.is_some() {
            // Address order (the index of migration V17); every stored
            // address is a host, so the network is its first to last.
            let (first, last) = (next(), next());
            conditions.push(format!(
                "NULLIF(server_ip, '')::inet BETWEEN ${first}::text::inet AND ${last}::text::inet"
            ));
        }
        // One state is bound as a plain equality: the planner can then read
        // the (region, state, name, id) index in order, which it does not do
        // for `= ANY(array)`.
        match filter.states.len() {
            0 => {}
            1 => conditions.push(format!("state = ${}", next())),
            _ => conditions.push(format!("state = ANY(${})", next())),
        }
        if filter.lagging_over.is_some() {
            conditions.push(lagging_condition(next()));
        }
        if filter.awaiting_restart {
            conditions.push("next_restart_time IS NOT NULL".to_owned());
        }
        if conditions.is_empty() {
            conditions.push("TRUE".to_owned());
        }
        Self {
            condition: conditions.join(" AND "),
            substring: format!("%{needle}%"),
            prefix: format!("{needle}%"),
            region: filter.region.clone(),
            server: filter.server.as_ref().map(|server| server.bounds()),
            states: filter.states.iter().map(|s| s.as_str()).collect(),
            lagging_over_us: filter.lagging_over.map(crate::domain::micros),
            has_query,
            selective_query,
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        if self.has_query {
            params.push(&self.substring);
            params.push(&self.prefix);
        }
        if !self.region.is_empty() {
            params.push(&self.region);
        }
        if let Some((first, last)) = &self.server {
            params.push(first);
            params.push(last);
        }
        match self.states.as_slice() {
            [] => {}
            [state] => params.push(state),
            _ => params.push(&self.states),
        }
        if let Some(alert) = &self.lagging_over_us {
            params.push(alert);
        }
        params
    }
}

impl Search for PgStore {
    #[instrument(skip_all, fields(query = %filter.query, region = %filter.region))]
    async fn list_connectors(
        &self,
        filter: &SearchFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let search = SearchSql::new(filter);
        let client = self.client().await?;

        let mut sql = format!(
            "SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE {}",
            search.condition
        );
        let mut params = search.params();
        if let Some(after) = after {
            sql.push_str(&format!(
                " AND (name, id) > (${}, ${})",
                params.len() + 1,
                params.len() + 2
            ));
            params.push(&after.name);
            params.push(&after.id);
        }
        let fetch = fetch_for(limit);
        // With a text query the trigram index can serve (3+ characters),
        // order by an expression the (name, id) index cannot provide: the
        // planner then collects the matches through the trigram and prefix
        // indexes and keeps the top rows in a small heap. Walking the
        // (name, id) index and filtering looks cheap to it, but scans the
        // whole table when the matches sort late. Shorter queries match
        // densely, so walking the index in order finds a page quickly.
        let order = if search.selective_query {
            "name || '', id"
        } else {
            "name, id"
        };
        sql.push_str(&format!(" ORDER BY {order} LIMIT ${}", params.len() + 1));
        params.push(&fetch);

        let statement = client.prepare_cached(&sql).await?;
        // The page and the count are pipelined on the connection: one
        // round trip's wait instead of two.
        let page = async { client.query(&statement, &params).await };
        let (rows, total) = tokio::try_join!(page, count_matches(&client, &search))?;
        let (connectors, more) = page_of(
            rows.iter()
                .map(connector_from_row)
                .collect::<Result<_, _>>()?,
            limit,
        );
        Ok(Page {
            connectors,
            more,
            total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_estimates_are_read_from_the_top_line() {
        assert_eq!(
            estimated_rows("Seq Scan on connectors  (cost=0.00..4.43 rows=166667 width=4)"),
            Some(166_667)
        );
        assert_eq!(estimated_rows("Result"), None);
    }
}
