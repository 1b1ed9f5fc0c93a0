//! The audit trail, and the lagging connectors the metrics count.

use super::*;

pub(super) async fn changes_are_audited_with_who_and_refusals_appended<S: FleetStore>(store: &S) {
    use connector_control::domain::{Actor, AuditAction, AuditFilter, NewAuditEvent};
    let ada = Actor {
        principal: "ada".to_owned(),
        peer: "10.9.9.9:5555".to_owned(),
    };
    let otto = Actor {
        principal: "otto".to_owned(),
        peer: "10.9.9.8:5555".to_owned(),
    };
    store
        .create_connector(NewConnector {
            actor: ada.clone(),
            ..new_connector("c1", "orders", ConnectorKind::IncrementalSync)
        })
        .await
        .unwrap();
    let started = store
        .start_connector(&StartRequest {
            request_id: Some("r-1".to_owned()),
            actor: otto.clone(),
            ..start("c1")
        })
        .await
        .unwrap();
    store
        .pause_connector(&PauseRequest {
            reason: "INC-1 latency".to_owned(),
            actor: otto.clone(),
            ..pause("c1")
        })
        .await
        .unwrap();
    store
        .append_audit(&NewAuditEvent {
            outcome: "PERMISSION_DENIED".to_owned(),
            reason: "PERMISSION_DENIED".to_owned(),
            ..NewAuditEvent::ok(&otto, AuditAction::CreateConnector, "c2")
        })
        .await
        .unwrap();
    let session = store
        .open_session(&Hello {
            actor: Actor {
                principal: "agent-eu-2".to_owned(),
                peer: "10.0.2.7:4000".to_owned(),
            },
            ..hello("ag", "eu-2", "10.0.2.7")
        })
        .await
        .unwrap();
    store
        .close_session(&session, &SessionEnd::Disconnected)
        .await
        .unwrap();

    let (all, more) = store
        .list_audit_events(&AuditFilter::default(), 100)
        .await
        .unwrap();
    assert!(!more);
    let actions: Vec<(&str, &str, &str)> = all
        .iter()
        .map(|e| (e.action.as_str(), e.principal.as_str(), e.outcome.as_str()))
        .collect();
    // Newest first.
    assert_eq!(
        actions,
        [
            ("AGENT_SESSION_END", "agent-eu-2", "OK"),
            ("AGENT_SESSION_START", "agent-eu-2", "OK"),
            ("CREATE_CONNECTOR", "otto", "PERMISSION_DENIED"),
            ("PAUSE_CONNECTOR", "otto", "OK"),
            ("START_CONNECTOR", "otto", "OK"),
            ("CREATE_CONNECTOR", "ada", "OK"),
        ]
    );
    let start_event = &all[4];
    assert_eq!(start_event.request_id, "r-1");
    assert_eq!(start_event.peer, "10.9.9.8:5555");
    assert!(start_event.detail.contains(&started.command.id));
    assert_eq!(all[3].reason, "INC-1 latency");
    assert!(all[0].detail.contains("agent ag"));

    // Filters and pages.
    let of = |filter: AuditFilter, limit| async move {
        store.list_audit_events(&filter, limit).await.unwrap()
    };
    let (c1, _) = of(
        AuditFilter {
            connector_id: Some("c1".to_owned()),
            ..Default::default()
        },
        100,
    )
    .await;
    assert_eq!(c1.len(), 3);
    let (by_otto, more) = of(
        AuditFilter {
            principal: Some("otto".to_owned()),
            ..Default::default()
        },
        2,
    )
    .await;
    assert_eq!(by_otto.len(), 2);
    assert!(more);
    let (rest, more) = of(
        AuditFilter {
            principal: Some("otto".to_owned()),
            before_id: Some(by_otto[1].id),
            ..Default::default()
        },
        2,
    )
    .await;
    assert_eq!((rest.len(), more), (1, false));
    assert_eq!(rest[0].action, "START_CONNECTOR");
    let (future, _) = of(
        AuditFilter {
            start_time: Some(Utc::now() + chrono::Duration::hours(1)),
            ..Default::default()
        },
        100,
    )
    .await;
    assert!(future.is_empty());
    let (past, _) = of(
        AuditFilter {
            end_time: Some(Utc::now() + chrono::Duration::hours(1)),
            start_time: Some(Utc::now() - chrono::Duration::hours(1)),
            ..Default::default()
        },
        100,
    )
    .await;
    assert_eq!(past.len(), 6);

    // A refused change leaves no event of its own (nothing was written).
    assert!(store.start_connector(&start("missing")).await.is_err());
    assert_eq!(of(AuditFilter::default(), 100).await.0.len(), 6);
}

