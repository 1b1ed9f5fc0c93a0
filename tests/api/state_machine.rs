//! Property: no sequence of starts, pauses, deliveries, results,
//! heartbeats, reconnects and liveness sweeps leaves a connector in a state
//! the state machine does not allow, or loses a command. Runs against the
//! real embedded store (the same rules as PostgreSQL, checked by the
//! contract suite), many sequences per run.

use chrono::Utc;
use connector_control::domain::{
    CommandKind, CommandReport, CommandStatus, ConnectorKind, ConnectorState, Endpoint, Hello,
    NewConnector, ObservedStatus, PauseRequest, Session, StartRequest, TimeRange,
};
use connector_control::store::prelude::*;
use connector_control::store::{Claim, SqliteStore};
use proptest::prelude::*;
use std::time::Duration;

#[derive(Clone, Debug)]
enum Op {
    Start {
        pull_back_minutes: Option<u16>,
    },
    Pause,
    Deliver,
    Answer {
        success: bool,
        /// A failure's reason is one a retry may fix.
        retriable: bool,
    },
    Heartbeat {
        state: ConnectorState,
        behind: bool,
    },
    /// A new session; `forget`: the agent lost what it held (a restart),
    /// else it may still answer it, late, on the new session.
    Reconnect {
        forget: bool,
    },
    Sweep,
    /// A round of automatic starts, `later` seconds from now.
    Restarts {
        later: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => proptest::option::of(0u16..240).prop_map(|m| Op::Start { pull_back_minutes: m }),
        3 => Just(Op::Pause),
        3 => Just(Op::Deliver),
        3 => (any::<bool>(), any::<bool>())
            .prop_map(|(success, retriable)| Op::Answer { success, retriable }),
        2 => (0u16..700).prop_map(|later| Op::Restarts { later }),
        2 => (
            prop_oneof![
                Just(ConnectorState::Running),
                Just(ConnectorState::Stopped),
                Just(ConnectorState::Failed)
            ],
            any::<bool>()
        )
            .prop_map(|(state, behind)| Op::Heartbeat { state, behind }),
        1 => any::<bool>().prop_map(|forget| Op::Reconnect { forget }),
        1 => Just(Op::Sweep),
    ]
}

