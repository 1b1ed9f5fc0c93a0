//! What agents report is bounded: text is escaped, never allowed to break
//! a write or a screen; generations and times the control plane cannot
//! have issued or seen are not believed; and one report the database
//! refuses never holds up anyone else's.

use crate::helpers::*;
use chrono::Utc;
use connector_control::domain::{ConnectorState, Hello, ObservedStatus, SessionReport};
use connector_control::fleet::{Fleet, FleetOptions};
use connector_control::proto::v1::{self, ConnectorState as S};
use connector_control::store::PgStore;
use connector_control::store::prelude::*;
use std::time::Duration;
use tonic::Code;

fn timestamp_in(offset: chrono::TimeDelta) -> prost_types::Timestamp {
    timestamp(Utc::now() + offset)
}

#[tokio::test]
async fn control_and_bidi_characters_an_agent_sends_are_escaped_and_its_session_stays() {
    let (app, agent, command) = running_c1().await;
    agent
        .heartbeat(
            1,
            vec![v1::ConnectorStatus {
                message: "disk\0full \u{202E}txt.exe\nsee log".to_owned(),
                ..status("c1", S::Running, command.generation)
            }],
        )
        .await;
    let reported = app
        .connector_becomes("c1", |c| c.status_message.contains("disk"))
        .await;
    assert_eq!(
        reported.status_message,
        "disk\\u{0}full \\u{202e}txt.exe\nsee log"
    );
    // A failure whose text carries a NUL is recorded, escaped, and the
    // session goes on.
    app.pause(pause_request("c1")).await.unwrap();
    let mut agent = agent;
    let pause = agent.next_command().await;
    agent
        .fail(&pause, "STOP\0FAILED", "could not stop: \0\u{7}bell")
        .await;
    let failed = app
        .connector_becomes("c1", |c| c.status_message.contains("could not stop"))
        .await;
    assert!(
        failed
            .status_message
            .contains("could not stop: \\u{0}\\u{7}bell"),
        "{}",
        failed.status_message
    );
    app.start(start_request("c1")).await.unwrap();
    let next = agent.next_command().await;
    assert_eq!(
        (next.connector_id.as_str(), next.kind),
        ("c1", v1::CommandKind::Start as i32),
        "the session still serves"
    );
}

#[tokio::test]
async fn a_control_character_in_a_hello_field_is_invalid_argument_naming_the_field() {
    let app = spawn_app().await;
    for (field, hello) in [
        (
            "hello.version",
            v1::Hello {
                version: "1.0\0".to_owned(),
                ..hello("a1", "eu-2", "10.0.2.7")
            },
        ),
        (
            "hello.instance_id",
            v1::Hello {
                instance_id: "i-\u{202E}1".to_owned(),
                ..hello("a1", "eu-2", "10.0.2.7")
            },
        ),
    ] {
        let first = v1::AgentMessage {
            message: Some(v1::agent_message::Message::Hello(hello)),
        };
        let refused = match open_stream(&app, first).await {
            Err(status) => status,
            Ok((_outbound, mut inbound)) => {
                inbound.message().await.expect_err("the hello is refused")
            }
        };
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert_eq!(violated_fields(&refused), [field]);
    }
    assert_eq!(app.count("SELECT count(*) FROM agents").await, 0);
}

#[tokio::test]
async fn a_generation_never_issued_does_not_settle_a_pausing_connector() {
    let (app, agent, command) = running_c1().await;
    app.pause(pause_request("c1")).await.unwrap();
    agent
        .heartbeat(
            1,
            vec![v1::ConnectorStatus {
                latency: Some(prost_types::Duration {
                    seconds: 7,
                    nanos: 0,
                }),
                ..status("c1", S::Running, 1 << 62)
            }],
        )
        .await;
    // Then an honest heartbeat, so that the one before it was handled
    // (its checkpoint shows; a PAUSING connector shows no latency).
    let honest = timestamp_in(chrono::TimeDelta::seconds(-42));
    agent
        .heartbeat(
            2,
            vec![v1::ConnectorStatus {
                checkpoint_time: Some(honest),
                ..status("c1", S::Running, command.generation)
            }],
        )
        .await;
    let after = app
        .connector_becomes("c1", |c| {
            c.checkpoint_time
                .is_some_and(|t| t.seconds == honest.seconds)
        })
        .await;
    assert_eq!(after.state, S::Pausing as i32);
}

