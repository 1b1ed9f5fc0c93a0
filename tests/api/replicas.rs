//! Several replicas on one database: cross-replica delivery (LISTEN/NOTIFY
//! and polling), the listening connection cut, the leader lease and its
//! fencing. Replicas here are real servers in this process, each with its
//! own pool, listener and loops; `process.rs`-style tests with real
//! processes are in `replica_processes.rs`.

use crate::helpers::*;
use connector_control::fleet::FleetOptions;
use connector_control::proto::v1::{self, ConnectorState as S};
use connector_control::store::prelude::*;
use connector_control::store::{PgStore, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// Agents stay online for the whole test without heartbeats from the hand-
/// driven agent (offline after four intervals).
const SLOW_HEARTBEATS: Duration = Duration::from_secs(15);

/// Replica options where polling never happens during a test: whatever is
/// delivered was woken.
fn wakeups_only() -> FleetOptions {
    FleetOptions {
        poll_interval: Duration::from_secs(3600),
        ..FleetOptions::new(SLOW_HEARTBEATS)
    }
}

fn polling_only(every: Duration) -> FleetOptions {
    FleetOptions {
        poll_interval: every,
        poll_only: true,
        ..FleetOptions::new(SLOW_HEARTBEATS)
    }
}

/// Replicas a and b on one fresh database, both registered (a server
/// answers calls only once it is), with c1 created.
async fn two_replicas(options: FleetOptions) -> (TestApp, TestApp) {
    let db = Arc::new(TestDatabase::create().await);
    let a = spawn_replica(db.clone(), options.clone(), "replica-a").await;
    let b = spawn_replica(db, options, "replica-b").await;
    a.create(connector("c1", "orders")).await;
    b.get("c1").await;
    (a, b)
}

/// Waits until `replica`'s listening connection has run LISTEN (its last
/// statement, until its first idle probe, a heartbeat interval later).
async fn listening(app: &TestApp, replica: &str) -> i32 {
    let name = format!("connector-control listener {replica}");
    eventually(Duration::from_secs(10), || async {
        app.db
            .client()
            .await
            .query_opt(
                "SELECT pid FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name = $1
                   AND query LIKE 'LISTEN%' AND state = 'idle'",
                &[&name],
            )
            .await
            .unwrap()
            .map(|row| row.get(0))
    })
    .await
}

/// The backend pids of `app`'s database connections named `name%`.
async fn backends(app: &TestApp, name: &str) -> Vec<i32> {
    app.db
        .client()
        .await
        .query(
            "SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND application_name LIKE $1 || '%'",
            &[&name],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn a_command_committed_on_one_replica_reaches_an_agent_on_another_by_notify() {
    let (a, b) = two_replicas(wakeups_only()).await;
    eventually(Duration::from_secs(10), || async {
        (backends(&a, "connector-control listener replica-a")
            .await
            .len()
            == 1)
            .then_some(())
    })
    .await;
    let mut agent = TestAgent::connect(&a, hello("ag", "eu-2", "10.0.2.7")).await;

    // Committed on b; a never polls: only the wake-up can bring it.
    let started = b.start(start_request("c1")).await.unwrap();
    let command = agent.next_command().await;
    assert_eq!(command.id, started.command.unwrap().id);
    agent.succeed(&command, S::Running).await;
    b.connector_becomes("c1", |c| c.state == S::Running as i32)
        .await;

    // Now the agent runs c1: a pause committed on b goes to it the same way.
    let paused = b.pause(pause_request("c1")).await.unwrap();
    let command = agent.next_command().await;
    assert_eq!(command.id, paused.command.unwrap().id);
    assert_eq!(command.kind, v1::CommandKind::Pause as i32);
}

#[tokio::test]
async fn a_wait_on_one_replica_ends_when_the_agent_answers_on_another() {
    let (a, b) = two_replicas(wakeups_only()).await;
    listening(&b, "replica-b").await;
    let mut agent = TestAgent::connect(&a, hello("ag", "eu-2", "10.0.2.7")).await;
    // b re-reads a waiting command only every poll interval (an hour
    // here): the wait ends through the completion's wake-up.
    let waiting = tokio::spawn({
        let b = b.client.clone();
        async move {
            let mut b = b;
            b.start_connector(v1::StartConnectorRequest {
                wait: true,
                ..start_request("c1")
            })
            .await
        }
    });
    let command = agent.next_command().await;
    agent.succeed(&command, S::Running).await;
    let response = waiting
        .await
        .unwrap()
        .expect("the wait ends with the result");
    let command = response.into_inner().command.unwrap();
    assert_eq!(command.status, v1::CommandStatus::Succeeded as i32);
}

/// A replica that joins while another is not listening (its listening
/// connection being replaced) goes unheard: the other must still wake it,
/// here for a command for an agent connected to the newcomer. Both poll
/// and look at the replicas table only hourly: only a wake-up delivers.
#[tokio::test]
async fn a_replica_that_joins_unheard_is_still_woken() {
    let hourly = FleetOptions {
        poll_interval: Duration::from_secs(3600),
        ..FleetOptions::new(Duration::from_secs(3600))
    };
    // Replica a logs in as a role of its own, so that it alone can be
    // refused new connections.
    let role = TestRole::create().await;
    let db = Arc::new(TestDatabase::create_owned_by(&role).await);
    let url = db.url_as(&role);
    let a = spawn_replica_connecting_to(db.clone(), &url, hourly.clone(), "replica-a").await;
    a.create(connector("c1", "orders")).await;
    let first = listening(&a, "replica-a").await;
    // a's listening connection ends and cannot be replaced meanwhile.
    role.limit_connections(Some(0)).await;
    db.end_session(first).await;
    eventually(Duration::from_secs(10), || async {
        let gone = backends(&a, "connector-control listener replica-a")
            .await
            .is_empty();
        gone.then_some(())
    })
    .await;
    // b joins and announces itself, unheard by a. (b answers calls only
    // once it has announced itself.)
    let b = spawn_replica(db.clone(), hourly, "replica-b").await;
    b.get("c1").await;
    role.limit_connections(None).await;
    let second = listening(&a, "replica-a").await;
    assert_ne!(first, second);

    let mut agent = TestAgent::connect(&b, hello("ag", "eu-2", "10.0.2.7")).await;
    let started = a.start(start_request("c1")).await.unwrap();
    let command = agent.next_command().await;
    assert_eq!(command.id, started.command.unwrap().id);
}

#[tokio::test]
async fn poll_only_replicas_deliver_by_polling() {
    let (a, b) = two_replicas(polling_only(Duration::from_millis(100))).await;
    let mut agent = TestAgent::connect(&a, hello("ag", "eu-2", "10.0.2.7")).await;
    let started = b.start(start_request("c1")).await.unwrap();
    let command = agent.next_command().await;
    assert_eq!(command.id, started.command.unwrap().id);
    // Nothing listens: the database needs no LISTEN/NOTIFY.
    assert!(backends(&a, "connector-control listener").await.is_empty());
}

#[tokio::test]
async fn delivery_continues_after_the_listening_connection_is_cut() {
    let (a, b) = two_replicas(wakeups_only()).await;
    let mut agent = TestAgent::connect(&a, hello("ag", "eu-2", "10.0.2.7")).await;
    let listener = "connector-control listener replica-a";
    let first = eventually(Duration::from_secs(10), || async {
        backends(&a, listener).await.first().copied()
    })
    .await;
    a.db.end_session(first).await;

    // Committed while a may not be listening: the NOTIFY can be lost, and
    // the full look after re-listening finds it.
    let started = b.start(start_request("c1")).await.unwrap();
    let command = agent.next_command().await;
    assert_eq!(command.id, started.command.unwrap().id);
    agent.succeed(&command, S::Running).await;

    // A new listening connection exists, and wake-ups work through it.
    let second = eventually(Duration::from_secs(10), || async {
        backends(&a, listener)
            .await
            .first()
            .copied()
            .filter(|pid| *pid != first)
    })
    .await;
    assert_ne!(first, second);
    b.connector_becomes("c1", |c| c.state == S::Running as i32)
        .await;
    let paused = b.pause(pause_request("c1")).await.unwrap();
    let command = agent.next_command().await;
    assert_eq!(command.id, paused.command.unwrap().id);
}

/// A store on `db` as replica `id`, with its own pool.
async fn replica_store(db: &TestDatabase, id: &str) -> PgStore {
    let store = PgStore::connect(&db.url, 2)
        .await
        .unwrap()
        .with_replica_id(id);
    store.migrate().await.unwrap();
    store
}

#[tokio::test]
async fn one_leader_at_a_time_and_a_replaced_leader_is_fenced() {
    let db = TestDatabase::create().await;
    let a = replica_store(&db, "a").await;
    let b = replica_store(&db, "b").await;
    let hour = Duration::from_secs(3600);

    let lease = a.acquire_lease(hour).await.unwrap().expect("a is first");
    assert_eq!(b.acquire_lease(hour).await.unwrap(), None);
    // Renewing keeps the term.
    assert_eq!(a.acquire_lease(hour).await.unwrap(), Some(lease));
    assert_eq!(a.sweep_offline(lease, hour, hour).await.unwrap(), 0);

    // The lease lapses and both compete at once, again and again: exactly
    // one wins each time, with a newer term.
    let client = db.client().await;
    let lapse = || async {
        client
            .execute("UPDATE leases SET expire_time = now()", &[])
            .await
            .unwrap();
    };
    let mut term = lease.term;
    for _ in 0..20 {
        lapse().await;
        let (x, y) = tokio::join!(a.acquire_lease(hour), b.acquire_lease(hour));
        let won = match (x.unwrap(), y.unwrap()) {
            (Some(won), None) | (None, Some(won)) => won,
            other => panic!("one winner expected, got {other:?}"),
        };
        assert!(won.term > term);
        term = won.term;
    }

    // a's lease lapses (a paused, say); b takes over with a newer term.
    lapse().await;
    let taken = b.acquire_lease(hour).await.unwrap().expect("b takes over");
    assert_eq!(a.acquire_lease(hour).await.unwrap(), None);

    // What a stale leader would change: an agent silent for an hour with a
    // delivered command and a running connector.
    client
        .batch_execute(
            "INSERT INTO connectors (id, name, project_id, project_name, name_folded,
                 project_name_folded, kind, source_type, source_region, source_address,
                 destination_type, destination_region, destination_address, region, agent_id,
                 state, desired_state, generation)
             VALUES ('c1', 'c1', 'p', 'P', 'c1', 'p', 'INCREMENTAL_SYNC', 'MYSQL', 'eu-1', 'h:1',
                 'MYSQL', 'eu-2', 'h:2', 'eu-2', 'ag', 'RUNNING', 'RUNNING', 1);
             INSERT INTO commands (id, connector_id, kind, region, previous_region, generation,
                 status, agent_id, deliver_time)
             VALUES ('k1', 'c1', 'START', 'eu-2', 'eu-2', 1, 'DELIVERED', 'ag',
                 now() - interval '1 hour');
             INSERT INTO agents (id, region, server_ip, instance_id, session_id, session_epoch,
                 connect_time, last_heartbeat_time, replica_id, principal, peer)
             VALUES ('ag', 'eu-2', '10.0.2.7', 'i', 's', 1, now() - interval '2 hours',
                 now() - interval '1 hour', 'a', 'agent-eu-2', '10.0.2.7:4000');",
        )
        .await
        .unwrap();
    let snapshot = || async {
        let row = client
            .query_one(
                "SELECT (SELECT state FROM connectors), (SELECT status FROM commands),
                        (SELECT disconnect_time IS NULL FROM agents)",
                &[],
            )
            .await
            .unwrap();
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, bool>(2),
        )
    };
    let before = snapshot().await;
    assert_eq!(before, ("RUNNING".to_owned(), "DELIVERED".to_owned(), true));

    // a, acting on its old term, is refused and changes nothing.
    assert!(matches!(
        a.sweep_offline(lease, Duration::ZERO, Duration::ZERO).await,
        Err(StoreError::NotLeader { term }) if term == lease.term
    ));
    assert!(matches!(
        a.expire_deliveries(lease, Duration::ZERO).await,
        Err(StoreError::NotLeader { .. })
    ));
    assert_eq!(snapshot().await, before);
    // The leader's own sweep does change them (replica "a" never wrote a
    // heartbeat: its session ends too).
    assert!(b.sweep_offline(taken, hour, hour).await.unwrap() > 0);
    assert_eq!(
        snapshot().await,
        ("UNKNOWN".to_owned(), "PENDING".to_owned(), false)
    );
    // The session the sweep ended has its end event, with who opened it.
    let end = client
        .query_one(
            "SELECT principal, peer, reason, detail FROM audit_events
             WHERE action = 'AGENT_SESSION_END'",
            &[],
        )
        .await
        .expect("one AGENT_SESSION_END event");
    assert_eq!(end.get::<_, String>(0), "agent-eu-2");
    assert_eq!(end.get::<_, String>(1), "10.0.2.7:4000");
    assert_eq!(end.get::<_, String>(2), "REPLICA_DEAD");
    assert_eq!(
        end.get::<_, String>(3),
        "agent ag session s epoch 1 region eu-2"
    );

    // A clean stop hands the lease over at once.
    b.retire_replica().await.unwrap();
    let next = a.acquire_lease(hour).await.unwrap().expect("a again");
    assert!(next.term > taken.term);
}

/// The replica holding an unexpired leader lease, if any, and its term.
async fn leader(db: &TestDatabase) -> Option<(String, i64)> {
    db.client()
        .await
        .query_opt(
            "SELECT split_part(holder, '/', 1), term FROM leases
             WHERE name = 'leader' AND expire_time > now()",
            &[],
        )
        .await
        .unwrap()
        .map(|row| (row.get(0), row.get(1)))
}

#[tokio::test]
async fn replicas_elect_one_leader_and_another_takes_over_when_it_stops() {
    // A lease of 3 s (three 1 s intervals): it cannot lapse by accident
    // while the test reads it.
    let options = FleetOptions::new(Duration::from_secs(1));
    let (a, b) = two_replicas(options).await;
    let db = a.db.clone();
    let (first, term) = eventually(Duration::from_secs(10), || leader(&db)).await;
    // Both recorded (b's server registers in its own task: maybe after a
    // already leads).
    eventually(Duration::from_secs(10), || async {
        let live = a
            .count(
                "SELECT count(*) FROM replicas WHERE heartbeat_time > now() - interval '1 minute'",
            )
            .await;
        (live == 2).then_some(())
    })
    .await;

    // Stop whichever leads; the other leads next, with a newer term, at
    // once (the stopped one gave the lease up).
    let (mut stopped, survivor) = match first.as_str() {
        "replica-a" => (a, "replica-b"),
        "replica-b" => (b, "replica-a"),
        other => panic!("unexpected leader {other}"),
    };
    stopped.stop().await;
    let (_, next_term) = eventually(Duration::from_secs(10), || async {
        leader(&db).await.filter(|(holder, _)| holder == survivor)
    })
    .await;
    assert!(next_term > term);
    // The stopped replica's record is gone.
    assert_eq!(
        stopped
            .count(&format!(
                "SELECT count(*) FROM replicas WHERE id = '{first}'"
            ))
            .await,
        0
    );
}

#[tokio::test]
async fn operators_see_replicas_their_leader_and_where_each_agent_is() {
    let (a, b) = two_replicas(wakeups_only()).await;
    let _agent = TestAgent::connect(&b, hello("ag", "eu-2", "10.0.2.7")).await;
    // A replica that stopped writing its heartbeat long ago.
    a.sql(
        "INSERT INTO replicas (id, address, start_time, heartbeat_time)
         VALUES ('replica-old', '10.9.9.9:50051', now() - interval '1 day', now() - interval '1 hour')",
    )
    .await;
    let mut agents = v1::agent_service_client::AgentServiceClient::new(a.channel().await);
    let replicas = eventually(Duration::from_secs(30), || {
        let mut agents = agents.clone();
        async move {
            let replicas = agents
                .list_replicas(v1::ListReplicasRequest {})
                .await
                .unwrap()
                .into_inner()
                .replicas;
            // The first lease round may still be running.
            replicas.iter().any(|r| r.leader).then_some(replicas)
        }
    })
    .await;
    let ids: Vec<&str> = replicas.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["replica-a", "replica-b", "replica-old"]);
    let state = |id: &str| replicas.iter().find(|r| r.id == id).unwrap().state;
    assert_eq!(state("replica-a"), v1::ReplicaState::Alive as i32);
    assert_eq!(state("replica-b"), v1::ReplicaState::Alive as i32);
    assert_eq!(state("replica-old"), v1::ReplicaState::Dead as i32);
    assert_eq!(replicas.iter().filter(|r| r.leader).count(), 1);
    let leader = replicas.iter().find(|r| r.leader).unwrap();
    assert!(leader.leader_term >= 1);
    assert_ne!(leader.id, "replica-old");
    let agents_of = |id: &str| replicas.iter().find(|r| r.id == id).unwrap().agents;
    assert_eq!((agents_of("replica-a"), agents_of("replica-b")), (0, 1));
    assert_eq!(replicas[0].address, a.addr.to_string());

    let listed = agents
        .list_agents(v1::ListAgentsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .agents;
    assert_eq!(listed[0].replica_id, "replica-b");
}

#[tokio::test]
async fn streams_are_recycled_after_their_maximum_age() {
    let db = Arc::new(TestDatabase::create().await);
    let options = FleetOptions {
        max_stream_age: Some(Duration::from_millis(300)),
        ..FleetOptions::new(SLOW_HEARTBEATS)
    };
    let app = spawn_replica(db, options, "replica-a").await;
    let mut agent = TestAgent::connect(&app, hello("ag", "eu-2", "10.0.2.7")).await;
    match agent.next().await {
        Ok(v1::control_message::Message::Reconnect(reconnect)) => {
            assert!(reconnect.reason.contains("maximum age"), "{reconnect:?}");
            assert_eq!(reconnect.retry_after.unwrap_or_default().seconds, 0);
        }
        other => panic!("expected reconnect, got {other:?}"),
    }
}

/// Sends heartbeats for `agent` every 100 ms until aborted.
fn keep_beating(agent: &TestAgent) -> tokio::task::JoinHandle<()> {
    let sender = agent.sender();
    tokio::spawn(async move {
        let mut sequence = 0;
        loop {
            sequence += 1;
            let beat = v1::AgentMessage {
                message: Some(v1::agent_message::Message::Heartbeat(v1::Heartbeat {
                    sequence,
                    connectors: Vec::new(),
                })),
            };
            if sender.send(beat).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

#[tokio::test]
async fn a_session_recorded_as_ended_elsewhere_is_asked_to_reconnect() {
    let db = Arc::new(TestDatabase::create().await);
    let app = spawn_replica(
        db,
        FleetOptions::new(Duration::from_millis(200)),
        "replica-a",
    )
    .await;
    let mut agent = TestAgent::connect(&app, hello("ag", "eu-2", "10.0.2.7")).await;
    let beating = keep_beating(&agent);
    // What the leader does to the sessions of a replica it counts dead:
    // left in place, the stream would live on and never get a command.
    app.sql("UPDATE agents SET disconnect_time = now()").await;
    match agent.next().await {
        Ok(v1::control_message::Message::Reconnect(reconnect)) => {
            assert!(reconnect.reason.contains("reconnect"), "{reconnect:?}");
        }
        other => panic!("expected reconnect, got {other:?}"),
    }
    beating.abort();
}

#[tokio::test]
async fn the_leader_redelivers_a_command_left_unanswered_too_long() {
    let db = Arc::new(TestDatabase::create().await);
    let options = FleetOptions {
        delivery_timeout: Duration::from_millis(500),
        ..FleetOptions::new(Duration::from_millis(200))
    };
    let app = spawn_replica(db, options, "replica-a").await;
    app.create(connector("c1", "orders")).await;
    let mut agent = TestAgent::connect(&app, hello("ag", "eu-2", "10.0.2.7")).await;
    // Heartbeats keep the agent online; the command is never answered.
    let beating = keep_beating(&agent);
    let started = app.start(start_request("c1")).await.unwrap();
    let first = agent.next_command().await;
    assert_eq!(first.id, started.command.unwrap().id);
    let again = agent.next_command().await;
    assert_eq!(again.id, first.id);
    agent.succeed(&again, S::Running).await;
    app.connector_becomes("c1", |c| c.state == S::Running as i32)
        .await;
    let attempts = app
        .count("SELECT delivery_attempts::bigint FROM commands")
        .await;
    assert!(attempts >= 2, "{attempts}");
    beating.abort();
}

#[tokio::test]
async fn a_second_process_under_a_live_replica_id_leaves_its_sessions_alone() {
    let db = TestDatabase::create().await;
    let first = replica_store(&db, "same").await;
    first.replica_heartbeat("a:1", false).await.unwrap();
    let session = first
        .open_session(&connector_control::domain::Hello {
            agent_id: "a1".into(),
            instance_id: "i".into(),
            region: "eu-2".into(),
            server_ip: "10.0.2.7".into(),
            version: String::new(),
            connectors: Vec::new(),
            capabilities: Default::default(),
            actor: Default::default(),
        })
        .await
        .unwrap();
    // Started with the same --replica-id while the first still heartbeats.
    let second = replica_store(&db, "same").await;
    let hour = Duration::from_secs(3600);
    assert_eq!(second.end_orphaned_sessions(hour).await.unwrap(), 0);
    first
        .record_statuses(&session, &[])
        .await
        .expect("the first process's session is untouched");
    // Once that id's heartbeat is stale, its sessions are orphans.
    assert_eq!(
        second.end_orphaned_sessions(Duration::ZERO).await.unwrap(),
        1
    );
}
