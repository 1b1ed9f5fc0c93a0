//! `--driver process`: real child processes (small shell scripts made at
//! test time) started, paused, crashing, outliving their grace period,
//! told the pull-back time, and gone with a killed agent.

use crate::helpers::*;
use connector_control::agent::Processes;
use connector_control::agent::driver::{Driver, Observation, Refusal, Run, Start};
use connector_control::agent::process::spec;
use connector_control::proto::v1::ConnectorState as S;
use std::path::Path;
use std::time::Duration;

/// A script in `dir` that `sh` runs.
fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

/// A driver for `c1` running `body`, with more settings in TOML.
fn driver(dir: &TempDir, body: &str, settings: &str) -> Processes {
    let path = script(&dir.0, "c1.sh", body);
    let toml = format!("[connectors.c1]\ncommand = [\"/bin/sh\", {path:?}]\n{settings}");
    Processes::new(spec::parse(&toml).unwrap())
}

fn start(generation: i64) -> Start {
    Start {
        connector_id: "c1".to_owned(),
        generation,
        pull_back_time: None,
        checkpoint_time: None,
        skip_to_earliest: false,
    }
}

fn observed(driver: &Processes) -> Observation {
    let mut all = driver.observe();
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

async fn observed_when(driver: &Processes, check: impl Fn(&Observation) -> bool) -> Observation {
    eventually(Duration::from_secs(20), || async {
        let now = observed(driver);
        check(&now).then_some(now)
    })
    .await
}

/// The pid a script wrote to `pid` in `dir`, once it has.
async fn pid(dir: &TempDir) -> i32 {
    let path = dir.0.join("pid");
    eventually(Duration::from_secs(20), || async {
        std::fs::read_to_string(&path).ok()?.trim().parse().ok()
    })
    .await
}

/// Whether process `pid` is gone (a zombie nobody reaped counts as gone).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

const REPORTS_THEN_SLEEPS: &str = r#"echo $$ > "$(dirname "$0")/pid"
echo "starting up, not a report"
echo '{"message": 5}'
echo '{"checkpoint_time":"2026-12-07T10:00:00Z","latency_ms":1500,"message":"from '"$CONNECTOR_PULL_BACK_TIME"' gen '"$CONNECTOR_GENERATION"'"}'
exec sleep 600
"#;

#[tokio::test]
async fn a_start_is_ready_at_the_first_report_and_a_pause_stops_the_process() {
    let dir = TempDir::new();
    let driver = driver(&dir, REPORTS_THEN_SLEEPS, "");
    let pulled_back = chrono::Utc::now() - chrono::Duration::minutes(5);
    driver
        .start(Start {
            pull_back_time: Some(pulled_back),
            ..start(3)
        })
        .await
        .unwrap();
    // Garbage lines are not trusted: what it reports is the JSON line.
    let running = observed(&driver);
    assert_eq!(running.run, Run::Running);
    assert_eq!(running.latency, Some(Duration::from_millis(1500)));
    assert_eq!(
        running.message,
        format!("from {} gen 3", pulled_back.to_rfc3339())
    );
    assert!(running.checkpoint_time.is_some());
    assert_eq!(driver.observe_connector("c1"), Some(running.clone()));

    let pid = pid(&dir).await;
    assert!(!gone(pid));
    driver.pause("c1", 2).await.unwrap();
    let stopped = observed(&driver);
    assert_eq!(stopped.run, Run::Stopped);
    assert!(stopped.message.contains("SIGTERM"), "{}", stopped.message);
    assert!(gone(pid));
}

#[tokio::test]
async fn a_start_resumes_from_the_recorded_checkpoint_else_from_the_last_report() {
    let dir = TempDir::new();
    let script = r#"echo '{"checkpoint_time":"2026-12-07T10:00:00Z","message":"from '"$CONNECTOR_CHECKPOINT_TIME"'"}'
exec sleep 600
"#;
    let driver = driver(&dir, script, "");
    let resumed_from = async |start: Start| {
        driver.start(start).await.unwrap();
        let message = observed(&driver).message;
        driver.pause("c1", 2).await.unwrap();
        message
    };
    assert_eq!(
        resumed_from(start(1)).await,
        "from ",
        "nothing recorded yet"
    );
    assert_eq!(
        resumed_from(start(2)).await,
        "from 2026-12-07T10:00:00+00:00",
        "its own last report"
    );
    let recorded = "2026-12-07T09:00:00Z".parse().unwrap();
    let from_record = Start {
        checkpoint_time: Some(recorded),
        ..start(3)
    };
    assert_eq!(
        resumed_from(from_record).await,
        "from 2026-12-07T09:00:00+00:00",
        "the control plane's record wins"
    );
}

#[tokio::test]
async fn a_process_that_ignores_its_stop_signal_is_killed_after_the_grace_period() {
    let dir = TempDir::new();
    let body = "trap '' TERM\necho $$ > \"$(dirname \"$0\")/pid\"\necho '{}'\nwhile true; do sleep 0.1; done\n";
    let driver = driver(&dir, body, "stop_grace = \"300ms\"");
    driver.start(start(1)).await.unwrap();
    let pid = pid(&dir).await;
    driver.pause("c1", 2).await.unwrap();
    let stopped = observed(&driver);
    assert_eq!(stopped.run, Run::Stopped);
    assert!(stopped.message.contains("SIGKILL"), "{}", stopped.message);
    assert!(gone(pid));
}

#[tokio::test]
async fn a_process_that_exits_by_itself_is_failed_with_its_code_and_stderr() {
    let dir = TempDir::new();
    let body = "echo '{}'\nsleep 0.2\necho 'disk full on /data' >&2\nexit 3\n";
    let driver = driver(&dir, body, "");
    driver.start(start(1)).await.unwrap();
    let failed = observed_when(&driver, |o| o.run == Run::Failed).await;
    assert!(
        failed.message.contains("exited with code 3"),
        "{}",
        failed.message
    );
    assert!(
        failed.message.contains("disk full on /data"),
        "{}",
        failed.message
    );
    assert_eq!(failed.retriable, None, "restart policies apply");
    // Started again, it runs again (as an automatic start would).
    driver.start(start(2)).await.unwrap();
    assert_eq!(observed(&driver).run, Run::Running);

    // An exit code the file calls final: starting again cannot help.
    let dir = TempDir::new();
    let final_exit = self::driver(&dir, body, "no_retry_exit_codes = [3]");
    final_exit.start(start(1)).await.unwrap();
    let failed = observed_when(&final_exit, |o| o.run == Run::Failed).await;
    assert_eq!(failed.retriable, Some(false));
}

#[tokio::test]
async fn readiness_is_a_first_report_or_staying_up_and_an_early_exit_fails_the_start() {
    let dir = TempDir::new();
    // No report: ready once it stayed up for its readiness time.
    let quiet = driver(&dir, "exec sleep 600\n", "readiness = \"200ms\"");
    quiet.start(start(1)).await.unwrap();
    assert_eq!(observed(&quiet).run, Run::Running);
    quiet.pause("c1", 2).await.unwrap();

    let exits = |code: i32| format!("echo 'bad config' >&2\nexit {code}\n");
    let retried = driver(&dir, &exits(1), "no_retry_exit_codes = [78]");
    let refusal: Refusal = retried.start(start(1)).await.unwrap_err();
    assert_eq!(refusal.reason, "PROCESS_EXITED");
    assert!(
        refusal.message.contains("exited with code 1"),
        "{}",
        refusal.message
    );
    assert!(
        refusal.message.contains("bad config"),
        "{}",
        refusal.message
    );
    assert_eq!(refusal.retriable, None);

    let final_exit = driver(&dir, &exits(78), "no_retry_exit_codes = [78]");
    let refusal = final_exit.start(start(1)).await.unwrap_err();
    assert_eq!(refusal.retriable, Some(false));
}

#[tokio::test]
async fn a_connector_not_in_the_file_is_refused_for_good() {
    let dir = TempDir::new();
    let driver = driver(&dir, "exec sleep 600\n", "");
    let refusal = driver
        .start(Start {
            connector_id: "c9".to_owned(),
            ..start(1)
        })
        .await
        .unwrap_err();
    assert_eq!(refusal.reason, "CONNECTOR_NOT_CONFIGURED");
    assert_eq!(refusal.retriable, Some(false));
    assert!(driver.observe().is_empty());
    assert!(driver.observe_connector("c9").is_none());
}

// Several threads: spawning the agent waits for its log, blocking one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_leaves_no_process_and_its_next_hello_says_nothing_runs() {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let dir = TempDir::new();
    let path = script(&dir.0, "c1.sh", REPORTS_THEN_SLEEPS);
    let file = dir.0.join("connectors.toml");
    std::fs::write(
        &file,
        format!("[connectors.c1]\ncommand = [\"/bin/sh\", {path:?}]\n"),
    )
    .unwrap();
    let mut agent = ServerProcess::spawn_driver_agent(app.addr, "p1", "process", &file);
    app.start(start_request("c1")).await.unwrap();
    let running = app
        .connector_becomes("c1", |c| {
            c.state == S::Running as i32 && c.status_message.starts_with("from  gen 1")
        })
        .await;
    assert_eq!(running.agent_id, "p1");
    let pid = pid(&dir).await;

    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    eventually(Duration::from_secs(20), || async {
        gone(pid).then_some(())
    })
    .await;

    // Back, it runs nothing: the connector meant to run is not RUNNING.
    let _agent = ServerProcess::spawn_driver_agent(app.addr, "p1", "process", &file);
    app.connector_becomes("c1", |c| c.state == S::Failed as i32)
        .await;
}

#[tokio::test]
async fn an_agent_shutting_down_stops_its_processes_with_their_stop_signal() {
    let dir = TempDir::new();
    let body = "trap 'echo stopped > \"$(dirname \"$0\")/stopped\"; exit 0' TERM\n\
                echo '{}'\nwhile true; do sleep 0.1; done\n";
    let driver = driver(&dir, body, "");
    driver.start(start(1)).await.unwrap();
    driver.shutdown().await;
    assert_eq!(observed(&driver).run, Run::Stopped);
    let said = std::fs::read_to_string(dir.0.join("stopped")).unwrap();
    assert_eq!(said.trim(), "stopped", "it ran its SIGTERM handler");
}
