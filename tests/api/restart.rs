//! Restart policies: set on create, changed with UpdateRestartPolicy,
//! audited, and cleared by the changes operators make.

use crate::helpers::*;
use connector_control::proto::v1;
use tonic::Code;

fn seconds(s: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: s,
        nanos: 0,
    })
}

async fn update(
    app: &TestApp,
    request: v1::UpdateRestartPolicyRequest,
) -> Result<v1::Connector, tonic::Status> {
    app.client
        .clone()
        .update_restart_policy(request)
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn a_new_connector_restarts_on_failure_by_default_and_may_say_otherwise() {
    let app = spawn_app().await;
    let default = app.create(connector("c1", "orders")).await;
    let policy = default.restart_policy.unwrap();
    assert_eq!(policy.mode, v1::RestartMode::OnFailure as i32);
    assert_eq!(policy.max_restarts, 0, "unlimited");
    assert_eq!(policy.initial_backoff, seconds(10));
    assert_eq!(policy.max_backoff, seconds(300));
    assert_eq!(policy.reset_after, seconds(600));
    assert_eq!(default.restart_count, 0);
    assert!(default.next_restart_time.is_none());

    let never = app
        .create(v1::Connector {
            restart_policy: Some(v1::RestartPolicy {
                mode: v1::RestartMode::Never as i32,
                ..Default::default()
            }),
            ..connector("c2", "billing")
        })
        .await;
    let policy = never.restart_policy.unwrap();
    assert_eq!(policy.mode, v1::RestartMode::Never as i32);
    assert_eq!(policy.initial_backoff, seconds(10), "unset fields default");
    assert_eq!(app.get("c2").await.restart_policy, Some(policy));
}

#[tokio::test]
async fn update_restart_policy_changes_it_once_and_audits_it() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let request = v1::UpdateRestartPolicyRequest {
        id: "c1".to_owned(),
        restart_policy: Some(v1::RestartPolicy {
            mode: v1::RestartMode::OnFailure as i32,
            max_restarts: 5,
            initial_backoff: seconds(30),
            max_backoff: seconds(600),
            reset_after: seconds(3600),
        }),
        request_id: "policy-1".to_owned(),
    };
    let updated = update(&app, request.clone()).await.unwrap();
    let policy = updated.restart_policy.unwrap();
    assert_eq!(
        (policy.max_restarts, policy.initial_backoff),
        (5, seconds(30))
    );
    assert_eq!(app.get("c1").await.restart_policy.unwrap(), policy);
    update(&app, request).await.unwrap();
    let audited = "SELECT count(*) FROM audit_events WHERE action = 'UPDATE_RESTART_POLICY'";
    assert_eq!(app.count(audited).await, 1, "the retry changed nothing");
    let detail: String = app
        .db
        .client()
        .await
        .query_one(
            "SELECT detail FROM audit_events WHERE action = 'UPDATE_RESTART_POLICY'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(detail.contains("at most 5 in a row"), "{detail}");
}

#[tokio::test]
async fn a_malformed_policy_is_refused_field_by_field() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let status = assert_error(
        update(
            &app,
            v1::UpdateRestartPolicyRequest {
                id: "c1".to_owned(),
                restart_policy: Some(v1::RestartPolicy {
                    mode: 9,
                    max_restarts: -1,
                    initial_backoff: seconds(60),
                    max_backoff: seconds(10),
                    reset_after: seconds(0),
                }),
                ..Default::default()
            },
        )
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        violated_fields(&status),
        [
            "restart_policy.mode",
            "restart_policy.max_restarts",
            "restart_policy.reset_after",
            "restart_policy.max_backoff"
        ]
    );
    assert_error(
        update(
            &app,
            v1::UpdateRestartPolicyRequest {
                id: "ghost".to_owned(),
                restart_policy: Some(Default::default()),
                ..Default::default()
            },
        )
        .await,
        Code::NotFound,
        "CONNECTOR_NOT_FOUND",
    );
    let status = assert_error(
        update(
            &app,
            v1::UpdateRestartPolicyRequest {
                id: "c1".to_owned(),
                ..Default::default()
            },
        )
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["restart_policy"]);
}

#[tokio::test]
async fn an_operators_start_resets_the_count_and_every_change_cancels_a_scheduled_start() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    app.sql(
        "UPDATE connectors SET state = 'FAILED', desired_state = 'RUNNING', restart_count = 3,
                next_restart_time = now() + interval '40 seconds' WHERE id = 'c1'",
    )
    .await;
    let waiting = app.get("c1").await;
    assert_eq!(waiting.restart_count, 3);
    assert!(waiting.next_restart_time.is_some());
    assert!(
        waiting.status_message.contains("automatic start 4 in"),
        "{}",
        waiting.status_message
    );
    let started = app.start(start_request("c1")).await.unwrap();
    let connector = started.connector.unwrap();
    assert_eq!(connector.restart_count, 0, "someone fixed the problem");
    assert!(connector.next_restart_time.is_none());
}

