use crate::helpers::*;
use chrono::{Duration as TimeDelta, Utc};
use connector_control::proto::v1;
use std::time::Duration;
use tonic::Code;

const STARTING: i32 = v1::ConnectorState::Starting as i32;
const PAUSING: i32 = v1::ConnectorState::Pausing as i32;
const PENDING: i32 = v1::CommandStatus::Pending as i32;

async fn app_with(id: &str) -> TestApp {
    let app = spawn_app().await;
    app.create(connector(id, id)).await;
    app
}

async fn command_rows(app: &TestApp, id: &str) -> i64 {
    app.count(&format!(
        "SELECT count(*) FROM commands WHERE connector_id = '{id}'"
    ))
    .await
}

/// The stored status of a command.
async fn command_status(app: &TestApp, command_id: &str) -> String {
    app.db
        .client()
        .await
        .query_one("SELECT status FROM commands WHERE id = $1", &[&command_id])
        .await
        .unwrap()
        .get(0)
}

/// Reports a store range as an agent would.
async fn store_range(app: &TestApp, id: &str, earliest: &str, latest: &str) {
    app.sql(&format!(
        "UPDATE connectors SET store_earliest_time = '{earliest}', store_latest_time = '{latest}'
         WHERE id = '{id}'"
    ))
    .await;
}

#[tokio::test]
async fn start_moves_a_stopped_connector_to_starting_with_a_pending_command() {
    let app = app_with("c1").await;
    let response = app.start(start_request("c1")).await.unwrap();
    let connector = response.connector.unwrap();
    let command = response.command.unwrap();

    assert_eq!(connector.state, STARTING);
    assert_eq!(connector.desired_state, v1::ConnectorState::Running as i32);
    assert_eq!(connector.generation, 1);
    assert_eq!(connector.region, "eu-2");
    assert_eq!(command.kind, v1::CommandKind::Start as i32);
    assert_eq!(command.status, PENDING);
    assert_eq!(command.connector_id, "c1");
    assert_eq!(command.generation, 1);
    assert_eq!(command.region, "eu-2");
    assert!(command.pull_back_time.is_none());
    assert!(command.complete_time.is_none());
    assert_eq!(app.get("c1").await, connector);
    assert_eq!(command_status(&app, &command.id).await, "PENDING");
}

#[tokio::test]
async fn start_with_a_region_override_runs_there() {
    let app = app_with("c1").await;
    let response = app
        .start(v1::StartConnectorRequest {
            region: "eu-1".to_owned(), // the source's region: known
            ..start_request("c1")
        })
        .await
        .unwrap();
    assert_eq!(response.connector.unwrap().region, "eu-1");
    assert_eq!(response.command.unwrap().region, "eu-1");
}

#[tokio::test]
async fn start_with_an_unknown_region_is_rejected_and_changes_nothing() {
    let app = app_with("c1").await;
    let status = assert_error(
        app.start(v1::StartConnectorRequest {
            region: "mars-1".to_owned(),
            ..start_request("c1")
        })
        .await,
        Code::InvalidArgument,
        "UNKNOWN_REGION",
    );
    assert_eq!(violated_fields(&status), ["region"]);
    assert_eq!(error_info(&status).metadata["region"], "mars-1");
    let after = app.get("c1").await;
    assert_eq!(
        (after.generation, after.state),
        (0, v1::ConnectorState::Stopped as i32)
    );
    assert_eq!(command_rows(&app, "c1").await, 0);
}

#[tokio::test]
async fn start_with_pull_back_within_the_store_range_is_accepted() {
    let app = app_with("c1").await;
    store_range(&app, "c1", "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z").await;
    let at = "2026-01-02T12:00:00.123456789Z"
        .parse::<chrono::DateTime<Utc>>()
        .unwrap();
    let command = app
        .start(v1::StartConnectorRequest {
            pull_back_time: Some(timestamp(at)),
            ..start_request("c1")
        })
        .await
        .unwrap()
        .command
        .unwrap();
    // Kept to the microsecond, as stored.
    assert_eq!(
        command.pull_back_time,
        Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: 123_456_000
        })
    );
}

