//! BatchPauseConnectors and BatchStartConnectors through the real client.

use crate::helpers::*;
use chrono::Utc;
use connector_control::proto::v1;
use prost::Message;
use tonic::Code;

const CHANGED: i32 = v1::BatchOutcome::Changed as i32;
const UNCHANGED: i32 = v1::BatchOutcome::Unchanged as i32;
const FAILED: i32 = v1::BatchOutcome::Failed as i32;

fn by_query(query: &str) -> Option<v1::ConnectorFilter> {
    Some(v1::ConnectorFilter {
        query: query.to_owned(),
        ..Default::default()
    })
}

async fn batch_pause(
    app: &TestApp,
    request: v1::BatchPauseConnectorsRequest,
) -> Result<v1::BatchConnectorsResponse, tonic::Status> {
    app.client
        .clone()
        .batch_pause_connectors(request)
        .await
        .map(|r| r.into_inner())
}

async fn batch_start(
    app: &TestApp,
    request: v1::BatchStartConnectorsRequest,
) -> Result<v1::BatchConnectorsResponse, tonic::Status> {
    app.client
        .clone()
        .batch_start_connectors(request)
        .await
        .map(|r| r.into_inner())
}

/// The ErrorInfo reason inside a per-connector google.rpc.Status.
fn reason(status: &tonic_types::pb::Status) -> String {
    status
        .details
        .iter()
        .find(|any| any.type_url.ends_with("/google.rpc.ErrorInfo"))
        .map(|any| {
            tonic_types::pb::ErrorInfo::decode(any.value.as_slice())
                .unwrap()
                .reason
        })
        .unwrap_or_default()
}

/// c1..c3 on server 10.0.1.5 (c1, c2 started; c3 stopped), c4 elsewhere
/// (started).
async fn a_bad_server() -> TestApp {
    let app = spawn_app().await;
    for id in ["c1", "c2", "c3", "c4"] {
        app.create(connector(id, id)).await;
    }
    for id in ["c1", "c2", "c4"] {
        app.start(start_request(id)).await.unwrap();
    }
    app.sql("UPDATE connectors SET server_ip = '10.0.1.5' WHERE id IN ('c1', 'c2', 'c3')")
        .await;
    app.sql("UPDATE connectors SET server_ip = '10.0.2.9' WHERE id = 'c4'")
        .await;
    app
}

