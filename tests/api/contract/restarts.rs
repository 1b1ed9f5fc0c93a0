//! Automatic starts, one round at a time with the round's clock in the
//! test's hands: scheduled after the backoff, started once when due,
//! cancelled by a pause, never for a failure no retry fixes, used up at
//! `max_restarts`, and the count reset after running for `reset_after`.

use super::*;
use chrono::{DateTime, SubsecRound, TimeDelta};
use connector_control::domain::restart::{AUTO_RESTART_PRINCIPAL, RestartPolicy};
use connector_control::store::Lease;
use connector_control::store::prelude::*;

/// A connector started, delivered and failed by its agent with `reason`.
/// Returns the session and the failed start's completion time.
async fn failed_start<S: FleetStore>(
    store: &S,
    id: &str,
    policy: RestartPolicy,
    reason: &str,
) -> Session {
    let mut new = new_connector(id, id, ConnectorKind::IncrementalSync);
    new.restart_policy = policy;
    store.create_connector(new).await.unwrap();
    let session = store
        .open_session(&hello("ag", "eu-2", "10.0.2.7"))
        .await
        .unwrap();
    store.start_connector(&start(id)).await.unwrap();
    fail_delivered(store, &session, reason).await;
    session
}

/// The agent fails every command it is handed.
async fn fail_delivered<S: FleetStore>(store: &S, session: &Session, reason: &str) {
    answer_delivered(store, session, Some(reason)).await;
}

/// The agent answers every command it is handed: a failure with the
/// reason, or (None) a success.
async fn answer_delivered<S: FleetStore>(store: &S, session: &Session, failure: Option<&str>) {
    let claimed = store
        .claim_commands(claim("eu-2", &[(session.clone(), 16)]))
        .await
        .unwrap();
    assert!(!claimed.is_empty(), "nothing to fail");
    for (_, command) in claimed {
        store
            .complete_command(
                session,
                &CommandReport {
                    retriable: None,
                    trace_context: Default::default(),
                    command_id: command.id.clone(),
                    success: failure.is_none(),
                    error_reason: failure.unwrap_or_default().to_owned(),
                    error_message: "10.0.2.30:2881 refused the connection".to_owned(),
                    status: None,
                },
            )
            .await
            .unwrap();
    }
}

async fn lease<S: FleetStore>(store: &S) -> Lease {
    store.acquire_lease(HOUR).await.unwrap().expect("the lease")
}

fn after(seconds: i64) -> DateTime<Utc> {
    Utc::now() + TimeDelta::seconds(seconds)
}

