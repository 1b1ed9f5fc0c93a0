//! `validate_only`: a Start or Pause that runs every check of the real call
//! and writes nothing.

use crate::helpers::*;
use chrono::{Duration as TimeDelta, Utc};
use connector_control::proto::v1;
use tonic::Code;

/// Rows a change would write: commands, audit events; and the connector.
async fn footprint(app: &TestApp, id: &str) -> (i64, i64, v1::Connector) {
    (
        app.count("SELECT count(*) FROM commands").await,
        app.count("SELECT count(*) FROM audit_events").await,
        app.get(id).await,
    )
}

#[tokio::test]
async fn a_dry_run_start_shows_the_command_it_would_issue_and_writes_nothing() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let before = footprint(&app, "c1").await;

    let response = app
        .start(v1::StartConnectorRequest {
            region: "eu-1".to_owned(),
            request_id: "dry-1".to_owned(),
            validate_only: true,
            ..start_request("c1")
        })
        .await
        .unwrap();
    assert!(response.validate_only);
    let connector = response.connector.unwrap();
    let command = response.command.unwrap();
    assert_eq!(connector.state, v1::ConnectorState::Starting as i32);
    assert_eq!(connector.generation, 1);
    assert_eq!(connector.region, "eu-1");
    assert_eq!(command.id, "", "no command exists");
    assert_eq!(command.kind, v1::CommandKind::Start as i32);
    assert_eq!(command.status, v1::CommandStatus::Pending as i32);
    assert_eq!((command.generation, command.region.as_str()), (1, "eu-1"));
    assert_eq!(command.request_id, "dry-1");
    assert_eq!(command.principal, "anonymous");
    assert_eq!(footprint(&app, "c1").await, before, "nothing written");

    // The request id stays free: the real call with it is a new call.
    let real = app
        .start(v1::StartConnectorRequest {
            region: "eu-1".to_owned(),
            request_id: "dry-1".to_owned(),
            ..start_request("c1")
        })
        .await
        .unwrap();
    assert!(!real.validate_only);
    assert_ne!(real.command.as_ref().unwrap().id, "");
    assert_eq!(app.count("SELECT count(*) FROM commands").await, 1);

    // A dry run of the same call again previews what it did: the command.
    let replay = app
        .start(v1::StartConnectorRequest {
            region: "eu-1".to_owned(),
            request_id: "dry-1".to_owned(),
            validate_only: true,
            ..start_request("c1")
        })
        .await
        .unwrap();
    assert_eq!(replay.command.unwrap().id, real.command.unwrap().id);
}

#[tokio::test]
async fn a_dry_run_pause_shows_where_the_pause_would_go() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    app.start(start_request("c1")).await.unwrap();
    let before = footprint(&app, "c1").await;
    let response = app
        .pause(v1::PauseConnectorRequest {
            reason: "INC-9".to_owned(),
            validate_only: true,
            ..pause_request("c1")
        })
        .await
        .unwrap();
    assert!(response.validate_only);
    let command = response.command.unwrap();
    assert_eq!(command.kind, v1::CommandKind::Pause as i32);
    assert_eq!((command.generation, command.reason.as_str()), (2, "INC-9"));
    assert_eq!(
        response.connector.unwrap().state,
        v1::ConnectorState::Pausing as i32
    );
    assert_eq!(footprint(&app, "c1").await, before);
    let stored: String = app
        .db
        .client()
        .await
        .query_one("SELECT status FROM commands", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, "PENDING", "the start is not superseded");
}

#[tokio::test]
async fn a_dry_run_fails_as_the_call_would_with_nothing_audited() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    app.sql(
        "UPDATE connectors SET store_earliest_time = now() - interval '1 hour',
                               store_latest_time = now() WHERE id = 'c1'",
    )
    .await;
    let before = footprint(&app, "c1").await;
    let too_early = timestamp(Utc::now() - TimeDelta::hours(3));
    let status = assert_error(
        app.start(v1::StartConnectorRequest {
            pull_back_time: Some(too_early),
            validate_only: true,
            ..start_request("c1")
        })
        .await,
        Code::FailedPrecondition,
        "PULL_BACK_OUT_OF_RANGE",
    );
    let info = error_info(&status);
    assert!(info.metadata.contains_key("earliest_time"), "{info:?}");
    assert_error(
        app.pause(v1::PauseConnectorRequest {
            validate_only: true,
            ..pause_request("c1")
        })
        .await,
        Code::FailedPrecondition,
        "CONNECTOR_NOT_RUNNING",
    );
    assert_error(
        app.start(v1::StartConnectorRequest {
            validate_only: true,
            ..start_request("ghost")
        })
        .await,
        Code::NotFound,
        "CONNECTOR_NOT_FOUND",
    );
    let status = assert_error(
        app.start(v1::StartConnectorRequest {
            validate_only: true,
            wait: true,
            ..start_request("c1")
        })
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["wait"]);
    // Refused dry runs are not changes that were refused: no audit rows.
    assert_eq!(footprint(&app, "c1").await, before);
    // The same refused call for real is audited.
    app.pause(pause_request("c1")).await.unwrap_err();
    assert_eq!(
        app.count("SELECT count(*) FROM audit_events WHERE outcome = 'FAILED_PRECONDITION'")
            .await,
        1
    );
}
