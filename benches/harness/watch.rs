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
    Ok(vec![line])
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
    for i in 0..streams {
        if i % PER_CONNECTION == 0 {
            channel = common::channel(addr).await?;
        }
        let mut watcher = ConnectorServiceClient::new(channel.clone());
        let (arrivals_tx, ready_tx, id) = (arrivals_tx.clone(), ready_tx.clone(), id.clone());
        tokio::spawn(async move {
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
            while let Some(Ok(event)) = events.next().await {
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
                request_id: format!("bench-{streams}-{round}"),
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
