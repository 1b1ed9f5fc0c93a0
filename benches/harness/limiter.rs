//! The rate limiter's cost on Start at one caller.

use crate::prelude::*;

/// Start latency with one caller through a server whose rate limiter
/// checks every call (an allowance no call exhausts) against a server
/// without one, on the same database, call by call alternated.
pub(crate) async fn limiter(plan: &Plan, url: String) -> anyhow::Result<Vec<Line>> {
    let calls = plan.latency_calls as u64;
    {
        let db = sql(&url).await?;
        connector_control::store::PgStore::connect(&url, 1)
            .await?
            .migrate()
            .await?;
        preload(&db, "l", calls + 100).await?;
        preload(&db, "u", calls + 100).await?;
        settle(&db).await?;
    }
    let allowance = "1000000";
    let limited = server(
        Some(&url),
        None,
        &[
            "--admin-rate-limit",
            allowance,
            "--admin-rate-burst",
            allowance,
            "--operator-rate-limit",
            allowance,
        ],
    )?;
    let unlimited = server(Some(&url), None, &[])?;
    let (mut with, mut without) = (
        connectors_client(&limited.addr).await?,
        connectors_client(&unlimited.addr).await?,
    );
    // Warm both (connections, prepared statements).
    for n in 1..=100 {
        timed_start(&mut with, connector_id("l", calls + n)).await?;
        timed_start(&mut without, connector_id("u", calls + n)).await?;
    }
    let (mut ours, mut baseline) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for n in 1..=calls {
        ours.push(timed_start(&mut with, connector_id("l", n)).await?);
        baseline.push(timed_start(&mut without, connector_id("u", n)).await?);
    }
    let elapsed = started.elapsed() / 2;
    let (ours, baseline) = (Stats::of(ours, elapsed), Stats::of(baseline, elapsed));
    let ratio = ms(ours.p50) / ms(baseline.p50);
    let line = Line {
        scenario: "Start latency with the rate limiter, one caller".to_owned(),
        ours: format!("{:.2} / {:.2} ms", ms(ours.p50), ms(ours.p99)),
        baseline: format!(
            "no limiter: {:.2} / {:.2} ms",
            ms(baseline.p50),
            ms(baseline.p99)
        ),
        ratio: format!("p50 {ratio:.2}x"),
        target: "p50 <= 1.05x".to_owned(),
        met: ratio <= 1.05,
    };
    report(&line);
    Ok(vec![line])
}
