//! Agents over real streams: sessions, delivery, results, liveness.

use crate::helpers::*;
use connector_control::proto::v1::{self, ConnectorState as S};
use std::time::Duration;
use tonic::Code;

const RUNNING: i32 = S::Running as i32;

/// An app with connector c1 (destination region eu-2) and agent a1 there.
async fn app_with_agent() -> (TestApp, TestAgent) {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let agent = TestAgent::connect(&app, hello("a1", "eu-2", "10.0.2.7")).await;
    (app, agent)
}

/// Starts c1 through its agent: returns the command, answered.
async fn run_c1(app: &TestApp, agent: &mut TestAgent) -> v1::Command {
    app.start(start_request("c1")).await.unwrap();
    let command = agent.next_command().await;
    agent.succeed(&command, S::Running).await;
    app.connector_becomes("c1", |c| c.state == RUNNING).await;
    command
}

#[tokio::test]
async fn welcome_carries_the_session_and_the_heartbeat_interval() {
    let (_app, agent) = app_with_agent().await;
    assert!(!agent.welcome.session_id.is_empty());
    assert_eq!(agent.welcome.session_epoch, 1);
    let interval = agent.welcome.heartbeat_interval.unwrap();
    assert_eq!(
        std::time::Duration::try_from(interval).unwrap(),
        HEARTBEAT_INTERVAL
    );
}

#[tokio::test]
async fn a_first_message_other_than_hello_is_refused() {
    let app = spawn_app().await;
    let heartbeat = v1::AgentMessage {
        message: Some(v1::agent_message::Message::Heartbeat(
            v1::Heartbeat::default(),
        )),
    };
    let status = open_stream(&app, heartbeat).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(error_info(&status).reason, "HELLO_REQUIRED");

    let bad = v1::AgentMessage {
        message: Some(v1::agent_message::Message::Hello(hello(
            "a1",
            "EU",
            "not-an-ip",
        ))),
    };
    let status = open_stream(&app, bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        ["hello.region", "hello.server_ip"]
    );
}

#[tokio::test]
async fn a_start_reaches_the_agent_and_its_result_makes_the_connector_running() {
    let (app, mut agent) = app_with_agent().await;
    let accepted = app.start(start_request("c1")).await.unwrap();
    let command = agent.next_command().await;
    assert_eq!(command.id, accepted.command.unwrap().id);
    assert_eq!(command.kind, v1::CommandKind::Start as i32);
    assert_eq!((command.generation, command.region.as_str()), (1, "eu-2"));
    assert_eq!(app.command_status(&command.id).await, "DELIVERED");

    agent.succeed(&command, S::Running).await;
    let running = app.connector_becomes("c1", |c| c.state == RUNNING).await;
    assert_eq!(running.agent_id, "a1");
    assert_eq!(running.server_ip, "10.0.2.7");
    assert!(
        running.last_heartbeat_time.is_some(),
        "the agent's last heartbeat"
    );
    assert_eq!(app.command_status(&command.id).await, "SUCCEEDED");
}

#[tokio::test]
async fn pause_with_wait_returns_once_the_agent_confirms() {
    let (app, mut agent) = app_with_agent().await;
    run_c1(&app, &mut agent).await;
    let waiting = {
        let mut client = app.client.clone();
        tokio::spawn(async move {
            let mut request = tonic::Request::new(v1::PauseConnectorRequest {
                wait: true,
                ..pause_request("c1")
            });
            request.set_timeout(std::time::Duration::from_secs(20));
            client.pause_connector(request).await
        })
    };
    let pause = agent.next_command().await;
    assert_eq!(pause.kind, v1::CommandKind::Pause as i32);
    agent.succeed(&pause, S::Stopped).await;
    let response = waiting.await.unwrap().unwrap().into_inner();
    assert_eq!(
        response.command.unwrap().status,
        v1::CommandStatus::Succeeded as i32
    );
    assert_eq!(response.connector.unwrap().state, S::Stopped as i32);
}

