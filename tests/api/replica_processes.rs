//! Replicas as real processes on one database: one killed with SIGKILL
//! while holding agents, one drained with SIGTERM, the docker-compose
//! topology (two replicas, reference agents in two regions), and
//! PostgreSQL itself restarted under a running replica.

use crate::helpers::*;
use connector_control::fleet::FleetOptions;
use connector_control::proto::v1::{
    self, ConnectorState as S, connector_service_client::ConnectorServiceClient,
};
use std::sync::Arc;
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;

/// A replica process. Agents driven by hand send no heartbeats, so the
/// interval is long enough for them to stay online through a test.
fn replica(db: &TestDatabase, id: &str, heartbeat: &str) -> ServerProcess {
    ServerProcess::spawn_with(
        &db.url,
        &[
            "--replica-id",
            id,
            "--heartbeat-interval",
            heartbeat,
            "--drain-timeout",
            "10s",
        ],
    )
}

async fn client(process: &ServerProcess) -> ConnectorServiceClient<Channel> {
    ConnectorServiceClient::new(channel_to(&process.addr).await)
}

async fn create(client: &mut ConnectorServiceClient<Channel>, id: &str, region: &str) {
    let mut connector = connector(id, id);
    connector.destination.as_mut().unwrap().region = region.to_owned();
    client
        .create_connector(v1::CreateConnectorRequest {
            connector: Some(connector),
        })
        .await
        .unwrap();
}

async fn start(client: &mut ConnectorServiceClient<Channel>, id: &str) -> v1::Command {
    client
        .start_connector(start_request(id))
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap()
}

async fn state_becomes(client: &ConnectorServiceClient<Channel>, id: &str, wanted: S) {
    eventually(Duration::from_secs(30), || {
        let mut client = client.clone();
        async move {
            let connector = client
                .get_connector(v1::GetConnectorRequest { id: id.to_owned() })
                .await
                .ok()?
                .into_inner();
            (connector.state == wanted as i32).then_some(())
        }
    })
    .await;
}

async fn process_exits(process: &mut ServerProcess) -> std::process::ExitStatus {
    eventually(Duration::from_secs(30), || {
        let status = process.child.try_wait().unwrap();
        async move { status }
    })
    .await
}

