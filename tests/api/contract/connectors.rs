//! Connectors: create, read, search, and starts and pauses by the rules.

use super::*;

pub(super) async fn create_and_get_keep_what_was_given<S: FleetStore>(store: &S) {
    let created = store
        .create_connector(new_connector(
            "c1",
            "Orders",
            ConnectorKind::IncrementalSync,
        ))
        .await
        .unwrap();
    assert_eq!(created.state, ConnectorState::Stopped);
    assert_eq!((created.region.as_str(), created.generation), ("eu-2", 0));
    assert_eq!(store.get_connector("c1").await.unwrap(), created);
    assert!(matches!(
        store
            .create_connector(new_connector("c1", "again", ConnectorKind::IncrementalSync))
            .await,
        Err(StoreError::ConnectorAlreadyExists(id)) if id == "c1"
    ));
    assert!(matches!(
        store.get_connector("ghost").await,
        Err(StoreError::ConnectorNotFound(_))
    ));
    store.ping().await.unwrap();
    assert!(!store.page_token_key().await.unwrap().is_empty());
}

pub(super) async fn search_matches_names_ids_and_ips_and_pages_in_order<S: FleetStore>(store: &S) {
    for (id, name) in [
        ("a1", "Äpfel orders"),
        ("b2", "bananas"),
        ("c3", "cherries 100%"),
    ] {
        store
            .create_connector(new_connector(id, name, ConnectorKind::IncrementalSync))
            .await
            .unwrap();
    }
    let session = store
        .open_session(&hello("ag", "eu-2", "10.0.2.7"))
        .await
        .unwrap();
    store
        .record_statuses(&session, &[running("b2", 0)])
        .await
        .unwrap();
    let ids = |page: connector_control::store::Page| -> Vec<String> {
        page.connectors.into_iter().map(|c| c.id).collect()
    };
    async fn search<S: FleetStore>(store: &S, query: &str) -> Vec<String> {
        let page = store
            .list_connectors(&filter(query), None, 10)
            .await
            .unwrap();
        page.connectors.into_iter().map(|c| c.id).collect()
    }
    assert_eq!(search(store, "äPFEL").await, ["a1"]);
    assert_eq!(search(store, "B2").await, ["b2"]);
    assert_eq!(search(store, "proj-c").await, ["c3"]);
    assert_eq!(search(store, "10.0.2.").await, ["b2"]);
    assert_eq!(search(store, "0%").await, ["c3"]);
    assert!(search(store, "_").await.is_empty());

    let first = store.list_connectors(&filter(""), None, 2).await.unwrap();
    assert_eq!((first.total, first.more), (3, true));
    let last = first.connectors.last().unwrap();
    let cursor = Cursor {
        name: last.name.clone(),
        id: last.id.clone(),
    };
    let second = store
        .list_connectors(&filter(""), Some(&cursor), 2)
        .await
        .unwrap();
    assert_eq!(ids(first), ["b2", "c3"]);
    assert_eq!(
        (ids(second.clone()), second.more),
        (vec!["a1".to_owned()], false)
    );

    let states = SearchFilter {
        states: vec![ConnectorState::Running],
        region: "eu-2".to_owned(),
        ..Default::default()
    };
    assert_eq!(
        ids(store.list_connectors(&states, None, 10).await.unwrap()),
        ["b2"]
    );
}

pub(super) async fn start_and_pause_follow_the_state_machine_and_supersede<S: FleetStore>(
    store: &S,
) {
    store
        .create_connector(new_connector("c1", "c1", ConnectorKind::IncrementalSync))
        .await
        .unwrap();
    let started = store.start_connector(&start("c1")).await.unwrap();
    assert_eq!(started.connector.state, ConnectorState::Starting);
    assert_eq!(started.connector.desired_state, ConnectorState::Running);
    assert_eq!(
        (started.command.generation, started.command.status),
        (1, CommandStatus::Pending)
    );
    assert!(matches!(
        store.start_connector(&start("c1")).await,
        Err(StoreError::Rejected(Rejection::NotStopped { .. }))
    ));
    let paused = store.pause_connector(&pause("c1")).await.unwrap();
    assert_eq!(
        (paused.connector.state, paused.connector.generation),
        (ConnectorState::Pausing, 2)
    );
    assert_eq!(paused.command.reason, "test");
    assert_eq!(
        store.get_command(&started.command.id).await.unwrap().status,
        CommandStatus::Superseded
    );
    assert!(matches!(
        store.pause_connector(&pause("c1")).await,
        Err(StoreError::Rejected(Rejection::NotRunning { .. }))
    ));
    store
        .create_connector(new_connector("c2", "c2", ConnectorKind::IncrementalSync))
        .await
        .unwrap();
    assert!(matches!(
        store
            .start_connector(&StartRequest {
                region: Some("mars-1".to_owned()),
                ..start("c2")
            })
            .await,
        Err(StoreError::Rejected(Rejection::UnknownRegion { .. }))
    ));
    let moved = store
        .start_connector(&StartRequest {
            region: Some("eu-1".to_owned()),
            ..start("c2")
        })
        .await
        .unwrap();
    assert_eq!(moved.connector.region, "eu-1");
    assert!(matches!(
        store.start_connector(&start("ghost")).await,
        Err(StoreError::ConnectorNotFound(_))
    ));
}

