//! A bulk pause: one BatchPauseConnectors over 10,000 connectors chosen by a
//! filter, against 10,000 single PauseConnector calls.

use crate::prelude::*;
use futures::StreamExt;

/// Single calls in flight at once: enough to keep both cores busy.
const SINGLE_CONCURRENCY: usize = 16;

pub(crate) async fn bulk(plan: &Plan, url: String) -> anyhow::Result<Vec<Line>> {
    let count: u64 = if plan.quick { 2_000 } else { 10_000 };
    {
        let db = sql(&url).await?;
        connector_control::store::PgStore::connect(&url, 1)
            .await?
            .migrate()
            .await?;
        preload(&db, "batch", count).await?;
        preload(&db, "single", count).await?;
        db.batch_execute(
            "UPDATE connectors SET state = 'RUNNING', desired_state = 'RUNNING', generation = 1",
        )
        .await?;
        settle(&db).await?;
    }
    // Admin (no auth file): the rate limit off, so that the singles are
    // not throttled.
    let process = server(Some(&url), None, &["--admin-rate-limit", "0"])?;
    let client = connectors_client(&process.addr).await?;

    let started = Instant::now();
    let mut singles = futures::stream::iter(1..=count)
        .map(|n| {
            let mut client = client.clone();
            async move {
                client
                    .pause_connector(v1::PauseConnectorRequest {
                        id: connector_id("single", n),
                        reason: "bench".to_owned(),
                        ..Default::default()
                    })
                    .await
            }
        })
        .buffer_unordered(SINGLE_CONCURRENCY);
    while let Some(result) = singles.next().await {
        result?;
    }
    let baseline = started.elapsed();

    let started = Instant::now();
    let response = client
        .clone()
        .batch_pause_connectors(v1::BatchPauseConnectorsRequest {
            filter: Some(v1::ConnectorFilter {
                query: "batch-".to_owned(),
                ..Default::default()
            }),
            reason: "bench".to_owned(),
            max_connectors: count as i32,
            ..Default::default()
        })
        .await?
        .into_inner();
    let ours = started.elapsed();
    anyhow::ensure!(
        response.changed as u64 == count,
        "the batch paused {} of {count}",
        response.changed
    );
    let db = sql(&url).await?;
    let audited: i64 = db
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action = 'PAUSE_CONNECTOR' \
             AND connector_id LIKE 'batch-%'",
            &[],
        )
        .await?
        .get(0);
    anyhow::ensure!(audited as u64 == count, "{audited} audit rows for {count}");

    let ratio = baseline.as_secs_f64() / ours.as_secs_f64();
    let limit = Duration::from_secs(5) * count as u32 / 10_000;
    let line = Line {
        scenario: format!("Bulk pause of {count} connectors chosen by a filter"),
        ours: format!(
            "{:.2} s ({:.0} connectors/s)",
            ours.as_secs_f64(),
            count as f64 / ours.as_secs_f64()
        ),
        baseline: format!(
            "{count} PauseConnector calls, {SINGLE_CONCURRENCY} in flight: {:.2} s",
            baseline.as_secs_f64()
        ),
        ratio: format!("{ratio:.1}x faster"),
        target: format!("<= {:.0?} and >= 5x", limit),
        met: ours <= limit && ratio >= 5.0,
    };
    report(&line);
    Ok(vec![line])
}
