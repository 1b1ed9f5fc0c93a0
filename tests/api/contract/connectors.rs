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
            .list_commands(&history("inc", None, 10))
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

pub(super) async fn mark_stopped_frees_a_connector_whose_agent_is_gone_and_fences_it<
    S: FleetStore,
>(
    store: &S,
) {
    store
        .create_connector(new_connector("c1", "c1", ConnectorKind::IncrementalSync))
        .await
        .unwrap();
    let started = store.start_connector(&start("c1")).await.unwrap();
    let session = store
        .open_session(&hello("ag", "eu-2", "10.0.2.7"))
        .await
        .unwrap();
    let claimed = store
        .claim_commands(claim("eu-2", &[(session.clone(), 4)]))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "the start is with the agent");
    let mark = |offline_after, request_id: Option<&str>| MarkStoppedRequest {
        connector_id: "c1".to_owned(),
        reason: "INC-7 host lost".to_owned(),
        request_id: request_id.map(str::to_owned),
        actor: Default::default(),
        offline_after,
    };
    // Its agent is online: pause it instead.
    assert!(matches!(
        store.mark_stopped(&mark(HOUR, None), false).await,
        Err(StoreError::Rejected(Rejection::AgentOnline { .. }))
    ));
    // Silent (offline_after 0): a dry run shows the mark and writes nothing.
    let (preview, _) = store
        .mark_stopped(&mark(Duration::ZERO, None), true)
        .await
        .unwrap();
    assert_eq!(preview.state, ConnectorState::Stopped);
    let before = store.get_connector("c1").await.unwrap();
    assert_eq!(before.state, ConnectorState::Starting);
    let (marked, replayed) = store
        .mark_stopped(&mark(Duration::ZERO, Some("m-1")), false)
        .await
        .unwrap();
    assert!(!replayed);
    assert_eq!(
        (marked.state, marked.desired_state, marked.generation),
        (ConnectorState::Stopped, ConnectorState::Stopped, 2)
    );
    assert!(
        marked.status_message.contains("INC-7"),
        "{}",
        marked.status_message
    );
    let start_command = store.get_command(&started.command.id).await.unwrap();
    assert_eq!(start_command.status, CommandStatus::Superseded);
    // A retry changes nothing; a second mark is refused.
    let (again, replayed) = store
        .mark_stopped(&mark(Duration::ZERO, Some("m-1")), false)
        .await
        .unwrap();
    assert!(replayed);
    assert_eq!(again.generation, 2);
    // Another principal's call with that request id is refused.
    assert!(matches!(
        store
            .mark_stopped(
                &MarkStoppedRequest {
                    actor: connector_control::domain::Actor {
                        principal: "eve".to_owned(),
                        peer: String::new(),
                    },
                    ..mark(Duration::ZERO, Some("m-1"))
                },
                false,
            )
            .await,
        Err(StoreError::Rejected(Rejection::RequestIdReused { .. }))
    ));
    assert!(matches!(
        store.mark_stopped(&mark(Duration::ZERO, None), false).await,
        Err(StoreError::Rejected(Rejection::AlreadyStopped { .. }))
    ));
    // The lost agent's late words change nothing: its answer to the start,
    // and its report of the generation it ran.
    store
        .complete_command(
            &session,
            &CommandReport {
                command_id: started.command.id.clone(),
                success: true,
                error_reason: String::new(),
                error_message: String::new(),
                status: Some(running("c1", 1)),
                trace_context: Default::default(),
                retriable: None,
            },
        )
        .await
        .unwrap();
    store
        .record_statuses(&session, &[running("c1", 1)])
        .await
        .unwrap();
    let after = store.get_connector("c1").await.unwrap();
    assert_eq!(after.state, ConnectorState::Stopped);
    assert!(
        after.status_message.contains("it is told to stop"),
        "{}",
        after.status_message
    );
    // It starts again as any stopped connector.
    let restarted = store.start_connector(&start("c1")).await.unwrap();
    assert_eq!(restarted.command.generation, 3);
    let (events, _) = store
        .list_audit_events(
            &connector_control::domain::AuditFilter {
                connector_id: Some("c1".to_owned()),
                ..Default::default()
            },
            10,
        )
        .await
        .unwrap();
    let audited: Vec<_> = events
        .iter()
        .filter(|e| e.action == "MARK_CONNECTOR_STOPPED")
        .collect();
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].reason, "INC-7 host lost");
    assert_eq!(audited[0].request_id, "m-1");
}

pub(super) async fn a_pull_back_the_connected_agents_cannot_do_is_refused<S: FleetStore>(
    store: &S,
) {
    store
        .create_connector(new_connector("inc", "inc", ConnectorKind::IncrementalSync))
        .await
        .unwrap();
    let unable = store
        .open_session(&Hello {
            capabilities: Capabilities {
                driver: "process".to_owned(),
                pull_back: false,
            },
            ..hello("ag", "eu-2", "10.0.2.7")
        })
        .await
        .unwrap();
    let pulling_back = StartRequest {
        pull_back_time: Some(Utc::now() - chrono::Duration::minutes(5)),
        ..start("inc")
    };
    for outcome in [
        store
            .preview_command(&Change::Start(pulling_back.clone()))
            .await,
        store.start_connector(&pulling_back).await,
    ] {
        match outcome {
            Err(StoreError::Rejected(Rejection::PullBackNotSupportedByAgents {
                region,
                agents,
                ..
            })) => assert_eq!((region.as_str(), agents), ("eu-2", vec!["ag".to_owned()])),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(store.get_connector("inc").await.unwrap().generation, 0);
    // Without pull-back, or once that agent has gone, it starts.
    store
        .preview_command(&Change::Start(start("inc")))
        .await
        .unwrap();
    store
        .close_session(&unable, &SessionEnd::Disconnected)
        .await
        .unwrap();
    let started = store.start_connector(&pulling_back).await.unwrap();
    assert!(started.command.pull_back_time.is_some());
}