#[tokio::test]
async fn a_batch_pause_by_server_ip_gives_each_connector_its_own_command() {
    let app = a_bad_server().await;
    let response = batch_pause(
        &app,
        v1::BatchPauseConnectorsRequest {
            filter: by_query("10.0.1.5"),
            reason: "INC-77 server 10.0.1.5 disk full".to_owned(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (
            response.selected,
            response.changed,
            response.unchanged,
            response.failed
        ),
        (3, 2, 1, 0)
    );
    assert!(!response.validate_only);
    let outcomes: Vec<_> = response
        .results
        .iter()
        .map(|r| (r.connector_id.as_str(), r.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [("c1", CHANGED), ("c2", CHANGED), ("c3", UNCHANGED)],
        "ordered by id; the stopped one is reported, not failed"
    );
    for result in &response.results[..2] {
        let command = result.command.as_ref().unwrap();
        assert_eq!(command.kind, v1::CommandKind::Pause as i32);
        assert_eq!(command.reason, "INC-77 server 10.0.1.5 disk full");
        assert_eq!(
            result.connector.as_ref().unwrap().state,
            v1::ConnectorState::Pausing as i32
        );
    }
    assert_eq!(
        response.results[2].connector.as_ref().unwrap().state,
        v1::ConnectorState::Stopped as i32
    );
    assert_eq!(
        app.count("SELECT count(*) FROM audit_events WHERE action = 'PAUSE_CONNECTOR'")
            .await,
        2,
        "one audit event per connector paused"
    );
    assert_eq!(
        app.get("c4").await.state,
        v1::ConnectorState::Starting as i32,
        "another server's connector is left alone"
    );
}

#[tokio::test]
async fn a_selection_over_the_guard_is_refused_with_nothing_changed() {
    let app = a_bad_server().await;
    let before = app.count("SELECT count(*) FROM commands").await;
    let status = assert_error(
        batch_pause(
            &app,
            v1::BatchPauseConnectorsRequest {
                filter: by_query("10.0."),
                max_connectors: 3,
                ..Default::default()
            },
        )
        .await,
        Code::FailedPrecondition,
        "TOO_MANY_CONNECTORS",
    );
    let info = error_info(&status);
    assert_eq!(info.metadata["selected"], "4");
    assert_eq!(info.metadata["max_connectors"], "3");
    assert!(
        status.message().contains("nothing was changed"),
        "{}",
        status.message()
    );
    assert_eq!(app.count("SELECT count(*) FROM commands").await, before);

    let status = assert_error(
        batch_pause(&app, v1::BatchPauseConnectorsRequest::default()).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        violated_fields(&status),
        ["filter"],
        "no selection is no 'all'"
    );
    let status = assert_error(
        batch_pause(
            &app,
            v1::BatchPauseConnectorsRequest {
                filter: by_query("c"),
                ids: vec!["c1".to_owned()],
                max_connectors: 20_000,
                ..Default::default()
            },
        )
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["ids", "max_connectors"]);
    assert_eq!(app.count("SELECT count(*) FROM commands").await, before);
}

#[tokio::test]
async fn each_connector_fails_or_succeeds_as_its_single_call_would() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    app.create(v1::Connector {
        kind: v1::ConnectorKind::FullMigration as i32,
        ..connector("full", "copy")
    })
    .await;
    app.create(connector("run", "running")).await;
    app.start(start_request("run")).await.unwrap();
    let response = batch_start(
        &app,
        v1::BatchStartConnectorsRequest {
            ids: vec![
                "run".to_owned(),
                "ghost".to_owned(),
                "full".to_owned(),
                "c1".to_owned(),
            ],
            pull_back_time: Some(timestamp(Utc::now() - chrono::Duration::minutes(5))),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let got: Vec<_> = response
        .results
        .iter()
        .map(|r| {
            (
                r.connector_id.as_str(),
                r.outcome,
                r.error.as_ref().map(reason).unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("c1", CHANGED, String::new()),
            ("full", FAILED, "PULL_BACK_NOT_SUPPORTED".to_owned()),
            ("ghost", FAILED, "CONNECTOR_NOT_FOUND".to_owned()),
            ("run", UNCHANGED, String::new()),
        ]
    );
    let not_found = response.results[2].error.as_ref().unwrap();
    assert_eq!(not_found.code, Code::NotFound as i32);
    assert!(not_found.message.contains("ghost"), "{}", not_found.message);
    assert!(response.results[2].connector.is_none());
    assert_eq!(
        (response.changed, response.unchanged, response.failed),
        (1, 1, 2)
    );
    assert_eq!(app.get("full").await.generation, 0, "nothing half-written");
    let started = response.results[0].command.as_ref().unwrap();
    assert!(started.pull_back_time.is_some());
}

#[tokio::test]
async fn a_retried_batch_returns_its_first_answer_and_issues_nothing_new() {
    let app = a_bad_server().await;
    let request = v1::BatchPauseConnectorsRequest {
        filter: Some(v1::ConnectorFilter {
            states: vec![v1::ConnectorState::Starting as i32],
            ..Default::default()
        }),
        reason: "INC-78".to_owned(),
        request_id: "inc-78-pause".to_owned(),
        ..Default::default()
    };
    let first = batch_pause(&app, request.clone()).await.unwrap();
    assert_eq!(first.changed, 3);
    let commands = app.count("SELECT count(*) FROM commands").await;
    let audit = app.count("SELECT count(*) FROM audit_events").await;
    // The selection no longer matches (they are PAUSING now): the retry
    // still answers what the first call did.
    let retry = batch_pause(&app, request.clone()).await.unwrap();
    assert_eq!(retry, first);
    assert_eq!(app.count("SELECT count(*) FROM commands").await, commands);
    assert_eq!(app.count("SELECT count(*) FROM audit_events").await, audit);

    let status = assert_error(
        batch_pause(
            &app,
            v1::BatchPauseConnectorsRequest {
                reason: "something else".to_owned(),
                ..request
            },
        )
        .await,
        Code::InvalidArgument,
        "REQUEST_ID_REUSED",
    );
    assert!(
        status.message().contains("inc-78-pause"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_dry_run_batch_shows_what_would_change_and_writes_nothing() {
    let app = a_bad_server().await;
    let before = (
        app.count("SELECT count(*) FROM commands").await,
        app.count("SELECT count(*) FROM audit_events").await,
        app.count("SELECT count(*) FROM batches").await,
    );
    let response = batch_pause(
        &app,
        v1::BatchPauseConnectorsRequest {
            filter: by_query("10.0.1.5"),
            request_id: "dry".to_owned(),
            validate_only: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(response.validate_only);
    assert_eq!((response.changed, response.unchanged), (2, 1));
    assert!(response.results[0].command.as_ref().unwrap().id.is_empty());
    let after = (
        app.count("SELECT count(*) FROM commands").await,
        app.count("SELECT count(*) FROM audit_events").await,
        app.count("SELECT count(*) FROM batches").await,
    );
    assert_eq!(after, before);
    assert_eq!(
        app.get("c1").await.state,
        v1::ConnectorState::Starting as i32
    );
}

#[tokio::test]
async fn a_batch_larger_than_a_chunk_changes_every_connector() {
    let app = spawn_app().await;
    let ids: Vec<String> = (0..230).map(|i| format!("bulk-{i:03}")).collect();
    for id in &ids {
        app.create(connector(id, id)).await;
    }
    let response = batch_start(
        &app,
        v1::BatchStartConnectorsRequest {
            filter: by_query("bulk-"),
            max_connectors: 500,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((response.selected, response.changed), (230, 230));
    assert_eq!(
        app.count("SELECT count(*) FROM commands WHERE kind = 'START'")
            .await,
        230
    );
    let listed: Vec<&str> = response
        .results
        .iter()
        .map(|r| r.connector_id.as_str())
        .collect();
    assert_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_batch_start_refuses_each_connector_whose_checkpoint_is_gone_unless_skipping() {
    let app = spawn_app().await;
    app.create(connector("gone", "gone")).await;
    app.create(connector("held", "held")).await;
    app.lose_checkpoint("gone").await;
    let batch = |skip_to_earliest, request_id: &str| v1::BatchStartConnectorsRequest {
        ids: vec!["gone".to_owned(), "held".to_owned()],
        request_id: request_id.to_owned(),
        skip_to_earliest,
        ..Default::default()
    };
    let refused = app
        .client
        .clone()
        .batch_start_connectors(batch(false, "b1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((refused.changed, refused.failed), (1, 1));
    let failed = refused
        .results
        .iter()
        .find(|r| r.connector_id == "gone")
        .unwrap();
    assert_eq!(failed.outcome, v1::BatchOutcome::Failed as i32);
    assert_eq!(
        reason(failed.error.as_ref().unwrap()),
        "CHECKPOINT_OUT_OF_RANGE"
    );
    assert_eq!(app.get("gone").await.generation, 0);

    let skipped = app
        .client
        .clone()
        .batch_start_connectors(batch(true, "b2"))
        .await
        .unwrap()
        .into_inner();
    let gone = skipped
        .results
        .iter()
        .find(|r| r.connector_id == "gone")
        .unwrap();
    assert_eq!(gone.outcome, v1::BatchOutcome::Changed as i32);
    assert!(gone.command.as_ref().unwrap().skip_to_earliest);
}

#[tokio::test]
async fn a_batch_by_server_network_respects_octet_boundaries() {
    let app = a_bad_server().await;
    app.create(connector("c5", "c5")).await;
    app.start(start_request("c5")).await.unwrap();
    // A text prefix "10.0.1" would also pick 10.0.13.9.
    app.sql("UPDATE connectors SET server_ip = '10.0.13.9' WHERE id = 'c5'")
        .await;
    let network = |server_ip: &str| {
        Some(v1::ConnectorFilter {
            server_ip: server_ip.to_owned(),
            ..Default::default()
        })
    };
    let response = batch_pause(
        &app,
        v1::BatchPauseConnectorsRequest {
            filter: network("10.0.1.0/24"),
            reason: "INC-78".to_owned(),
            validate_only: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let chosen: Vec<_> = response
        .results
        .iter()
        .map(|r| r.connector_id.as_str())
        .collect();
    assert_eq!(chosen, ["c1", "c2", "c3"]);
    // Not an address: refused, saying what to write.
    let status = assert_error(
        batch_pause(
            &app,
            v1::BatchPauseConnectorsRequest {
                filter: network("10.0.1"),
                reason: "INC-78".to_owned(),
                ..Default::default()
            },
        )
        .await,
        tonic::Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["filter.server_ip"]);
    assert!(
        status.message().contains("10.0.1.0/24"),
        "{}",
        status.message()
    );
    // ListConnectors takes the same field.
    let listed = app
        .client
        .clone()
        .list_connectors(v1::ListConnectorsRequest {
            server_ip: "10.0.13.9".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.connectors.len(), 1);
    assert_eq!(listed.connectors[0].id, "c5");
}

#[tokio::test]
async fn a_retry_that_lowers_the_guard_does_not_finish_a_larger_selection() {
    let app = a_bad_server().await;
    let request = |max_connectors| v1::BatchPauseConnectorsRequest {
        filter: Some(v1::ConnectorFilter {
            server_ip: "10.0.1.5".to_owned(),
            ..Default::default()
        }),
        reason: "INC-79".to_owned(),
        request_id: "inc-79".to_owned(),
        max_connectors,
        ..Default::default()
    };
    batch_pause(&app, request(0)).await.unwrap();
    // As if the call stopped half-way (its replica died): no answer kept.
    app.sql("UPDATE batches SET response = NULL WHERE request_id = 'inc-79'")
        .await;
    let status = assert_error(
        batch_pause(&app, request(2)).await,
        tonic::Code::FailedPrecondition,
        "TOO_MANY_CONNECTORS",
    );
    assert_eq!(error_info(&status).metadata["selected"], "3");
    // With a guard the selection fits, it is finished (nothing twice).
    let finished = batch_pause(&app, request(3)).await.unwrap();
    assert_eq!(finished.selected, 3);
    assert_eq!(
        app.count("SELECT count(*) FROM commands WHERE kind = 'PAUSE'")
            .await,
        2
    );
}
