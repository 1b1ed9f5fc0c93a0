//! The people's CLI (`connector-control connectors|agents|regions`) against
//! a real server: output for people and scripts, and exit codes.

use crate::helpers::*;
use connector_control::agent::{self, Simulated};
use connector_control::proto::v1;
use std::time::Duration;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the CLI against `app` (off the runtime: the server shares it).
async fn cli(app: &TestApp, args: &[&str]) -> Run {
    let server = format!("http://{}", app.addr);
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_connector-control"))
            .args(&args)
            .env("CONNECTOR_CONTROL_SERVER", server)
            .env_remove("RUST_LOG")
            .output()
            .expect("running the CLI")
    })
    .await
    .unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test]
async fn connectors_list_prints_a_table_for_people_and_json_for_scripts() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders to warehouse")).await;
    app.create(connector("c2", "payments stream")).await;

    let table = cli(&app, &["connectors", "list", "WAREHOUSE"]).await;
    assert_eq!(table.code, Some(0), "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[0].contains("ID") && lines[0].contains("STATE"),
        "{}",
        table.stdout
    );
    assert!(
        lines[1].contains("c1") && lines[1].contains("STOPPED"),
        "{}",
        table.stdout
    );
    assert!(!table.stdout.contains("payments"), "{}", table.stdout);
    assert!(
        table.stdout.contains("1 shown, 1 matching"),
        "{}",
        table.stdout
    );

    let json = cli(
        &app,
        &["connectors", "list", "-o", "json", "--page-size", "1"],
    )
    .await;
    assert_eq!(json.code, Some(0), "{}", json.stderr);
    let page: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(page["connectors"][0]["id"], "c1");
    assert_eq!(page["connectors"][0]["state"], "CONNECTOR_STATE_STOPPED");
    assert_eq!(page["totalSize"], 2);
    assert!(page["nextPageToken"].is_string());

    let all = cli(
        &app,
        &[
            "connectors",
            "list",
            "--page-size",
            "1",
            "--all",
            "-o",
            "json",
        ],
    )
    .await;
    let all: serde_json::Value = serde_json::from_str(&all.stdout).unwrap();
    assert_eq!(all["connectors"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn connectors_list_lagging_shows_what_to_look_at() {
    use connector_control::proto::v1::{self, ConnectorState as S};
    let app = spawn_app().await;
    app.create(connector("c1", "orders to warehouse")).await;
    app.create(connector("c2", "payments stream")).await;
    let mut agent = TestAgent::connect(&app, hello("a1", "eu-2", "10.0.2.9")).await;
    app.start(start_request("c1")).await.unwrap();
    let command = agent.next_command().await;
    agent.succeed(&command, S::Running).await;
    let behind = v1::ConnectorStatus {
        latency: Some(prost_types::Duration {
            seconds: 300,
            nanos: 0,
        }),
        ..status("c1", S::Running, command.generation)
    };
    agent.heartbeat(1, vec![behind]).await;
    app.connector_becomes("c1", |c| c.status_message.starts_with("LAGGING:"))
        .await;

    let lagging = cli(&app, &["connectors", "list", "--lagging"]).await;
    assert_eq!(lagging.code, Some(0), "{}", lagging.stderr);
    assert!(
        lagging.stdout.contains("RUNNING LAGGING") && lagging.stdout.contains("5m"),
        "{}",
        lagging.stdout
    );
    assert!(!lagging.stdout.contains("payments"), "{}", lagging.stdout);
    assert!(
        lagging.stdout.contains("1 shown, 1 matching"),
        "{}",
        lagging.stdout
    );
}

#[tokio::test]
async fn exit_codes_tell_not_found_from_precondition_failed() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;

    let missing = cli(&app, &["connectors", "get", "ghost"]).await;
    assert_eq!(missing.code, Some(3));
    assert!(
        missing
            .stderr
            .starts_with("error: CONNECTOR_NOT_FOUND: connector ghost does not exist")
    );

    let stopped = cli(&app, &["connectors", "pause", "c1"]).await;
    assert_eq!(stopped.code, Some(4));
    assert!(
        stopped.stderr.contains("CONNECTOR_NOT_RUNNING"),
        "{}",
        stopped.stderr
    );

    let invalid = cli(&app, &["connectors", "list", "--region", "EU 2"]).await;
    assert_eq!(invalid.code, Some(2));
    assert!(
        invalid.stderr.contains("\n  region: "),
        "{}",
        invalid.stderr
    );

    let bad_time = cli(
        &app,
        &["connectors", "start", "c1", "--pull-back", "yesterday"],
    )
    .await;
    assert_eq!(bad_time.code, Some(2));
    assert!(bad_time.stderr.contains("RFC 3339"), "{}", bad_time.stderr);
    assert_eq!(app.get("c1").await.generation, 0);
}

#[tokio::test]
async fn start_with_a_relative_pull_back_and_wait_returns_what_the_agent_confirmed() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(agent::run(
        agent_config(app.addr, "ref-1"),
        Simulated::new(Duration::from_secs(1), Duration::from_secs(3600)),
        async {
            let _ = stopped.await;
        },
    ));

    let started = cli(
        &app,
        &[
            "connectors",
            "start",
            "c1",
            "--pull-back",
            "-30m",
            "--wait",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(started.code, Some(0), "{}", started.stderr);
    let response: serde_json::Value = serde_json::from_str(&started.stdout).unwrap();
    assert_eq!(response["command"]["status"], "COMMAND_STATUS_SUCCEEDED");
    assert!(response["command"]["pullBackTime"].is_string());
    assert_eq!(response["connector"]["state"], "CONNECTOR_STATE_RUNNING");

    let paused = cli(
        &app,
        &["connectors", "pause", "c1", "--reason", "INC-7", "--wait"],
    )
    .await;
    assert_eq!(paused.code, Some(0), "{}", paused.stderr);
    assert!(
        paused.stdout.contains("connector c1 is STOPPED"),
        "{}",
        paused.stdout
    );
    assert!(paused.stdout.contains("SUCCEEDED"), "{}", paused.stdout);
    drop(stop);
}

#[tokio::test]
async fn agents_and_regions_list_show_who_runs_where() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let _agent = TestAgent::connect(&app, hello("a1", "eu-2", "10.0.2.7")).await;

    let agents = cli(&app, &["agents", "list"]).await;
    assert_eq!(agents.code, Some(0), "{}", agents.stderr);
    let row = agents.stdout.lines().nth(1).unwrap_or_default();
    assert!(
        row.contains("a1") && row.contains("eu-2") && row.contains("ONLINE"),
        "{}",
        agents.stdout
    );

    let regions = cli(&app, &["regions", "list", "-o", "json"]).await;
    let regions: serde_json::Value = serde_json::from_str(&regions.stdout).unwrap();
    assert_eq!(regions["regions"][0]["name"], "eu-2");
    assert_eq!(regions["regions"][0]["onlineAgents"], 1);

    // One replica, which leads once its first lease round ran.
    let replicas = eventually(Duration::from_secs(30), || async {
        let replicas = cli(&app, &["replicas", "list"]).await;
        assert_eq!(replicas.code, Some(0), "{}", replicas.stderr);
        replicas
            .stdout
            .contains("yes (term")
            .then_some(replicas.stdout)
    })
    .await;
    let row = replicas.lines().nth(1).unwrap_or_default();
    assert!(
        row.contains(&app.addr.to_string()) && row.contains("ALIVE") && row.contains(" 1 "),
        "{replicas}"
    );
}

#[tokio::test]
async fn an_unreachable_control_plane_is_explained() {
    let output = tokio::task::spawn_blocking(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_connector-control"))
            .args(["connectors", "list", "--server", "http://127.0.0.1:1"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(6));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach the control plane at http://127.0.0.1:1"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_unconfirmed_wait_exits_5_and_says_how_to_wait_again() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let waited = cli(
        &app,
        &["connectors", "start", "c1", "--wait", "--timeout", "1s"],
    )
    .await;
    assert_eq!(waited.code, Some(5), "{}", waited.stderr);
    assert!(
        waited.stderr.contains("COMMAND_NOT_CONFIRMED"),
        "{}",
        waited.stderr
    );
    let hint = waited
        .stderr
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("to wait again: connector-control ")
        })
        .expect("a retry hint")
        .to_owned();
    // The hint repeats the same call: it is accepted as a retry.
    let args: Vec<&str> = hint
        .split_whitespace()
        .filter(|arg| *arg != "--wait")
        .collect();
    let retried = cli(&app, &args).await;
    assert_eq!(retried.code, Some(0), "{}", retried.stderr);
    assert_eq!(app.get("c1").await.generation, 1);

    let relative = cli(
        &app,
        &[
            "connectors",
            "start",
            "c1",
            "--pull-back",
            "-5m",
            "--request-id",
            "r9",
        ],
    )
    .await;
    assert_eq!(relative.code, Some(2));
    assert!(
        relative.stderr.contains("give the time itself"),
        "{}",
        relative.stderr
    );
}

