//! Lagging connectors: what the filter finds and what the metrics count.

use super::*;

/// Starts `id` and has `session` carry it out, reporting `latency`.
async fn run_on<S: FleetStore>(
    store: &S,
    session: &connector_control::domain::Session,
    id: &str,
    latency: u64,
) {
    let command = store.start_connector(&start(id)).await.unwrap().command;
    let claimed = store
        .claim_commands(claim("eu-2", &[(session.clone(), 16)]))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "{id}: {claimed:?}");
    assert_eq!(claimed[0].1.id, command.id);
    let report = CommandReport {
        retriable: None,
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

/// c1 runs with 90 s of latency and c2 with 5 s on agent "live"; c3 ran on
/// agent "silent", which went offline (UNKNOWN); c4's start is pending.
pub(super) async fn a_fleet_with_lagging_connectors<S: FleetStore>(store: &S) {
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
        .flush_heartbeats(&[PendingHeartbeat {
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
}

fn lagging(alert: u64) -> SearchFilter {
    SearchFilter {
        lagging_over: Some(Duration::from_secs(alert)),
        ..Default::default()
    }
}

fn ids(page: connector_control::store::Page) -> Vec<String> {
    page.connectors.into_iter().map(|c| c.id).collect()
}

fn after_c1() -> Cursor {
    Cursor {
        name: "c1".to_owned(),
        id: "c1".to_owned(),
    }
}

pub(super) async fn the_lagging_filter_finds_latency_strictly_over_the_alert_and_offline_agents<
    S: FleetStore,
>(
    store: &S,
) {
    a_fleet_with_lagging_connectors(store).await;
    let page = store.list_connectors(&lagging(60), None, 10).await.unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(ids(page), ["c1", "c3"]);
    // Strictly over the threshold.
    let page = store.list_connectors(&lagging(90), None, 10).await.unwrap();
    assert_eq!(ids(page), ["c3"]);
    let page = store.list_connectors(&lagging(1), None, 10).await.unwrap();
    assert_eq!(ids(page), ["c1", "c2", "c3"]);
    // Keyset pages within the filter.
    let after = after_c1();
    let page = store
        .list_connectors(&lagging(60), Some(&after), 10)
        .await
        .unwrap();
    assert_eq!(ids(page), ["c3"]);
}

pub(super) async fn every_search_filter_combines_with_the_others_and_a_cursor<S: FleetStore>(
    store: &S,
) {
    a_fleet_with_lagging_connectors(store).await;
    let after = after_c1();
    // Every filter at once, with a cursor: parameters line up.
    let everything = SearchFilter {
        query: "c".to_owned(),
        region: "eu-2".to_owned(),
        states: vec![ConnectorState::Running, ConnectorState::Unknown],
        lagging_over: Some(Duration::from_secs(60)),
        awaiting_restart: false,
        server: Some(ServerNet::parse("10.0.2.0/24").unwrap()),
    };
    let page = store.list_connectors(&everything, None, 10).await.unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(ids(page), ["c1", "c3"]);
    let page = store
        .list_connectors(&everything, Some(&after), 10)
        .await
        .unwrap();
    assert_eq!(ids(page), ["c3"]);
}

pub(super) async fn the_metrics_sample_counts_states_lag_and_open_commands<S: FleetStore>(
    store: &S,
) {
    a_fleet_with_lagging_connectors(store).await;
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
