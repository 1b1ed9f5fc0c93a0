//! WatchConnectors: a snapshot, then every change entering, within or
//! leaving the filter, in commit order, from any replica; resuming without
//! gap or duplicate; expired and foreign tokens; a watcher too slow to
//! read is ended with a token to resume from.

use crate::helpers::*;
use connector_control::proto::v1;
use std::time::Duration;
use tonic::Code;
use v1::WatchEventType as E;

type Events = tonic::Streaming<v1::WatchConnectorsResponse>;

async fn watch(
    app: &TestApp,
    filter: v1::ConnectorFilter,
    resume_token: &str,
) -> Result<Events, tonic::Status> {
    app.client
        .clone()
        .watch_connectors(v1::WatchConnectorsRequest {
            filter: Some(filter),
            resume_token: resume_token.to_owned(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn next(events: &mut Events) -> Result<v1::WatchConnectorsResponse, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .expect("no event within 10 s")
        .map(|event| event.expect("the stream ended"))
}

async fn event(events: &mut Events) -> v1::WatchConnectorsResponse {
    next(events).await.unwrap()
}

/// The event's type and connector id ("" without one).
fn said(event: &v1::WatchConnectorsResponse) -> (E, String) {
    (
        E::try_from(event.r#type).unwrap(),
        event
            .connector
            .as_ref()
            .map(|c| c.id.clone())
            .unwrap_or_default(),
    )
}

fn eu2() -> v1::ConnectorFilter {
    v1::ConnectorFilter {
        region: "eu-2".to_owned(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_watch_sends_the_snapshot_then_every_change_entering_within_or_leaving_in_order() {
    let app = spawn_app().await;
    app.create(connector("c1", "alpha")).await;
    app.create(v1::Connector {
        destination: Some(v1::Endpoint {
            r#type: "OCEANBASE".to_owned(),
            region: "eu-1".to_owned(),
            address: "10.0.1.30:2881".to_owned(),
        }),
        ..connector("c2", "beta")
    })
    .await;
    app.create(connector("c3", "gamma")).await;

    let mut events = watch(&app, eu2(), "").await.unwrap();
    assert_eq!(said(&event(&mut events).await), (E::Snapshot, "c1".into()));
    assert_eq!(said(&event(&mut events).await), (E::Snapshot, "c3".into()));
    let end = event(&mut events).await;
    assert_eq!(said(&end), (E::SnapshotEnd, String::new()));
    assert!(!end.resume_token.is_empty());

    // Within: c1 starts. Outside: c2 (eu-1) starts. Entering: c4 is
    // created in eu-2. Leaving: c3 is started in eu-1.
    app.start(start_request("c1")).await.unwrap();
    app.start(start_request("c2")).await.unwrap();
    app.create(connector("c4", "delta")).await;
    app.start(v1::StartConnectorRequest {
        region: "eu-1".to_owned(),
        ..start_request("c3")
    })
    .await
    .unwrap();

    let within = event(&mut events).await;
    assert_eq!(said(&within), (E::Changed, "c1".into()));
    assert_eq!(
        within.connector.unwrap().state,
        v1::ConnectorState::Starting as i32
    );
    assert_eq!(said(&event(&mut events).await), (E::Changed, "c4".into()));
    let left = event(&mut events).await;
    assert_eq!(said(&left), (E::Removed, "c3".into()));
    assert_eq!(left.connector.unwrap().region, "eu-1", "as it is now");
    let tokens = [&within.resume_token, &left.resume_token];
    assert!(tokens.iter().all(|t| !t.is_empty()) && tokens[0] != tokens[1]);
}

#[tokio::test]
async fn a_watch_resumes_right_after_its_last_event_without_gap_or_duplicate() {
    let app = spawn_app().await;
    for (id, name) in [("c1", "alpha"), ("c2", "beta"), ("c3", "gamma")] {
        app.create(connector(id, name)).await;
    }
    let mut events = watch(&app, eu2(), "").await.unwrap();
    for _ in 0..4 {
        event(&mut events).await;
    }
    app.start(start_request("c1")).await.unwrap();
    app.start(start_request("c2")).await.unwrap();
    let first = event(&mut events).await;
    assert_eq!(said(&first), (E::Changed, "c1".into()));
    drop(events);
    app.start(start_request("c3")).await.unwrap();

    let mut resumed = watch(&app, eu2(), &first.resume_token).await.unwrap();
    assert_eq!(
        said(&event(&mut resumed).await),
        (E::Changed, "c2".into()),
        "no snapshot, no c1"
    );
    assert_eq!(said(&event(&mut resumed).await), (E::Changed, "c3".into()));
    app.pause(pause_request("c1")).await.unwrap();
    assert_eq!(said(&event(&mut resumed).await), (E::Changed, "c1".into()));
}

#[tokio::test]
async fn an_expired_or_foreign_resume_token_is_refused_with_what_to_do() {
    let app = spawn_app().await;
    app.create(connector("c1", "alpha")).await;
    let mut events = watch(&app, eu2(), "").await.unwrap();
    event(&mut events).await;
    let end = event(&mut events).await;
    drop(events);

    // Another filter's token, and one altered.
    let status = watch(&app, v1::ConnectorFilter::default(), &end.resume_token)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["resume_token"]);
    assert!(
        status.message().contains("watch again without it"),
        "{}",
        status.message()
    );
    let status = watch(&app, eu2(), &format!("{}x", end.resume_token))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["resume_token"]);

    // The changes after it were pruned (as the leader does after
    // --watch-retention).
    app.start(start_request("c1")).await.unwrap();
    app.sql(
        "UPDATE connector_changes_horizon SET pruned_through = (SELECT max(seq) FROM connector_changes)",
    )
    .await;
    app.sql("DELETE FROM connector_changes").await;
    let status = watch(&app, eu2(), &end.resume_token).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(error_info(&status).reason, "RESUME_TOKEN_EXPIRED");
    assert!(
        status
            .message()
            .contains("watch again without resume_token")
    );
    // A new watch starts over.
    let mut events = watch(&app, eu2(), "").await.unwrap();
    assert_eq!(said(&event(&mut events).await), (E::Snapshot, "c1".into()));
}

#[tokio::test]
async fn a_watcher_that_does_not_read_is_ended_and_resumes_from_the_token_it_is_given() {
    const GRACE: Duration = Duration::from_millis(200);
    let fleet = connector_control::fleet::FleetOptions {
        watch_grace: GRACE,
        ..connector_control::fleet::FleetOptions::new(HEARTBEAT_INTERVAL)
    };
    let app = spawn_replica(
        std::sync::Arc::new(TestDatabase::create().await),
        fleet,
        "r1",
    )
    .await;
    app.create(connector("c1", "alpha")).await;
    let mut events = watch(&app, eu2(), "").await.unwrap();
    event(&mut events).await;
    event(&mut events).await;
    // Far more changes than the stream's buffer (64 events) and the
    // transport's (HTTP/2 send buffer and window, some 5,000 small events)
    // hold, while it reads nothing: 3,000 connectors appear, then change
    // ten times each.
    const CONNECTORS: usize = 3_000;
    const CHANGES: usize = CONNECTORS * 11;
    app.sql(&format!(
        "INSERT INTO connectors SELECT (jsonb_populate_record(c, jsonb_build_object(
             'id', 'x' || g, 'name', 'x' || g, 'name_folded', 'x' || g))).*
         FROM connectors c, generate_series(1, {CONNECTORS}) g WHERE c.id = 'c1'"
    ))
    .await;
    for _ in 0..10 {
        app.sql(
            "UPDATE connectors SET latency_us = coalesce(latency_us, 0) + 1 WHERE id LIKE 'x%'",
        )
        .await;
    }
    // The reader stalls (this is the behaviour under test, not a wait for
    // the server): ten times the grace its full buffer is given.
    tokio::time::sleep(GRACE * 10).await;
    let mut received = 0;
    let status = loop {
        match next(&mut events).await {
            Ok(event) => {
                assert_eq!(said(&event).0, E::Changed);
                received += 1;
            }
            Err(status) => break status,
        }
    };
    assert!(received < CHANGES, "the stream was not ended");
    assert_eq!(status.code(), Code::ResourceExhausted);
    let info = error_info(&status);
    assert_eq!(info.reason, "WATCHER_TOO_SLOW");
    let token = &info.metadata["resume_token"];
    let mut resumed = watch(&app, eu2(), token).await.unwrap();
    while received < CHANGES {
        assert_eq!(said(&event(&mut resumed).await).0, E::Changed);
        received += 1;
    }
    // Nothing after the last change: the next event is a new change.
    app.start(start_request("c1")).await.unwrap();
    let next_change = event(&mut resumed).await;
    assert_eq!(
        said(&next_change),
        (E::Changed, "c1".into()),
        "no change twice"
    );
    assert_eq!(
        next_change.connector.unwrap().state,
        v1::ConnectorState::Starting as i32
    );
}

#[tokio::test]
async fn a_change_made_through_another_replica_reaches_the_watcher() {
    let app = spawn_app().await;
    app.create(connector("c1", "alpha")).await;
    let other = spawn_replica(
        app.db.clone(),
        connector_control::fleet::FleetOptions::new(HEARTBEAT_INTERVAL),
        "other",
    )
    .await;
    let mut events = watch(&app, v1::ConnectorFilter::default(), "")
        .await
        .unwrap();
    event(&mut events).await;
    event(&mut events).await;
    other.start(start_request("c1")).await.unwrap();
    let changed = event(&mut events).await;
    assert_eq!(said(&changed), (E::Changed, "c1".into()));
    assert_eq!(
        changed.connector.unwrap().state,
        v1::ConnectorState::Starting as i32
    );
}

#[tokio::test]
async fn watches_past_the_callers_cap_are_refused_until_one_is_closed() {
    let app = spawn_tuned(|options| options.max_watches_per_caller = 3).await;
    app.create(connector("c1", "alpha")).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut events = watch(&app, eu2(), "").await.unwrap();
        event(&mut events).await;
        open.push(events);
    }
    let refused = match watch(&app, eu2(), "").await {
        Err(status) => status,
        Ok(mut events) => next(&mut events)
            .await
            .expect_err("a fourth watch is refused"),
    };
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let info = error_info(&refused);
    assert_eq!(info.reason, "TOO_MANY_WATCHES");
    assert_eq!(info.metadata["limit"], "3");
    assert!(refused.message().contains("--max-watches-per-caller"));
    // A stream the caller drops frees its place.
    drop(open.pop());
    let mut again = eventually(Duration::from_secs(10), || async {
        watch(&app, eu2(), "").await.ok()
    })
    .await;
    assert_eq!(said(&event(&mut again).await), (E::Snapshot, "c1".into()));
}

#[tokio::test]
async fn a_watcher_that_does_not_read_its_snapshot_is_ended() {
    const GRACE: Duration = Duration::from_millis(200);
    let fleet = connector_control::fleet::FleetOptions {
        watch_grace: GRACE,
        ..connector_control::fleet::FleetOptions::new(HEARTBEAT_INTERVAL)
    };
    let app = spawn_replica(
        std::sync::Arc::new(TestDatabase::create().await),
        fleet,
        "r1",
    )
    .await;
    app.create(connector("c1", "alpha")).await;
    // Far more than the stream's buffer and the transport hold, in one
    // snapshot page: 400 connectors of some 100 KB each (a long status).
    const CONNECTORS: usize = 400;
    app.sql(&format!(
        "INSERT INTO connectors SELECT (jsonb_populate_record(c, jsonb_build_object(
             'id', 'x' || g, 'name', 'x' || g, 'name_folded', 'x' || g,
             'status_message', repeat('m', 100000)))).*
         FROM connectors c, generate_series(1, {CONNECTORS}) g WHERE c.id = 'c1'"
    ))
    .await;
    let mut events = watch(&app, eu2(), "").await.unwrap();
    // The reader stalls (the behaviour under test, not a wait for the
    // server): ten times the grace its full buffer is given.
    tokio::time::sleep(GRACE * 10).await;
    let mut received = 0;
    let status = loop {
        match next(&mut events).await {
            Ok(event) => {
                assert_eq!(said(&event).0, E::Snapshot);
                received += 1;
            }
            Err(status) => break status,
        }
    };
    assert!(received < CONNECTORS + 1, "the stream was not ended");
    assert_eq!(status.code(), Code::ResourceExhausted);
    let info = error_info(&status);
    assert_eq!(info.reason, "WATCHER_TOO_SLOW");
    assert_eq!(
        info.metadata["resume_token"], "",
        "a snapshot is not resumable"
    );
    assert!(
        status.message().contains("watch again"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_crowd_of_watches_starting_at_once_leaves_the_pool_to_starts_and_pauses() {
    let app = spawn_tuned(|options| options.max_watches_per_caller = 1_000).await;
    for i in 0..20 {
        app.create(connector(&format!("c{i}"), &format!("alpha {i}")))
            .await;
    }
    // Two hundred watches start together (a pool of 8 connections), while
    // an operator starts twenty connectors.
    let watches = (0..200).map(|_| {
        let app = &app;
        async move {
            let mut events = watch(app, v1::ConnectorFilter::default(), "").await?;
            loop {
                let event = next(&mut events).await?;
                if said(&event).0 == E::SnapshotEnd {
                    return Ok::<_, tonic::Status>(events);
                }
            }
        }
    });
    let starts = (0..20).map(|i| app.start(start_request(&format!("c{i}"))));
    let (watches, starts) = tokio::join!(
        futures_util::future::join_all(watches),
        futures_util::future::join_all(starts)
    );
    for started in starts {
        started.expect("every start is served");
    }
    for watched in watches {
        watched.expect("every watch gets its snapshot");
    }
}
