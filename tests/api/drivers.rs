//! Agents with drivers: capabilities told in hello and checked at call
//! time, a result that breaks a rule refused alone, and a slow driver that
//! holds up nothing but its own connector.

use crate::helpers::*;
use connector_control::agent::driver::{Capabilities, Driver, Observation, Refusal, Start};
use connector_control::agent::{self, Simulated};
use connector_control::proto::v1::agent_service_client::AgentServiceClient;
use connector_control::proto::v1::{self, ConnectorState as S};
use std::sync::Arc;
use std::time::Duration;
use tonic::Code;

const RUNNING: i32 = S::Running as i32;

fn without_pull_back(agent_id: &str) -> v1::Hello {
    v1::Hello {
        capabilities: Some(v1::AgentCapabilities {
            driver: "process".to_owned(),
            pull_back: false,
        }),
        ..hello(agent_id, "eu-2", "10.0.2.7")
    }
}

/// ListAgents: every agent, with its capabilities.
async fn agents(app: &TestApp) -> Vec<v1::Agent> {
    AgentServiceClient::new(app.channel().await)
        .list_agents(v1::ListAgentsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .agents
}

fn pull_back(id: &str, validate_only: bool) -> v1::StartConnectorRequest {
    v1::StartConnectorRequest {
        pull_back_time: Some(timestamp(
            chrono::Utc::now() - chrono::Duration::minutes(10),
        )),
        validate_only,
        ..start_request(id)
    }
}

#[tokio::test]
async fn a_pull_back_the_regions_agents_cannot_do_is_refused_at_call_time_dry_runs_included() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let mut agent = TestAgent::connect(&app, without_pull_back("a1")).await;

    for validate_only in [true, false] {
        let status = assert_error(
            app.start(pull_back("c1", validate_only)).await,
            Code::FailedPrecondition,
            "PULL_BACK_NOT_SUPPORTED",
        );
        let info = error_info(&status);
        assert_eq!(info.metadata["agent_ids"], "a1");
        assert_eq!(info.metadata["region"], "eu-2");
        assert!(
            status.message().contains("without pull_back_time"),
            "{status:?}"
        );
    }
    // Nothing was sent or written: a start without pull-back is the
    // connector's first command.
    app.start(start_request("c1")).await.unwrap();
    let command = agent.next_command().await;
    assert_eq!((command.generation, command.pull_back_time), (1, None));

    let agents = agents(&app).await;
    let capabilities = agents[0].capabilities.clone().unwrap();
    assert_eq!(
        (capabilities.driver.as_str(), capabilities.pull_back),
        ("process", false)
    );
}

#[tokio::test]
async fn a_disconnected_agent_stands_in_no_way_and_one_that_says_nothing_can_pull_back() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let unable = TestAgent::connect(&app, without_pull_back("a2")).await;
    assert_error(
        app.start(pull_back("c1", true)).await,
        Code::FailedPrecondition,
        "PULL_BACK_NOT_SUPPORTED",
    );
    // Once it has gone, its capabilities count no more.
    drop(unable);
    eventually(Duration::from_secs(10), || async {
        app.start(pull_back("c1", true)).await.ok()
    })
    .await;
    // An agent from before capabilities were told: able to pull back.
    let mut agent = TestAgent::connect(&app, hello("a1", "eu-2", "10.0.2.7")).await;
    app.start(pull_back("c1", false)).await.unwrap();
    assert!(agent.next_command().await.pull_back_time.is_some());
}

#[tokio::test]
async fn a_result_that_breaks_a_rule_is_refused_alone_and_the_session_goes_on() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let mut agent = TestAgent::connect(&app, hello("a1", "eu-2", "10.0.2.7")).await;
    app.start(start_request("c1")).await.unwrap();
    let command = agent.next_command().await;

    // A failed START whose status has no state.
    let mut stateless = status("c1", S::Unspecified, command.generation);
    stateless.state = 0;
    agent
        .send(v1::agent_message::Message::Result(v1::CommandResult {
            command_id: command.id.clone(),
            success: false,
            error_reason: "BOOM".to_owned(),
            status: Some(stateless),
            ..Default::default()
        }))
        .await;
    let refused = match agent.next().await {
        Ok(v1::control_message::Message::ReportRefused(refused)) => refused,
        other => panic!("expected report_refused, got {other:?}"),
    };
    assert_eq!(refused.command_id, command.id);
    let fields: Vec<_> = refused
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, ["result.status.state"]);
    assert_eq!(app.command_status(&command.id).await, "DELIVERED");

    // The same session answers again, correctly.
    agent.succeed(&command, S::Running).await;
    app.connector_becomes("c1", |c| c.state == RUNNING).await;
    assert_eq!(app.command_status(&command.id).await, "SUCCEEDED");
}

