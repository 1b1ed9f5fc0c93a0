//! The control plane behind Debian's PgBouncer in transaction pooling mode,
//! as platform teams run it: consecutive transactions of one client
//! connection run on different server sessions, so prepared statements,
//! session-level advisory locks, session settings and LISTEN cannot be
//! relied on. `--transaction-pooling` runs statements unnamed, migrates
//! under a transaction-level lock and wakes replicas by polling.

use crate::bouncer::PgBouncer;
use crate::helpers::*;
use connector_control::proto::v1::{self, ConnectorState as S};
use std::process::Command;
use std::time::Duration;

/// A transaction-pooling PgBouncer in front of the tests' PostgreSQL.
fn bouncer_in_front() -> PgBouncer {
    PgBouncer::in_front_of(&base_url(), "transaction", crate::cluster::postgres_owner())
}

fn replica(url: &str, id: &str) -> ServerProcess {
    ServerProcess::spawn_with(
        url,
        &[
            "--transaction-pooling",
            "--replica-id",
            id,
            "--heartbeat-interval",
            "500ms",
            "--poll-interval",
            "200ms",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_behind_pgbouncer_transaction_pooling_deliver_and_elect_a_leader() {
    let db = TestDatabase::create().await;
    let bouncer = bouncer_in_front();
    let url = bouncer.url(&db.name);
    // Both migrate at once through the pooler: one waits for the other's
    // transaction-level lock.
    let mut a = replica(&url, "replica-a");
    let mut b = replica(&url, "replica-b");
    for replica in [&mut a, &mut b] {
        let line = replica.wait_for_log("LISTEN cannot work through a transaction-pooling proxy");
        assert!(line.contains("--poll-interval"), "{line}");
        let line = replica.wait_for_log("replica starting");
        assert!(line.contains("polling only"), "{line}");
    }
    let direct = db.client().await;
    let advisory: i64 = direct
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(advisory, 0, "no advisory lock outlives the migrations");

    // The agent is on b; the commands are committed on a: b finds them by
    // polling.
    let _agent = ServerProcess::spawn_agent(&[
        "--control-plane",
        &format!("http://{}", b.addr),
        "--agent-id",
        "agent-eu-2",
        "--region",
        "eu-2",
        "--server-ip",
        "10.0.2.5",
    ]);
    let mut via_a =
        v1::connector_service_client::ConnectorServiceClient::new(channel_to(&a.addr).await);
    let via_b =
        v1::connector_service_client::ConnectorServiceClient::new(channel_to(&b.addr).await);
    for i in 0..6 {
        let mut connector = connector(&format!("c{i}"), &format!("orders-{i}"));
        connector.destination.as_mut().unwrap().region = "eu-2".to_owned();
        via_a
            .create_connector(v1::CreateConnectorRequest {
                connector: Some(connector),
            })
            .await
            .unwrap();
    }
    // Every statement, many times over, from both replicas at once: named
    // statements would be missing (or taken) on the server sessions the
    // pooler hands out.
    let mut calls = Vec::new();
    for round in 0..4 {
        for i in 0..6 {
            let mut client = if (round + i) % 2 == 0 {
                via_a.clone()
            } else {
                via_b.clone()
            };
            calls.push(tokio::spawn(async move {
                let id = format!("c{i}");
                let mut start = tonic::Request::new(v1::StartConnectorRequest {
                    wait: true,
                    request_id: format!("start-{round}-{i}"),
                    ..start_request(&id)
                });
                start.set_timeout(Duration::from_secs(20));
                let started = client.start_connector(start).await?.into_inner();
                assert_eq!(started.connector.unwrap().state, S::Running as i32);
                let list = client
                    .list_connectors(v1::ListConnectorsRequest {
                        query: "orders".to_owned(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                assert_eq!(list.total_size, 6);
                let mut pause = tonic::Request::new(v1::PauseConnectorRequest {
                    wait: true,
                    request_id: format!("pause-{round}-{i}"),
                    ..pause_request(&id)
                });
                pause.set_timeout(Duration::from_secs(20));
                let paused = client.pause_connector(pause).await?.into_inner();
                assert_eq!(paused.connector.unwrap().state, S::Stopped as i32);
                Ok::<_, tonic::Status>(())
            }));
        }
        for call in calls.drain(..) {
            call.await.unwrap().unwrap();
        }
    }
    let commands: i64 = direct
        .query_one(
            "SELECT count(*) FROM commands WHERE status = 'SUCCEEDED'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(commands, 48);

    // One leader, through the pooler: the lease is a row, not a session.
    let leader = eventually(Duration::from_secs(30), || async {
        direct
            .query_opt(
                "SELECT holder FROM leases WHERE name = 'leader' AND expire_time > now()",
                &[],
            )
            .await
            .unwrap()
            .map(|row| row.get::<_, String>(0))
    })
    .await;
    assert!(
        leader.starts_with("replica-a/") || leader.starts_with("replica-b/"),
        "{leader}"
    );
    // The leader's work runs there too: the connector of an agent that
    // stays connected but falls silent is marked UNKNOWN by its sweep.
    let mut silent = TestAgent::connect_to(
        channel_to(&a.addr).await,
        hello("silent", "eu-1", "10.0.1.9"),
    )
    .await;
    let mut connector = connector("s1", "silent-1");
    connector.destination.as_mut().unwrap().region = "eu-1".to_owned();
    via_a
        .create_connector(v1::CreateConnectorRequest {
            connector: Some(connector),
        })
        .await
        .unwrap();
    via_a.start_connector(start_request("s1")).await.unwrap();
    let command = silent.next_command().await;
    silent.succeed(&command, S::Running).await;
    eventually(Duration::from_secs(30), || {
        let mut client = via_b.clone();
        async move {
            let connector = client
                .get_connector(v1::GetConnectorRequest {
                    id: "s1".to_owned(),
                })
                .await
                .unwrap()
                .into_inner();
            (connector.state == S::Unknown as i32).then_some(())
        }
    })
    .await;
    drop(bouncer);
}

#[tokio::test]
async fn without_the_flag_pgbouncer_transaction_pooling_is_named_at_start_up() {
    let db = TestDatabase::create().await;
    let bouncer = bouncer_in_front();
    let output = Command::new(env!("CARGO_BIN_EXE_connector-control"))
        .arg("migrate")
        .env("DATABASE_URL", bouncer.url(&db.name))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--transaction-pooling"), "{stderr}");
}

/// Whether the store's listener heard that notifications reach it: it
/// reports a full look (`Wakeup::All`) once they do.
fn listener_on(
    store: &connector_control::store::PgStore,
    shutdown: &tokio_util::sync::CancellationToken,
) -> (
    tokio::task::JoinHandle<()>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use connector_control::store::{Leadership, Wakeup};
    let listening = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let heard = std::sync::Arc::clone(&listening);
    let handler: connector_control::store::WakeupHandler = std::sync::Arc::new(move |wakeup| {
        if matches!(wakeup, Wakeup::All) {
            heard.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let task = store
        .listen(handler, Duration::from_secs(1), shutdown.clone())
        .expect("PostgreSQL listens");
    (task, listening)
}

#[tokio::test]
async fn a_listener_that_hears_no_notification_gives_up_instead_of_listening_in_vain() {
    use connector_control::store::{PgStore, Pooling};
    let db = TestDatabase::create().await;
    let bouncer = bouncer_in_front();
    let shutdown = tokio_util::sync::CancellationToken::new();

    // Straight to PostgreSQL the probe's notification arrives: it listens.
    let direct = PgStore::connect(&db.url, 2).await.unwrap();
    direct.migrate().await.unwrap();
    let (direct_task, direct_listening) = listener_on(&direct, &shutdown);
    eventually(Duration::from_secs(30), || async {
        direct_listening
            .load(std::sync::atomic::Ordering::SeqCst)
            .then_some(())
    })
    .await;
    assert!(!direct_task.is_finished());

    // Through the transaction-pooling PgBouncer it never does: the
    // listener ends by itself instead of listening in vain.
    let pooled = PgStore::connect_with(&bouncer.url(&db.name), 2, Pooling::Transaction)
        .await
        .unwrap();
    let (pooled_task, pooled_listening) = listener_on(&pooled, &shutdown);
    tokio::time::timeout(Duration::from_secs(60), pooled_task)
        .await
        .expect("the listener gave up")
        .unwrap();
    assert!(!pooled_listening.load(std::sync::atomic::Ordering::SeqCst));
    shutdown.cancel();
    direct_task.await.unwrap();
}
