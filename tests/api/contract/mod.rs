//! The store contract: the same test bodies run against both backends
//! (PostgreSQL and the embedded SQLite store), covering every store
//! operation. The gRPC tests elsewhere run on PostgreSQL; these make sure
//! the embedded store behaves identically.

mod audit;
mod batches;
mod changes;
mod commands;
mod connectors;
mod history;
mod lagging;
mod restarts;
mod sessions;

use crate::helpers::TestDatabase;
// The vocabulary of the test bodies, which the area files take with
// `use super::*` (so some of it is unused here).
#[allow(unused_imports)]
use chrono::Utc;
#[allow(unused_imports)]
use connector_control::domain::fleet::Capabilities;
#[allow(unused_imports)]
use connector_control::domain::{
    Change, CommandReport, CommandStatus, ConnectorKind, ConnectorState, Cursor, Endpoint, Hello,
    HistoryQuery, LagCause, MarkStoppedRequest, NewConnector, ObservedStatus, PauseRequest,
    Rejection, SearchFilter, ServerNet, Session, SessionEnd, SessionReport, StartRequest,
    TimeRange,
};
#[allow(unused_imports)]
use connector_control::store::{
    Claim, FleetStore, NewBatch, PendingHeartbeat, PgStore, SqliteStore, StoreError,
};
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

/// Each test body, `area::name`, runs once per backend:
/// `contract::postgres::name` and `contract::sqlite::name`.
macro_rules! contract_suite {
    ($($area:ident :: $test:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    let backend = super::postgres().await;
                    super::$area::$test(&backend.store).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    let backend = super::embedded();
                    super::$area::$test(&backend.store).await;
                }
            )*
        }
    };
}

contract_suite!(
    audit::changes_and_sessions_are_audited_newest_first_with_who_and_from_where,
    audit::audit_events_filter_by_connector_principal_and_time_and_page,
    audit::a_refused_change_leaves_no_event_of_its_own,
    connectors::create_and_get_keep_what_was_given,
    connectors::search_matches_names_ids_and_ips_and_pages_in_order,
    connectors::start_and_pause_follow_the_state_machine_and_supersede,
    connectors::retried_requests_replay_and_conflicting_ones_are_refused,
    connectors::pull_back_rules_use_the_reported_store_range,
    connectors::a_start_never_skips_a_checkpoint_the_store_no_longer_holds,
    connectors::a_pull_back_the_connected_agents_cannot_do_is_refused,
    connectors::mark_stopped_frees_a_connector_whose_agent_is_gone_and_fences_it,
    commands::commands_are_claimed_once_redelivered_and_completed_with_fencing,
    sessions::heartbeats_flush_and_silent_agents_go_offline,
    lagging::the_lagging_filter_finds_latency_strictly_over_the_alert_and_offline_agents,
    lagging::every_search_filter_combines_with_the_others_and_a_cursor,
    lagging::the_metrics_sample_counts_states_lag_and_open_commands,
    sessions::status_batches_apply_current_sessions_and_name_superseded_ones,
    sessions::an_agent_id_belongs_to_one_region,
    sessions::a_connector_its_agent_comes_back_without_is_not_running,
    sessions::every_session_end_is_audited_once_with_why,
    commands::concurrent_sessions_claims_changes_and_sweeps_never_fail_on_each_others_locks,
    history::a_dry_run_decides_as_the_call_would_and_writes_nothing,
    history::commands_list_newest_first_with_who_and_page,
    batches::several_changes_in_one_transaction_each_get_their_own_outcome,
    batches::a_batch_record_keeps_its_first_selection_and_answer,
    restarts::a_failed_connector_is_scheduled_and_started_once_when_due,
    restarts::a_pause_or_a_recovery_cancels_the_schedule,
    restarts::failures_no_retry_fixes_and_used_up_policies_are_not_restarted,
    restarts::a_connector_that_ran_long_enough_has_its_count_reset,
    changes::changes_are_recorded_in_order_with_what_a_search_saw_before,
    changes::the_filter_watchers_apply_agrees_with_the_search,
);

pub(crate) fn new_connector(id: &str, name: &str, kind: ConnectorKind) -> NewConnector {
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
        restart_policy: Default::default(),
        actor: Default::default(),
    }
}

pub(super) fn start(id: &str) -> StartRequest {
    StartRequest {
        trace_context: Default::default(),
        connector_id: id.to_owned(),
        pull_back_time: None,
        region: None,
        request_id: None,
        skip_to_earliest: false,
        actor: Default::default(),
        automatic: None,
    }
}

pub(super) fn pause(id: &str) -> PauseRequest {
    PauseRequest {
        trace_context: Default::default(),
        connector_id: id.to_owned(),
        reason: "test".to_owned(),
        request_id: None,
        actor: Default::default(),
    }
}

pub(super) fn history(id: &str, before_generation: Option<i64>, page_size: usize) -> HistoryQuery {
    HistoryQuery {
        connector_id: id.to_owned(),
        before_generation,
        page_size,
    }
}

pub(super) fn claim<'a>(region: &'a str, sessions: &'a [(Session, usize)]) -> Claim<'a> {
    Claim {
        region,
        sessions,
        offline_after: HOUR,
    }
}

pub(super) fn hello(agent_id: &str, region: &str, ip: &str) -> Hello {
    Hello {
        agent_id: agent_id.to_owned(),
        instance_id: "i".to_owned(),
        region: region.to_owned(),
        server_ip: ip.to_owned(),
        version: String::new(),
        connectors: Vec::new(),
        capabilities: Default::default(),
        actor: Default::default(),
    }
}

pub(super) fn running(id: &str, generation: i64) -> ObservedStatus {
    ObservedStatus {
        connector_id: id.to_owned(),
        state: ConnectorState::Running,
        checkpoint_time: None,
        latency: Some(Duration::from_secs(2)),
        store_range: None,
        generation,
        message: String::new(),
        retriable: None,
    }
}

pub(super) fn filter(query: &str) -> SearchFilter {
    SearchFilter {
        query: query.to_owned(),
        ..Default::default()
    }
}

pub(super) const HOUR: Duration = Duration::from_secs(3600);
