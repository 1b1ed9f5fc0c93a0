//! The audit trail.

use super::*;

use connector_control::domain::{Actor, AuditAction, AuditFilter, NewAuditEvent};

/// A history of six events: a create by ada, a start and a pause by otto, a
/// refused create of otto's, an agent session's start and end. The start's
/// command id.
async fn record_a_history<S: FleetStore>(store: &S) -> String {
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

    started.command.id
}

async fn list<S: FleetStore>(
    store: &S,
    filter: AuditFilter,
    limit: usize,
) -> (Vec<connector_control::domain::AuditEvent>, bool) {
    store.list_audit_events(&filter, limit).await.unwrap()
}

pub(super) async fn changes_and_sessions_are_audited_newest_first_with_who_and_from_where<
    S: FleetStore,
>(
    store: &S,
) {
    let command_id = record_a_history(store).await;
    let (all, more) = list(store, AuditFilter::default(), 100).await;
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
    assert!(start_event.detail.contains(&command_id));
    assert_eq!(all[3].reason, "INC-1 latency");
    assert!(all[0].detail.contains("agent ag"));
}

pub(super) async fn audit_events_filter_by_connector_principal_and_time_and_page<S: FleetStore>(
    store: &S,
) {
    record_a_history(store).await;
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
}

pub(super) async fn a_refused_change_leaves_no_event_of_its_own<S: FleetStore>(store: &S) {
    record_a_history(store).await;
    let of = |filter: AuditFilter, limit| async move {
        store.list_audit_events(&filter, limit).await.unwrap()
    };
    // Nothing was written.
    assert!(store.start_connector(&start("missing")).await.is_err());
    assert_eq!(of(AuditFilter::default(), 100).await.0.len(), 6);
}
