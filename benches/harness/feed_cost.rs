//! What the change feed behind WatchConnectors costs writers, pgbench
//! style: transactions of one `UPDATE connectors SET generation =
//! generation + 1` of a random row among 10,000 (prepared), from 4 and 16
//! writers on connections of their own, for `--window` per slice. Two
//! ways, in alternating slices on the same tables: as shipped (each change
//! recorded by the triggers, while a sequencer gives the changes their
//! positions every 20 ms as a replica's feed loop does, and reclaims their
//! space every 5 s); and no feed (the triggers disabled, no sequencer),
//! the baseline.

use crate::prelude::*;
use connector_control::store::{Feed as _, PgStore};

const ROWS: u64 = 10_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Feed {
    Shipped,
    Off,
}

impl Feed {
    /// The triggers as this way has them.
    async fn set(self, url: &str) -> anyhow::Result<()> {
        crate::changes::feed_triggers(url, self == Feed::Shipped).await
    }
}

/// What a replica's feed loop does, until `stop`: sequence every 20 ms,
/// tidy every 5 s, then a last round. Returns the changes it sequenced.
async fn sequencer(
    store: PgStore,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<u64> {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut last_tidy = Instant::now();
    let mut sequenced = 0;
    loop {
        let last = stop.is_cancelled();
        tick.tick().await;
        sequenced += store.sequence_all().await? as u64;
        if last_tidy.elapsed() >= Duration::from_secs(5) {
            store.tidy_changes().await?;
            last_tidy = Instant::now();
        }
        if last {
            // One round after the writers stopped: everything they wrote.
            return Ok(sequenced);
        }
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
    let store = PgStore::connect(&url, 2).await?;
    store.migrate().await?;
    let db = sql(&url).await?;
    common::load_fleet(&db, ROWS).await?;
    store.change_head().await?;
    db.batch_execute("VACUUM ANALYZE connectors").await?;
    let mut lines = Vec::new();
    for writers in [4, 16] {
        let (mut shipped, mut off) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            for feed in [Feed::Shipped, Feed::Off] {
                feed.set(&url).await?;
                if feed == Feed::Off {
                    off.push(slice(&url, writers, plan.window).await?);
                    continue;
                }
                let stop = tokio_util::sync::CancellationToken::new();
                let sequencing = tokio::spawn(sequencer(store.clone(), stop.clone()));
                let tps = slice(&url, writers, plan.window).await?;
                stop.cancel();
                let sequenced = sequencing.await??;
                anyhow::ensure!(sequenced > 0, "the sequencer sequenced nothing");
                shipped.push(tps);
            }
        }
        Feed::Shipped.set(&url).await?;
        let pending: i64 = db
            .query_one("SELECT count(*) FROM connector_changes_pending", &[])
            .await?
            .get(0);
        anyhow::ensure!(pending == 0, "{pending} changes were left unsequenced");
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (shipped, off) = (mean(&shipped), mean(&off));
        let ratio = shipped / off;
        let line = Line {
            scenario: format!(
                "Change feed: single-connector updates, {writers} writers (pgbench style)"
            ),
            ours: format!("{shipped:.0} tps (recorded, sequenced every 20 ms)"),
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
