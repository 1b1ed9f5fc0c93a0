//! What the change feed behind WatchConnectors costs writers, pgbench
//! style: transactions of one `UPDATE connectors SET generation =
//! generation + 1` of a random row among 10,000 (prepared), from 4 and 16
//! writers on connections of their own, for `--window` per slice. Three
//! ways, in alternating slices on the same tables: as shipped (each change
//! recorded, and sequenced at commit); recorded but not sequenced (the
//! commit-time trigger disabled); and no feed (the recording trigger
//! disabled), the baseline.

use crate::prelude::*;

const ROWS: u64 = 10_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Feed {
    Shipped,
    RecordedOnly,
    Off,
}

impl Feed {
    /// The triggers as this way has them.
    async fn set(self, db: &tokio_postgres::Client) -> anyhow::Result<()> {
        let (record, sequence) = match self {
            Feed::Shipped => ("ENABLE", "ENABLE"),
            Feed::RecordedOnly => ("ENABLE", "DISABLE"),
            Feed::Off => ("DISABLE", "ENABLE"),
        };
        db.batch_execute(&format!(
            "ALTER TABLE connectors {record} TRIGGER connectors_changed;
             ALTER TABLE connector_changes {sequence} TRIGGER connector_changes_sequenced"
        ))
        .await?;
        Ok(())
    }
}

/// Transactions per second of `writers` for `window`.
async fn slice(url: &str, writers: usize, window: Duration) -> anyhow::Result<f64> {
    let mut tasks = Vec::new();
    let started = Instant::now();
    for writer in 0..writers {
        let db = sql(url).await?;
        tasks.push(tokio::spawn(async move {
            let update = db
                .prepare("UPDATE connectors SET generation = generation + 1 WHERE id = $1")
                .await?;
            // xorshift: a different random row each time, no crate needed.
            let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ (writer as u64 + 1);
            let mut done = 0_u64;
            while started.elapsed() < window {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let id = format!("conn-{:07}", 1 + state % ROWS);
                db.execute(&update, &[&id]).await?;
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let mut done = 0;
    for task in tasks {
        done += task.await??;
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

pub(crate) async fn feed_cost(plan: &Plan, url: String) -> anyhow::Result<Vec<Line>> {
    connector_control::store::PgStore::connect(&url, 1)
        .await?
        .migrate()
        .await?;
    let db = sql(&url).await?;
    common::load_fleet(&db, ROWS).await?;
    db.batch_execute("VACUUM ANALYZE connectors").await?;
    let mut lines = Vec::new();
    for writers in [4, 16] {
        let (mut shipped, mut recorded, mut off) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..2 {
            for feed in [Feed::Shipped, Feed::RecordedOnly, Feed::Off] {
                feed.set(&db).await?;
                let tps = slice(&url, writers, plan.window).await?;
                match feed {
                    Feed::Shipped => shipped.push(tps),
                    Feed::RecordedOnly => recorded.push(tps),
                    Feed::Off => off.push(tps),
                }
            }
        }
        Feed::Shipped.set(&db).await?;
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (shipped, recorded, off) = (mean(&shipped), mean(&recorded), mean(&off));
        let ratio = shipped / off;
        let line = Line {
            scenario: format!(
                "Change feed: single-connector updates, {writers} writers (pgbench style)"
            ),
            ours: format!("{shipped:.0} tps (recorded, not sequenced: {recorded:.0} tps)"),
            baseline: format!("no feed (triggers off): {off:.0} tps"),
            ratio: format!("{ratio:.2}x"),
            target: ">= 0.7x".to_owned(),
            met: ratio >= 0.7,
        };
        report(&line);
        lines.push(line);
    }
    Ok(lines)
}