#[tokio::test]
async fn start_with_pull_back_before_the_store_range_is_rejected_and_changes_nothing() {
    let app = app_with("c1").await;
    store_range(&app, "c1", "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z").await;
    let status = assert_error(
        app.start(v1::StartConnectorRequest {
            pull_back_time: Some(timestamp("2025-12-31T23:59:59Z".parse().unwrap())),
            ..start_request("c1")
        })
        .await,
        Code::FailedPrecondition,
        "PULL_BACK_OUT_OF_RANGE",
    );
    let message = status.message();
    assert!(message.contains("2026-01-01T00:00:00+00:00"), "{message}");
    assert!(message.contains("2026-01-03T00:00:00+00:00"), "{message}");
    let info = error_info(&status);
    assert_eq!(info.metadata["earliest_time"], "2026-01-01T00:00:00+00:00");
    assert_eq!(info.metadata["pull_back_time"], "2025-12-31T23:59:59+00:00");
    assert_eq!(app.get("c1").await.generation, 0);
    assert_eq!(command_rows(&app, "c1").await, 0);
}

#[tokio::test]
async fn start_with_pull_back_and_an_unknown_store_range_is_left_to_the_agent() {
    let app = app_with("c1").await;
    let response = app
        .start(v1::StartConnectorRequest {
            pull_back_time: Some(timestamp(Utc::now() - TimeDelta::hours(2))),
            ..start_request("c1")
        })
        .await
        .unwrap();
    assert_eq!(response.connector.unwrap().state, STARTING);
    assert!(response.command.unwrap().pull_back_time.is_some());
}

#[tokio::test]
async fn start_with_pull_back_on_a_full_migration_connector_is_rejected() {
    let app = spawn_app().await;
    let mut full = connector("full", "full");
    full.kind = v1::ConnectorKind::FullMigration as i32;
    app.create(full).await;
    let status = assert_error(
        app.start(v1::StartConnectorRequest {
            pull_back_time: Some(timestamp(Utc::now() - TimeDelta::minutes(5))),
            ..start_request("full")
        })
        .await,
        Code::FailedPrecondition,
        "PULL_BACK_NOT_SUPPORTED",
    );
    assert_eq!(error_info(&status).metadata["kind"], "FULL_MIGRATION");
    assert_eq!(command_rows(&app, "full").await, 0);
    // Without pull-back it starts.
    app.start(start_request("full")).await.unwrap();
}

#[tokio::test]
async fn start_with_pull_back_in_the_future_is_out_of_range() {
    let app = app_with("c1").await;
    let status = assert_error(
        app.start(v1::StartConnectorRequest {
            pull_back_time: Some(timestamp(Utc::now() + TimeDelta::hours(1))),
            ..start_request("c1")
        })
        .await,
        Code::FailedPrecondition,
        "PULL_BACK_OUT_OF_RANGE",
    );
    assert!(status.message().contains("future"), "{}", status.message());
    let info = error_info(&status);
    assert!(info.metadata.contains_key("server_time"));
    assert_eq!(info.metadata["clock_skew_seconds"], "60");
    assert_eq!(command_rows(&app, "c1").await, 0);
}

#[tokio::test]
async fn start_with_pull_back_after_the_latest_stored_time_is_rejected_and_changes_nothing() {
    let app = app_with("c1").await;
    store_range(&app, "c1", "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z").await;
    let status = assert_error(
        app.start(v1::StartConnectorRequest {
            pull_back_time: Some(timestamp("2026-01-03T00:01:01Z".parse().unwrap())),
            ..start_request("c1")
        })
        .await,
        Code::FailedPrecondition,
        "PULL_BACK_OUT_OF_RANGE",
    );
    let message = status.message();
    assert!(message.contains("after the latest data"), "{message}");
    assert!(message.contains("2026-01-01T00:00:00+00:00"), "{message}");
    assert!(message.contains("2026-01-03T00:00:00+00:00"), "{message}");
    let info = error_info(&status);
    assert_eq!(info.metadata["earliest_time"], "2026-01-01T00:00:00+00:00");
    assert_eq!(info.metadata["latest_time"], "2026-01-03T00:00:00+00:00");
    assert_eq!(info.metadata["pull_back_time"], "2026-01-03T00:01:01+00:00");
    assert_eq!(app.get("c1").await.generation, 0);
    assert_eq!(command_rows(&app, "c1").await, 0);
}

#[tokio::test]
async fn pull_back_within_the_clock_skew_of_the_latest_time_is_accepted() {
    let app = app_with("c1").await;
    store_range(&app, "c1", "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z").await;
    app.start(v1::StartConnectorRequest {
        pull_back_time: Some(timestamp("2026-01-03T00:01:00Z".parse().unwrap())),
        ..start_request("c1")
    })
    .await
    .expect("60 s of clock skew are allowed");
}