#[tokio::test]
async fn an_agent_never_receives_another_regions_commands() {
    let app = spawn_app().await;
    app.create(connector("c1", "eu-2 connector")).await;
    let mut eu1 = connector("c2", "eu-1 connector");
    eu1.destination.as_mut().unwrap().region = "eu-1".to_owned();
    app.create(eu1).await;
    let mut agent_eu1 = TestAgent::connect(&app, hello("a-eu1", "eu-1", "10.0.1.7")).await;

    // c1's start waits: no agent of eu-2 is connected.
    let start_c1 = app
        .start(start_request("c1"))
        .await
        .unwrap()
        .command
        .unwrap();
    app.start(start_request("c2")).await.unwrap();
    // The eu-1 agent's first command is c2's: it was never offered c1's.
    assert_eq!(agent_eu1.next_command().await.connector_id, "c2");
    assert_eq!(app.command_status(&start_c1.id).await, "PENDING");

    let mut agent_eu2 = TestAgent::connect(&app, hello("a-eu2", "eu-2", "10.0.2.7")).await;
    assert_eq!(agent_eu2.next_command().await.id, start_c1.id);
}

#[tokio::test]
async fn pull_back_is_checked_against_the_store_range_the_agent_reports() {
    let (app, mut agent) = app_with_agent().await;
    let command = run_c1(&app, &mut agent).await;
    let earliest = chrono::Utc::now() - chrono::Duration::hours(2);
    let mut report = status("c1", S::Running, command.generation);
    report.store_range = Some(v1::TimeRange {
        earliest_time: Some(timestamp(earliest)),
        latest_time: Some(timestamp(chrono::Utc::now())),
    });
    agent.heartbeat(1, vec![report]).await;
    app.connector_becomes("c1", |c| c.store_range.is_some())
        .await;

    app.pause(pause_request("c1")).await.unwrap();
    let pause = agent.next_command().await;
    agent.succeed(&pause, S::Stopped).await;
    app.connector_becomes("c1", |c| c.state == S::Stopped as i32)
        .await;

    let status = assert_error(
        app.start(v1::StartConnectorRequest {
            pull_back_time: Some(timestamp(earliest - chrono::Duration::minutes(5))),
            ..start_request("c1")
        })
        .await,
        Code::FailedPrecondition,
        "PULL_BACK_OUT_OF_RANGE",
    );
    assert!(status.message().contains("choose a pull_back_time"));
}

#[tokio::test]
async fn a_command_is_delivered_again_after_the_agent_drops_before_answering() {
    let (app, mut agent) = app_with_agent().await;
    app.start(start_request("c1")).await.unwrap();
    let first = agent.next_command().await;
    drop(agent);

    let mut again = TestAgent::connect(&app, hello("a1", "eu-2", "10.0.2.7")).await;
    let second = again.next_command().await;
    assert_eq!(second.id, first.id);
    assert_eq!(second.generation, first.generation);
    again.succeed(&second, S::Running).await;
    app.connector_becomes("c1", |c| c.state == RUNNING).await;
}

#[tokio::test]
async fn a_duplicate_result_changes_nothing() {
    let (app, mut agent) = app_with_agent().await;
    let start = run_c1(&app, &mut agent).await;
    agent
        .fail(&start, "LATE", "a duplicate that disagrees")
        .await;
    // A heartbeat after the duplicate: once it is recorded, so is the
    // duplicate (one stream, in order).
    let mut marker = status("c1", S::Running, start.generation);
    marker.message = "after the duplicate".to_owned();
    agent.heartbeat(1, vec![marker]).await;
    let connector = app
        .connector_becomes("c1", |c| c.status_message == "after the duplicate")
        .await;
    assert_eq!(connector.state, RUNNING);
    assert_eq!(app.command_status(&start.id).await, "SUCCEEDED");
}

#[tokio::test]
async fn a_newer_session_ends_and_fences_the_older_one() {
    let (app, mut old) = app_with_agent().await;
    app.start(start_request("c1")).await.unwrap();
    let command = old.next_command().await;

    let mut new = TestAgent::connect(&app, hello("a1", "eu-2", "10.0.2.7")).await;
    assert_eq!(new.welcome.session_epoch, old.welcome.session_epoch + 1);
    let ended = old.next().await.unwrap_err();
    assert_eq!(ended.code(), Code::Aborted);
    assert_eq!(error_info(&ended).reason, "SESSION_SUPERSEDED");

    // The old session's late answer changes nothing; the new one receives
    // the command again and decides.
    old.try_fail(&command, "LATE", "from the old session").await;
    let redelivered = new.next_command().await;
    assert_eq!(redelivered.id, command.id);
    assert_eq!(app.get("c1").await.state, S::Starting as i32);
    new.fail(&redelivered, "BROKEN", "from the new session")
        .await;
    let failed = app
        .connector_becomes("c1", |c| c.state == S::Failed as i32)
        .await;
    assert!(failed.status_message.contains("from the new session"));
}