#[tokio::test]
async fn a_checkpoint_or_store_range_in_the_future_is_not_recorded() {
    let (app, agent, command) = running_c1().await;
    agent
        .heartbeat(
            1,
            vec![v1::ConnectorStatus {
                checkpoint_time: Some(timestamp_in(chrono::TimeDelta::hours(1))),
                store_range: Some(v1::TimeRange {
                    earliest_time: Some(timestamp_in(chrono::TimeDelta::hours(-1))),
                    latest_time: Some(timestamp_in(chrono::TimeDelta::hours(1))),
                }),
                latency: Some(prost_types::Duration {
                    seconds: 4,
                    nanos: 0,
                }),
                ..status("c1", S::Running, command.generation)
            }],
        )
        .await;
    let after = app
        .connector_becomes("c1", |c| c.latency.is_some_and(|l| l.seconds == 4))
        .await;
    assert_eq!(after.checkpoint_time, None);
    assert_eq!(after.store_range, None);
    assert_eq!(after.state, S::Running as i32, "the rest is recorded");
}

#[tokio::test]
async fn one_report_the_database_refuses_never_holds_up_another_agents() {
    let db = TestDatabase::create().await;
    let store = PgStore::connect(&db.url, 4).await.unwrap();
    store.migrate().await.unwrap();
    for id in ["c-bad", "c-good"] {
        store
            .create_connector(crate::contract::new_connector(
                id,
                id,
                connector_control::domain::ConnectorKind::IncrementalSync,
            ))
            .await
            .unwrap();
    }
    let open = |agent: &str| Hello {
        agent_id: agent.to_owned(),
        instance_id: "i".to_owned(),
        region: "eu-2".to_owned(),
        server_ip: "10.0.2.7".to_owned(),
        version: String::new(),
        connectors: Vec::new(),
        capabilities: Default::default(),
        actor: Default::default(),
    };
    let bad = store.open_session(&open("a-bad")).await.unwrap();
    let good = store.open_session(&open("a-good")).await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let fleet = Fleet::new(
        store.clone(),
        FleetOptions::new(Duration::from_millis(200)),
        Default::default(),
        shutdown,
    );
    let _loops = fleet.spawn_loops();
    let report = |id: &str, state, message: &str| SessionReport {
        statuses: vec![ObservedStatus {
            connector_id: id.to_owned(),
            state,
            checkpoint_time: None,
            latency: None,
            store_range: None,
            generation: 0,
            message: message.to_owned(),
            retriable: None,
        }],
        gone: Vec::new(),
    };
    // Past validation (a bug, or a rule not yet written): PostgreSQL text
    // cannot hold a NUL, so this row can never be written.
    fleet.queue_statuses(&bad, report("c-bad", ConnectorState::Running, "a\0b"));
    fleet.queue_statuses(
        &good,
        report("c-good", ConnectorState::Failed, "destination down"),
    );
    let good_one = eventually(Duration::from_secs(10), || async {
        let connector = store.get_connector("c-good").await.unwrap();
        (connector.state == ConnectorState::Failed).then_some(connector)
    })
    .await;
    assert_eq!(good_one.status_message, "destination down");
    assert_eq!(
        store.get_connector("c-bad").await.unwrap().state,
        ConnectorState::Stopped,
        "the unwritable report is dropped"
    );
    // And the writer goes on with later reports of the same agent.
    fleet.queue_statuses(&bad, report("c-bad", ConnectorState::Running, "fine now"));
    eventually(Duration::from_secs(10), || async {
        (store.get_connector("c-bad").await.unwrap().state == ConnectorState::Running).then_some(())
    })
    .await;
}