/// Whether the stored failure of `command_id` may be retried.
async fn stored_retriable(app: &TestApp, command_id: &str) -> bool {
    app.db
        .client()
        .await
        .query_one(
            "SELECT error_retriable FROM commands WHERE id = $1",
            &[&command_id],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_failure_is_retriable_unless_the_agent_or_its_reason_says_otherwise() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let mut agent = TestAgent::connect(&app, hello("a1", "eu-2", "10.0.2.7")).await;
    let mut fail_start = async |reason: &str, retriable: Option<bool>| {
        app.start(start_request("c1")).await.unwrap();
        let command = agent.next_command().await;
        agent
            .send(v1::agent_message::Message::Result(v1::CommandResult {
                command_id: command.id.clone(),
                success: false,
                error_reason: reason.to_owned(),
                error_message: "it broke".to_owned(),
                retriable,
                ..Default::default()
            }))
            .await;
        let id = command.id.clone();
        eventually(std::time::Duration::from_secs(10), async || {
            (app.command_status(&id).await == "FAILED").then_some(())
        })
        .await;
        stored_retriable(&app, &id).await
    };
    assert!(fail_start("DESTINATION_UNREACHABLE", None).await);
    assert!(!fail_start("PULL_BACK_OUT_OF_RANGE", None).await);
    assert!(!fail_start("DESTINATION_UNREACHABLE", Some(false)).await);
}

/// The connector's newest command, from ListCommands.
async fn newest_command(app: &TestApp, id: &str) -> v1::Command {
    app.client
        .clone()
        .list_commands(v1::ListCommandsRequest {
            connector_id: id.to_owned(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .commands
        .remove(0)
}

async fn awaiting_restart(app: &TestApp) -> Vec<String> {
    app.list(v1::ListConnectorsRequest {
        awaiting_restart: true,
        ..Default::default()
    })
    .await
    .unwrap()
    .connectors
    .into_iter()
    .map(|c| c.id)
    .collect()
}

#[tokio::test]
async fn a_failed_connector_is_started_again_after_its_backoff_until_its_starts_are_used_up() {
    let app = spawn_app().await;
    app.create(v1::Connector {
        restart_policy: Some(v1::RestartPolicy {
            mode: v1::RestartMode::OnFailure as i32,
            max_restarts: 2,
            initial_backoff: seconds(1),
            ..Default::default()
        }),
        ..connector("c1", "orders")
    })
    .await;
    app.create(connector("c2", "billing")).await;
    let mut agent = TestAgent::connect(&app, hello("a1", "eu-2", "10.0.2.7")).await;
    let _online = agent.keep_alive();
    app.start(start_request("c1")).await.unwrap();
    let command = agent.next_command().await;
    agent
        .fail(
            &command,
            "DESTINATION_UNREACHABLE",
            "10.0.2.30:2881 refused",
        )
        .await;

    // The leader schedules it: the connector says so, and the filter of
    // connectors waiting for an automatic start finds it (only it).
    let waiting = app
        .connector_becomes("c1", |c| c.next_restart_time.is_some())
        .await;
    assert_eq!(waiting.state, v1::ConnectorState::Failed as i32);
    assert!(
        waiting
            .status_message
            .starts_with("FAILED: start failed (DESTINATION_UNREACHABLE): 10.0.2.30:2881 refused; automatic start 1 in"),
        "{}",
        waiting.status_message
    );
    assert_eq!(awaiting_restart(&app).await, ["c1"]);

    // Due: the agent is handed an ordinary start, issued as the control
    // plane and audited with why.
    let first = agent.next_command().await;
    assert_eq!(first.kind, v1::CommandKind::Start as i32);
    assert_eq!(first.generation, command.generation + 1);
    let issued = newest_command(&app, "c1").await;
    assert_eq!(issued.id, first.id);
    assert_eq!(issued.principal, "system:auto-restart");
    assert!(
        issued
            .reason
            .starts_with("automatic start 1 of 2 after FAILED: start failed"),
        "{}",
        issued.reason
    );
    let starting = app.get("c1").await;
    assert_eq!(starting.restart_count, 1);
    assert!(starting.next_restart_time.is_none());
    assert!(awaiting_restart(&app).await.is_empty());

    // It fails twice more: the second automatic start comes, the third
    // does not (max_restarts 2), and the message says what to do.
    agent
        .fail(&first, "DESTINATION_UNREACHABLE", "still refused")
        .await;
    let second = agent.next_command().await;
    assert_eq!(second.generation, first.generation + 1);
    agent
        .fail(&second, "DESTINATION_UNREACHABLE", "still refused")
        .await;
    let used_up = app
        .connector_becomes("c1", |c| {
            c.state == v1::ConnectorState::Failed as i32
                && c.status_message
                    .contains("automatic starts used up (2 of 2)")
        })
        .await;
    assert_eq!(used_up.restart_count, 2);
    assert!(used_up.next_restart_time.is_none());
    assert_eq!(
        newest_command(&app, "c1").await.id,
        second.id,
        "no third start"
    );

    // Fixed by hand: an operator's start resets the count.
    let manual = app.start(start_request("c1")).await.unwrap();
    assert_eq!(manual.connector.unwrap().restart_count, 0);
}

#[tokio::test]
async fn a_corrected_retry_after_a_refusal_changes_the_policy() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let request = |initial: i64| v1::UpdateRestartPolicyRequest {
        id: "c1".to_owned(),
        restart_policy: Some(v1::RestartPolicy {
            initial_backoff: Some(prost_types::Duration {
                seconds: 0,
                nanos: i32::try_from(initial).unwrap(),
            }),
            ..Default::default()
        }),
        request_id: "fix-1".to_owned(),
    };
    // Half a second is below the allowed range: refused (and audited as
    // refused, with the request id).
    assert_error(
        update(&app, request(500_000_000)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    // The same request id, corrected: it is a new call, and it counts.
    let fixed = update(
        &app,
        v1::UpdateRestartPolicyRequest {
            restart_policy: Some(v1::RestartPolicy {
                initial_backoff: seconds(2),
                ..Default::default()
            }),
            ..request(0)
        },
    )
    .await
    .unwrap();
    assert_eq!(fixed.restart_policy.unwrap().initial_backoff, seconds(2));
}