#[tokio::test]
async fn names_and_messages_stored_before_validation_print_as_escapes() {
    let app = spawn_app().await;
    app.create(connector("c1", "invoices")).await;
    // As a row written before names were checked, and an agent's message
    // with a line separator.
    app.sql(
        "UPDATE connectors SET name = E'invoice-\\u202Etxt.exe',
                               status_message = E'line one\\u2028line two' WHERE id = 'c1'",
    )
    .await;
    let list = cli(&app, &["connectors", "list"]).await;
    assert_eq!(list.code, Some(0), "{}", list.stderr);
    assert!(
        list.stdout.contains("invoice-\\u{202e}txt.exe"),
        "{}",
        list.stdout
    );
    assert!(!list.stdout.contains('\u{202E}'), "{}", list.stdout);
    let get = cli(&app, &["connectors", "get", "c1"]).await;
    assert!(
        get.stdout.contains("line one\\u{2028}line two"),
        "{}",
        get.stdout
    );
    assert!(!get.stdout.contains('\u{2028}'), "{}", get.stdout);
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_history_shows_who_asked_what() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;

    let dry = cli(&app, &["connectors", "start", "c1", "--dry-run"]).await;
    assert_eq!(dry.code, Some(0), "{}", dry.stderr);
    assert!(
        dry.stdout
            .starts_with("dry run, nothing changed: connector c1 would be STARTING"),
        "{}",
        dry.stdout
    );
    assert_eq!(app.get("c1").await.generation, 0);
    let conflicting = cli(&app, &["connectors", "start", "c1", "--dry-run", "--wait"]).await;
    assert_eq!(conflicting.code, Some(2), "{}", conflicting.stderr);

    cli(&app, &["connectors", "start", "c1"]).await;
    let paused = cli(&app, &["connectors", "pause", "c1", "--reason", "INC-12"]).await;
    assert_eq!(paused.code, Some(0), "{}", paused.stderr);
    let history = cli(&app, &["connectors", "history", "c1"]).await;
    assert_eq!(history.code, Some(0), "{}", history.stderr);
    let lines: Vec<&str> = history.stdout.lines().collect();
    assert!(
        lines[0].contains("GENERATION") && lines[0].contains("BY"),
        "{}",
        history.stdout
    );
    assert!(
        lines[1].contains("PAUSE") && lines[1].contains("INC-12") && lines[1].contains("anonymous"),
        "newest first: {}",
        history.stdout
    );
    assert!(
        lines[2].contains("START") && lines[2].contains("SUPERSEDED"),
        "{}",
        history.stdout
    );
    let json = cli(&app, &["connectors", "history", "c1", "-o", "json"]).await;
    let parsed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(parsed["commands"].as_array().unwrap().len(), 2);
    let missing = cli(&app, &["connectors", "history", "ghost"]).await;
    assert_eq!(missing.code, Some(3));
}

