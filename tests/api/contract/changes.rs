//! Connector changes for watchers: recorded in commit order with what a
//! search saw before each, pruned by the leader, and the filter watchers
//! apply agreeing with the search.

use super::*;
use connector_control::domain::watch::Searchable;
use connector_control::store::prelude::*;

pub(super) async fn changes_are_recorded_in_order_with_what_a_search_saw_before<S: FleetStore>(
    store: &S,
) {
    let start_head = store.change_head().await.unwrap();
    store
        .create_connector(new_connector(
            "c1",
            "Orders",
            ConnectorKind::IncrementalSync,
        ))
        .await
        .unwrap();
    store.start_connector(&start("c1")).await.unwrap();
    store.pause_connector(&pause("c1")).await.unwrap();
    // Changes get their positions once sequenced (PostgreSQL: writers only
    // record them; the embedded store numbers them as it writes them).
    store.sequence_all().await.unwrap();
    assert_eq!(store.sequence_all().await.unwrap(), 0, "each once");
    let entries = store.changes_after(start_head, 100).await.unwrap();
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(entries.iter().all(|e| e.connector_id == "c1"));
    let versions: Vec<i64> = entries.iter().map(|e| e.version).collect();
    assert_eq!(
        versions,
        [1, 2, 3],
        "each change's version of the connector"
    );
    assert!(entries[0].before.is_none(), "created");
    let before_start = entries[1].before.as_ref().unwrap();
    assert_eq!(before_start.state, ConnectorState::Stopped);
    assert_eq!(before_start.name, "Orders");
    assert_eq!(
        entries[2].before.as_ref().unwrap().state,
        ConnectorState::Starting
    );
    let head = store.change_head().await.unwrap();
    assert_eq!(head, entries[2].seq);
    assert!(store.changes_after(head, 100).await.unwrap().is_empty());
    let limited = store.changes_after(start_head, 2).await.unwrap();
    assert_eq!(limited.len(), 2);
    let now = store
        .connectors_by_id(&["c1".into(), "gone".into()])
        .await
        .unwrap();
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].state, ConnectorState::Pausing);

    // Pruning keeps the newest change; a position before what is kept is
    // refused, one at the edge is not.
    let lease = store.acquire_lease(HOUR).await.unwrap().unwrap();
    assert_eq!(store.prune_changes(lease, Duration::ZERO).await.unwrap(), 2);
    assert!(matches!(
        store.changes_after(start_head, 100).await,
        Err(StoreError::ChangesPruned { .. })
    ));
    let kept = store.changes_after(entries[1].seq, 100).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(store.change_head().await.unwrap(), head);
    assert_eq!(store.prune_changes(lease, Duration::ZERO).await.unwrap(), 0);
}

pub(super) async fn the_filter_watchers_apply_agrees_with_the_search<S: FleetStore>(store: &S) {
    super::lagging::a_fleet_with_lagging_connectors(store).await;
    let mut other = new_connector("x9", "Billing", ConnectorKind::FullMigration);
    other.destination.region = "eu-1".to_owned();
    store.create_connector(other).await.unwrap();
    let everything = store
        .list_connectors(&SearchFilter::default(), None, 100)
        .await
        .unwrap()
        .connectors;
    let filters = [
        filter(""),
        filter("C"),
        filter("bill"),
        filter("10.0.2."),
        filter("proj-c"),
        SearchFilter {
            region: "eu-1".to_owned(),
            ..Default::default()
        },
        SearchFilter {
            states: vec![ConnectorState::Running, ConnectorState::Unknown],
            ..Default::default()
        },
        SearchFilter {
            lagging_over: Some(Duration::from_secs(60)),
            ..Default::default()
        },
        SearchFilter {
            awaiting_restart: true,
            ..Default::default()
        },
        SearchFilter {
            query: "c".to_owned(),
            region: "eu-2".to_owned(),
            states: vec![ConnectorState::Running],
            lagging_over: Some(Duration::from_secs(10)),
            awaiting_restart: false,
            server: None,
        },
        // Addresses, not text: the /31 holds .6 and .7, not .8.
        SearchFilter {
            server: Some(ServerNet::parse("10.0.2.6/31").unwrap()),
            ..Default::default()
        },
        SearchFilter {
            server: Some(ServerNet::parse("10.0.2.8").unwrap()),
            ..Default::default()
        },
        SearchFilter {
            server: Some(ServerNet::parse("10.0.0.0/8").unwrap()),
            states: vec![ConnectorState::Unknown],
            ..Default::default()
        },
    ];
    for filter in filters {
        let searched: Vec<String> = store
            .list_connectors(&filter, None, 100)
            .await
            .unwrap()
            .connectors
            .into_iter()
            .map(|c| c.id)
            .collect();
        let matched: Vec<String> = everything
            .iter()
            .filter(|c| filter.matches(&Searchable::from(*c)))
            .map(|c| c.id.clone())
            .collect();
        assert_eq!(matched, searched, "{filter:?}");
    }
}