#[tokio::test]
async fn start_from_a_checkpoint_the_store_no_longer_holds_is_refused_with_the_ways_out() {
    let app = app_with("c1").await;
    app.lose_checkpoint("c1").await;
    for validate_only in [true, false] {
        let status = assert_error(
            app.start(v1::StartConnectorRequest {
                validate_only,
                ..start_request("c1")
            })
            .await,
            Code::FailedPrecondition,
            "CHECKPOINT_OUT_OF_RANGE",
        );
        let message = status.message();
        for says in [
            "2025-12-31T22:00:00+00:00",
            "2026-01-01T00:00:00+00:00",
            "pull_back_time",
            "skip_to_earliest",
        ] {
            assert!(message.contains(says), "{says}: {message}");
        }
        let info = error_info(&status);
        assert_eq!(
            info.metadata["checkpoint_time"],
            "2025-12-31T22:00:00+00:00"
        );
        assert_eq!(info.metadata["earliest_time"], "2026-01-01T00:00:00+00:00");
        assert_eq!(info.metadata["latest_time"], "2026-01-03T00:00:00+00:00");
    }
    assert_eq!(app.get("c1").await.generation, 0);
    assert_eq!(command_rows(&app, "c1").await, 0);

    // Skipping and pulling back at once asks for two things.
    let status = assert_error(
        app.start(v1::StartConnectorRequest {
            skip_to_earliest: true,
            pull_back_time: Some(timestamp("2026-01-02T00:00:00Z".parse().unwrap())),
            ..start_request("c1")
        })
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["skip_to_earliest"]);

    // Either way out starts it: the explicit skip is on the command and in
    // the audit trail.
    let dry = app
        .start(v1::StartConnectorRequest {
            skip_to_earliest: true,
            validate_only: true,
            ..start_request("c1")
        })
        .await
        .unwrap();
    assert!(dry.command.unwrap().skip_to_earliest);
    let command = app
        .start(v1::StartConnectorRequest {
            skip_to_earliest: true,
            ..start_request("c1")
        })
        .await
        .unwrap()
        .command
        .unwrap();
    assert!(command.skip_to_earliest);
    let detail: String = app
        .db
        .client()
        .await
        .query_one(
            "SELECT detail FROM audit_events
             WHERE action = 'START_CONNECTOR' AND connector_id = 'c1' AND outcome = 'OK'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        detail.contains("skip_to_earliest") && detail.contains("2025-12-31T22:00:00+00:00"),
        "{detail}"
    );
}

#[tokio::test]
async fn start_with_malformed_fields_lists_them_all() {
    let app = app_with("c1").await;
    let status = assert_error(
        app.start(v1::StartConnectorRequest {
            id: String::new(),
            pull_back_time: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: -1,
            }),
            region: "EU".to_owned(),
            request_id: "r".repeat(129),
            wait: true,
            validate_only: true,
            skip_to_earliest: false,
        })
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        violated_fields(&status),
        ["id", "region", "request_id", "wait", "pull_back_time"]
    );
}

#[tokio::test]
async fn start_or_pause_of_an_unknown_connector_is_not_found() {
    let app = spawn_app().await;
    assert_error(
        app.start(start_request("ghost")).await,
        Code::NotFound,
        "CONNECTOR_NOT_FOUND",
    );
    assert_error(
        app.pause(pause_request("ghost")).await,
        Code::NotFound,
        "CONNECTOR_NOT_FOUND",
    );
}

#[tokio::test]
async fn start_of_a_starting_or_running_connector_is_rejected_as_not_stopped() {
    let app = app_with("c1").await;
    app.start(start_request("c1")).await.unwrap();
    let status = assert_error(
        app.start(start_request("c1")).await,
        Code::FailedPrecondition,
        "CONNECTOR_NOT_STOPPED",
    );
    assert_eq!(error_info(&status).metadata["state"], "STARTING");
    app.observe("c1", "RUNNING").await;
    assert_error(
        app.start(start_request("c1")).await,
        Code::FailedPrecondition,
        "CONNECTOR_NOT_STOPPED",
    );
    assert_eq!(app.get("c1").await.generation, 1);
    assert_eq!(command_rows(&app, "c1").await, 1);
}

#[tokio::test]
async fn start_of_a_failed_connector_is_allowed() {
    let app = app_with("c1").await;
    app.observe("c1", "FAILED").await;
    let connector = app
        .start(start_request("c1"))
        .await
        .unwrap()
        .connector
        .unwrap();
    assert_eq!(connector.state, STARTING);
}