#[tokio::test]
async fn a_command_accepted_without_agents_survives_a_restart_and_is_delivered() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let accepted = app
        .start(start_request("c1"))
        .await
        .unwrap()
        .command
        .unwrap();
    let app = app.restart().await;
    let mut agent = TestAgent::connect(&app, hello("a1", "eu-2", "10.0.2.7")).await;
    assert_eq!(agent.next_command().await.id, accepted.id);
}

#[tokio::test]
async fn a_failed_start_leaves_the_connector_failed_and_meant_to_run_with_the_agents_message() {
    let (app, mut agent) = app_with_agent().await;
    app.start(start_request("c1")).await.unwrap();
    let command = agent.next_command().await;
    agent
        .fail(
            &command,
            "DESTINATION_UNREACHABLE",
            "10.0.2.30:2881 refused the connection",
        )
        .await;
    let failed = app
        .connector_becomes("c1", |c| c.state == S::Failed as i32)
        .await;
    assert_eq!(
        failed.desired_state,
        S::Running as i32,
        "to be started again"
    );
    assert!(failed.status_message.contains("DESTINATION_UNREACHABLE"));
    assert!(failed.status_message.contains("refused the connection"));
    assert_eq!(app.command_status(&command.id).await, "FAILED");
    // It can be started again by hand.
    app.start(start_request("c1")).await.unwrap();
}

#[tokio::test]
async fn a_start_no_retry_fixes_leaves_the_connector_stopped() {
    let (app, mut agent) = app_with_agent().await;
    app.start(start_request("c1")).await.unwrap();
    let command = agent.next_command().await;
    agent
        .fail(
            &command,
            "PULL_BACK_OUT_OF_RANGE",
            "the store holds data from 10:00 on",
        )
        .await;
    let stopped = app
        .connector_becomes("c1", |c| c.state == S::Stopped as i32)
        .await;
    assert_eq!(stopped.desired_state, S::Stopped as i32);
    assert!(stopped.status_message.contains("PULL_BACK_OUT_OF_RANGE"));
    assert!(stopped.next_restart_time.is_none());
    app.start(start_request("c1")).await.unwrap();
}

