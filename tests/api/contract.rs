//! The store contract: the same test bodies run against both backends
//! (PostgreSQL and the embedded SQLite store), covering every store
//! operation. The gRPC tests elsewhere run on PostgreSQL; these make sure
//! the embedded store behaves identically.

use crate::helpers::TestDatabase;
use chrono::Utc;
use connector_control::domain::LagCause;
use connector_control::domain::{
    CommandReport, CommandStatus, ConnectorKind, ConnectorState, Cursor, Endpoint, Hello,
    NewConnector, ObservedStatus, PauseRequest, Rejection, SearchFilter, SessionEnd, StartRequest,
    TimeRange,
};
use connector_control::store::{FleetStore, PgStore, Seen, SqliteStore, StoreError};
use std::time::Duration;

struct Postgres {
    store: PgStore,
    _db: TestDatabase,
}

async fn postgres() -> Postgres {
    let db = TestDatabase::create().await;
    let store = PgStore::connect(&db.url, 4).await.unwrap();
    store.migrate().await.unwrap();
    Postgres { store, _db: db }
}

struct Embedded {
    store: SqliteStore,
    dir: std::path::PathBuf,
}

impl Drop for Embedded {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn embedded() -> Embedded {
    let dir = std::env::temp_dir().join(format!("cc-contract-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(&dir.join("store.db")).unwrap();
    Embedded { store, dir }
}

macro_rules! contract_suite {
    ($($test:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    let backend = super::postgres().await;
                    super::$test(&backend.store).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    let backend = super::embedded();
                    super::$test(&backend.store).await;
                }
            )*
        }
    };
}

contract_suite!(
    changes_are_audited_with_who_and_refusals_appended,
    create_and_get_keep_what_was_given,
    search_matches_names_ids_and_ips_and_pages_in_order,
    start_and_pause_follow_the_state_machine_and_supersede,
    retried_requests_replay_and_conflicting_ones_are_refused,
    pull_back_rules_use_the_reported_store_range,
    commands_are_claimed_once_redelivered_and_completed_with_fencing,
    heartbeats_flush_and_silent_agents_go_offline,
    lagging_connectors_are_found_and_counted,
    status_batches_apply_current_sessions_and_name_superseded_ones,
    an_agent_id_belongs_to_one_region,
    every_session_end_is_audited_once_with_why,
    concurrent_sessions_claims_changes_and_sweeps_never_fail_on_each_others_locks,
);

fn new_connector(id: &str, name: &str, kind: ConnectorKind) -> NewConnector {
    NewConnector {
        id: id.to_owned(),
        name: name.to_owned(),
        project_id: format!("proj-{id}"),
        project_name: format!("Project {name}"),
        kind,
        source: Endpoint {
            kind: "MYSQL".to_owned(),
            region: "eu-1".to_owned(),
            address: "h:1".to_owned(),
        },
        destination: Endpoint {
            kind: "OCEANBASE".to_owned(),
            region: "eu-2".to_owned(),
            address: "h:2".to_owned(),
        },
        actor: Default::default(),
    }
}

fn start(id: &str) -> StartRequest {
    StartRequest {
        trace_context: Default::default(),
        connector_id: id.to_owned(),
        pull_back_time: None,
        region: None,
        request_id: None,
        actor: Default::default(),
    }
}

fn pause(id: &str) -> PauseRequest {
    PauseRequest {
        trace_context: Default::default(),
        connector_id: id.to_owned(),
        reason: "test".to_owned(),
        request_id: None,
        actor: Default::default(),
    }
}

fn hello(agent_id: &str, region: &str, ip: &str) -> Hello {
    Hello {
        agent_id: agent_id.to_owned(),
        instance_id: "i".to_owned(),
        region: region.to_owned(),
        server_ip: ip.to_owned(),
        version: String::new(),
        connectors: Vec::new(),
        actor: Default::default(),
    }
}

fn running(id: &str, generation: i64) -> ObservedStatus {
    ObservedStatus {
        connector_id: id.to_owned(),
        state: ConnectorState::Running,
        checkpoint_time: None,
        latency: Some(Duration::from_secs(2)),
        store_range: None,
        generation,
        message: String::new(),
    }
}

fn filter(query: &str) -> SearchFilter {
    SearchFilter {
        query: query.to_owned(),
        ..Default::default()
    }
}

const HOUR: Duration = Duration::from_secs(3600);

async fn create_and_get_keep_what_was_given<S: FleetStore>(store: &S) {
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

async fn search_matches_names_ids_and_ips_and_pages_in_order<S: FleetStore>(store: &S) {
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

async fn start_and_pause_follow_the_state_machine_and_supersede<S: FleetStore>(store: &S) {
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

async fn retried_requests_replay_and_conflicting_ones_are_refused<S: FleetStore>(store: &S) {
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

async fn pull_back_rules_use_the_reported_store_range<S: FleetStore>(store: &S) {
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

async fn commands_are_claimed_once_redelivered_and_completed_with_fencing<S: FleetStore>(
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
            .claim_commands("eu-1", &[(other_region, 16)], HOUR)
            .await
            .unwrap()
            .is_empty()
    );
    let claimed = store
        .claim_commands("eu-2", &[(old.clone(), 16)], HOUR)
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
        .claim_commands("eu-2", &[(new.clone(), 16)], HOUR)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1.id, accepted.id);
    let report = CommandReport {
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
        .claim_commands("eu-2", &[(new.clone(), 16)], HOUR)
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

async fn heartbeats_flush_and_silent_agents_go_offline<S: FleetStore>(store: &S) {
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
            Seen {
                agent_id: "ag".to_owned(),
                epoch: session.epoch,
                time: later,
            },
            Seen {
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

async fn changes_are_audited_with_who_and_refusals_appended<S: FleetStore>(store: &S) {
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
async fn run_on<S: FleetStore>(
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

async fn lagging_connectors_are_found_and_counted<S: FleetStore>(store: &S) {
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

async fn status_batches_apply_current_sessions_and_name_superseded_ones<S: FleetStore>(store: &S) {
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
            (live.clone(), vec![running("c1", 0)]),
            (old.clone(), vec![running("c2", 0)]),
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

async fn an_agent_id_belongs_to_one_region<S: FleetStore>(store: &S) {
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

async fn every_session_end_is_audited_once_with_why<S: FleetStore>(store: &S) {
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

/// Opening a session (agent, then its commands and connectors), claiming
/// (agents, then commands and connectors), issuing a command (connector,
/// then its commands) and the liveness sweep (agents, commands, connectors)
/// take the same rows. Run together, over and over, none fails: lock
/// orders do not cycle, and a lost deadlock is run again.
async fn concurrent_sessions_claims_changes_and_sweeps_never_fail_on_each_others_locks<
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
        let claim = store.claim_commands("eu-2", &room, HOUR);
        let sweep = async {
            let lease = store.acquire_lease(HOUR).await.unwrap().unwrap();
            store.sweep_offline(lease, HOUR, HOUR).await
        };
        let ((), reconnected, claimed, swept) = tokio::join!(changes, reconnect, claim, sweep);
        session = reconnected.unwrap_or_else(|e| panic!("round {round}: open_session: {e:?}"));
        claimed.unwrap_or_else(|e| panic!("round {round}: claim_commands: {e:?}"));
        swept.unwrap_or_else(|e| panic!("round {round}: sweep_offline: {e:?}"));
    }
}