#[tokio::test]
async fn pause_of_a_stopped_connector_is_rejected_as_not_running() {
    let app = app_with("c1").await;
    let status = assert_error(
        app.pause(pause_request("c1")).await,
        Code::FailedPrecondition,
        "CONNECTOR_NOT_RUNNING",
    );
    assert_eq!(error_info(&status).metadata["state"], "STOPPED");
    assert!(status.message().contains("already stopped"));
    assert_eq!(command_rows(&app, "c1").await, 0);
}

#[tokio::test]
async fn pause_of_a_running_or_failed_connector_is_accepted() {
    let app = spawn_app().await;
    for (id, state) in [("running", "RUNNING"), ("failed", "FAILED")] {
        app.create(connector(id, id)).await;
        app.observe(id, state).await;
        let response = app
            .pause(v1::PauseConnectorRequest {
                reason: "INC-4242: latency above 10 minutes".to_owned(),
                ..pause_request(id)
            })
            .await
            .unwrap();
        let (connector, command) = (response.connector.unwrap(), response.command.unwrap());
        assert_eq!(connector.state, PAUSING);
        assert_eq!(connector.desired_state, v1::ConnectorState::Stopped as i32);
        assert_eq!(connector.generation, 1);
        assert_eq!(command.kind, v1::CommandKind::Pause as i32);
        assert_eq!(command.status, PENDING);
        assert_eq!(command.reason, "INC-4242: latency above 10 minutes");
    }
}

#[tokio::test]
async fn pause_supersedes_a_start_that_no_agent_received() {
    let app = app_with("c1").await;
    let start = app
        .start(start_request("c1"))
        .await
        .unwrap()
        .command
        .unwrap();
    let pause = app.pause(pause_request("c1")).await.unwrap();
    let connector = pause.connector.unwrap();
    assert_eq!((connector.state, connector.generation), (PAUSING, 2));
    assert_eq!(pause.command.unwrap().generation, 2);
    assert_eq!(command_status(&app, &start.id).await, "SUPERSEDED");
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM commands WHERE id = '{}' AND complete_time IS NOT NULL",
            start.id
        ))
        .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM commands WHERE status = 'PENDING'")
            .await,
        1
    );
}

#[tokio::test]
async fn pause_supersedes_a_start_already_delivered_to_an_agent() {
    let app = app_with("c1").await;
    let start = app
        .start(start_request("c1"))
        .await
        .unwrap()
        .command
        .unwrap();
    app.sql(&format!(
        "UPDATE commands SET status = 'DELIVERED', agent_id = 'agent-1' WHERE id = '{}'",
        start.id
    ))
    .await;
    let pause = app.pause(pause_request("c1")).await.unwrap();
    assert_eq!(command_status(&app, &start.id).await, "SUPERSEDED");
    // Where the start was headed: it was delivered, so the region it set.
    assert_eq!(pause.command.unwrap().region, "eu-2");
}

#[tokio::test]
async fn a_retry_with_the_same_request_id_returns_the_first_command() {
    let app = app_with("c1").await;
    let request = v1::StartConnectorRequest {
        request_id: "7d9f0c4e-retry".to_owned(),
        ..start_request("c1")
    };
    let first = app.start(request.clone()).await.unwrap();
    let again = app.start(request).await.unwrap();
    assert_eq!(again.command, first.command);
    assert_eq!(again.connector.unwrap().generation, 1);
    assert_eq!(command_rows(&app, "c1").await, 1);

    // Pauses too, even when the connector has moved on since.
    let pause = v1::PauseConnectorRequest {
        request_id: "p-1".to_owned(),
        ..pause_request("c1")
    };
    let first = app.pause(pause.clone()).await.unwrap();
    app.observe("c1", "STOPPED").await;
    let again = app.pause(pause).await.unwrap();
    assert_eq!(again.command, first.command);
    assert_eq!(command_rows(&app, "c1").await, 2);
}