#[tokio::test]
async fn a_connector_its_agent_reports_failed_for_good_is_not_restarted() {
    let (app, agent, command) = running_c1().await;

    let mut failed = status("c1", S::Failed, command.generation);
    failed.message = "the process exited with code 78".to_owned();
    failed.retriable = Some(false);
    agent.heartbeat(1, vec![failed]).await;
    let stopped = app
        .connector_becomes("c1", |c| c.state == S::Stopped as i32)
        .await;
    assert_eq!(stopped.desired_state, S::Stopped as i32);
    assert!(
        stopped.status_message.contains("failed for good"),
        "{}",
        stopped.status_message
    );
}

/// The simulation, except that starting `slow` waits until `release` is
/// notified (a runtime that takes its time to come up).
struct SlowStart {
    inner: Simulated,
    slow: &'static str,
    release: Arc<tokio::sync::Notify>,
}

impl Driver for SlowStart {
    fn name(&self) -> &str {
        "slow-start"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn start(&self, start: Start) -> Result<(), Refusal> {
        if start.connector_id == self.slow {
            self.release.notified().await;
        }
        self.inner.start(start).await
    }
    async fn pause(&self, connector_id: &str, generation: i64) -> Result<(), Refusal> {
        self.inner.pause(connector_id, generation).await
    }
    fn observe(&self) -> Vec<Observation> {
        self.inner.observe()
    }
}

#[tokio::test]
async fn a_slow_start_holds_up_no_other_connector_and_no_heartbeat() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    app.create(connector("c2", "payments")).await;
    let release = Arc::new(tokio::sync::Notify::new());
    let driver = SlowStart {
        inner: Simulated::new(Duration::from_secs(1), Duration::from_secs(3600)),
        slow: "c1",
        release: release.clone(),
    };
    let config = agent_config(app.addr, "ref-1");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(agent::run(config, driver, async {
        let _ = stopped.await;
    }));

    app.start(start_request("c1")).await.unwrap();
    app.start(start_request("c2")).await.unwrap();
    // c2 runs while c1's start is still with the driver.
    app.connector_becomes("c2", |c| c.state == RUNNING).await;
    assert_eq!(app.get("c1").await.state, S::Starting as i32);
    // Heartbeats go on meanwhile: c2's reported latency arrives.
    app.connector_becomes("c2", |c| c.latency.is_some()).await;
    assert_eq!(app.get("c1").await.state, S::Starting as i32);

    release.notify_one();
    app.connector_becomes("c1", |c| c.state == RUNNING).await;
    drop(stop);
}

/// The example driver's binary, which `cargo test` builds beside the
/// server's.
fn example(name: &str) -> std::path::PathBuf {
    let server = std::path::Path::new(env!("CARGO_BIN_EXE_connector-control"));
    let path = server.parent().unwrap().join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo test` builds the examples (with `--test api` alone, run `cargo build --examples` first)",
        path.display()
    );
    path
}

/// Kills the child when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_example_custom_driver_runs_connectors_end_to_end() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let _agent = Killed(
        std::process::Command::new(example("custom_driver"))
            .args([
                &format!("http://{}", app.addr),
                "eu-2",
                "ticker-1",
                "10.0.2.9",
            ])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Connected, it tells what its driver can do.
    let agents = eventually(Duration::from_secs(20), || async {
        let agents = agents(&app).await;
        (!agents.is_empty()).then_some(agents)
    })
    .await;
    let capabilities = agents[0].capabilities.clone().unwrap();
    assert_eq!(
        (capabilities.driver.as_str(), capabilities.pull_back),
        ("ticker", false)
    );
    assert_error(
        app.start(pull_back("c1", false)).await,
        Code::FailedPrecondition,
        "PULL_BACK_NOT_SUPPORTED",
    );

    app.start(start_request("c1")).await.unwrap();
    let running = app
        .connector_becomes("c1", |c| {
            c.state == RUNNING && c.status_message.contains("rows applied")
        })
        .await;
    assert_eq!(running.agent_id, "ticker-1");
    app.pause(pause_request("c1")).await.unwrap();
    app.connector_becomes("c1", |c| c.state == S::Stopped as i32)
        .await;
}

#[tokio::test]
async fn a_heartbeat_that_breaks_a_rule_is_refused_and_the_next_one_counts() {
    let (app, mut agent, command) = running_c1().await;

    let mut bad = status("c1", S::Running, command.generation);
    bad.latency = Some(prost_types::Duration {
        seconds: -5,
        nanos: 0,
    });
    agent.heartbeat(7, vec![bad]).await;
    let refused = match agent.next().await {
        Ok(v1::control_message::Message::ReportRefused(refused)) => refused,
        other => panic!("expected report_refused, got {other:?}"),
    };
    assert_eq!(refused.heartbeat_sequence, 7);
    assert_eq!(
        refused.field_violations[0].field,
        "heartbeat.connectors[0].latency"
    );
    assert_eq!(
        app.get("c1").await.latency,
        None,
        "nothing of it was recorded"
    );

    let mut good = status("c1", S::Running, command.generation);
    good.latency = Some(prost_types::Duration {
        seconds: 5,
        nanos: 0,
    });
    agent.heartbeat(8, vec![good]).await;
    let reported = app.connector_becomes("c1", |c| c.latency.is_some()).await;
    assert_eq!(reported.latency.unwrap().seconds, 5);
}
