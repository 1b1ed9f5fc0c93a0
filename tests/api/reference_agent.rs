//! The reference agent (`connector-control agent`) against the real server.

use crate::helpers::*;
use connector_control::agent::{self, AgentConfig, Simulated};
use connector_control::proto::v1::{self, ConnectorState as S};
use std::time::Duration;

fn config(app: &TestApp, agent_id: &str) -> AgentConfig {
    agent_config(app.addr, agent_id)
}

/// Simulated connectors lagging 3 s over a store of one hour.
fn simulated() -> Simulated {
    Simulated::new(Duration::from_secs(3), Duration::from_secs(3600))
}

/// Runs the reference agent in this process until the guard is dropped.
fn run_agent(config: AgentConfig, driver: Simulated) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(agent::run(config, driver, async {
        let _ = stopped.await;
    }));
    stop
}

async fn start_and_wait(
    app: &TestApp,
    request: v1::StartConnectorRequest,
) -> v1::StartConnectorResponse {
    let mut request = tonic::Request::new(v1::StartConnectorRequest {
        wait: true,
        ..request
    });
    request.set_timeout(Duration::from_secs(20));
    app.client
        .clone()
        .start_connector(request)
        .await
        .expect("StartConnector")
        .into_inner()
}

async fn pause_and_wait(app: &TestApp, connector_id: &str) -> v1::PauseConnectorResponse {
    let mut pause = tonic::Request::new(v1::PauseConnectorRequest {
        wait: true,
        ..pause_request(connector_id)
    });
    pause.set_timeout(Duration::from_secs(20));
    app.client
        .clone()
        .pause_connector(pause)
        .await
        .expect("PauseConnector")
        .into_inner()
}

#[tokio::test]
async fn the_reference_agent_runs_and_pauses_connectors_and_reports_them() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let _agent = run_agent(config(&app, "ref-1"), simulated());

    let started = start_and_wait(&app, start_request("c1")).await;
    let connector = started.connector.unwrap();
    assert_eq!(connector.state, S::Running as i32);
    assert_eq!(connector.server_ip, "10.0.2.9");
    // Heartbeats bring latency, checkpoint and the store range.
    let reported = app
        .connector_becomes("c1", |c| c.latency.is_some() && c.store_range.is_some())
        .await;
    assert_eq!(reported.latency.unwrap().seconds, 3);

    let paused = pause_and_wait(&app, "c1").await.connector.unwrap();
    assert_eq!(paused.state, S::Stopped as i32);
    // A stopped connector's last latency is history, not a lag: not shown.
    assert_eq!(paused.latency, None);
    assert_eq!(app.get("c1").await.latency, None);
}

#[tokio::test]
async fn the_reference_agent_fails_a_pull_back_its_store_cannot_serve() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let _agent = run_agent(config(&app, "ref-1"), simulated());
    // The control plane knows no store range for c1 yet: the agent decides.
    let response = start_and_wait(
        &app,
        v1::StartConnectorRequest {
            pull_back_time: Some(timestamp(chrono::Utc::now() - chrono::Duration::hours(2))),
            ..start_request("c1")
        },
    )
    .await;
    let command = response.command.unwrap();
    assert_eq!(command.status, v1::CommandStatus::Failed as i32);
    assert_eq!(command.error_reason, "PULL_BACK_OUT_OF_RANGE");
    let connector = response.connector.unwrap();
    assert_eq!(connector.state, S::Stopped as i32);
    assert!(connector.status_message.contains("PULL_BACK_OUT_OF_RANGE"));
}