struct World {
    store: SqliteStore,
    session: Session,
    /// Commands the agent holds, delivered and not yet answered.
    held: Vec<connector_control::domain::Command>,
    /// Every command the store accepted, by id.
    accepted: Vec<String>,
    dir: std::path::PathBuf,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn hello() -> Hello {
    Hello {
        agent_id: "ag".to_owned(),
        instance_id: "i".to_owned(),
        region: "eu-2".to_owned(),
        server_ip: "10.0.2.7".to_owned(),
        version: String::new(),
        connectors: Vec::new(),
        capabilities: Default::default(),
        actor: Default::default(),
    }
}

async fn world() -> World {
    let dir = std::env::temp_dir().join(format!("cc-prop-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(&dir.join("store.db")).unwrap();
    let endpoint = |region: &str| Endpoint {
        kind: "MYSQL".to_owned(),
        region: region.to_owned(),
        address: "h:1".to_owned(),
    };
    store
        .create_connector(NewConnector {
            id: "c1".to_owned(),
            name: "c1".to_owned(),
            project_id: "p".to_owned(),
            project_name: "P".to_owned(),
            kind: ConnectorKind::IncrementalSync,
            source: endpoint("eu-1"),
            destination: endpoint("eu-2"),
            restart_policy: Default::default(),
            actor: Default::default(),
        })
        .await
        .unwrap();
    let session = store.open_session(&hello()).await.unwrap();
    World {
        store,
        session,
        held: Vec::new(),
        accepted: Vec::new(),
        dir,
    }
}

fn observed(state: ConnectorState, generation: i64) -> ObservedStatus {
    let now = Utc::now();
    ObservedStatus {
        connector_id: "c1".to_owned(),
        state,
        checkpoint_time: Some(now),
        latency: Some(Duration::from_secs(1)),
        store_range: Some(TimeRange {
            earliest: now - chrono::Duration::hours(2),
            latest: now,
        }),
        generation,
        message: String::new(),
        retriable: None,
    }
}

async fn apply(world: &mut World, op: &Op) {
    let hour = Duration::from_secs(3600);
    match op {
        Op::Start { pull_back_minutes } => {
            let request = StartRequest {
                trace_context: Default::default(),
                connector_id: "c1".to_owned(),
                pull_back_time: pull_back_minutes
                    .map(|m| Utc::now() - chrono::Duration::minutes(i64::from(m))),
                region: None,
                request_id: None,
                skip_to_earliest: false,
                actor: Default::default(),
                automatic: None,
            };
            // Refusals (wrong state, pull-back out of range) are fine; they
            // must change nothing, which the invariants check.
            if let Ok(outcome) = world.store.start_connector(&request).await {
                world.accepted.push(outcome.command.id);
            }
        }
        Op::Pause => {
            let request = PauseRequest {
                trace_context: Default::default(),
                connector_id: "c1".to_owned(),
                reason: String::new(),
                request_id: None,
                actor: Default::default(),
            };
            if let Ok(outcome) = world.store.pause_connector(&request).await {
                world.accepted.push(outcome.command.id);
            }
        }
        Op::Deliver => {
            let claimed = world
                .store
                .claim_commands(Claim {
                    region: "eu-2",
                    sessions: &[(world.session.clone(), 16)],
                    offline_after: hour,
                })
                .await
                .unwrap();
            // What the agent is handed is what the newest generation asks:
            // never an older command first.
            let generation = world.store.get_connector("c1").await.unwrap().generation;
            for (_, command) in &claimed {
                assert_eq!(command.generation, generation, "an older command delivered");
            }
            world.held.extend(claimed.into_iter().map(|(_, c)| c));
        }
        Op::Answer { success, retriable } => {
            if world.held.is_empty() {
                return;
            }
            let command = world.held.remove(0);
            let state = match (command.kind, success) {
                (CommandKind::Start, true) => ConnectorState::Running,
                (CommandKind::Pause, true) => ConnectorState::Stopped,
                (_, false) => ConnectorState::Failed,
            };
            let report = CommandReport {
                retriable: None,
                trace_context: Default::default(),
                command_id: command.id.clone(),
                success: *success,
                error_reason: match (success, retriable) {
                    (true, _) => "",
                    (false, true) => "BROKEN",
                    (false, false) => "PULL_BACK_OUT_OF_RANGE",
                }
                .to_owned(),
                error_message: String::new(),
                status: Some(observed(state, command.generation)),
            };
            let before = world.store.get_command(&command.id).await.unwrap();
            let recorded = world
                .store
                .complete_command(&world.session, &report)
                .await
                .unwrap();
            // A superseded command's answer is kept, and nothing else.
            if before.status == CommandStatus::Superseded && before.late_result.is_none() {
                let recorded = recorded.expect("a late result is recorded");
                assert_eq!(recorded.status, CommandStatus::Superseded);
                assert!(recorded.late_result.is_some());
            }
        }
        Op::Heartbeat { state, behind } => {
            let connector = world.store.get_connector("c1").await.unwrap();
            let generation = if *behind {
                (connector.generation - 1).max(0)
            } else {
                connector.generation
            };
            world
                .store
                .record_statuses(&world.session, &[observed(*state, generation)])
                .await
                .unwrap();
        }
        Op::Reconnect { forget } => {
            // Whatever the agent held and is still the newest is delivered
            // again to the new session.
            if *forget {
                world.held.clear();
            }
            world.session = world.store.open_session(&hello()).await.unwrap();
        }
        Op::Restarts { later } => {
            let lease = world.store.acquire_lease(hour).await.unwrap().unwrap();
            let now = Utc::now() + chrono::Duration::seconds(i64::from(*later));
            let round = world.store.restart_round(lease, now).await.unwrap();
            for outcome in round.started {
                assert_eq!(outcome.connector.state, ConnectorState::Starting);
                world.accepted.push(outcome.command.id);
            }
        }
        Op::Sweep => {
            let lease = world.store.acquire_lease(hour).await.unwrap().unwrap();
            world
                .store
                .sweep_offline(lease, Duration::ZERO, hour)
                .await
                .unwrap();
            world.held.clear();
        }
    }
}

/// What must hold after every step.
async fn check(world: &World) -> Result<(), TestCaseError> {
    let connector = world.store.get_connector("c1").await.unwrap();
    let mut commands = Vec::new();
    for id in &world.accepted {
        // No accepted command is ever lost.
        commands.push(
            world
                .store
                .get_command(id)
                .await
                .map_err(|e| TestCaseError::fail(format!("accepted command {id} is gone: {e}")))?,
        );
    }
    let Some(newest) = commands.iter().max_by_key(|c| c.generation) else {
        // Never started here: only what its agent observes (it may adopt a
        // connector that already ran), never a transition in progress.
        prop_assert!(
            !matches!(
                connector.state,
                ConnectorState::Starting | ConnectorState::Pausing
            ),
            "{connector:?}"
        );
        prop_assert_eq!(connector.desired_state, ConnectorState::Stopped);
        prop_assert_eq!(connector.generation, 0);
        return Ok(());
    };
    prop_assert_eq!(connector.generation, newest.generation);
    // Only the newest command may be open: a newer one supersedes the
    // older ones, delivered or not, so that a reconnecting agent is handed
    // what the newest generation asks, in one step.
    for command in commands.iter().filter(|c| c.id != newest.id) {
        prop_assert!(
            command.status.is_final(),
            "an older open command: {command:?}"
        );
    }
    // Late answers are kept only on superseded commands.
    for command in commands.iter().filter(|c| c.late_result.is_some()) {
        prop_assert_eq!(command.status, CommandStatus::Superseded);
    }
    // The newest command is never dropped: it is open (so it will reach
    // the agent) or it ended with the agent's answer.
    prop_assert!(
        matches!(
            newest.status,
            CommandStatus::Pending
                | CommandStatus::Delivered
                | CommandStatus::Succeeded
                | CommandStatus::Failed
        ),
        "newest command {newest:?}"
    );
    let newest_open = matches!(
        newest.status,
        CommandStatus::Pending | CommandStatus::Delivered
    );
    let wants = match (newest.kind, newest.status) {
        // A failure a retry may fix leaves it meant to run (the default
        // policy restarts on failure).
        (CommandKind::Start, CommandStatus::Failed)
            if !connector_control::domain::restart::retriable(&newest.error_reason, None) =>
        {
            ConnectorState::Stopped
        }
        (CommandKind::Start, _) => ConnectorState::Running,
        (CommandKind::Pause, _) => ConnectorState::Stopped,
    };
    prop_assert_eq!(connector.desired_state, wants, "{:?}", newest);
    match connector.state {
        ConnectorState::Starting => {
            prop_assert!(
                newest_open && newest.kind == CommandKind::Start,
                "{newest:?}"
            )
        }
        ConnectorState::Pausing => {
            prop_assert!(
                newest_open && newest.kind == CommandKind::Pause,
                "{newest:?}"
            )
        }
        // Observed states: what the agent reported, the sweep, or a failed
        // command.
        _ => {}
    }
    // Every open command is one the agent can still receive: pending, or
    // delivered to the agent's current session (or requeued when it ends).
    for command in commands
        .iter()
        .filter(|c| c.status == CommandStatus::Delivered)
    {
        prop_assert_eq!(&command.agent_id, &world.session.agent_id);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn no_sequence_breaks_the_state_machine_or_loses_a_command(
        ops in proptest::collection::vec(op(), 1..40)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut world = world().await;
            for op in &ops {
                apply(&mut world, op).await;
                check(&world).await?;
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}
