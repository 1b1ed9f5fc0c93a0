//! Agent sessions: heartbeats, liveness, status batches, the region an
//! agent id belongs to, and the audit of every session end.

use super::*;

pub(super) async fn heartbeats_flush_and_silent_agents_go_offline<S: FleetStore>(store: &S) {
    store
        .create_connector(new_connector("c1", "c1", ConnectorKind::IncrementalSync))
        .await
        .unwrap();
    let session = store
        .open_session(&hello("ag", "eu-2", "10.0.2.7"))
        .await
        .unwrap();
    store
        .record_statuses(&session, &[running("c1", 0)])
        .await
        .unwrap();
    assert_eq!(
        store.get_connector("c1").await.unwrap().state,
        ConnectorState::Running
    );

    // Silent for longer than the bound: its running connector is UNKNOWN,
    // until it reports again.
    store.replica_heartbeat("test", false).await.unwrap();
    let lease = store
        .acquire_lease(HOUR)
        .await
        .unwrap()
        .expect("the only replica leads");
    assert_eq!(store.sweep_offline(lease, HOUR, HOUR).await.unwrap(), 0);
    assert!(
        store
            .sweep_offline(lease, Duration::ZERO, HOUR)
            .await
            .unwrap()
            >= 1
    );
    assert_eq!(
        store.get_connector("c1").await.unwrap().state,
        ConnectorState::Unknown
    );
    store
        .record_statuses(&session, &[running("c1", 0)])
        .await
        .unwrap();
    assert_eq!(
        store.get_connector("c1").await.unwrap().state,
        ConnectorState::Running
    );

    // Heartbeats kept in memory are written in one batch; a superseded
    // session's entry is skipped.
    let later = Utc::now() + chrono::Duration::minutes(10);
    store
        .flush_heartbeats(&[
            PendingHeartbeat {
                agent_id: "ag".to_owned(),
                epoch: session.epoch,
                time: later,
            },
            PendingHeartbeat {
                agent_id: "ag".to_owned(),
                epoch: session.epoch - 1,
                time: later + chrono::Duration::hours(1),
            },
        ])
        .await
        .unwrap();
    let agents = store.list_agents(None, HOUR).await.unwrap();
    assert_eq!(agents.len(), 1);
    assert!(agents[0].online);
    assert_eq!(agents[0].connectors, 1);
    assert_eq!(agents[0].last_heartbeat_time.timestamp(), later.timestamp());
    let regions = store.list_regions(HOUR).await.unwrap();
    assert_eq!(regions.len(), 1);
    assert_eq!((regions[0].online_agents, regions[0].connectors), (1, 1));

    store
        .close_session(&session, &SessionEnd::Disconnected)
        .await
        .unwrap();
    assert!(!store.list_agents(Some("eu-2"), HOUR).await.unwrap()[0].online);
}

pub(super) async fn status_batches_apply_current_sessions_and_name_superseded_ones<
    S: FleetStore,
>(
    store: &S,
) {
    for id in ["c1", "c2"] {
        store
            .create_connector(new_connector(id, id, ConnectorKind::IncrementalSync))
            .await
            .unwrap();
    }
    let live = store
        .open_session(&hello("live", "eu-2", "10.0.2.7"))
        .await
        .unwrap();
    let old = store
        .open_session(&hello("moved", "eu-2", "10.0.2.8"))
        .await
        .unwrap();
    // The agent reconnected: its old session is superseded.
    store
        .open_session(&hello("moved", "eu-2", "10.0.2.8"))
        .await
        .unwrap();
    let fenced = store
        .record_status_batch(&[
            (live.clone(), statuses(vec![running("c1", 0)])),
            (old.clone(), statuses(vec![running("c2", 0)])),
        ])
        .await
        .unwrap();
    assert_eq!(fenced.len(), 1);
    assert_eq!(fenced[0].session_id, old.session_id);
    let c1 = store.get_connector("c1").await.unwrap();
    assert_eq!(c1.state, ConnectorState::Running);
    assert_eq!(c1.agent_id, "live");
    assert_eq!(
        store.get_connector("c2").await.unwrap().state,
        ConnectorState::Stopped,
        "nothing written for the superseded session"
    );
}

fn statuses(statuses: Vec<ObservedStatus>) -> SessionReport {
    SessionReport {
        statuses,
        gone: Vec::new(),
    }
}