#[tokio::test]
async fn a_request_id_reused_for_a_different_call_is_rejected() {
    let app = app_with("c1").await;
    app.start(v1::StartConnectorRequest {
        request_id: "r1".to_owned(),
        ..start_request("c1")
    })
    .await
    .unwrap();
    let status = assert_error(
        app.pause(v1::PauseConnectorRequest {
            request_id: "r1".to_owned(),
            ..pause_request("c1")
        })
        .await,
        Code::InvalidArgument,
        "REQUEST_ID_REUSED",
    );
    assert_eq!(violated_fields(&status), ["request_id"]);
    assert!(status.message().contains("START"), "{}", status.message());

    let status = assert_error(
        app.start(v1::StartConnectorRequest {
            request_id: "r1".to_owned(),
            pull_back_time: Some(timestamp(Utc::now() - TimeDelta::minutes(1))),
            ..start_request("c1")
        })
        .await,
        Code::InvalidArgument,
        "REQUEST_ID_REUSED",
    );
    assert_eq!(error_info(&status).metadata["request_id"], "r1");
    assert_eq!(command_rows(&app, "c1").await, 1);
}

#[tokio::test]
async fn of_twenty_concurrent_starts_exactly_one_succeeds() {
    let app = app_with("c1").await;
    let calls = (0..20).map(|i| {
        let app = &app;
        async move {
            app.start(v1::StartConnectorRequest {
                request_id: format!("race-{i}"),
                ..start_request("c1")
            })
            .await
        }
    });
    let results = futures::future::join_all(calls).await;
    let (won, lost): (Vec<_>, Vec<_>) = results.into_iter().partition(|r| r.is_ok());
    assert_eq!(won.len(), 1);
    for result in lost {
        assert_error(result, Code::FailedPrecondition, "CONNECTOR_NOT_STOPPED");
    }
    assert_eq!(app.get("c1").await.generation, 1);
    assert_eq!(command_rows(&app, "c1").await, 1);
}

#[tokio::test]
async fn concurrent_retries_of_one_request_yield_one_command() {
    let app = app_with("c1").await;
    let calls = (0..10).map(|_| {
        app.start(v1::StartConnectorRequest {
            request_id: "same".to_owned(),
            ..start_request("c1")
        })
    });
    let results = futures::future::join_all(calls).await;
    let ids: std::collections::HashSet<_> = results
        .into_iter()
        .map(|r| r.expect("every retry succeeds").command.unwrap().id)
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(command_rows(&app, "c1").await, 1);
}

#[tokio::test]
async fn wait_without_an_agent_ends_at_the_deadline_and_keeps_the_command_pending() {
    let app = app_with("c1").await;
    let mut request = tonic::Request::new(v1::StartConnectorRequest {
        wait: true,
        ..start_request("c1")
    });
    request.set_timeout(Duration::from_millis(600));
    let status = assert_error(
        app.client.clone().start_connector(request).await,
        Code::DeadlineExceeded,
        "COMMAND_NOT_CONFIRMED",
    );
    assert!(
        status.message().contains("stays pending"),
        "{}",
        status.message()
    );
    let command_id = error_info(&status).metadata["command_id"].clone();
    assert_eq!(command_status(&app, &command_id).await, "PENDING");
    assert_eq!(app.get("c1").await.state, STARTING);
}

#[tokio::test]
async fn wait_returns_the_confirmed_connector_once_the_command_completes() {
    let app = app_with("c1").await;
    let waiting = {
        let app = &app;
        async move {
            let mut request = tonic::Request::new(v1::StartConnectorRequest {
                wait: true,
                ..start_request("c1")
            });
            request.set_timeout(Duration::from_secs(20));
            app.client.clone().start_connector(request).await
        }
    };
    // Plays the agent's part: confirm the command once it exists.
    let confirming = async {
        eventually(Duration::from_secs(10), || async {
            let n = app
                .sql(
                    "WITH done AS (
                         UPDATE commands SET status = 'SUCCEEDED', complete_time = now()
                         WHERE connector_id = 'c1' AND status = 'PENDING' RETURNING 1)
                     UPDATE connectors SET state = 'RUNNING'
                     WHERE id = 'c1' AND EXISTS (SELECT 1 FROM done)",
                )
                .await;
            (n == 1).then_some(())
        })
        .await
    };
    let (response, ()) = tokio::join!(waiting, confirming);
    let response = response.unwrap().into_inner();
    assert_eq!(
        response.command.unwrap().status,
        v1::CommandStatus::Succeeded as i32
    );
    assert_eq!(
        response.connector.unwrap().state,
        v1::ConnectorState::Running as i32
    );
}

#[tokio::test]
async fn oversized_pause_reasons_and_malformed_request_ids_are_invalid_argument() {
    let app = app_with("c1").await;
    app.observe("c1", "RUNNING").await;
    let status = assert_error(
        app.pause(v1::PauseConnectorRequest {
            reason: "x".repeat(1001),
            request_id: "has space".to_owned(),
            ..pause_request("c1")
        })
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["reason", "request_id"]);
    assert_eq!(command_rows(&app, "c1").await, 0);
}

