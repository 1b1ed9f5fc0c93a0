//! What operators read about the fleet, in the embedded store.

use super::EMBEDDED;
use super::error::translate;
use super::rows::{agent_from_row, all, region_from_row, text};
use super::search::lagging_condition;
use super::{SqliteStore, now};
use crate::domain::{Agent, CommandStatus, ConnectorState, LagCause, RegionSummary, micros};
use crate::store::{MetricsSample, OpenCommands, Reads, StoreError};
use rusqlite::params;
use std::time::Duration;

/// Online: connected, and heard from within `offline_after` of `now`.
pub(super) fn online_since(offline_after: Duration) -> String {
    let cutoff =
        now() - chrono::Duration::from_std(offline_after).unwrap_or(chrono::Duration::seconds(40));
    text(cutoff)
}

impl Reads for SqliteStore {
    async fn list_agents(
        &self,
        region: Option<&str>,
        offline_after: Duration,
    ) -> Result<Vec<Agent>, StoreError> {
        let region = region.map(str::to_owned);
        self.with(move |connection| {
            all(
                connection,
                "SELECT a.id, a.region, a.server_ip, a.version, a.last_heartbeat_time,
                        a.driver, a.pull_back,
                        (a.disconnect_time IS NULL AND a.last_heartbeat_time > ?2) AS online,
                        (SELECT count(*) FROM connectors c
                         WHERE c.agent_id = a.id AND c.state <> 'STOPPED') AS connectors,
                        ?3 AS replica_id
                 FROM agents a
                 WHERE ?1 IS NULL OR a.region = ?1
                 ORDER BY a.region, a.id",
                params![region, online_since(offline_after), EMBEDDED],
                |row| agent_from_row(row),
            )
        })
        .await
    }

    async fn list_regions(
        &self,
        offline_after: Duration,
    ) -> Result<Vec<RegionSummary>, StoreError> {
        self.with(move |connection| {
            all(
                connection,
                "WITH names AS (SELECT region AS name FROM connectors
                                UNION SELECT region FROM agents)
                 SELECT n.name AS name,
                        (SELECT count(*) FROM agents a WHERE a.region = n.name
                           AND a.disconnect_time IS NULL AND a.last_heartbeat_time > ?1)
                          AS online,
                        (SELECT count(*) FROM connectors c WHERE c.region = n.name) AS connectors
                 FROM names n ORDER BY n.name",
                [online_since(offline_after)],
                |row| region_from_row(row),
            )
        })
        .await
    }

    async fn metrics_sample(&self, latency_alert: Duration) -> Result<MetricsSample, StoreError> {
        self.with(move |connection| {
            let mut sample = MetricsSample::default();
            let count = |n: i64| n.max(0).unsigned_abs();
            let mut statement = connection
                .prepare_cached(
                    "SELECT region, state, count(*) FROM connectors GROUP BY region, state",
                )
                .map_err(translate)?;
            let mut rows = statement.query([]).map_err(translate)?;
            while let Some(row) = rows.next().map_err(translate)? {
                let state: String = row.get(1).map_err(translate)?;
                if let Some(state) = ConnectorState::parse(&state) {
                    sample.connectors.insert(
                        (row.get(0).map_err(translate)?, state),
                        count(row.get(2).map_err(translate)?),
                    );
                }
            }
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT region, state = 'UNKNOWN', count(*) FROM connectors
                     WHERE {} GROUP BY 1, 2",
                    lagging_condition(1)
                ))
                .map_err(translate)?;
            let mut rows = statement
                .query([micros(latency_alert).to_string()])
                .map_err(translate)?;
            while let Some(row) = rows.next().map_err(translate)? {
                let cause = if row.get(1).map_err(translate)? {
                    LagCause::AgentOffline
                } else {
                    LagCause::Latency
                };
                sample.lagging.insert(
                    (row.get(0).map_err(translate)?, cause),
                    count(row.get(2).map_err(translate)?),
                );
            }
            let mut statement = connection
                .prepare_cached(
                    "SELECT region, status, count(*), min(create_time) FROM commands
                     WHERE status IN ('PENDING', 'DELIVERED') GROUP BY region, status",
                )
                .map_err(translate)?;
            let mut rows = statement.query([]).map_err(translate)?;
            let now = now();
            while let Some(row) = rows.next().map_err(translate)? {
                let status: String = row.get(1).map_err(translate)?;
                let oldest: String = row.get(3).map_err(translate)?;
                let oldest = (now - super::rows::parse_time(&oldest)?)
                    .to_std()
                    .unwrap_or_default();
                if let Some(status) = CommandStatus::parse(&status) {
                    sample.open_commands.insert(
                        (row.get(0).map_err(translate)?, status),
                        OpenCommands {
                            count: count(row.get(2).map_err(translate)?),
                            oldest_age: oldest,
                        },
                    );
                }
            }
            Ok(sample)
        })
        .await
    }
}