pub(super) async fn a_failed_connector_is_scheduled_and_started_once_when_due<S: FleetStore>(
    store: &S,
) {
    let session = failed_start(
        store,
        "c1",
        RestartPolicy::default(),
        "DESTINATION_UNREACHABLE",
    )
    .await;
    let failed = store.get_connector("c1").await.unwrap();
    assert_eq!(failed.state, ConnectorState::Failed);
    assert_eq!(failed.desired_state, ConnectorState::Running);
    let lease = lease(store).await;

    // The stores keep microseconds.
    let now = Utc::now().trunc_subsecs(6);
    let round = store.restart_round(lease, now).await.unwrap();
    assert_eq!((round.scheduled, round.started.len()), (1, 0));
    let scheduled = store.get_connector("c1").await.unwrap();
    let due = scheduled.restart.next_time.expect("scheduled");
    assert_eq!(due, now + TimeDelta::seconds(10), "the first backoff");
    // Found by the filter of connectors waiting for an automatic start,
    // alone and with the others.
    store
        .create_connector(new_connector("c2", "c2", ConnectorKind::IncrementalSync))
        .await
        .unwrap();
    let awaiting = |query: &str| SearchFilter {
        query: query.to_owned(),
        region: "eu-2".to_owned(),
        states: vec![ConnectorState::Failed],
        awaiting_restart: true,
        ..Default::default()
    };
    let page = store
        .list_connectors(&awaiting("c"), None, 10)
        .await
        .unwrap();
    assert_eq!(page.connectors.len(), 1);
    assert_eq!(page.connectors[0].id, "c1");
    let only = SearchFilter {
        awaiting_restart: true,
        ..Default::default()
    };
    assert_eq!(
        store.list_connectors(&only, None, 10).await.unwrap().total,
        1
    );
    let page = store
        .list_connectors(&awaiting("c2"), None, 10)
        .await
        .unwrap();
    assert!(page.connectors.is_empty());
    // Not before it is due; a second round changes nothing.
    let round = store
        .restart_round(lease, now + TimeDelta::seconds(9))
        .await
        .unwrap();
    assert_eq!((round.scheduled, round.started.len()), (0, 0));

    let round = store.restart_round(lease, due).await.unwrap();
    assert_eq!(round.started.len(), 1);
    let started = &round.started[0];
    assert_eq!(started.command.principal, AUTO_RESTART_PRINCIPAL);
    assert_eq!(
        started.command.request_id.as_deref(),
        Some(format!("auto-restart-1-g{}", failed.generation).as_str())
    );
    assert!(
        started
            .command
            .reason
            .starts_with("automatic start 1 after FAILED: start failed"),
        "{}",
        started.command.reason
    );
    assert_eq!(started.connector.state, ConnectorState::Starting);
    assert_eq!(started.connector.restart.count, 1);
    assert_eq!(started.connector.restart.next_time, None);
    // The same round again (a second leader with the old view) starts
    // nothing more.
    let again = store.restart_round(lease, due).await.unwrap();
    assert!(again.started.is_empty());
    let (history, _) = store.list_commands(&history("c1", None, 10)).await.unwrap();
    assert_eq!(history.len(), 2, "one manual start, one automatic");
    let (events, _) = store
        .list_audit_events(&Default::default(), 10)
        .await
        .unwrap();
    let audited = events
        .iter()
        .find(|e| e.principal == AUTO_RESTART_PRINCIPAL)
        .expect("the automatic start is audited");
    assert_eq!(audited.action.as_str(), "START_CONNECTOR");
    assert!(audited.reason.starts_with("automatic start 1"));

    // It fails again: the second backoff doubles.
    fail_delivered(store, &session, "DESTINATION_UNREACHABLE").await;
    let now = Utc::now().trunc_subsecs(6);
    store.restart_round(lease, now).await.unwrap();
    let rescheduled = store.get_connector("c1").await.unwrap();
    assert_eq!(
        rescheduled.restart.next_time,
        Some(now + TimeDelta::seconds(20))
    );
}

pub(super) async fn a_pause_or_a_recovery_cancels_the_schedule<S: FleetStore>(store: &S) {
    let session = failed_start(store, "c1", RestartPolicy::default(), "BROKEN").await;
    let lease = lease(store).await;
    store.restart_round(lease, Utc::now()).await.unwrap();
    assert!(
        store
            .get_connector("c1")
            .await
            .unwrap()
            .restart
            .next_time
            .is_some()
    );
    store.pause_connector(&pause("c1")).await.unwrap();
    let paused = store.get_connector("c1").await.unwrap();
    assert_eq!(paused.restart.next_time, None, "a pause drops the schedule");
    let round = store.restart_round(lease, after(3600)).await.unwrap();
    assert!(
        round.started.is_empty(),
        "a paused connector is not started"
    );

    // Started by hand, failed, scheduled; then its agent reports it
    // running again on its own: the schedule goes.
    answer_delivered(store, &session, None).await;
    store.start_connector(&start("c1")).await.unwrap();
    fail_delivered(store, &session, "BROKEN").await;
    store.restart_round(lease, Utc::now()).await.unwrap();
    let generation = store.get_connector("c1").await.unwrap().generation;
    store
        .record_statuses(&session, &[running("c1", generation)])
        .await
        .unwrap();
    let round = store.restart_round(lease, Utc::now()).await.unwrap();
    assert_eq!(round.cancelled, 1);
    let recovered = store.get_connector("c1").await.unwrap();
    assert_eq!(recovered.state, ConnectorState::Running);
    assert_eq!(recovered.restart.next_time, None);
}

pub(super) async fn failures_no_retry_fixes_and_used_up_policies_are_not_restarted<
    S: FleetStore,
