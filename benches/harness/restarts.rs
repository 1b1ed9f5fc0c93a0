//! The leader's round of automatic starts (once a second) at 100,000
//! connectors of which 1% failed: half of them waiting for their automatic
//! start, half with their starts used up. What it costs the replica (its
//! CPU, against the same replica with no failed connector, in the same
//! run) and the database (the round's read, timed directly).

use crate::prelude::*;

pub(crate) async fn restarts(plan: &Plan, url: String) -> anyhow::Result<Vec<Line>> {
    let count: u64 = if plan.quick { 20_000 } else { 100_000 };
    let failed = count / 100;
    let db = sql(&url).await?;
    connector_control::store::PgStore::connect(&url, 1)
        .await?
        .migrate()
        .await?;
    preload(&db, "r", count).await?;
    let fail = format!(
        "UPDATE connectors SET state = 'FAILED', desired_state = 'RUNNING', restart_count = 1,
             max_restarts = CASE WHEN n % 2 = 0 THEN 1 ELSE 0 END,
             next_restart_time = CASE WHEN n % 2 = 0 THEN NULL ELSE now() + interval '1 day' END
         FROM (SELECT id AS fid, row_number() OVER (ORDER BY id) AS n FROM connectors
               ORDER BY id LIMIT {failed}) f
         WHERE id = fid"
    );
    db.batch_execute(&fail).await?;
    // Recorded changes are not what this measures.
    db.batch_execute("DELETE FROM connector_changes").await?;
    settle(&db).await?;

    let process = server(Some(&url), None, &[])?;
    // Leader from its first heartbeat; a few rounds to warm up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let window = plan.window;
    let cpu = |process: &Process| process.cpu();
    let before = cpu(&process);
    tokio::time::sleep(window).await;
    let with_failed = cpu(&process) - before;
    let waiting: i64 = db
        .query_one(
            "SELECT count(*) FROM connectors WHERE next_restart_time IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    anyhow::ensure!(
        waiting as u64 == failed / 2,
        "{waiting} waiting, {} expected: the rounds changed the fleet",
        failed / 2
    );

    // The round's read, as the store runs it, timed from here.
    let statement = db
        .prepare(&connector_control::store::postgres::restart_candidates_sql())
        .await?;
    let mut reads = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let rows = db.query(&statement, &[&chrono::Utc::now()]).await?;
        reads.push(started.elapsed());
        anyhow::ensure!(rows.len() as u64 == failed / 2, "{} candidates", rows.len());
    }
    reads.sort();
    let read_p50 = percentile(&reads, 50);

    // The baseline: the same replica once nothing failed.
    db.batch_execute(
        "UPDATE connectors SET state = 'STOPPED', desired_state = 'STOPPED', restart_count = 0,
             next_restart_time = NULL WHERE state = 'FAILED'",
    )
    .await?;
    db.batch_execute("DELETE FROM connector_changes").await?;
    settle(&db).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = cpu(&process);
    tokio::time::sleep(window).await;
    let without = cpu(&process) - before;

    let share = |d: Duration| d.as_secs_f64() / window.as_secs_f64() * 100.0;
    // The round runs once a second: its read's share of a database core.
    let db_share = read_p50.as_secs_f64() * 100.0;
    let added = share(with_failed) - share(without);
    let line = Line {
        scenario: format!(
            "Automatic-start rounds at {count} connectors, {failed} failed (half waiting, half used up)"
        ),
        ours: format!(
            "replica {:.2}% of a core; round's read {:.2} ms p50 ({db_share:.2}% of a database core)",
            share(with_failed),
            ms(read_p50)
        ),
        baseline: format!(
            "the same replica, nothing failed: {:.2}% of a core",
            share(without)
        ),
        ratio: format!("+{added:.2} points"),
        target: "< 2% of a core (replica + database)".to_owned(),
        met: added.max(0.0) + db_share < 2.0,
    };
    report(&line);
    Ok(vec![line])
}
