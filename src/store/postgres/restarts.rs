//! A round of automatic starts on PostgreSQL (`store::restarts` plans it):
//! the candidates are read without locks, the marks written in one
//! statement guarded by generation and update time, the starts issued in
//! chunks through `transitions::transitions_in`; every write is fenced by the
//! leader lease.

use super::PgStore;
use super::conn::{Db, Params, column};
use super::leader::LEASE_CTE;
use super::rows::{CONNECTOR_COLUMNS, connector_from_row};
use super::transitions::transitions_in;
use crate::store::restarts::{CANDIDATES, Mark, RUNNING_SINCE, count, plan_round};
use crate::store::rows::ReadRow;
use crate::store::{Lease, RestartRound, StoreError, Write};
use chrono::{DateTime, Utc};

/// Automatic starts issued per transaction.
const CHUNK: usize = 500;

/// The statement a round reads its candidates with ($1: the round's now);
/// the benchmark harness times it.
#[doc(hidden)]
pub fn candidates_sql() -> String {
    format!(
        "SELECT {CONNECTOR_COLUMNS}, since.complete_time AS running_since
         FROM connectors
         LEFT JOIN LATERAL ({RUNNING_SINCE}) since ON connectors.restart_count > 0
         WHERE {}",
        CANDIDATES.replace("{now}", "$1")
    )
}

impl PgStore {
    pub(super) async fn restart_round_once(
        &self,
        lease: Lease,
        now: DateTime<Utc>,
    ) -> Result<RestartRound, StoreError> {
        let mut client = self.client().await?;
        let mut candidates = Vec::new();
        for row in client.query(&candidates_sql(), &[&now]).await? {
            candidates.push((
                connector_from_row(&row)?,
                row.optional_time("running_since")?,
            ));
        }
        let plan = plan_round(candidates, now);
        let mut round = RestartRound::default();
        if !plan.marks.is_empty() {
            let written = self.mark(&client, lease, &plan.marks).await?;
            count(
                &mut round,
                &written.iter().map(String::as_str).collect::<Vec<_>>(),
            );
        }
        for chunk in plan.starts.chunks(CHUNK) {
            let tx = client.transaction().await?;
            let fence = format!("WITH {LEASE_CTE} SELECT EXISTS (SELECT 1 FROM lease)");
            self.as_leader(&tx, lease, &fence, &[]).await?;
            let outcomes = transitions_in(&tx, chunk, Write::Commit).await?;
            tx.commit().await?;
            // A refused start (the connector changed since it was read)
            // is left to the next round; a replayed one was already made.
            round.started.extend(
                outcomes
                    .into_iter()
                    .filter_map(Result::ok)
                    .filter(|outcome| !outcome.replayed),
            );
        }
        Ok(round)
    }

    /// Writes the marks that still apply; returns the kinds written.
    async fn mark(
        &self,
        client: &impl Db,
        lease: Lease,
        marks: &[Mark],
    ) -> Result<Vec<String>, StoreError> {
        let ids = column(marks, |m| m.id.as_str());
        let generations = column(marks, |m| m.generation);
        let seen = column(marks, |m| m.update_time);
        let kinds = column(marks, |m| m.kind.as_str());
        let next = column(marks, |m| m.kind.next_time());
        let sql = format!(
            "WITH {LEASE_CTE},
             marked AS (
                 UPDATE connectors SET
                     next_restart_time = u_next,
                     restart_count = CASE WHEN u_kind = 'RESET' THEN 0 ELSE restart_count END,
                     update_time = now()
                 FROM unnest($3::text[], $4::bigint[], $5::timestamptz[], $6::text[],
                             $7::timestamptz[]) AS u (u_id, u_generation, u_seen, u_kind, u_next)
                 WHERE id = u_id AND generation = u_generation AND update_time = u_seen
                   AND EXISTS (SELECT 1 FROM lease)
                 RETURNING u_kind)
             SELECT EXISTS (SELECT 1 FROM lease), ARRAY(SELECT u_kind FROM marked)"
        );
        let params: Params = &[&ids, &generations, &seen, &kinds, &next];
        let row = self.as_leader(client, lease, &sql, params).await?;
        Ok(row.get(1))
    }
}