>(
    store: &S,
) {
    failed_start(
        store,
        "c1",
        RestartPolicy::default(),
        "PULL_BACK_OUT_OF_RANGE",
    )
    .await;
    let stopped = store.get_connector("c1").await.unwrap();
    assert_eq!(stopped.state, ConnectorState::Stopped);
    assert_eq!(stopped.desired_state, ConnectorState::Stopped);
    let lease = lease(store).await;
    let round = store.restart_round(lease, after(3600)).await.unwrap();
    assert_eq!((round.scheduled, round.started.len()), (0, 0));

    let once = RestartPolicy {
        max_restarts: 1,
        ..RestartPolicy::default()
    };
    let mut new = new_connector("c2", "c2", ConnectorKind::IncrementalSync);
    new.restart_policy = once;
    store.create_connector(new).await.unwrap();
    let session = store
        .open_session(&hello("ag", "eu-2", "10.0.2.7"))
        .await
        .unwrap();
    store.start_connector(&start("c2")).await.unwrap();
    fail_delivered(store, &session, "BROKEN").await;
    store.restart_round(lease, Utc::now()).await.unwrap();
    let started = store.restart_round(lease, after(3600)).await.unwrap();
    assert_eq!(started.started.len(), 1);
    fail_delivered(store, &session, "BROKEN").await;
    let round = store.restart_round(lease, after(7200)).await.unwrap();
    assert_eq!((round.scheduled, round.started.len()), (0, 0), "used up");
    let used_up = store.get_connector("c2").await.unwrap();
    assert_eq!(used_up.state, ConnectorState::Failed);
    assert_eq!(used_up.restart.count, 1);
    assert_eq!(used_up.restart.next_time, None);
    // A start by hand resets the count.
    let manual = store.start_connector(&start("c2")).await.unwrap();
    assert_eq!(manual.connector.restart.count, 0);
}

pub(super) async fn a_connector_that_ran_long_enough_has_its_count_reset<S: FleetStore>(store: &S) {
    let session = failed_start(store, "c1", RestartPolicy::default(), "BROKEN").await;
    let lease = lease(store).await;
    store.restart_round(lease, Utc::now()).await.unwrap();
    let round = store.restart_round(lease, after(60)).await.unwrap();
    assert_eq!(round.started.len(), 1);
    let claimed = store
        .claim_commands(claim("eu-2", &[(session.clone(), 16)]))
        .await
        .unwrap();
    let (_, command) = &claimed[0];
    store
        .complete_command(
            &session,
            &CommandReport {
                retriable: None,
                trace_context: Default::default(),
                command_id: command.id.clone(),
                success: true,
                error_reason: String::new(),
                error_message: String::new(),
                status: Some(running("c1", command.generation)),
            },
        )
        .await
        .unwrap();
    let round = store.restart_round(lease, after(590)).await.unwrap();
    assert_eq!(round.reset, 0, "not yet");
    assert_eq!(store.get_connector("c1").await.unwrap().restart.count, 1);
    let round = store.restart_round(lease, after(610)).await.unwrap();
    assert_eq!(round.reset, 1);
    assert_eq!(store.get_connector("c1").await.unwrap().restart.count, 0);
}

/// PostgreSQL only (the embedded store has one process): the schedule
/// lives in the database, so the replica taking the lease over starts the
/// connector when due; the old leader's round is fenced and writes
/// nothing, and nothing is started twice.
#[tokio::test]
async fn a_new_leader_keeps_the_schedule_and_the_old_one_is_fenced() {
    let db = crate::helpers::TestDatabase::create().await;
    let old = PgStore::connect(&db.url, 4)
        .await
        .unwrap()
        .with_replica_id("old");
    old.migrate().await.unwrap();
    let new = PgStore::connect(&db.url, 4)
        .await
        .unwrap()
        .with_replica_id("new");
    failed_start(&old, "c1", RestartPolicy::default(), "BROKEN").await;
    let old_lease = old
        .acquire_lease(Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    let now = Utc::now();
    assert_eq!(
        old.restart_round(old_lease, now).await.unwrap().scheduled,
        1
    );
    let due = old
        .get_connector("c1")
        .await
        .unwrap()
        .restart
        .next_time
        .unwrap();

    // The old leader stops renewing; the new one takes over once it lapses.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let new_lease = loop {
        if let Some(lease) = new.acquire_lease(HOUR).await.unwrap() {
            break lease;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never lapsed"
        );
        tokio::task::yield_now().await;
    };
    assert!(new_lease.term > old_lease.term);
    assert!(matches!(
        old.restart_round(old_lease, due).await,
        Err(StoreError::NotLeader { .. })
    ));
    let (commands, _) = old.list_commands(&history("c1", None, 10)).await.unwrap();
    assert_eq!(commands.len(), 1, "the fenced round started nothing");
    let round = new.restart_round(new_lease, due).await.unwrap();
    assert_eq!(round.started.len(), 1, "the schedule survived the failover");
    assert!(
        new.restart_round(new_lease, due)
            .await
            .unwrap()
            .started
            .is_empty()
    );
    let (commands, _) = new.list_commands(&history("c1", None, 10)).await.unwrap();
    assert_eq!(commands.len(), 2);
}