#[tokio::test]
async fn a_silent_agent_goes_offline_and_its_connectors_show_unknown_until_it_reports() {
    use connector_control::proto::v1::agent_service_client::AgentServiceClient;
    let (app, mut agent) = app_with_agent().await;
    let command = run_c1(&app, &mut agent).await;
    let mut agents = AgentServiceClient::new(app.channel().await);
    let list = agents
        .list_agents(v1::ListAgentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.agents[0].state, v1::AgentState::Online as i32);
    assert_eq!(list.agents[0].connectors, 1);

    // No heartbeats from here on.
    app.connector_becomes("c1", |c| c.state == S::Unknown as i32)
        .await;
    let list = agents
        .list_agents(v1::ListAgentsRequest {
            region: "eu-2".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.agents[0].state, v1::AgentState::Offline as i32);
    let regions = app
        .client
        .clone()
        .list_regions(v1::ListRegionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let eu2 = regions.regions.iter().find(|r| r.name == "eu-2").unwrap();
    assert_eq!((eu2.online_agents, eu2.connectors), (0, 1));

    agent
        .heartbeat(1, vec![status("c1", S::Running, command.generation)])
        .await;
    app.connector_becomes("c1", |c| c.state == RUNNING).await;
}

#[tokio::test]
async fn an_agent_back_without_its_connector_leaves_it_failed_and_its_restart_policy_starts_it() {
    let app = spawn_app().await;
    let mut c1 = connector("c1", "orders");
    c1.restart_policy = Some(v1::RestartPolicy {
        initial_backoff: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    });
    app.create(c1).await;
    let mut agent = TestAgent::connect(&app, hello("a1", "eu-2", "10.0.2.7")).await;
    run_c1(&app, &mut agent).await;
    // Killed: its connector goes UNKNOWN, and Start and Pause wait.
    drop(agent);
    app.connector_becomes("c1", |c| c.state == S::Unknown as i32)
        .await;

    // A new process of the agent, running nothing.
    let mut back = TestAgent::connect(&app, hello("a1", "eu-2", "10.0.2.7")).await;
    let _alive = back.keep_alive();
    let failed = app
        .connector_becomes("c1", |c| c.state == S::Failed as i32)
        .await;
    assert!(
        failed
            .status_message
            .contains("agent a1 reconnected without it"),
        "{}",
        failed.status_message
    );
    // Meant to run: the restart policy starts it again, on the agent.
    let restart = back.next_command().await;
    assert_eq!(restart.kind, v1::CommandKind::Start as i32);
    assert_eq!(restart.principal, "system:auto-restart");
    back.succeed(&restart, S::Running).await;
    app.connector_becomes("c1", |c| c.state == RUNNING).await;
}

async fn mark_stopped(
    app: &TestApp,
    request: v1::MarkConnectorStoppedRequest,
) -> Result<v1::MarkConnectorStoppedResponse, tonic::Status> {
    app.client
        .clone()
        .mark_connector_stopped(request)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_connector_whose_agent_is_gone_is_marked_stopped_and_runs_elsewhere() {
    let (app, mut a1) = app_with_agent().await;
    let first = run_c1(&app, &mut a1).await;
    drop(a1);
    app.connector_becomes("c1", |c| c.state == S::Unknown as i32)
        .await;
    // Start and Pause wait for the agent; mark stopped is the way out.
    assert_error(
        app.start(start_request("c1")).await,
        Code::FailedPrecondition,
        "CONNECTOR_NOT_STOPPED",
    );
    let request = |reason: &str, validate_only| v1::MarkConnectorStoppedRequest {
        id: "c1".to_owned(),
        reason: reason.to_owned(),
        request_id: "inc-7-mark".to_owned(),
        validate_only,
    };
    let refused = assert_error(
        mark_stopped(&app, request("", false)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&refused), ["reason"]);
    let dry = mark_stopped(&app, request("INC-7 host lost", true))
        .await
        .unwrap();
    assert!(dry.validate_only);
    assert_eq!(dry.connector.unwrap().state, S::Stopped as i32);
    assert_eq!(app.get("c1").await.state, S::Unknown as i32, "a dry run");
    let marked = mark_stopped(&app, request("INC-7 host lost", false))
        .await
        .unwrap()
        .connector
        .unwrap();
    assert_eq!(marked.state, S::Stopped as i32);
    assert!(marked.status_message.contains("INC-7 host lost"));
    assert_eq!(
        app.count(
            "SELECT count(*) FROM audit_events
             WHERE action = 'MARK_CONNECTOR_STOPPED' AND outcome = 'OK'"
        )
        .await,
        1
    );

    // Another agent of the region runs it now.
    let mut a2 = TestAgent::connect(&app, hello("a2", "eu-2", "10.0.2.8")).await;
    let _alive = a2.keep_alive();
    app.start(start_request("c1")).await.unwrap();
    let command = a2.next_command().await;
    a2.succeed(&command, S::Running).await;
    app.connector_becomes("c1", |c| c.state == RUNNING && c.agent_id == "a2")
        .await;
    // The lost agent comes back still running the old generation: it has
    // no say any more (its hello is recorded before its welcome).
    let mut a1 = TestAgent::connect(
        &app,
        v1::Hello {
            connectors: vec![status("c1", S::Running, first.generation)],
            ..hello("a1", "eu-2", "10.0.2.7")
        },
    )
    .await;
    let after = app.get("c1").await;
    assert_eq!((after.state, after.agent_id.as_str()), (RUNNING, "a2"));
    // And it is told to stop its copy, at the connector's generation (newer
    // than the one it runs); its answer changes nothing.
    let stop = a1.next_command().await;
    assert_eq!(
        (stop.connector_id.as_str(), stop.kind, stop.generation),
        ("c1", v1::CommandKind::Pause as i32, after.generation)
    );
    a1.succeed(&stop, S::Stopped).await;
    let still = app.get("c1").await;
    assert_eq!((still.state, still.agent_id.as_str()), (RUNNING, "a2"));
    assert!(
        app.count("SELECT count(*) FROM commands WHERE id LIKE 'stop-stray-%'")
            .await
            == 0,
        "the control plane's own stop is kept nowhere"
    );
}

#[tokio::test]
async fn mark_stopped_is_refused_while_the_agent_is_online() {
    let (app, mut agent) = app_with_agent().await;
    let _alive = agent.keep_alive();
    run_c1(&app, &mut agent).await;
    let status = assert_error(
        mark_stopped(
            &app,
            v1::MarkConnectorStoppedRequest {
                id: "c1".to_owned(),
                reason: "INC-8".to_owned(),
                ..Default::default()
            },
        )
        .await,
        Code::FailedPrecondition,
        "AGENT_ONLINE",
    );
    assert_eq!(error_info(&status).metadata["agent_id"], "a1");
    assert!(status.message().contains("pause it instead"));
    assert_eq!(app.get("c1").await.state, RUNNING);
}

#[tokio::test]
async fn a_connector_a_heartbeat_stops_listing_is_not_running() {
    let (app, mut agent) = app_with_agent().await;
    let command = run_c1(&app, &mut agent).await;
    agent
        .heartbeat(1, vec![status("c1", S::Running, command.generation)])
        .await;
    // The next heartbeat lists nothing: the connector crashed away.
    agent.heartbeat(2, Vec::new()).await;
    let failed = app
        .connector_becomes("c1", |c| c.state == S::Failed as i32)
        .await;
    assert!(
        failed
            .status_message
            .contains("agent a1 stopped reporting it"),
        "{}",
        failed.status_message
    );
}

#[tokio::test]
async fn a_result_for_an_older_generation_does_not_override_a_newer_pause() {
    let (app, mut agent) = app_with_agent().await;
    app.start(start_request("c1")).await.unwrap();
    let start = agent.next_command().await;
    // Paused before the agent answered the (delivered) start: the pause
    // supersedes it and is handed over at once.
    app.pause(pause_request("c1")).await.unwrap();
    let pause = agent.next_command().await;
    assert_eq!(pause.kind, v1::CommandKind::Pause as i32);
    assert_eq!(app.command_status(&start.id).await, "SUPERSEDED");
    // The start's late answer is recorded, and the pause still holds.
    agent.succeed(&start, S::Running).await;
    eventually(Duration::from_secs(10), || async {
        let late: String = app
            .db
            .client()
            .await
            .query_one(
                "SELECT late_result FROM commands WHERE id = $1",
                &[&start.id],
            )
            .await
            .unwrap()
            .get(0);
        (late == "SUCCEEDED").then_some(())
    })
    .await;
    let c1 = app.get("c1").await;
    assert_eq!(
        (c1.state, c1.desired_state),
        (S::Pausing as i32, S::Stopped as i32)
    );
    assert_eq!(app.command_status(&start.id).await, "SUPERSEDED");
    agent.succeed(&pause, S::Stopped).await;
    app.connector_becomes("c1", |c| c.state == S::Stopped as i32)
        .await;
}

#[tokio::test]
async fn list_regions_counts_online_agents_and_connectors() {
    let (app, _agent) = app_with_agent().await;
    let regions = app
        .client
        .clone()
        .list_regions(v1::ListRegionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .regions;
    let eu2 = regions.iter().find(|r| r.name == "eu-2").unwrap();
    assert_eq!((eu2.online_agents, eu2.connectors), (1, 1));
}

#[tokio::test]
async fn after_a_reconnect_the_agent_is_handed_the_newest_command_only() {
    let (app, mut agent) = app_with_agent().await;
    app.start(start_request("c1")).await.unwrap();
    let start = agent.next_command().await;
    drop(agent);
    app.pause(pause_request("c1")).await.unwrap();

    // The pause, not the start it superseded: one step to what the
    // operator asked.
    let mut again = TestAgent::connect(&app, hello("a1", "eu-2", "10.0.2.7")).await;
    let first = again.next_command().await;
    assert_eq!(
        (first.kind, first.generation),
        (v1::CommandKind::Pause as i32, 2)
    );
    assert_eq!(app.command_status(&start.id).await, "SUPERSEDED");
    again.succeed(&first, S::Stopped).await;
    app.connector_becomes("c1", |c| c.state == S::Stopped as i32)
        .await;
}

#[tokio::test]
async fn unowned_commands_go_to_the_least_loaded_agent_of_the_region() {
    let (app, mut a1) = app_with_agent().await;
    run_c1(&app, &mut a1).await;
    let mut a2 = TestAgent::connect(&app, hello("a2", "eu-2", "10.0.2.8")).await;
    app.create(connector("c2", "payments")).await;
    app.start(start_request("c2")).await.unwrap();
    // a1 runs c1; a2 runs nothing: c2 goes to a2.
    let command = a2.next_command().await;
    assert_eq!(command.connector_id, "c2");
    a2.succeed(&command, S::Running).await;
    let c2 = app.connector_becomes("c2", |c| c.state == RUNNING).await;
    assert_eq!(c2.agent_id, "a2");
}

#[tokio::test]
async fn a_pause_goes_to_the_agent_whose_start_was_answered_late() {
    let (app, mut a1) = app_with_agent().await;
    app.start(start_request("c1")).await.unwrap();
    let start = a1.next_command().await;
    // A second, idle agent joins: less loaded than a1.
    let _a2 = TestAgent::connect(&app, hello("a2", "eu-2", "10.0.2.8")).await;
    app.pause(pause_request("c1")).await.unwrap();
    // a1 holds the start it may be carrying out, so the pause must reach
    // a1, not a2, before and whatever a1 answers.
    let pause = a1.next_command().await;
    assert_eq!(pause.kind, v1::CommandKind::Pause as i32);
    a1.succeed(&start, S::Running).await;
    app.connector_becomes("c1", |c| c.agent_id == "a1").await;
}

#[tokio::test]
async fn an_agent_that_stops_reading_does_not_hold_up_other_agents() {
    let (app, mut fast) = app_with_agent().await;
    // 300 connectors of eu-9 with pending starts, for an agent that never
    // reads its stream (tiny HTTP/2 windows fill at once).
    app.sql(
        "INSERT INTO connectors (id, name, project_id, project_name, name_folded,
            project_name_folded, kind, source_type, source_region, source_address,
            destination_type, destination_region, destination_address, region, state,
            desired_state, generation)
         SELECT 'slow-' || n, 'slow ' || n, 'p', 'P', 'slow ' || n, 'p', 'INCREMENTAL_SYNC',
                'MYSQL', 'eu-9', 'h:1', 'MYSQL', 'eu-9', 'h:2', 'eu-9', 'STARTING', 'RUNNING', 1
         FROM generate_series(1, 300) AS n",
    )
    .await;
    app.sql(
        "INSERT INTO commands (id, connector_id, kind, region, previous_region, generation, status)
         SELECT 'slow-command-' || n, 'slow-' || n, 'START', 'eu-9', 'eu-9', 1, 'PENDING'
         FROM generate_series(1, 300) AS n",
    )
    .await;
    let tiny = tonic::transport::Endpoint::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .initial_stream_window_size(Some(1024))
        .initial_connection_window_size(Some(1024))
        .connect()
        .await
        .unwrap();
    let _slow = TestAgent::connect_to(tiny, hello("slow", "eu-9", "10.0.9.1")).await;
    // Wait until the slow agent's queue is full and the rest stays pending.
    eventually(std::time::Duration::from_secs(10), || async {
        let delivered = app
            .count("SELECT count(*) FROM commands WHERE region = 'eu-9' AND status = 'DELIVERED'")
            .await;
        (delivered > 0).then_some(())
    })
    .await;

    app.start(start_request("c1")).await.unwrap();
    assert_eq!(fast.next_command().await.connector_id, "c1");
    assert!(
        app.count("SELECT count(*) FROM commands WHERE region = 'eu-9' AND status = 'PENDING'")
            .await
            > 0,
        "a slow agent's commands wait in the database, not in memory"
    );
}

#[tokio::test]
async fn writes_for_a_superseded_session_are_refused() {
    use connector_control::domain::{CommandReport, Hello, ObservedStatus};
    use connector_control::store::prelude::*;
    use connector_control::store::{PgStore, StoreError};
    let (app, _agent) = app_with_agent().await;
    let store = PgStore::connect(&app.db.url, 2).await.unwrap();
    let hello = Hello {
        agent_id: "a9".to_owned(),
        instance_id: "i".to_owned(),
        region: "eu-2".to_owned(),
        server_ip: "10.0.2.9".to_owned(),
        version: String::new(),
        connectors: Vec::new(),
        capabilities: Default::default(),
        actor: Default::default(),
    };
    let old = store.open_session(&hello).await.unwrap();
    let new = store.open_session(&hello).await.unwrap();
    assert_eq!(new.epoch, old.epoch + 1);
    let status = ObservedStatus {
        connector_id: "c1".to_owned(),
        state: connector_control::domain::ConnectorState::Running,
        checkpoint_time: None,
        latency: None,
        store_range: None,
        generation: 9,
        message: "from the old session".to_owned(),
        retriable: None,
    };
    let refused = store.record_statuses(&old, &[status]).await.unwrap_err();
    assert!(matches!(refused, StoreError::Fenced { .. }), "{refused:?}");
    let report = CommandReport {
        retriable: None,
        trace_context: Default::default(),
        command_id: "any".to_owned(),
        success: true,
        error_reason: String::new(),
        error_message: String::new(),
        status: None,
    };
    let refused = store.complete_command(&old, &report).await.unwrap_err();
    assert!(matches!(refused, StoreError::Fenced { .. }), "{refused:?}");
    assert_eq!(app.get("c1").await.status_message, "");
}
