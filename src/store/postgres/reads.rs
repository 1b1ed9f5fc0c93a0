//! What operators read about the fleet, on PostgreSQL: agents, regions,
//! and the figures the metrics gauges show.

use super::PgStore;
use super::conn::Db;
use super::rows::{agent_from_row, region_from_row};
use crate::domain::{Agent, CommandStatus, ConnectorState, LagCause, RegionSummary, micros};
use crate::store::{MetricsSample, OpenCommands, Reads, StoreError};
use std::time::Duration;
use tracing::instrument;

/// SQL true when agent `a` counts as online; `$secs` is `offline_after`.
pub(super) fn online(secs: usize) -> String {
    format!(
        "(a.disconnect_time IS NULL \
          AND a.last_heartbeat_time > now() - make_interval(secs => ${secs}))"
    )
}

impl Reads for PgStore {
    async fn list_agents(
        &self,
        region: Option<&str>,
        offline_after: Duration,
    ) -> Result<Vec<Agent>, StoreError> {
        self.all(
            &format!(
                "SELECT a.id, a.region, a.server_ip, a.version, a.last_heartbeat_time,
                        a.replica_id, a.driver, a.pull_back, {} AS online,
                        (SELECT count(*) FROM connectors c
                         WHERE c.agent_id = a.id AND c.state <> 'STOPPED') AS connectors
                 FROM agents a
                 WHERE $1::text IS NULL OR a.region = $1
                 ORDER BY a.region, a.id",
                online(2)
            ),
            &[&region, &offline_after.as_secs_f64()],
            agent_from_row,
        )
        .await
    }

    async fn list_regions(
        &self,
        offline_after: Duration,
    ) -> Result<Vec<RegionSummary>, StoreError> {
        self.all(
            &format!(
                "WITH running AS (SELECT region AS name, count(*) AS connectors
                                  FROM connectors GROUP BY region),
                      serving AS (SELECT a.region AS name, count(*) FILTER (WHERE {}) AS online
                                  FROM agents a GROUP BY a.region)
                 SELECT COALESCE(r.name, s.name) AS name,
                        COALESCE(s.online, 0) AS online, COALESCE(r.connectors, 0) AS connectors
                 FROM running r FULL JOIN serving s ON s.name = r.name
                 ORDER BY 1",
                online(1)
            ),
            &[&offline_after.as_secs_f64()],
            region_from_row,
        )
        .await
    }

    #[instrument(skip_all)]
    async fn metrics_sample(&self, latency_alert: Duration) -> Result<MetricsSample, StoreError> {
        let client = self.client().await?;
        let by_state = client
            .prepare_cached(
                "SELECT region, state, count(*) AS n FROM connectors GROUP BY region, state",
            )
            .await?;
        let lagging = client
            .prepare_cached(&format!(
                "SELECT region, state = 'UNKNOWN' AS offline, count(*) AS n
                 FROM connectors WHERE {} GROUP BY 1, 2",
                super::search::lagging_condition(1)
            ))
            .await?;
        let open = client
            .prepare_cached(
                "SELECT region, status, count(*) AS n,
                        EXTRACT(EPOCH FROM now() - min(create_time))::float8 AS oldest
                 FROM commands WHERE status IN ('PENDING', 'DELIVERED')
                 GROUP BY region, status",
            )
            .await?;
        let alert = micros(latency_alert);
        let alert_param: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&alert];
        // Pipelined: three statements, one round trip's worth of waiting.
        let (by_state, lagging, open) = tokio::try_join!(
            client.query(&by_state, &[]),
            client.query(&lagging, &alert_param),
            client.query(&open, &[]),
        )?;
        let count = |row: &tokio_postgres::Row| row.get::<_, i64>("n").max(0).unsigned_abs();
        let mut sample = MetricsSample::default();
        for row in &by_state {
            if let Some(state) = ConnectorState::parse(row.get("state")) {
                sample
                    .connectors
                    .insert((row.get("region"), state), count(row));
            }
        }
        for row in &lagging {
            let cause = if row.get("offline") {
                LagCause::AgentOffline
            } else {
                LagCause::Latency
            };
            sample
                .lagging
                .insert((row.get("region"), cause), count(row));
        }
        for row in &open {
            if let Some(status) = CommandStatus::parse(row.get("status")) {
                let oldest: f64 = row.get("oldest");
                sample.open_commands.insert(
                    (row.get("region"), status),
                    OpenCommands {
                        count: count(row),
                        oldest_age: Duration::try_from_secs_f64(oldest.max(0.0))
                            .unwrap_or_default(),
                    },
                );
            }
        }
        Ok(sample)
    }
}