pub(super) async fn retried_requests_replay_and_conflicting_ones_are_refused<S: FleetStore>(
    store: &S,
) {
    store
        .create_connector(new_connector("c1", "c1", ConnectorKind::IncrementalSync))
        .await
        .unwrap();
    let request = StartRequest {
        request_id: Some("r1".to_owned()),
        ..start("c1")
    };
    let first = store.start_connector(&request).await.unwrap();
    let again = store.start_connector(&request).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.command, first.command);
    let conflicting = PauseRequest {
        request_id: Some("r1".to_owned()),
        ..pause("c1")
    };
    assert!(matches!(
        store.pause_connector(&conflicting).await,
        Err(StoreError::Rejected(Rejection::RequestIdReused { .. }))
    ));
}

pub(super) async fn pull_back_rules_use_the_reported_store_range<S: FleetStore>(store: &S) {
    store
        .create_connector(new_connector("full", "full", ConnectorKind::FullMigration))
        .await
        .unwrap();
    store
        .create_connector(new_connector("inc", "inc", ConnectorKind::IncrementalSync))
        .await
        .unwrap();
    let an_hour_ago = Utc::now() - chrono::Duration::hours(1);
    assert!(matches!(
        store
            .start_connector(&StartRequest {
                pull_back_time: Some(an_hour_ago),
                ..start("full")
            })
            .await,
        Err(StoreError::Rejected(Rejection::PullBackNotSupported { .. }))
    ));
    let session = store
        .open_session(&hello("ag", "eu-2", "10.0.2.7"))
        .await
        .unwrap();
    let mut status = running("inc", 0);
    status.state = ConnectorState::Stopped;
    status.store_range = Some(TimeRange {
        earliest: Utc::now() - chrono::Duration::minutes(30),
        latest: Utc::now(),
    });
    store.record_statuses(&session, &[status]).await.unwrap();
    assert!(
        store
            .get_connector("inc")
            .await
            .unwrap()
            .store_range
            .is_some()
    );
    assert!(matches!(
        store
            .start_connector(&StartRequest {
                pull_back_time: Some(an_hour_ago),
                ..start("inc")
            })
            .await,
        Err(StoreError::Rejected(Rejection::PullBackOutOfRange { .. }))
    ));
    assert_eq!(store.get_connector("inc").await.unwrap().generation, 0);
}

pub(super) async fn a_start_never_skips_a_checkpoint_the_store_no_longer_holds<S: FleetStore>(
    store: &S,
) {
    store
        .create_connector(new_connector("inc", "inc", ConnectorKind::IncrementalSync))
        .await
        .unwrap();
    let session = store
        .open_session(&hello("ag", "eu-2", "10.0.2.7"))
        .await
        .unwrap();
    let checkpoint = Utc::now() - chrono::Duration::hours(2);
    let earliest = Utc::now() - chrono::Duration::hours(1);
    let mut status = running("inc", 0);
    status.state = ConnectorState::Stopped;
    status.checkpoint_time = Some(checkpoint);
    status.store_range = Some(TimeRange {
        earliest,
        latest: Utc::now(),
    });
    store.record_statuses(&session, &[status]).await.unwrap();
    // Refused, in a dry run as in the call, with nothing written.
    for outcome in [
        store.preview_command(&Change::Start(start("inc"))).await,
        store.start_connector(&start("inc")).await,
    ] {
        assert!(
            matches!(
                outcome,
                Err(StoreError::Rejected(Rejection::CheckpointOutOfRange { .. }))
            ),
            "{outcome:?}"
        );
    }
    assert_eq!(store.get_connector("inc").await.unwrap().generation, 0);
    assert!(
        store
            .list_commands("inc", None, 10)
            .await
            .unwrap()
            .0
            .is_empty()
    );
    // The explicit skip starts it, and the command and audit event say so.
    let outcome = store
        .start_connector(&StartRequest {
            skip_to_earliest: true,
            request_id: Some("skip-1".to_owned()),
            ..start("inc")
        })
        .await
        .unwrap();
    assert!(outcome.command.skip_to_earliest);
    assert_eq!(outcome.connector.generation, 1);
    let (events, _) = store
        .list_audit_events(
            &connector_control::domain::AuditFilter {
                connector_id: Some("inc".to_owned()),
                ..Default::default()
            },
            10,
        )
        .await
        .unwrap();
    let started = events
        .iter()
        .find(|e| e.action == "START_CONNECTOR")
        .expect("audited");
    assert!(
        started.detail.contains("skip_to_earliest"),
        "{}",
        started.detail
    );
    // A retry must ask for the same skip.
    let replayed = store
        .start_connector(&StartRequest {
            skip_to_earliest: true,
            request_id: Some("skip-1".to_owned()),
            ..start("inc")
        })
        .await
        .unwrap();
    assert!(replayed.replayed);
    assert!(matches!(
        store
            .start_connector(&StartRequest {
                request_id: Some("skip-1".to_owned()),
                ..start("inc")
            })
            .await,
        Err(StoreError::Rejected(Rejection::RequestIdReused { .. }))
    ));
}