#[tokio::test]
async fn start_and_pause_are_rejected_while_pausing_or_unknown() {
    let app = app_with("c1").await;
    for state in ["PAUSING", "UNKNOWN"] {
        app.observe("c1", state).await;
        let status = assert_error(
            app.start(start_request("c1")).await,
            Code::FailedPrecondition,
            "CONNECTOR_NOT_STOPPED",
        );
        assert_eq!(error_info(&status).metadata["state"], state);
        assert_error(
            app.pause(pause_request("c1")).await,
            Code::FailedPrecondition,
            "CONNECTOR_NOT_RUNNING",
        );
    }
    assert_eq!(command_rows(&app, "c1").await, 0);
}

#[tokio::test]
async fn pull_back_exactly_to_the_earliest_time_is_accepted() {
    let app = app_with("c1").await;
    store_range(&app, "c1", "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z").await;
    app.start(v1::StartConnectorRequest {
        pull_back_time: Some(timestamp("2026-01-01T00:00:00Z".parse().unwrap())),
        ..start_request("c1")
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_pause_superseding_an_undelivered_start_goes_where_the_connector_was() {
    let app = app_with("c1").await;
    app.observe("c1", "FAILED").await;
    let start = app
        .start(v1::StartConnectorRequest {
            region: "eu-1".to_owned(),
            ..start_request("c1")
        })
        .await
        .unwrap();
    assert_eq!(start.connector.unwrap().region, "eu-1");
    let pause = app.pause(pause_request("c1")).await.unwrap();
    assert_eq!(pause.command.unwrap().region, "eu-2");
    assert_eq!(pause.connector.unwrap().region, "eu-2");
}

#[tokio::test]
async fn a_start_retried_after_the_connector_moved_on_returns_the_first_command() {
    let app = app_with("c1").await;
    let request = v1::StartConnectorRequest {
        request_id: "once".to_owned(),
        ..start_request("c1")
    };
    let first = app.start(request.clone()).await.unwrap().command.unwrap();
    app.observe("c1", "RUNNING").await;
    let again = app.start(request).await.unwrap();
    assert_eq!(again.command.unwrap(), first);
    assert_eq!(
        again.connector.unwrap().state,
        v1::ConnectorState::Running as i32
    );
}

#[tokio::test]
async fn a_request_id_is_scoped_to_its_connector() {
    let app = app_with("c1").await;
    app.create(connector("c2", "c2")).await;
    for id in ["c1", "c2"] {
        let command = app
            .start(v1::StartConnectorRequest {
                request_id: "shared-key".to_owned(),
                ..start_request(id)
            })
            .await
            .unwrap()
            .command
            .unwrap();
        assert_eq!(command.connector_id, id);
    }
}

#[tokio::test]
async fn start_and_pause_move_update_time_forward() {
    let app = app_with("c1").await;
    let created = app.get("c1").await.update_time.unwrap();
    let started = app
        .start(start_request("c1"))
        .await
        .unwrap()
        .connector
        .unwrap()
        .update_time
        .unwrap();
    let paused = app
        .pause(pause_request("c1"))
        .await
        .unwrap()
        .connector
        .unwrap()
        .update_time
        .unwrap();
    let key = |t: &prost_types::Timestamp| (t.seconds, t.nanos);
    assert!(key(&created) < key(&started), "{created:?} {started:?}");
    assert!(key(&started) < key(&paused), "{started:?} {paused:?}");
}

#[tokio::test]
async fn a_waiting_call_ends_with_an_explanation_when_the_server_shuts_down() {
    let app = app_with("c1").await;
    let mut client = app.client.clone();
    let waiting = tokio::spawn(async move {
        let mut request = tonic::Request::new(v1::StartConnectorRequest {
            wait: true,
            ..start_request("c1")
        });
        request.set_timeout(Duration::from_secs(60));
        client.start_connector(request).await
    });
    eventually(Duration::from_secs(10), || async {
        (command_rows(&app, "c1").await == 1).then_some(())
    })
    .await;
    app.begin_shutdown();
    let status = assert_error(
        waiting.await.unwrap(),
        Code::DeadlineExceeded,
        "COMMAND_NOT_CONFIRMED",
    );
    assert!(
        status.message().contains("shutting down"),
        "{}",
        status.message()
    );
}