pub(super) async fn a_connector_its_agent_comes_back_without_is_not_running<S: FleetStore>(
    store: &S,
) {
    // c-run and c-stop ran on the agent (c-stop meant to be stopped: it
    // ran although paused), c-moving has a start in flight; the agent
    // went silent, so the ones settled became UNKNOWN.
    for id in ["c-run", "c-stop", "c-moving"] {
        store
            .create_connector(new_connector(id, id, ConnectorKind::IncrementalSync))
            .await
            .unwrap();
        store.start_connector(&start(id)).await.unwrap();
    }
    let session = store
        .open_session(&hello("ag", "eu-2", "10.0.2.7"))
        .await
        .unwrap();
    store
        .record_statuses(&session, &[running("c-run", 1), running("c-stop", 1)])
        .await
        .unwrap();
    store.pause_connector(&pause("c-stop")).await.unwrap();
    store
        .record_statuses(&session, &[running("c-stop", 1)])
        .await
        .unwrap();
    store.replica_heartbeat("test", false).await.unwrap();
    let lease = store.acquire_lease(HOUR).await.unwrap().expect("leads");
    store
        .sweep_offline(lease, Duration::ZERO, HOUR)
        .await
        .unwrap();
    assert_eq!(
        store.get_connector("c-run").await.unwrap().state,
        ConnectorState::Unknown
    );

    // It comes back running none of them.
    let back = store
        .open_session(&hello("ag", "eu-2", "10.0.2.7"))
        .await
        .unwrap();
    let run = store.get_connector("c-run").await.unwrap();
    assert_eq!(run.state, ConnectorState::Failed, "meant to run: FAILED");
    assert_eq!(run.desired_state, ConnectorState::Running);
    assert!(
        run.status_message
            .contains("agent ag reconnected without it"),
        "{}",
        run.status_message
    );
    let paused = store.get_connector("c-stop").await.unwrap();
    assert_eq!(
        (paused.state, paused.desired_state),
        (ConnectorState::Pausing, ConnectorState::Stopped),
        "a pause in flight is redelivered and answered, not presumed"
    );
    assert_eq!(
        store.get_connector("c-moving").await.unwrap().state,
        ConnectorState::Starting
    );

    // A heartbeat that stops listing a connector: the same, but only
    // while no newer command was issued than the agent last reported.
    store
        .record_statuses(&back, &[running("c-run", 1)])
        .await
        .unwrap();
    assert_eq!(
        store.get_connector("c-run").await.unwrap().state,
        ConnectorState::Running
    );
    let gone = |generation| SessionReport {
        statuses: Vec::new(),
        gone: vec![connector_control::domain::Gone {
            connector_id: "c-run".to_owned(),
            generation: Some(generation),
        }],
    };
    store
        .record_status_batch(&[(back.clone(), gone(0))])
        .await
        .unwrap();
    assert_eq!(
        store.get_connector("c-run").await.unwrap().state,
        ConnectorState::Running,
        "generation 1 was issued after what the agent reported"
    );
    store
        .record_status_batch(&[(back.clone(), gone(1))])
        .await
        .unwrap();
    let run = store.get_connector("c-run").await.unwrap();
    assert_eq!(run.state, ConnectorState::Failed);
    assert!(
        run.status_message.contains("agent ag stopped reporting it"),
        "{}",
        run.status_message
    );
}

pub(super) async fn an_agent_id_belongs_to_one_region<S: FleetStore>(store: &S) {
    let first = store
        .open_session(&hello("a1", "us-1", "10.1.0.7"))
        .await
        .unwrap();
    let refused = store.open_session(&hello("a1", "eu-1", "10.6.6.6")).await;
    assert!(
        matches!(
            &refused,
            Err(StoreError::AgentInOtherRegion { registered, claimed, .. })
                if registered == "us-1" && claimed == "eu-1"
        ),
        "{refused:?}"
    );
    // Nothing was written: the first session is still current.
    store
        .record_statuses(&first, &[])
        .await
        .expect("the first session is not fenced");
    let agents = store
        .list_agents(None, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(
        (agents[0].region.as_str(), agents[0].server_ip.as_str()),
        ("us-1", "10.1.0.7")
    );
    // The same region reconnects as usual.
    let second = store
        .open_session(&hello("a1", "us-1", "10.1.0.8"))
        .await
        .unwrap();
    assert_eq!(second.epoch, first.epoch + 1);
}

pub(super) async fn every_session_end_is_audited_once_with_why<S: FleetStore>(store: &S) {
    let opened_by = |principal: &str| Hello {
        actor: connector_control::domain::Actor {
            principal: principal.to_owned(),
            peer: format!("{principal}:1"),
        },
        ..hello("a1", "eu-2", "10.0.2.7")
    };
    let first = store.open_session(&opened_by("first")).await.unwrap();
    // A newer session supersedes it: the first one's end is recorded with
    // whoever opened it.
    let second = store.open_session(&opened_by("second")).await.unwrap();
    assert_eq!(
        store
            .close_session(&first, &SessionEnd::Disconnected)
            .await
            .unwrap(),
        0
    );
    store
        .close_session(
            &second,
            &SessionEnd::Violation("MALFORMED_MESSAGE".to_owned()),
        )
        .await
        .unwrap();
    // Closing twice records nothing more.
    store
        .close_session(&second, &SessionEnd::Disconnected)
        .await
        .unwrap();
    // A session left open by an earlier run of this replica.
    let third = store.open_session(&opened_by("third")).await.unwrap();
    assert_eq!(store.end_orphaned_sessions(HOUR).await.unwrap(), 1);
    assert_eq!(store.end_orphaned_sessions(HOUR).await.unwrap(), 0);
    store
        .record_statuses(&third, &[])
        .await
        .expect("epoch unchanged");

    let (events, _) = store
        .list_audit_events(&connector_control::domain::AuditFilter::default(), 100)
        .await
        .unwrap();
    let ends: Vec<(String, String, String)> = events
        .iter()
        .rev()
        .filter(|e| e.action == "AGENT_SESSION_END")
        .map(|e| (e.principal.clone(), e.peer.clone(), e.reason.clone()))
        .collect();
    let end = |who: &str, reason: &str| (who.to_owned(), format!("{who}:1"), reason.to_owned());
    assert_eq!(
        ends,
        [
            end("first", "SESSION_SUPERSEDED"),
            end("second", "MALFORMED_MESSAGE"),
            end("third", "REPLICA_RESTARTED"),
        ]
    );
    let starts = events
        .iter()
        .filter(|e| e.action == "AGENT_SESSION_START")
        .count();
    assert_eq!(starts, 3, "each start has its end");
}
