//! The change feed's guarantees under concurrency (migration V20: writers
//! only record changes; replicas give them positions afterwards). Many
//! writers on three replicas (gRPC calls, SQL transactions of several
//! connectors, some rolled back, one held open across the others, new
//! connectors), four watchers on different replicas, two of them resuming
//! mid-way on another replica: every watcher sees every change of every
//! connector once, in version order, up to the connectors' final versions,
//! and all of them in the same order.

use crate::helpers::*;
use connector_control::fleet::FleetOptions;
use connector_control::proto::v1;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use v1::WatchEventType as E;

const CONNECTORS: usize = 16;
const WRITERS: usize = 12;
const ROUNDS: usize = 50;
/// How long the watchers may take to see the last change.
const SETTLE: Duration = Duration::from_secs(60);

fn id(n: usize) -> String {
    format!("c{n:02}")
}

/// A small random number generator (xorshift): no crate for a test's dice.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// What one watcher saw: the versions its snapshot showed, then each
/// change as (connector, version), in the order it came.
#[derive(Default)]
struct Seen {
    snapshot: HashMap<String, i64>,
    changes: Vec<(String, i64)>,
    /// Streams it watched on (more than one once it resumed).
    streams: usize,
}

/// Watches everything, starting on `replicas[first]`; after `resume_every`
/// events it drops the stream and resumes from its last token on the next
/// replica. Returns once the snapshot is read; keeps recording into `seen`.
type Client = v1::connector_service_client::ConnectorServiceClient<tonic::transport::Channel>;

