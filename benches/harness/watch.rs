//! Watch fan-out: how long a committed change takes to reach every open
//! WatchConnectors stream, with 1,000 streams against one stream in the
//! same run.

use crate::prelude::*;
use futures::StreamExt;

/// Changes made per measurement; each reaches every stream.
const ROUNDS: usize = 40;
/// Streams per HTTP/2 connection.
const PER_CONNECTION: usize = 100;

pub(crate) async fn watch(plan: &Plan, url: String) -> anyhow::Result<Vec<Line>> {
    {
        connector_control::store::PgStore::connect(&url, 1)
            .await?
            .migrate()
            .await?;
        let db = sql(&url).await?;
        preload(&db, "w", 1_000).await?;
        settle(&db).await?;
    }
    // One client opens every stream: past the default cap per caller.
    let process = server(Some(&url), None, &["--max-watches-per-caller", "2000"])?;
    let streams = if plan.quick { 300 } else { 1_000 };
    let one = fan_out(&process.addr, 1, ROUNDS).await?;
    let many = fan_out(&process.addr, streams, ROUNDS).await?;
    let (p50, p99) = (percentile(&many, 50), percentile(&many, 99));
    let (one_p50, one_p99) = (percentile(&one, 50), percentile(&one, 99));
    let line = Line {
        scenario: format!("A change reaches {streams} open watch streams"),
        ours: format!("{:.1} / {:.1} ms", ms(p50), ms(p99)),
        baseline: format!("one stream: {:.1} / {:.1} ms", ms(one_p50), ms(one_p99)),
        ratio: format!(
            "{:.1}x the one stream's p99",
            ms(p99) / ms(one_p99).max(0.001)
        ),
        target: "p99 < 50 ms from commit".to_owned(),
        met: p99 < Duration::from_millis(50),
    };
    report(&line);
    let mut lines = vec![line];

    // One stream while 16 writers change the other connectors flat out:
    // its change waits behind theirs in the feed.
    let stop = tokio_util::sync::CancellationToken::new();
    let mut writers = Vec::new();
    for writer in 0..16 {
        writers.push(tokio::spawn(write_flat_out(
            url.clone(),
            writer,
            stop.clone(),
        )));
    }
    let started = Instant::now();
    let busy = fan_out(&process.addr, 1, ROUNDS).await;
    stop.cancel();
    let mut written = 0;
    for writer in writers {
        written += writer.await??;
    }
    let rate = written as f64 / started.elapsed().as_secs_f64();
    let busy = busy?;
    let (busy_p50, busy_p99) = (percentile(&busy, 50), percentile(&busy, 99));
    let line = Line {
        scenario: "A change reaches a watcher while 16 writers run flat out".to_owned(),
        ours: format!(
            "{:.1} / {:.1} ms ({rate:.0} other changes/s)",
            ms(busy_p50),
            ms(busy_p99)
        ),
        baseline: format!("no writers: {:.1} / {:.1} ms", ms(one_p50), ms(one_p99)),
        ratio: format!("{:.1}x the idle p99", ms(busy_p99) / ms(one_p99).max(0.001)),
        target: "p99 < 50 ms from commit".to_owned(),
        met: busy_p99 < Duration::from_millis(50),
    };
    report(&line);
    lines.push(line);
    Ok(lines)
}

/// Single-row updates of the watched fleet's other connectors (w-2 to
/// w-1000) on a connection of its own, as fast as they go, until `stop`;
/// returns how many.
async fn write_flat_out(
    url: String,
    writer: u64,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<u64> {
    let db = sql(&url).await?;
    let update = db
        .prepare("UPDATE connectors SET status_message = $2 WHERE id = $1")
        .await?;
    let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ (writer + 1);
    let mut done = 0;
    while !stop.is_cancelled() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let id = connector_id("w", 2 + state % 999);
        db.execute(&update, &[&id, &format!("writer {writer}")])
            .await?;
        done += 1;
    }
    Ok(done)
}

/// Opens `streams` watches of one connector, then pauses and starts it
/// `rounds` times; returns, for every stream and change, the time from
/// just before the call that committed it to the event's arrival.
async fn fan_out(addr: &str, streams: usize, rounds: usize) -> anyhow::Result<Vec<Duration>> {
    let client = connectors_client(addr).await?;
    let id = connector_id("w", 1);
    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel::<(usize, Instant)>();
    let (ready_tx, mut ready) = mpsc::unbounded_channel::<()>();
    let mut channel = common::channel(addr).await?;
    // Its streams end with it (a JoinSet aborts its tasks when dropped), so
    // that the next measurement has only its own.
    let mut watchers = tokio::task::JoinSet::new();
    for i in 0..streams {
        if i % PER_CONNECTION == 0 {
            channel = common::channel(addr).await?;
        }
        let mut watcher = ConnectorServiceClient::new(channel.clone());
        let (arrivals_tx, ready_tx, id) = (arrivals_tx.clone(), ready_tx.clone(), id.clone());
        watchers.spawn(async move {
            let mut events = watcher
                .watch_connectors(v1::WatchConnectorsRequest {
                    filter: Some(v1::ConnectorFilter {
                        query: id,
                        ..Default::default()
                    }),
                    resume_token: String::new(),
                })
                .await
                .expect("watching")
                .into_inner();
            let mut round = 0;
            while let Some(event) = events.next().await {
                let event = match event {
                    Ok(event) => event,
                    Err(status) => {
                        eprintln!("a watch stream ended: {status}");
                        break;
                    }
                };
                match v1::WatchEventType::try_from(event.r#type) {
                    Ok(v1::WatchEventType::SnapshotEnd) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(v1::WatchEventType::Changed) => {
                        let _ = arrivals_tx.send((round, Instant::now()));
                        round += 1;
                    }
                    _ => {}
                }
            }
        });
    }
    drop((arrivals_tx, ready_tx));
    for _ in 0..streams {
        ready.recv().await.expect("every stream begins");
    }
    let mut samples = Vec::with_capacity(streams * rounds);
    for round in 0..rounds {
        let sent = Instant::now();
        // A change with no state machine in the way: the restart policy.
        client
            .clone()
            .update_restart_policy(v1::UpdateRestartPolicyRequest {
                id: id.clone(),
                restart_policy: Some(v1::RestartPolicy {
                    mode: v1::RestartMode::OnFailure as i32,
                    max_restarts: round as i32 + 1,
                    ..Default::default()
                }),
                request_id: format!("bench-{}-{round}", uuid::Uuid::new_v4()),
            })
            .await?;
        for _ in 0..streams {
            let (seen_round, at) = tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
                .await?
                .expect("the streams are open");
            anyhow::ensure!(
                seen_round == round,
                "round {seen_round} arrived during {round}"
            );
            samples.push(at - sent);
        }
    }
    samples.sort();
    Ok(samples)
}