#[tokio::test]
async fn agents_of_a_killed_replica_get_their_commands_from_another() {
    let db = TestDatabase::create().await;
    let mut a = replica(&db, "replica-a", "2s");
    let b = replica(&db, "replica-b", "2s");
    let mut via_b = client(&b).await;
    create(&mut via_b, "c1", "eu-2").await;
    create(&mut via_b, "c2", "eu-2").await;

    let mut agent =
        TestAgent::connect_to(channel_to(&a.addr).await, hello("a1", "eu-2", "10.0.2.7")).await;
    // An agent of replica a that will never come back.
    let bystander =
        TestAgent::connect_to(channel_to(&a.addr).await, hello("gone", "eu-1", "10.0.1.9")).await;
    let first = start(&mut via_b, "c1").await;
    let delivered = agent.next_command().await;
    assert_eq!(delivered.id, first.id);

    // Killed before the agent answers: c1's command is delivered and
    // unanswered; c2's is committed while a is gone.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let second = start(&mut via_b, "c2").await;

    let mut agent =
        TestAgent::connect_to(channel_to(&b.addr).await, hello("a1", "eu-2", "10.0.2.7")).await;
    let mut received = vec![agent.next_command().await, agent.next_command().await];
    received.sort_by(|x, y| x.connector_id.cmp(&y.connector_id));
    assert_eq!(received[0].id, first.id);
    assert_eq!(received[1].id, second.id);
    for command in &received {
        agent.succeed(command, S::Running).await;
    }
    state_becomes(&via_b, "c1", S::Running).await;
    state_becomes(&via_b, "c2", S::Running).await;

    // The leader (b, once a's lease lapsed) ends the sessions a held:
    // a's heartbeat row went stale.
    let client = db.client().await;
    eventually(Duration::from_secs(60), || async {
        let row = client
            .query_one(
                "SELECT disconnect_time IS NOT NULL FROM agents WHERE id = 'gone'",
                &[],
            )
            .await
            .unwrap();
        row.get::<_, bool>(0).then_some(())
    })
    .await;
    drop(bystander);
    // Its session's end is audited, as swept from a dead replica.
    assert_eq!(
        client
            .query_one(
                "SELECT count(*) FROM audit_events WHERE action = 'AGENT_SESSION_END'
                 AND reason = 'REPLICA_DEAD' AND detail LIKE 'agent gone %'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0),
        1
    );
    let replica_of_a1: String = client
        .query_one("SELECT replica_id FROM agents WHERE id = 'a1'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(replica_of_a1, "replica-b");
}

#[tokio::test]
async fn a_pause_through_another_replica_is_what_a_reconnecting_agent_gets_first() {
    let db = TestDatabase::create().await;
    let mut a = replica(&db, "replica-a", "2s");
    let b = replica(&db, "replica-b", "2s");
    let mut via_a = client(&a).await;
    let mut via_b = client(&b).await;
    create(&mut via_b, "c1", "eu-2").await;
    let mut agent =
        TestAgent::connect_to(channel_to(&a.addr).await, hello("a1", "eu-2", "10.0.2.7")).await;
    // Replica a delivers START (generation 1) and is killed before the
    // agent's answer is recorded.
    let started = start(&mut via_a, "c1").await;
    let start_command = agent.next_command().await;
    assert_eq!(start_command.id, started.id);
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    // An operator pauses through b (generation 2).
    let paused = via_b
        .pause_connector(pause_request("c1"))
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap();
    assert_eq!(paused.generation, 2);

    // Reconnecting to b, the agent is handed the pause first: one step to
    // what the operator asked, not the start again.
    let mut agent =
        TestAgent::connect_to(channel_to(&b.addr).await, hello("a1", "eu-2", "10.0.2.7")).await;
    let first = agent.next_command().await;
    assert_eq!(
        (first.id.as_str(), first.generation),
        (paused.id.as_str(), 2)
    );
    // It had applied the start before: its late answer is recorded and
    // undoes nothing.
    agent.succeed(&start_command, S::Running).await;
    agent.succeed(&first, S::Stopped).await;
    state_becomes(&via_b, "c1", S::Stopped).await;
    let client = db.client().await;
    eventually(Duration::from_secs(30), || async {
        let row = client
            .query_one(
                "SELECT status, late_result, delivery_attempts FROM commands WHERE id = $1",
                &[&started.id],
            )
            .await
            .unwrap();
        let seen = (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, i32>(2),
        );
        (seen == ("SUPERSEDED".to_owned(), "SUCCEEDED".to_owned(), 1)).then_some(())
    })
    .await;
    let c1 = via_b
        .get_connector(v1::GetConnectorRequest { id: "c1".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c1.desired_state, S::Stopped as i32);
}

#[tokio::test]
async fn a_drained_replica_hands_its_agents_to_another_without_losing_a_command() {
    let db = TestDatabase::create().await;
    let mut a = replica(&db, "replica-a", "2s");
    let b = replica(&db, "replica-b", "2s");
    let mut via_b = client(&b).await;
    create(&mut via_b, "c1", "eu-2").await;
    let mut agent =
        TestAgent::connect_to(channel_to(&a.addr).await, hello("a1", "eu-2", "10.0.2.7")).await;
    let accepted = start(&mut via_b, "c1").await;
    assert_eq!(agent.next_command().await.id, accepted.id);

    // SIGTERM while the command is unanswered: the agent is asked to
    // reconnect, and a exits cleanly, leaving no record behind.
    a.signal("TERM");
    match agent.next().await {
        Ok(v1::control_message::Message::Reconnect(reconnect)) => {
            assert!(reconnect.reason.contains("shutting down"), "{reconnect:?}");
        }
        other => panic!("expected reconnect, got {other:?}"),
    }
    assert!(process_exits(&mut a).await.success());
    let client = db.client().await;
    let rows: i64 = client
        .query_one("SELECT count(*) FROM replicas WHERE id = 'replica-a'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);

    // On b, the same command again; answered, it completes.
    let mut agent =
        TestAgent::connect_to(channel_to(&b.addr).await, hello("a1", "eu-2", "10.0.2.7")).await;
    let redelivered = agent.next_command().await;
    assert_eq!(redelivered.id, accepted.id);
    agent.succeed(&redelivered, S::Running).await;
    state_becomes(&via_b, "c1", S::Running).await;
}

/// Start or pause with `wait: true`: the command's final status.
async fn wait_for(client: &mut ConnectorServiceClient<Channel>, id: &str, start: bool) -> i32 {
    let command = if start {
        client
            .start_connector(v1::StartConnectorRequest {
                wait: true,
                ..start_request(id)
            })
            .await
            .map(|r| r.into_inner().command)
    } else {
        client
            .pause_connector(v1::PauseConnectorRequest {
                wait: true,
                ..pause_request(id)
            })
            .await
            .map(|r| r.into_inner().command)
    };
    command
        .unwrap_or_else(|status| panic!("{id}: {status:?}"))
        .unwrap()
        .status
}

#[tokio::test]
async fn the_compose_topology_as_processes_survives_a_replica_drain() {
    // docker-compose.yml: two replicas, reference agents in two regions,
    // each agent knowing both replicas.
    let db = TestDatabase::create().await;
    let mut a = replica(&db, "replica-a", "500ms");
    let b = replica(&db, "replica-b", "500ms");
    let plane = format!("http://{},http://{}", a.addr, b.addr);
    let _agents: Vec<ServerProcess> = [
        ("agent-eu-1", "eu-1", "10.0.1.5"),
        ("agent-eu-2", "eu-2", "10.0.2.5"),
    ]
    .into_iter()
    .map(|(id, region, ip)| {
        ServerProcess::spawn_agent(&[
            "--control-plane",
            &plane,
            "--agent-id",
            id,
            "--region",
            region,
            "--server-ip",
            ip,
        ])
    })
    .collect();
    let mut via_a = client(&a).await;
    let mut via_b = client(&b).await;
    let succeeded = v1::CommandStatus::Succeeded as i32;
    for (id, region) in [
        ("x1", "eu-1"),
        ("x2", "eu-2"),
        ("y1", "eu-1"),
        ("y2", "eu-2"),
    ] {
        create(&mut via_a, id, region).await;
    }
    // Commands through either replica reach agents on either replica.
    assert_eq!(wait_for(&mut via_a, "x1", true).await, succeeded);
    assert_eq!(wait_for(&mut via_b, "x2", true).await, succeeded);
    assert_eq!(wait_for(&mut via_b, "y1", true).await, succeeded);
    assert_eq!(wait_for(&mut via_a, "y2", true).await, succeeded);

    // Replica a drains; its agents move to b; nothing is lost.
    a.signal("TERM");
    assert!(process_exits(&mut a).await.success());
    for id in ["x1", "x2", "y1", "y2"] {
        assert_eq!(wait_for(&mut via_b, id, false).await, succeeded);
    }
    for id in ["x1", "x2"] {
        assert_eq!(wait_for(&mut via_b, id, true).await, succeeded);
    }
    state_becomes(&via_b, "x1", S::Running).await;
    state_becomes(&via_b, "y2", S::Stopped).await;
    let on_b: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM agents WHERE replica_id = 'replica-b' AND disconnect_time IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(on_b, 2);
}

#[tokio::test]
async fn a_replica_rides_out_a_postgresql_restart() {
    let cluster = PrivateCluster::create();
    let db = Arc::new(TestDatabase::create_on(&cluster.url()).await);
    // Heartbeats every 5 s: the restart is far shorter than the ten
    // seconds after which the replica would end its sessions.
    let options = FleetOptions {
        poll_interval: Duration::from_millis(200),
        ..FleetOptions::new(Duration::from_secs(5))
    };
    let app = spawn_replica(db.clone(), options, "replica-a").await;
    app.create(connector("c1", "c1")).await;
    app.create(connector("c2", "c2")).await;
    let mut agent = TestAgent::connect(&app, hello("a1", "eu-2", "10.0.2.7")).await;
    app.start(start_request("c1")).await.unwrap();
    let command = agent.next_command().await;

    cluster.stop();
    // Calls fail at once, saying why and that a retry is safe.
    let status = app.start(start_request("c2")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(error_info(&status).reason, "STORE_UNAVAILABLE");
    assert!(status.message().contains("retry"), "{}", status.message());
    let status = app
        .client
        .clone()
        .get_connector(v1::GetConnectorRequest { id: "c1".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    // The agent answers while the database is down; the stream stays up.
    agent.succeed(&command, S::Running).await;
    agent
        .heartbeat(
            1,
            vec![crate::helpers::status("c1", S::Running, command.generation)],
        )
        .await;

    cluster.start();
    // The held result is recorded without the agent sending it again...
    app.connector_becomes("c1", |c| c.state == S::Running as i32)
        .await;
    assert_eq!(app.command_status(&command.id).await, "SUCCEEDED");
    // ...and the same stream carries the next command.
    let accepted = eventually(Duration::from_secs(30), || async {
        app.start(start_request("c2")).await.ok()
    })
    .await;
    assert_eq!(agent.next_command().await.id, accepted.command.unwrap().id);
    assert_eq!(
        app.count("SELECT session_epoch FROM agents WHERE id = 'a1'")
            .await,
        1
    );
}

#[tokio::test]
async fn a_replica_cut_off_from_postgresql_too_long_sends_its_agents_elsewhere() {
    let cluster = PrivateCluster::create();
    let db = Arc::new(TestDatabase::create_on(&cluster.url()).await);
    // Two missed replica heartbeats (600 ms) and the others could count
    // it dead: it asks its agents to reconnect rather than hold them.
    let app = spawn_replica(
        db.clone(),
        FleetOptions::new(Duration::from_millis(300)),
        "replica-a",
    )
    .await;
    let mut agent = TestAgent::connect(&app, hello("a1", "eu-2", "10.0.2.7")).await;
    cluster.stop();
    match agent.next().await {
        Ok(v1::control_message::Message::Reconnect(reconnect)) => {
            assert!(reconnect.reason.contains("database"), "{reconnect:?}");
        }
        other => panic!("expected reconnect, got {other:?}"),
    }
    cluster.start();
    let agent = eventually(Duration::from_secs(30), || async {
        let first = v1::AgentMessage {
            message: Some(v1::agent_message::Message::Hello(hello(
                "a1", "eu-2", "10.0.2.7",
            ))),
        };
        open_stream(&app, first).await.ok()
    })
    .await;
    drop(agent);
    assert_eq!(
        app.count("SELECT session_epoch FROM agents WHERE id = 'a1'")
            .await,
        2
    );
}