#[tokio::test]
async fn a_connector_paused_longer_than_its_store_keeps_data_starts_only_by_an_explicit_skip() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let _agent = run_agent(
        config(&app, "ref-1"),
        Simulated::new(Duration::from_millis(100), Duration::from_secs(2)),
    );
    start_and_wait(&app, start_request("c1")).await;
    pause_and_wait(&app, "c1").await;
    // The store moves on while the connector waits: its checkpoint is
    // soon older than anything the store holds.
    let seconds = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| t.seconds);
    let stale = app
        .connector_becomes("c1", |c| {
            let earliest = c
                .store_range
                .as_ref()
                .and_then(|r| seconds(&r.earliest_time));
            earliest.is_some() && earliest > seconds(&c.checkpoint_time)
        })
        .await;
    assert_eq!(stale.state, S::Stopped as i32);
    let status = assert_error(
        app.start(start_request("c1")).await,
        tonic::Code::FailedPrecondition,
        "CHECKPOINT_OUT_OF_RANGE",
    );
    assert!(
        status.message().contains("skip_to_earliest"),
        "{}",
        status.message()
    );
    assert_eq!(app.get("c1").await.generation, 2, "nothing issued");

    let started = start_and_wait(
        &app,
        v1::StartConnectorRequest {
            skip_to_earliest: true,
            ..start_request("c1")
        },
    )
    .await;
    assert_eq!(
        started.command.unwrap().status,
        v1::CommandStatus::Succeeded as i32
    );
    let running = started.connector.unwrap();
    assert_eq!(running.state, S::Running as i32);
    assert!(
        seconds(&running.checkpoint_time) > seconds(&stale.checkpoint_time),
        "it resumed from the earliest data, not the lost checkpoint"
    );
}

#[tokio::test]
async fn a_restarted_agent_resumes_from_the_recorded_checkpoint_never_from_now() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    // Lagging 3 s: c1's checkpoint is 3 s old when it stops.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let first = tokio::spawn(agent::run(config(&app, "ref-1"), simulated(), async {
        let _ = stopped.await;
    }));
    start_and_wait(&app, start_request("c1")).await;
    let paused = pause_and_wait(&app, "c1").await.connector.unwrap();
    let recorded = paused.checkpoint_time.expect("a recorded checkpoint");
    drop(stop);
    first
        .await
        .unwrap()
        .expect("the first agent stopped cleanly");

    // The agent restarts, knowing nothing of c1, over a store that now
    // keeps only the last second: the recorded checkpoint is gone from it.
    // Resuming "from now" would skip those 3 s of changes silently.
    let _agent = run_agent(
        config(&app, "ref-1"),
        Simulated::new(Duration::from_millis(100), Duration::from_secs(1)),
    );
    let refused = start_and_wait(&app, start_request("c1")).await;
    let command = refused.command.unwrap();
    assert_eq!(
        (command.status, command.error_reason.as_str()),
        (v1::CommandStatus::Failed as i32, "CHECKPOINT_OUT_OF_RANGE"),
        "{}",
        command.error_message
    );
    let connector = refused.connector.unwrap();
    assert_eq!(connector.state, S::Stopped as i32);
    assert_eq!(
        connector.checkpoint_time.as_ref(),
        Some(&recorded),
        "the refused start made up no checkpoint"
    );

    // Skipping on purpose resumes from the earliest data the store holds.
    let skipped = start_and_wait(
        &app,
        v1::StartConnectorRequest {
            skip_to_earliest: true,
            ..start_request("c1")
        },
    )
    .await;
    let running = skipped.connector.unwrap();
    assert_eq!(running.state, S::Running as i32);
    assert!(
        running.checkpoint_time.unwrap().seconds >= recorded.seconds,
        "resumed after the lost checkpoint"
    );
}

#[tokio::test]
async fn the_reference_agent_reconnects_after_the_control_plane_restarts() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let _agent = run_agent(config(&app, "ref-1"), simulated());
    start_and_wait(&app, start_request("c1")).await;

    let app = app.restart_in_place().await;
    app.pause(pause_request("c1")).await.unwrap();
    app.connector_becomes("c1", |c| c.state == S::Stopped as i32)
        .await;
}

#[tokio::test]
async fn the_agent_subcommand_connects_with_its_flags() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_connector-control"))
        .args([
            "agent",
            "--control-plane",
            &format!("http://{}", app.addr),
            "--region",
            "eu-2",
            "--server-ip",
            "10.0.2.11",
            "--agent-id",
            "bin-agent",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawning the agent");
    let response = start_and_wait(&app, start_request("c1")).await;
    let _ = child.kill();
    let _ = child.wait();
    let connector = response.connector.unwrap();
    assert_eq!(connector.state, S::Running as i32);
    assert_eq!(
        (connector.agent_id.as_str(), connector.server_ip.as_str()),
        ("bin-agent", "10.0.2.11")
    );
}