#[tokio::test]
async fn progress_alone_is_recorded_now_and_then_and_what_shows_at_once() {
    let app = spawn_tuned(|options| {
        options.fleet.progress_refresh = Duration::from_secs(3600);
    })
    .await;
    let mut agent = TestAgent::connect(&app, hello("a1", "eu-2", "10.0.2.7")).await;
    let mut generations = Vec::new();
    for id in ["c1", "c2"] {
        app.create(connector(id, "orders")).await;
        app.start(start_request(id)).await.unwrap();
        let command = agent.next_command().await;
        agent.succeed(&command, S::Running).await;
        app.connector_becomes(id, |c| c.state == S::Running as i32)
            .await;
        generations.push(command.generation);
    }
    // Whole seconds: what the database keeps and gives back.
    let start = chrono::DateTime::from_timestamp(Utc::now().timestamp() - 300, 0).unwrap();
    let c1 = |round: i64, latency_ms: i64| v1::ConnectorStatus {
        checkpoint_time: Some(timestamp(start + chrono::TimeDelta::seconds(round))),
        latency: Some(prost_types::Duration {
            seconds: latency_ms / 1000,
            nanos: i32::try_from(latency_ms % 1000 * 1_000_000).unwrap(),
        }),
        ..status("c1", S::Running, generations[0])
    };
    let c2 = |round: i64| v1::ConnectorStatus {
        message: format!("round {round}"),
        ..status("c2", S::Running, generations[1])
    };
    agent.heartbeat(1, vec![c1(1, 2000), c2(1)]).await;
    let first = app
        .connector_becomes("c1", |c| c.checkpoint_time.is_some())
        .await;

    // Ten heartbeats in which c1 only progresses (its checkpoint moves,
    // its latency by 50 ms), while c2's message changes: each of c2's is
    // recorded, in the same writes c1's would be in.
    for round in 2..12 {
        agent
            .heartbeat(round, vec![c1(round, 2000 + 50 * round), c2(round)])
            .await;
        app.connector_becomes("c2", |c| {
            c.status_message.ends_with(&format!("round {round}"))
        })
        .await;
    }
    let progressed = app.get("c1").await;
    assert_eq!(progressed.version, first.version, "no change recorded");
    assert_eq!(progressed.checkpoint_time, first.checkpoint_time);

    // A latency that moves by a second is recorded at once, with the
    // checkpoint of its report.
    agent.heartbeat(12, vec![c1(12, 3600), c2(11)]).await;
    let moved = app
        .connector_becomes("c1", |c| c.latency.is_some_and(|l| l.seconds == 3))
        .await;
    assert_eq!(moved.version, first.version + 1);
    assert_eq!(moved.checkpoint_time, c1(12, 3600).checkpoint_time);
}

#[tokio::test]
async fn a_stopped_connector_says_until_when_its_store_holds_its_checkpoint() {
    let (app, mut agent, _) = running_c1().await;
    let whole = |hours_ago: i64| {
        let at = Utc::now().timestamp() - hours_ago * 3600;
        chrono::DateTime::from_timestamp(at, 0).unwrap()
    };
    let (checkpoint, earliest, latest) = (whole(1), whole(6), whole(0));
    let report = |state| v1::ConnectorStatus {
        checkpoint_time: Some(timestamp(checkpoint)),
        store_range: Some(v1::TimeRange {
            earliest_time: Some(timestamp(earliest)),
            latest_time: Some(timestamp(latest)),
        }),
        ..status("c1", state, 1)
    };
    agent.heartbeat(1, vec![report(S::Running)]).await;
    let running = app
        .connector_becomes("c1", |c| c.checkpoint_time.is_some())
        .await;
    assert_eq!(
        running.resumable_until, None,
        "a running connector reads on"
    );

    app.pause(pause_request("c1")).await.unwrap();
    let command = agent.next_command().await;
    agent
        .send(v1::agent_message::Message::Result(v1::CommandResult {
            command_id: command.id.clone(),
            success: true,
            status: Some(v1::ConnectorStatus {
                generation: command.generation,
                ..report(S::Stopped)
            }),
            ..Default::default()
        }))
        .await;
    let stopped = app
        .connector_becomes("c1", |c| c.state == S::Stopped as i32)
        .await;
    // Five hours: the store keeps six, and the checkpoint is one old.
    assert_eq!(
        stopped.resumable_until,
        Some(timestamp(checkpoint + (latest - earliest)))
    );
}