async fn watcher(
    replicas: Vec<Client>,
    first: usize,
    resume_every: Option<usize>,
    seen: Arc<Mutex<Seen>>,
) -> tokio::task::JoinHandle<()> {
    let mut on = first;
    let mut events = replicas[on]
        .clone()
        .watch_connectors(v1::WatchConnectorsRequest::default())
        .await
        .unwrap()
        .into_inner();
    loop {
        let event = events.message().await.unwrap().expect("the stream ended");
        match E::try_from(event.r#type).unwrap() {
            E::Snapshot => {
                let connector = event.connector.unwrap();
                assert_eq!(event.version, connector.version);
                seen.lock()
                    .unwrap()
                    .snapshot
                    .insert(connector.id, event.version);
            }
            E::SnapshotEnd => break,
            other => panic!("{other:?} before the snapshot's end"),
        }
    }
    seen.lock().unwrap().streams = 1;
    tokio::spawn(async move {
        let mut since_resume = 0;
        loop {
            let event = events.message().await.unwrap().expect("the stream ended");
            let kind = E::try_from(event.r#type).unwrap();
            if kind == E::Progress {
                continue;
            }
            assert_eq!(kind, E::Changed, "nothing leaves a watch of everything");
            let connector = event.connector.unwrap();
            assert!(connector.version >= event.version, "read after the change");
            seen.lock()
                .unwrap()
                .changes
                .push((connector.id, event.version));
            since_resume += 1;
            if resume_every.is_some_and(|every| since_resume == every) {
                since_resume = 0;
                on = (on + 1) % replicas.len();
                events = replicas[on]
                    .clone()
                    .watch_connectors(v1::WatchConnectorsRequest {
                        resume_token: event.resume_token,
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                seen.lock().unwrap().streams += 1;
            }
        }
    })
}

/// Sets a connector's status message: a change of it.
async fn say(db: &impl tokio_postgres::GenericClient, id: &str, message: &str) {
    db.execute(
        "UPDATE connectors SET status_message = $2, update_time = now() WHERE id = $1",
        &[&id, &message],
    )
    .await
    .unwrap();
}

/// SQL transactions of one to three connectors (in id order, so that they
/// cannot deadlock), one in five rolled back.
async fn sql_writer(db: Arc<TestDatabase>, writer: usize, done: Arc<AtomicUsize>) {
    let mut client = db.client().await;
    let mut dice = Dice(0x9E37_79B9_7F4A_7C15 ^ (writer as u64 + 1));
    for round in 0..ROUNDS {
        let mut ids: Vec<String> = (0..1 + dice.below(3))
            .map(|_| id(dice.below(CONNECTORS)))
            .collect();
        ids.sort();
        ids.dedup();
        let tx = client.transaction().await.unwrap();
        for id in &ids {
            say(&tx, id, &format!("writer {writer} round {round}")).await;
        }
        if dice.below(5) == 0 {
            tx.rollback().await.unwrap();
        } else {
            tx.commit().await.unwrap();
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Restart policy updates through the replicas in turn, and now and then a
/// new connector.
async fn grpc_writer(replicas: Vec<Client>, writer: usize, done: Arc<AtomicUsize>) {
    let mut dice = Dice(0xD1B5_4A32_D192_ED03 ^ (writer as u64 + 1));
    for round in 0..ROUNDS {
        let mut replica = replicas[round % replicas.len()].clone();
        if round % 10 == 9 {
            replica
                .create_connector(v1::CreateConnectorRequest {
                    connector: Some(connector(
                        &format!("new-{writer}-{round}"),
                        "created meanwhile",
                    )),
                })
                .await
                .unwrap();
        } else {
            replica
                .update_restart_policy(v1::UpdateRestartPolicyRequest {
                    id: id(dice.below(CONNECTORS)),
                    restart_policy: Some(v1::RestartPolicy {
                        mode: v1::RestartMode::OnFailure as i32,
                        max_restarts: i32::try_from(round).unwrap(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                })
                .await
                .unwrap();
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_watcher_sees_every_change_once_in_one_order_whatever_the_writers_do() {
    let db = Arc::new(TestDatabase::create().await);
    let mut replicas = Vec::new();
    for name in ["feed-a", "feed-b", "feed-c"] {
        replicas.push(spawn_replica(db.clone(), FleetOptions::new(HEARTBEAT_INTERVAL), name).await);
    }
    for n in 0..CONNECTORS {
        replicas[n % 3]
            .create(connector(&id(n), &format!("connector {n}")))
            .await;
    }
    replicas[0]
        .create(connector("held", "changed by the long transaction"))
        .await;

    let clients: Vec<_> = replicas.iter().map(|r| r.client.clone()).collect();
    let mut watchers = Vec::new();
    for (first, resume_every) in [(0, None), (1, None), (2, Some(97)), (0, Some(211))] {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = watcher(clients.clone(), first, resume_every, seen.clone()).await;
        watchers.push((seen, task, resume_every));
    }

    // A transaction that begins before every writer (its id is the oldest
    // of them), holds a change of `held` while they run, changes c00 once
    // half of them are done, and commits last.
    let done = Arc::new(AtomicUsize::new(0));
    let mut long = db.client().await;
    let long = tokio::spawn({
        let done = done.clone();
        async move {
            let tx = long.transaction().await.unwrap();
            say(&tx, "held", "held").await;
            eventually(SETTLE, || async {
                (done.load(Ordering::Relaxed) >= WRITERS * ROUNDS / 2).then_some(())
            })
            .await;
            say(&tx, "c00", "late").await;
            tx.commit().await.unwrap();
        }
    });
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        writers.push(if writer % 3 == 0 {
            tokio::spawn(grpc_writer(clients.clone(), writer, done.clone()))
        } else {
            tokio::spawn(sql_writer(db.clone(), writer, done.clone()))
        });
    }
    for writer in writers {
        writer.await.unwrap();
    }
    long.await.unwrap();

    let finals: HashMap<String, i64> = db
        .client()
        .await
        .query("SELECT id, version FROM connectors", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(finals["held"], 2, "one change held open, then committed");
    assert!(
        finals.len() > CONNECTORS + 1,
        "connectors were created meanwhile"
    );
    for (seen, _, _) in &watchers {
        eventually(SETTLE, || async {
            let seen = seen.lock().unwrap();
            // The newest version each has seen (whether in order is
            // checked below, with a message that says where not).
            let mut newest: HashMap<&str, i64> = HashMap::new();
            for (id, version) in &seen.changes {
                let newest = newest.entry(id.as_str()).or_default();
                *newest = (*newest).max(*version);
            }
            finals
                .iter()
                .all(|(id, version)| {
                    newest
                        .get(id.as_str())
                        .or(seen.snapshot.get(id))
                        .is_some_and(|seen| seen >= version)
                })
                .then_some(())
        })
        .await;
    }

    let mut orders = Vec::new();
    for (seen, task, resume_every) in watchers {
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        let seen = Arc::into_inner(seen).unwrap().into_inner().unwrap();
        assert_eq!(seen.snapshot.len(), CONNECTORS + 1);
        if resume_every.is_some() {
            assert!(
                seen.streams > 2,
                "resumed mid-way ({} streams)",
                seen.streams
            );
        }
        for (id, last) in &finals {
            let first = seen.snapshot.get(id).copied().unwrap_or(0);
            let versions: Vec<i64> = seen
                .changes
                .iter()
                .filter(|(changed, _)| changed == id)
                .map(|(_, version)| *version)
                .collect();
            let expected: Vec<i64> = (first + 1..=*last).collect();
            assert_eq!(
                versions, expected,
                "{id}: each change once, in order, up to its final version"
            );
        }
        orders.push(seen.changes);
    }
    for order in &orders[1..] {
        assert!(
            order == &orders[0],
            "every watcher sees the changes in one order"
        );
    }
}

/// Waits until the backend `pid` waits for a lock.
async fn waits_for_a_lock(db: &TestDatabase, pid: i32) {
    eventually(Duration::from_secs(10), || async {
        db.client()
            .await
            .query_opt(
                "SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
                &[&pid],
            )
            .await
            .unwrap()
            .map(|_| ())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_last_comes_last_even_from_the_transaction_that_began_first() {
    let app = spawn_app().await;
    for (id, name) in [("c1", "alpha"), ("other", "beta"), ("held", "gamma")] {
        app.create(connector(id, name)).await;
    }
    let mut events = app
        .client
        .clone()
        .watch_connectors(v1::WatchConnectorsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .expect("no event within 10 s")
            .unwrap()
            .expect("the stream ended")
    };
    while next().await.r#type != E::SnapshotEnd as i32 {}

    // `first` takes its transaction id before `second`, and `held` stays
    // open throughout. `second` changes c1 (version 2) and commits; then
    // `first` changes c1 (version 3, waiting for nothing) and commits.
    let (mut first, mut second, mut held) = (
        app.db.client().await,
        app.db.client().await,
        app.db.client().await,
    );
    let first = first.transaction().await.unwrap();
    say(&first, "other", "first").await;
    let held = held.transaction().await.unwrap();
    say(&held, "held", "held").await;
    let second = second.transaction().await.unwrap();
    say(&second, "c1", "second").await;
    let pid: i32 = first
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let later = async {
        say(&first, "c1", "first").await;
        first.commit().await.unwrap();
    };
    let unblock = async {
        waits_for_a_lock(&app.db, pid).await;
        second.commit().await.unwrap();
    };
    tokio::join!(later, unblock);

    // Everything committed comes, each connector's changes in the order
    // they were made, while `held` is still open: it delays nothing.
    let mut came: HashMap<String, Vec<i64>> = HashMap::new();
    for _ in 0..3 {
        let event = next().await;
        came.entry(event.connector.unwrap().id)
            .or_default()
            .push(event.version);
    }
    assert_eq!(
        came["c1"],
        [2, 3],
        "c1's changes in the order they were made"
    );
    assert_eq!(came["other"], [2]);
    held.commit().await.unwrap();
    let event = next().await;
    assert_eq!(
        (event.connector.unwrap().id, event.version),
        ("held".into(), 2)
    );
}
