//! Commands: claimed once, redelivered to a new session, completed with
//! fencing; and stores that do not fail on each other's locks.

use super::*;

pub(super) async fn commands_are_claimed_once_redelivered_and_completed_with_fencing<
    S: FleetStore,
>(
    store: &S,
) {
    store
        .create_connector(new_connector("c1", "c1", ConnectorKind::IncrementalSync))
        .await
        .unwrap();
    let old = store
        .open_session(&hello("ag", "eu-2", "10.0.2.7"))
        .await
        .unwrap();
    let other_region = store
        .open_session(&hello("far", "eu-1", "10.0.1.7"))
        .await
        .unwrap();
    let accepted = store.start_connector(&start("c1")).await.unwrap().command;
    assert_eq!(store.pending_regions().await.unwrap(), ["eu-2"]);
    assert!(
        store
            .claim_commands(claim("eu-1", &[(other_region, 16)]))
            .await
            .unwrap()
            .is_empty()
    );
    let claimed = store
        .claim_commands(claim("eu-2", &[(old.clone(), 16)]))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].1.id, accepted.id);
    assert_eq!(claimed[0].1.status, CommandStatus::Delivered);
    // A new session: the start is delivered again (same command); the old
    // session is fenced.
    let new = store
        .open_session(&hello("ag", "eu-2", "10.0.2.7"))
        .await
        .unwrap();
    assert_eq!(new.epoch, old.epoch + 1);
    let again = store
        .claim_commands(claim("eu-2", &[(new.clone(), 16)]))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1.id, accepted.id);
    let report = CommandReport {
        retriable: None,
        trace_context: Default::default(),
        command_id: accepted.id.clone(),
        success: true,
        error_reason: String::new(),
        error_message: String::new(),
        status: Some(running("c1", 1)),
    };
    assert!(matches!(
        store.complete_command(&old, &report).await,
        Err(StoreError::Fenced { .. })
    ));

    // A pause supersedes the delivered, unanswered start at once: the
    // agent is handed the pause, not the start first.
    let paused = store.pause_connector(&pause("c1")).await.unwrap().command;
    assert_eq!(
        store.get_command(&accepted.id).await.unwrap().status,
        CommandStatus::Superseded
    );
    let pause = store
        .claim_commands(claim("eu-2", &[(new.clone(), 16)]))
        .await
        .unwrap();
    assert_eq!(pause.len(), 1);
    assert_eq!(pause[0].1.id, paused.id);

    // The start's late answer is recorded, and overrides nothing.
    let late = store
        .complete_command(&new, &report)
        .await
        .unwrap()
        .expect("a late result is recorded");
    assert_eq!(late.status, CommandStatus::Superseded);
    assert_eq!(
        late.late_result.map(|(status, _)| status),
        Some(CommandStatus::Succeeded)
    );
    assert!(
        store
            .complete_command(&new, &report)
            .await
            .unwrap()
            .is_none(),
        "a duplicate late answer changes nothing"
    );
    // The start was older than the pause: the pause stays, placement is set.
    let connector = store.get_connector("c1").await.unwrap();
    assert_eq!(connector.state, ConnectorState::Pausing);
    assert_eq!(connector.desired_state, ConnectorState::Stopped);
    assert_eq!(connector.agent_id, "ag");
    store.release_command(&new, &pause[0].1.id).await.unwrap();
    assert_eq!(
        store.get_command(&pause[0].1.id).await.unwrap().status,
        CommandStatus::Pending
    );
    assert_eq!(
        store
            .close_session(&old, &SessionEnd::Disconnected)
            .await
            .unwrap(),
        0,
        "fenced: no-op"
    );
}

/// Opening a session (agent, then its commands and connectors), claiming
/// (agents, then commands and connectors), issuing a command (connector,
/// then its commands) and the liveness sweep (agents, commands, connectors)
/// take the same rows. Run together, over and over, none fails: lock
/// orders do not cycle, and a lost deadlock is run again.
pub(super) async fn concurrent_sessions_claims_changes_and_sweeps_never_fail_on_each_others_locks<
    S: FleetStore,
>(
    store: &S,
) {
    let ids: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
    for id in &ids {
        store
            .create_connector(new_connector(id, id, ConnectorKind::IncrementalSync))
            .await
            .unwrap();
    }
    let mut session = store
        .open_session(&hello("ag", "eu-2", "10.0.2.7"))
        .await
        .unwrap();
    for round in 0..15 {
        let reported: Vec<ObservedStatus> = ids.iter().map(|id| running(id, 0)).collect();
        let changes = async {
            for id in &ids {
                // Whatever state each is in: a start or a pause, or a
                // refusal (wrong state), but never a store failure.
                for result in [
                    store.start_connector(&start(id)).await,
                    store.pause_connector(&pause(id)).await,
                ] {
                    assert!(
                        matches!(result, Ok(_) | Err(StoreError::Rejected(_))),
                        "round {round}: {result:?}"
                    );
                }
            }
        };
        let again = Hello {
            connectors: reported,
            ..hello("ag", "eu-2", "10.0.2.7")
        };
        let reconnect = store.open_session(&again);
        let room = [(session.clone(), 16)];
        let claiming = store.claim_commands(claim("eu-2", &room));
        let sweep = async {
            let lease = store.acquire_lease(HOUR).await.unwrap().unwrap();
            store.sweep_offline(lease, HOUR, HOUR).await
        };
        let ((), reconnected, claimed, swept) = tokio::join!(changes, reconnect, claiming, sweep);
        session = reconnected.unwrap_or_else(|e| panic!("round {round}: open_session: {e:?}"));
        claimed.unwrap_or_else(|e| panic!("round {round}: claim_commands: {e:?}"));
        swept.unwrap_or_else(|e| panic!("round {round}: sweep_offline: {e:?}"));
    }
}
