//! Dry runs (a change decided and not written) and a connector's command
//! history.

use super::*;

use connector_control::domain::{Actor, AuditFilter, CommandKind};

fn by(principal: &str) -> Actor {
    Actor {
        principal: principal.to_owned(),
        peer: "10.9.9.9:5555".to_owned(),
    }
}

/// How many audit events the store holds (fewer than a page).
async fn audit_events<S: FleetStore>(store: &S) -> usize {
    store
        .list_audit_events(&AuditFilter::default(), 500)
        .await
        .unwrap()
        .0
        .len()
}

pub(super) async fn a_dry_run_decides_as_the_call_would_and_writes_nothing<S: FleetStore>(
    store: &S,
) {
    store
        .create_connector(new_connector("c1", "c1", ConnectorKind::IncrementalSync))
        .await
        .unwrap();
    let before = (
        store.get_connector("c1").await.unwrap(),
        audit_events(store).await,
    );

    let preview = store
        .preview_command(&Change::Start(StartRequest {
            actor: by("otto"),
            ..start("c1")
        }))
        .await
        .unwrap();
    assert!(!preview.replayed);
    assert_eq!(preview.connector.state, ConnectorState::Starting);
    assert_eq!(preview.connector.desired_state, ConnectorState::Running);
    assert_eq!(preview.connector.generation, 1);
    assert_eq!(preview.command.id, "", "no command was written");
    assert_eq!(preview.command.kind, CommandKind::Start);
    assert_eq!(preview.command.region, "eu-2");
    assert_eq!(preview.command.principal, "otto");
    let after = (
        store.get_connector("c1").await.unwrap(),
        audit_events(store).await,
    );
    assert_eq!(
        after, before,
        "the connector and the audit trail are unchanged"
    );
    assert!(
        store
            .list_commands(&history("c1", None, 10))
            .await
            .unwrap()
            .0
            .is_empty()
    );
    assert!(store.pending_regions().await.unwrap().is_empty());

    // The checks are the call's: a pause of a stopped connector, an
    // unknown connector, an unknown region override.
    assert!(matches!(
        store.preview_command(&Change::Pause(pause("c1"))).await,
        Err(StoreError::Rejected(Rejection::NotRunning { .. }))
    ));
    assert!(matches!(
        store.preview_command(&Change::Start(start("nope"))).await,
        Err(StoreError::ConnectorNotFound(_))
    ));
    assert!(matches!(
        store
            .preview_command(&Change::Start(StartRequest {
                region: Some("mars-1".to_owned()),
                ..start("c1")
            }))
            .await,
        Err(StoreError::Rejected(Rejection::UnknownRegion { .. }))
    ));

    // A used request id previews the call it repeats: its command.
    let started = store
        .start_connector(&StartRequest {
            request_id: Some("r-1".to_owned()),
            ..start("c1")
        })
        .await
        .unwrap();
    let replay = store
        .preview_command(&Change::Start(StartRequest {
            request_id: Some("r-1".to_owned()),
            ..start("c1")
        }))
        .await
        .unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.command.id, started.command.id);
    let pause_preview = store
        .preview_command(&Change::Pause(pause("c1")))
        .await
        .unwrap();
    assert_eq!(pause_preview.connector.state, ConnectorState::Pausing);
    assert_eq!(pause_preview.command.generation, 2);
    assert_eq!(pause_preview.command.reason, "test");
    assert_eq!(
        store.get_connector("c1").await.unwrap().state,
        ConnectorState::Starting,
        "the start stays what the connector does"
    );
    assert_eq!(
        store
            .list_commands(&history("c1", None, 10))
            .await
            .unwrap()
            .0
            .len(),
        1
    );
}

pub(super) async fn commands_list_newest_first_with_who_and_page<S: FleetStore>(store: &S) {
    for id in ["c1", "quiet"] {
        store
            .create_connector(new_connector(id, id, ConnectorKind::IncrementalSync))
            .await
            .unwrap();
    }
    store
        .start_connector(&StartRequest {
            actor: by("ada"),
            ..start("c1")
        })
        .await
        .unwrap();
    store
        .pause_connector(&PauseRequest {
            actor: by("otto"),
            reason: "INC-7 latency".to_owned(),
            ..pause("c1")
        })
        .await
        .unwrap();
    // Its agent reports the pause carried out.
    let session = store
        .open_session(&hello("ag", "eu-2", "10.0.2.7"))
        .await
        .unwrap();
    let stopped = ObservedStatus {
        state: ConnectorState::Stopped,
        ..running("c1", 2)
    };
    store.record_statuses(&session, &[stopped]).await.unwrap();
    store
        .start_connector(&StartRequest {
            actor: by("ada"),
            region: Some("eu-1".to_owned()),
            ..start("c1")
        })
        .await
        .unwrap();

    let (page, more) = store.list_commands(&history("c1", None, 2)).await.unwrap();
    assert!(more);
    let seen: Vec<_> = page
        .iter()
        .map(|c| (c.generation, c.kind, c.principal.as_str(), c.status))
        .collect();
    assert_eq!(
        seen,
        [
            (3, CommandKind::Start, "ada", CommandStatus::Pending),
            (2, CommandKind::Pause, "otto", CommandStatus::Superseded),
        ]
    );
    assert_eq!(page[0].region, "eu-1");
    assert_eq!(page[1].reason, "INC-7 latency");
    let (rest, more) = store
        .list_commands(&history("c1", Some(2), 2))
        .await
        .unwrap();
    assert!(!more);
    assert_eq!(rest.len(), 1);
    assert_eq!((rest[0].generation, rest[0].principal.as_str()), (1, "ada"));

    let (none, more) = store
        .list_commands(&history("quiet", None, 10))
        .await
        .unwrap();
    assert!(none.is_empty() && !more, "a connector never started");
    assert!(matches!(
        store.list_commands(&history("nope", None, 10)).await,
        Err(StoreError::ConnectorNotFound(id)) if id == "nope"
    ));
}
