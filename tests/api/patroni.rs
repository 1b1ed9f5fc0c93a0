//! A real PostgreSQL failover under Patroni (Debian's `patroni` and
//! `etcd-server`): two control-plane replicas and a reference agent on a
//! primary and its synchronous standby; the primary's PostgreSQL is killed
//! with SIGKILL, or switched over, under a load of starts and pauses. The
//! benchmark of the kill is `cargo bench --bench harness -- --only
//! failover`.

use crate::cluster;
use crate::failover_load as load;
use crate::helpers::*;
use connector_control::proto::v1::{self, connector_service_client::ConnectorServiceClient};
use std::time::{Duration, Instant};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client};

/// Connectors, one caller each.
const CONNECTORS: usize = 4;

/// How the primary goes.
#[derive(Clone, Copy, PartialEq)]
enum Failover {
    /// SIGKILL to its postmaster: connections reset, Patroni promotes the
    /// standby once its loop sees the crash.
    Kill,
    /// Patroni's switchover: PostgreSQL shut down (sessions end with
    /// admin_shutdown), the standby promoted, the old primary a standby.
    Switchover,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_call_survives_a_patroni_failover_exactly_once() {
    survives(Failover::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_call_survives_a_patroni_switchover_exactly_once() {
    survives(Failover::Switchover).await;
}

async fn survives(how: Failover) {
    let cluster = std::sync::Arc::new(
        tokio::task::spawn_blocking(cluster::Cluster::start)
            .await
            .unwrap(),
    );
    let url = cluster.database_url();
    let replicas: Vec<ServerProcess> = ["replica-a", "replica-b"]
        .into_iter()
        .map(|id| {
            ServerProcess::spawn_with(&url, &["--replica-id", id, "--heartbeat-interval", "500ms"])
        })
        .collect();
    let plane = format!("http://{},http://{}", replicas[0].addr, replicas[1].addr);
    let _agent = ServerProcess::spawn_agent(&[
        "--control-plane",
        &plane,
        "--agent-id",
        "agent-eu-2",
        "--region",
        "eu-2",
        "--server-ip",
        "10.0.2.5",
    ]);
    let mut clients = Vec::new();
    for replica in &replicas {
        clients.push(ConnectorServiceClient::new(channel_to(&replica.addr).await));
    }
    let ids: Vec<String> = (0..CONNECTORS).map(|i| format!("c{i}")).collect();
    for id in &ids {
        let mut connector = connector(id, id);
        connector.destination.as_mut().unwrap().region = "eu-2".to_owned();
        clients[0]
            .create_connector(v1::CreateConnectorRequest {
                connector: Some(connector),
            })
            .await
            .unwrap();
    }

    // What replica a's health service says, every 100 ms, until the end.
    let health_seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let watcher = {
        let seen = std::sync::Arc::clone(&health_seen);
        let mut health = health_client::HealthClient::new(channel_to(&replicas[0].addr).await);
        tokio::spawn(async move {
            loop {
                let check = HealthCheckRequest {
                    service: String::new(),
                };
                if let Ok(answer) = health.check(check).await {
                    let status = answer.into_inner().status;
                    let mut seen = seen.lock().unwrap();
                    if seen.last() != Some(&status) {
                        seen.push(status);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let load = load::Load::start(clients.clone(), &ids);
    eventually(Duration::from_secs(60), || async {
        (load.acknowledged() >= 2 * CONNECTORS).then_some(())
    })
    .await;
    let killed_at = Instant::now();
    let old_leader = match how {
        Failover::Kill => cluster.kill_leader_postgres(),
        Failover::Switchover => {
            let cluster = std::sync::Arc::clone(&cluster);
            tokio::task::spawn_blocking(move || cluster.switchover())
                .await
                .unwrap()
        }
    };
    // Every caller gets calls of both kinds through after the failover.
    eventually(Duration::from_secs(120), || async {
        assert_eq!(load.errors(), Vec::<String>::new(), "{}", cluster.logs());
        let (starts, pauses) = load.acknowledged_since(killed_at);
        (starts >= 2 * CONNECTORS && pauses >= 2 * CONNECTORS).then_some(())
    })
    .await;
    let report = load.finish().await;
    // Health went NOT_SERVING during the crash (a switchover may be too
    // quick for the once-a-second check) and came back by itself.
    eventually(Duration::from_secs(30), || async {
        let seen = health_seen.lock().unwrap().clone();
        let (serving, not_serving) = (
            ServingStatus::Serving as i32,
            ServingStatus::NotServing as i32,
        );
        let went = how == Failover::Switchover || seen.contains(&not_serving);
        (went && seen.last() == Some(&serving)).then_some(())
    })
    .await;
    watcher.abort();
    assert_eq!(report.errors, Vec::<String>::new());
    println!(
        "{} calls acknowledged, {} refused, {} attempts failed and retried; \
         first start acknowledged {:?} after the failover began",
        report.acknowledged.len(),
        report.refused.len(),
        report.failed_attempts,
        report.first_start_after(killed_at)
    );
    let leader = cluster.leader().expect("a leader after the failover");
    assert_ne!(leader, old_leader, "Patroni promoted the standby");
    if how == Failover::Kill {
        assert!(
            report.failed_attempts > 0,
            "the kill was felt: some calls failed and were retried"
        );
    }
    assert!(
        report.first_start_after(killed_at).is_some(),
        "a start acknowledged after the kill"
    );

    let db = {
        let (client, connection) =
            tokio_postgres::connect(&cluster.node_url(leader), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(connection);
        client
    };
    // Exactly once: one command and one audit row per acknowledged call,
    // with its request id and the command id the caller was given; nothing
    // for the calls refused, nothing else.
    assert_eq!(
        load::tally(&db, &report).await.unwrap(),
        load::Tally::default(),
        "{report:?}"
    );
    // The agent gets every command: none stays open, and each connector
    // ends as its last acknowledged call asked.
    eventually(Duration::from_secs(60), || async {
        let open: i64 = db
            .query_one(
                "SELECT count(*) FROM commands WHERE status NOT IN ('SUCCEEDED', 'SUPERSEDED')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (open == 0).then_some(())
    })
    .await;
    for id in &ids {
        let last = report
            .acknowledged
            .iter()
            .rfind(|call| &call.connector_id == id)
            .expect("calls for every connector");
        let state: String = db
            .query_one("SELECT state FROM connectors WHERE id = $1", &[id])
            .await
            .unwrap()
            .get(0);
        let expected = match last.kind {
            load::Kind::Start => "RUNNING",
            load::Kind::Pause => "STOPPED",
        };
        assert_eq!(state, expected, "{id} after {last:?}");
    }

    // The replicas' listeners and the leader lease moved to the new primary.
    eventually(Duration::from_secs(30), || async {
        let listeners: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name LIKE 'connector-control listener %'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let leases: i64 = db
            .query_one(
                "SELECT count(*) FROM leases WHERE name = 'leader' AND expire_time > now()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (listeners == 2 && leases == 1).then_some(())
    })
    .await;
}
