//! The postgres driver on real logical replication (a cluster of the run's
//! own, `wal_level = logical`): from StartConnector's return until the row
//! waiting at the source arrives at the destination, and from
//! PauseConnector's return until the source's rows (written every 2 ms)
//! stop arriving. Baseline, in the same run and cluster: PostgreSQL's own
//! `ALTER SUBSCRIPTION ENABLE` / `DISABLE` on a second subscription,
//! measured the same way. Times are the destination's clock: when a row
//! arrived is a column default (`clock_timestamp()`) of the destination.

use crate::logical::{Replication, connect};
use crate::prelude::*;
use chrono::{DateTime, Utc};
use connector_control::agent;
use connector_control::agent::postgres::{Subscriptions, spec};
use tokio_postgres::Client;

/// The destination's clock, now.
async fn now(destination: &Client) -> anyhow::Result<DateTime<Utc>> {
    Ok(destination
        .query_one("SELECT clock_timestamp()", &[])
        .await?
        .get(0))
}

/// When row `id` arrived in `table`, waiting for it.
async fn arrival(destination: &Client, table: &str, id: i32) -> anyhow::Result<DateTime<Utc>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let query = format!("SELECT arrived FROM {table} WHERE id = $1");
    loop {
        if let Some(row) = destination.query_opt(&query, &[&id]).await? {
            return Ok(row.get(0));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "row {id} never arrived in {table}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// When the last row arrived in `table`.
async fn last_arrival(destination: &Client, table: &str) -> anyhow::Result<DateTime<Utc>> {
    let row = destination
        .query_one(&format!("SELECT max(arrived) FROM {table}"), &[])
        .await?;
    Ok(row.get(0))
}

/// Whether `subscription`'s apply worker runs.
async fn worker(destination: &Client, subscription: &str) -> anyhow::Result<bool> {
    let row = destination
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_subscription
                            WHERE subname = $1 AND relid IS NULL AND pid IS NOT NULL)",
            &[&subscription],
        )
        .await?;
    Ok(row.get(0))
}

/// Waits until `subscription`'s worker runs (`running`) or is gone.
async fn settles(destination: &Client, subscription: &str, running: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while worker(destination, subscription).await? != running {
        anyhow::ensure!(Instant::now() < deadline, "{subscription} did not settle");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Rows written into `table` at the source every 2 ms until dropped.
struct Writer {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Writer {
    async fn start(url: &str, table: &str, next: Arc<AtomicUsize>) -> Self {
        let source = connect(url).await;
        let stop = tokio_util::sync::CancellationToken::new();
        let insert = format!("INSERT INTO {table} VALUES ($1, 'written')");
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                while !stop.is_cancelled() {
                    let id = i32::try_from(next.fetch_add(1, Ordering::SeqCst))?;
                    source.execute(&insert, &[&id]).await?;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Ok(())
            }
        });
        Writer { stop, task }
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await?
    }
}

fn millis(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or_default()
}

fn line(scenario: &str, ours: Vec<Duration>, baseline: Vec<Duration>, what: &str) -> Line {
    let (ours, baseline) = (
        Stats::of(ours, Duration::from_secs(1)),
        Stats::of(baseline, Duration::from_secs(1)),
    );
    let extra = ms(ours.p50) - ms(baseline.p50);
    Line {
        scenario: scenario.to_owned(),
        ours: format!("{:.1} / {:.1} ms", ms(ours.p50), ms(ours.p99)),
        baseline: format!(
            "{what}: {:.1} / {:.1} ms",
            ms(baseline.p50),
            ms(baseline.p99)
        ),
        ratio: format!("p50 {extra:+.1} ms"),
        target: "p50 <= PostgreSQL's + 250 ms".to_owned(),
        met: extra <= 250.0,
    }
}

pub(crate) async fn replication(plan: &Plan, url: String) -> anyhow::Result<Vec<Line>> {
    let rounds = if plan.quick { 5 } else { 25 };
    let replication = Replication::new().await;
    replication.subscribe("ours").await;
    replication.subscribe("base").await;
    let source_url = replication.cluster.url_of("source");
    let destination = &replication.destination;

    let process = server(Some(&url), None, &["--heartbeat-interval", "1s"])?;
    let mut client = ConnectorServiceClient::new(common::channel(&process.addr).await?);
    create_connector(&mut client, "pg-bench").await?;
    let file = replication.connectors_file(&[("pg-bench", "ours")]);
    let driver = Subscriptions::new(spec::parse(&file)?, Duration::from_millis(200)).await;
    let config = agent_config(&process.addr, "pg-bench-1");
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(agent::run(config, driver, stop.clone().cancelled_owned()));

    let next = Arc::new(AtomicUsize::new(1));
    let (mut start_ours, mut start_base, mut pause_ours, mut pause_base) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        // Start: a row waits at the source of each (both stopped).
        for (table, ours) in [("ours_t", true), ("base_t", false)] {
            let id = i32::try_from(next.fetch_add(1, Ordering::SeqCst))?;
            replication
                .source
                .execute(
                    &format!("INSERT INTO {table} VALUES ($1, 'waiting')"),
                    &[&id],
                )
                .await?;
            let returned = if ours {
                let mut request = tonic::Request::new(v1::StartConnectorRequest {
                    id: "pg-bench".to_owned(),
                    ..Default::default()
                });
                request.set_timeout(Duration::from_secs(60));
                client.start_connector(request).await?;
                now(destination).await?
            } else {
                destination
                    .batch_execute("ALTER SUBSCRIPTION base ENABLE")
                    .await?;
                now(destination).await?
            };
            let took = millis(returned, arrival(destination, table, id).await?);
            if ours {
                start_ours.push(took);
            } else {
                start_base.push(took);
            }
        }
        settles(destination, "ours", true).await?;
        settles(destination, "base", true).await?;

        // Pause: rows keep coming at the source.
        for (table, ours) in [("ours_t", true), ("base_t", false)] {
            let writer = Writer::start(&source_url, table, next.clone()).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let returned = if ours {
                client
                    .pause_connector(v1::PauseConnectorRequest {
                        id: "pg-bench".to_owned(),
                        ..Default::default()
                    })
                    .await?;
                now(destination).await?
            } else {
                destination
                    .batch_execute("ALTER SUBSCRIPTION base DISABLE")
                    .await?;
                now(destination).await?
            };
            let subscription = if ours { "ours" } else { "base" };
            settles(destination, subscription, false).await?;
            writer.stop().await?;
            let took = millis(returned, last_arrival(destination, table).await?);
            if ours {
                pause_ours.push(took);
            } else {
                pause_base.push(took);
            }
        }
        // Ours is confirmed STOPPED before the next start.
        let deadline = Instant::now() + Duration::from_secs(30);
        while client
            .get_connector(v1::GetConnectorRequest {
                id: "pg-bench".to_owned(),
            })
            .await?
            .into_inner()
            .state
            != v1::ConnectorState::Stopped as i32
        {
            anyhow::ensure!(Instant::now() < deadline, "pg-bench never stopped");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    stop.cancel();

    let started = line(
        "Postgres driver: StartConnector's return to the waiting row at the destination",
        start_ours,
        start_base,
        "ALTER SUBSCRIPTION ENABLE",
    );
    report(&started);
    let paused = line(
        "Postgres driver: PauseConnector's return to the last row arriving",
        pause_ours,
        pause_base,
        "ALTER SUBSCRIPTION DISABLE",
    );
    report(&paused);
    Ok(vec![started, paused])
}