/// Starts `id` and has `session` carry it out, reporting `latency`.
pub(super) async fn run_on<S: FleetStore>(
    store: &S,
    session: &connector_control::domain::Session,
    id: &str,
    latency: u64,
) {
    let command = store.start_connector(&start(id)).await.unwrap().command;
    let claimed = store
        .claim_commands("eu-2", &[(session.clone(), 16)], HOUR)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "{id}: {claimed:?}");
    assert_eq!(claimed[0].1.id, command.id);
    let report = CommandReport {
        trace_context: Default::default(),
        command_id: command.id,
        success: true,
        error_reason: String::new(),
        error_message: String::new(),
        status: Some(ObservedStatus {
            latency: Some(Duration::from_secs(latency)),
            ..running(id, command.generation)
        }),
    };
    store.complete_command(session, &report).await.unwrap();
}

pub(super) async fn lagging_connectors_are_found_and_counted<S: FleetStore>(store: &S) {
    for id in ["c1", "c2", "c3", "c4"] {
        store
            .create_connector(new_connector(id, id, ConnectorKind::IncrementalSync))
            .await
            .unwrap();
    }
    let live = store
        .open_session(&hello("live", "eu-2", "10.0.2.7"))
        .await
        .unwrap();
    run_on(store, &live, "c1", 90).await;
    run_on(store, &live, "c2", 5).await;
    // Connected now, so that it is the least loaded agent for c3.
    let silent = store
        .open_session(&hello("silent", "eu-2", "10.0.2.8"))
        .await
        .unwrap();
    run_on(store, &silent, "c3", 90).await;
    // "live" is heard from later; "silent" goes offline: c3 is UNKNOWN.
    store
        .flush_heartbeats(&[Seen {
            agent_id: "live".to_owned(),
            epoch: live.epoch,
            time: Utc::now() + chrono::Duration::minutes(10),
        }])
        .await
        .unwrap();
    store.replica_heartbeat("test", false).await.unwrap();
    let lease = store.acquire_lease(HOUR).await.unwrap().unwrap();
    store
        .sweep_offline(lease, Duration::ZERO, HOUR)
        .await
        .unwrap();
    assert_eq!(
        store.get_connector("c3").await.unwrap().state,
        ConnectorState::Unknown
    );
    // c4: a start no agent has taken yet.
    store.start_connector(&start("c4")).await.unwrap();

    let lagging = |alert: u64| SearchFilter {
        lagging_over: Some(Duration::from_secs(alert)),
        ..Default::default()
    };
    let ids = |page: connector_control::store::Page| {
        page.connectors
            .into_iter()
            .map(|c| c.id)
            .collect::<Vec<_>>()
    };
    let page = store.list_connectors(&lagging(60), None, 10).await.unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(ids(page), ["c1", "c3"]);
    // Strictly over the threshold.
    let page = store.list_connectors(&lagging(90), None, 10).await.unwrap();
    assert_eq!(ids(page), ["c3"]);
    let page = store.list_connectors(&lagging(1), None, 10).await.unwrap();
    assert_eq!(ids(page), ["c1", "c2", "c3"]);
    // Keyset pages within the filter.
    let after = Cursor {
        name: "c1".to_owned(),
        id: "c1".to_owned(),
    };
    let page = store
        .list_connectors(&lagging(60), Some(&after), 10)
        .await
        .unwrap();
    assert_eq!(ids(page), ["c3"]);

    // Every filter at once, with a cursor: parameters line up.
    let everything = SearchFilter {
        query: "c".to_owned(),
        region: "eu-2".to_owned(),
        states: vec![ConnectorState::Running, ConnectorState::Unknown],
        lagging_over: Some(Duration::from_secs(60)),
    };
    let page = store.list_connectors(&everything, None, 10).await.unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(ids(page), ["c1", "c3"]);
    let page = store
        .list_connectors(&everything, Some(&after), 10)
        .await
        .unwrap();
    assert_eq!(ids(page), ["c3"]);

    let sample = store.metrics_sample(Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        sample
            .connectors
            .get(&("eu-2".to_owned(), ConnectorState::Running)),
        Some(&2)
    );
    assert_eq!(
        sample
            .connectors
            .get(&("eu-2".to_owned(), ConnectorState::Unknown)),
        Some(&1)
    );
    assert_eq!(
        sample
            .connectors
            .get(&("eu-2".to_owned(), ConnectorState::Starting)),
        Some(&1)
    );
    assert_eq!(
        sample.lagging.get(&("eu-2".to_owned(), LagCause::Latency)),
        Some(&1)
    );
    assert_eq!(
        sample
            .lagging
            .get(&("eu-2".to_owned(), LagCause::AgentOffline)),
        Some(&1)
    );
    let pending = sample
        .open_commands
        .get(&("eu-2".to_owned(), CommandStatus::Pending))
        .expect("c4's start is pending");
    assert_eq!(pending.count, 1);
    assert!(pending.oldest_age < HOUR);
    assert_eq!(sample.open_commands.len(), 1, "{:?}", sample.open_commands);
    // Zeros are explicit, so that a count falling to zero reads 0.
    let zeros = sample.with_zeros();
    assert_eq!(
        zeros
            .open_commands
            .get(&("eu-2".to_owned(), CommandStatus::Delivered))
            .map(|open| open.count),
        Some(0)
    );
    assert_eq!(
        zeros
            .connectors
            .get(&("eu-2".to_owned(), ConnectorState::Failed)),
        Some(&0)
    );
}
