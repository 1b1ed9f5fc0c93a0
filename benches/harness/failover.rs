//! A PostgreSQL failover under Patroni: the cluster of the failover test
//! (`tests/support/patroni.rs`: one etcd member, a primary and its
//! synchronous standby), two release replicas on its multi-host URL, the
//! reference agent, and the test's load of starts and pauses with request
//! ids (`tests/support/failover_load.rs`). The primary's postmaster is
//! killed with SIGKILL, again once the old primary is back as the
//! synchronous standby. Measured: from the kill until the first Start
//! acknowledged, against Patroni's own promotion (a new leader running,
//! from its REST API) in the same kill; the calls that failed meanwhile;
//! and, read on the last primary, lost and duplicated calls.

use crate::cluster;
use crate::failover_load as load;
use crate::prelude::*;

const CONNECTORS: usize = 8;

pub(crate) async fn failover(plan: &Plan) -> anyhow::Result<Vec<Line>> {
    let kills = if plan.quick { 1 } else { 3 };
    let cluster = Arc::new(tokio::task::spawn_blocking(cluster::Cluster::start).await?);
    let url = cluster.database_url();
    let replicas = [
        server(
            Some(&url),
            None,
            &["--replica-id", "replica-a", "--heartbeat-interval", "500ms"],
        )?,
        server(
            Some(&url),
            None,
            &["--replica-id", "replica-b", "--heartbeat-interval", "500ms"],
        )?,
    ];
    let plane = format!("http://{},http://{}", replicas[0].addr, replicas[1].addr);
    let agent = Command::new(env!("CARGO_BIN_EXE_connector-control"))
        .args([
            "agent",
            "--control-plane",
            &plane,
            "--agent-id",
            "agent-eu-2",
        ])
        .args(["--region", "eu-2", "--server-ip", "10.0.2.5"])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()?;
    let _agent = KillOnDrop(agent);
    let mut clients = Vec::new();
    for replica in &replicas {
        clients.push(ConnectorServiceClient::new(
            common::channel(&replica.addr).await?,
        ));
    }
    let ids: Vec<String> = (0..CONNECTORS).map(|i| format!("f{i}")).collect();
    for id in &ids {
        clients[0]
            .create_connector(v1::CreateConnectorRequest {
                connector: Some(v1::Connector {
                    id: id.clone(),
                    name: id.clone(),
                    project_id: "failover".to_owned(),
                    project_name: "failover".to_owned(),
                    kind: v1::ConnectorKind::IncrementalSync as i32,
                    source: Some(common::endpoint("eu-1")),
                    destination: Some(common::endpoint("eu-2")),
                    ..Default::default()
                }),
            })
            .await?;
    }

    let load = load::Load::start(clients, &ids);
    let (mut first_starts, mut promotions, mut failed) = (Vec::new(), Vec::new(), 0);
    for _ in 0..kills {
        // Calls flowing, and the standby in sync, before each kill.
        let before = load.acknowledged();
        until(Duration::from_secs(60), || {
            load.acknowledged() >= before + 2 * CONNECTORS
        })
        .await?;
        let replicated = Arc::clone(&cluster);
        tokio::task::spawn_blocking(move || {
            replicated.wait_until_replicated(Duration::from_secs(120))
        })
        .await?;
        let failed_before = load.failed_attempts();
        let killed_at = Instant::now();
        let old = cluster.kill_leader_postgres();
        let watched = Arc::clone(&cluster);
        let promoted = tokio::task::spawn_blocking(move || {
            watched.wait_for_new_leader(old, Duration::from_secs(60));
            killed_at.elapsed()
        });
        until(Duration::from_secs(120), || {
            let (starts, pauses) = load.acknowledged_since(killed_at);
            starts >= CONNECTORS && pauses >= CONNECTORS || !load.errors().is_empty()
        })
        .await?;
        anyhow::ensure!(load.errors().is_empty(), "{:?}", load.errors());
        promotions.push(promoted.await?);
        first_starts.push(
            load.first_start_after(killed_at)
                .ok_or_else(|| anyhow::anyhow!("no start after the kill"))?,
        );
        failed += load.failed_attempts() - failed_before;
    }
    let outcome = load.finish().await;
    anyhow::ensure!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let leader = cluster
        .leader()
        .ok_or_else(|| anyhow::anyhow!("no leader at the end"))?;
    let db = sql(&cluster.node_url(leader)).await?;
    let tally = load::tally(&db, &outcome)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;

    let in_order = first_starts
        .iter()
        .map(|d| format!("{:.2}", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(" / ");
    first_starts.sort();
    promotions.sort();
    let secs = |d: Duration| d.as_secs_f64();
    let worst = *first_starts.last().unwrap();
    let line = Line {
        scenario: format!(
            "PostgreSQL failover under Patroni (ttl {} s, loop_wait {} s, retry_timeout {} s, \
             synchronous_mode, primary_start_timeout 0): SIGKILL of the primary's postmaster -> \
             first Start acknowledged, {kills} kill(s), {CONNECTORS} callers",
            cluster::TTL,
            cluster::LOOP_WAIT,
            cluster::RETRY_TIMEOUT
        ),
        ours: format!(
            "{} s ({:.2} s p50, {:.2} s max); {failed} calls failed (UNAVAILABLE, retried with their \
             request ids); {} acknowledged: {} lost, {} duplicated, {} unacknowledged writes",
            in_order,
            secs(percentile(&first_starts, 50)),
            secs(worst),
            outcome.acknowledged.len(),
            tally.lost,
            tally.duplicated,
            tally.unacknowledged + tally.refused_but_written,
        ),
        baseline: format!(
            "Patroni's promotion (new leader running): {:.2} s p50, {:.2} s max",
            secs(percentile(&promotions, 50)),
            secs(*promotions.last().unwrap())
        ),
        ratio: format!(
            "+{:.2} s",
            secs(percentile(&first_starts, 50)) - secs(percentile(&promotions, 50))
        ),
        target: "< 30 s; 0 lost, 0 duplicated".to_owned(),
        met: worst < Duration::from_secs(30) && tally == load::Tally::default(),
    };
    report(&line);
    Ok(vec![line])
}

/// Polls `done` until it holds, or fails after `within`.
async fn until(within: Duration, done: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