#[tokio::test]
async fn a_batch_pause_by_server_ip_shows_first_and_never_asks_a_pipe() {
    let app = spawn_app().await;
    for id in ["c1", "c2", "c3"] {
        app.create(connector(id, id)).await;
        app.start(start_request(id)).await.unwrap();
    }
    app.sql("UPDATE connectors SET server_ip = '10.0.1.5' WHERE id IN ('c1', 'c2')")
        .await;
    let pause = [
        "connectors",
        "pause",
        "--server-ip",
        "10.0.1.5",
        "--reason",
        "INC-5",
    ];

    let dry = cli(&app, &[&pause[..], &["--dry-run"]].concat()).await;
    assert_eq!(dry.code, Some(0), "{}", dry.stderr);
    assert!(dry.stdout.contains("WOULD CHANGE"), "{}", dry.stdout);
    assert!(
        dry.stdout.contains(
            "2 selected: 2 would change, 0 unchanged, 0 failed (dry run: nothing changed)"
        ),
        "{}",
        dry.stdout
    );
    let piped = cli(&app, &pause).await;
    assert_eq!(piped.code, Some(2), "{}", piped.stderr);
    assert!(piped.stderr.contains("--yes"), "{}", piped.stderr);
    assert_eq!(
        app.count("SELECT count(*) FROM commands WHERE kind = 'PAUSE'")
            .await,
        0,
        "nothing changed without --yes"
    );

    let done = cli(&app, &[&pause[..], &["--yes"]].concat()).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(
        done.stdout
            .contains("2 selected: 2 changed, 0 unchanged, 0 failed"),
        "{}",
        done.stdout
    );
    assert_eq!(
        app.count("SELECT count(*) FROM commands WHERE kind = 'PAUSE' AND reason = 'INC-5'")
            .await,
        2
    );
    assert_eq!(app.get("c3").await.state, v1_state("STARTING"));
    // A partial address is no longer a text prefix: it is refused, saying
    // how to name the servers 10.0.1.x.
    let partial = cli(
        &app,
        &["connectors", "pause", "--server-ip", "10.0.1", "--dry-run"],
    )
    .await;
    assert_eq!(partial.code, Some(2), "{}", partial.stderr);
    assert!(partial.stderr.contains("10.0.1.0/24"), "{}", partial.stderr);
    let network = cli(
        &app,
        &[
            "connectors",
            "list",
            "--server-ip",
            "10.0.1.0/24",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(network.code, Some(0), "{}", network.stderr);
    let page: serde_json::Value = serde_json::from_str(&network.stdout).unwrap();
    assert_eq!(page["totalSize"], 2);

    let both = cli(
        &app,
        &["connectors", "pause", "c1", "--server-ip", "10.0.1.5"],
    )
    .await;
    assert_eq!(both.code, Some(2), "{}", both.stderr);
    let nothing = cli(&app, &["connectors", "pause", "--yes"]).await;
    assert_eq!(nothing.code, Some(2), "{}", nothing.stderr);
    let waiting = cli(&app, &[&pause[..], &["--yes", "--wait"]].concat()).await;
    assert_eq!(waiting.code, Some(2), "{}", waiting.stderr);
    assert!(
        waiting.stderr.contains("--wait applies to one connector"),
        "{}",
        waiting.stderr
    );
}

fn v1_state(name: &str) -> i32 {
    connector_control::proto::v1::ConnectorState::from_str_name(&format!("CONNECTOR_STATE_{name}"))
        .unwrap() as i32
}

#[tokio::test]
async fn connectors_watch_prints_the_snapshot_then_each_change_as_it_happens() {
    use std::io::BufRead;
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    app.create(connector("c2", "billing")).await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_connector-control"))
        .args(["connectors", "watch", "c1", "--region", "eu-2"])
        .env("CONNECTOR_CONTROL_SERVER", format!("http://{}", app.addr))
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running the CLI");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if lines_tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let mut line = async || {
        tokio::time::timeout(Duration::from_secs(10), lines.recv())
            .await
            .expect("no line within 10 s")
            .expect("the CLI ended")
    };
    let snapshot = line().await;
    assert!(
        snapshot.contains("SNAPSHOT c1 (orders) STOPPED region eu-2"),
        "{snapshot}"
    );
    let end = line().await;
    assert!(
        end.contains("snapshot complete") && end.contains("--resume-token "),
        "{end}"
    );
    app.start(start_request("c2")).await.unwrap();
    app.start(start_request("c1")).await.unwrap();
    let changed = line().await;
    assert!(
        changed.contains("CHANGED  c1 (orders) STARTING"),
        "{changed}: c2 is not watched"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn a_connector_no_agent_answers_is_marked_stopped_from_the_cli() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    // A start no agent of the region ever takes: STARTING for good.
    app.start(start_request("c1")).await.unwrap();
    let dry = cli(
        &app,
        &[
            "connectors",
            "mark-stopped",
            "c1",
            "--reason",
            "INC-9 region eu-2 lost",
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(dry.code, Some(0), "{}", dry.stderr);
    assert!(
        dry.stdout.starts_with("dry run, nothing changed"),
        "{}",
        dry.stdout
    );
    assert_eq!(
        app.get("c1").await.state,
        v1::ConnectorState::Starting as i32
    );
    let marked = cli(
        &app,
        &[
            "connectors",
            "mark-stopped",
            "c1",
            "--reason",
            "INC-9 region eu-2 lost",
        ],
    )
    .await;
    assert_eq!(marked.code, Some(0), "{}", marked.stderr);
    assert!(marked.stdout.contains("is STOPPED"), "{}", marked.stdout);
    assert_eq!(
        app.get("c1").await.state,
        v1::ConnectorState::Stopped as i32
    );
    // A second time: already stopped, a precondition (exit 4).
    let again = cli(
        &app,
        &["connectors", "mark-stopped", "c1", "--reason", "again"],
    )
    .await;
    assert_eq!(again.code, Some(4), "{}", again.stderr);
    assert!(
        again.stderr.contains("CONNECTOR_NOT_RUNNING"),
        "{}",
        again.stderr
    );
}

#[tokio::test]
async fn a_start_refused_for_a_lost_checkpoint_prints_both_ways_out() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    app.lose_checkpoint("c1").await;
    let refused = cli(&app, &["connectors", "start", "c1"]).await;
    assert_eq!(refused.code, Some(4), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("CHECKPOINT_OUT_OF_RANGE")
            && refused
                .stderr
                .contains("connectors start c1 --pull-back 2026-01-01T00:01:00Z")
            && refused
                .stderr
                .contains("connectors start c1 --skip-to-earliest"),
        "{}",
        refused.stderr
    );
    let skipped = cli(&app, &["connectors", "start", "c1", "--skip-to-earliest"]).await;
    assert_eq!(skipped.code, Some(0), "{}", skipped.stderr);
    assert_eq!(
        app.get("c1").await.state,
        v1::ConnectorState::Starting as i32
    );
}

#[tokio::test]
async fn a_restart_policy_is_changed_from_the_cli_keeping_what_is_not_given() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let changed = cli(
        &app,
        &[
            "connectors",
            "restart-policy",
            "c1",
            "--max-restarts",
            "5",
            "--initial-backoff",
            "30s",
        ],
    )
    .await;
    assert_eq!(changed.code, Some(0), "{}", changed.stderr);
    assert!(
        changed
            .stdout
            .contains("ON_FAILURE, at most 5 in a row, after 30s doubling to 5m, reset after 10m"),
        "{}",
        changed.stdout
    );
    let policy = app.get("c1").await.restart_policy.unwrap();
    assert_eq!(policy.max_restarts, 5);
    assert_eq!(policy.initial_backoff.unwrap().seconds, 30);
    assert_eq!(policy.max_backoff.unwrap().seconds, 300, "kept");
    let never = cli(
        &app,
        &["connectors", "restart-policy", "c1", "--mode", "never"],
    )
    .await;
    assert_eq!(never.code, Some(0), "{}", never.stderr);
    let shown = cli(&app, &["connectors", "get", "c1"]).await;
    assert!(
        shown.stdout.contains("RESTART POLICY") && shown.stdout.contains("NEVER"),
        "{}",
        shown.stdout
    );
    assert_eq!(
        app.get("c1").await.restart_policy.unwrap().max_restarts,
        5,
        "kept"
    );
}
