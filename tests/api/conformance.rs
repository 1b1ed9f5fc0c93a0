//! The conformance suite (`agent-conformance`) against the reference agent,
//! with each of its drivers: every check passes.

use crate::helpers::*;
use connector_control::agent::driver::{Capabilities, Observation, Refusal, Start};
use connector_control::agent::process::spec;
use connector_control::agent::{self, Driver, Processes, Simulated};
use connector_control::conformance::{self, Check, Options, Outcome};
use std::time::Duration;

/// Runs the suite, with the reference agent and `driver` connecting to it.
async fn check(driver: impl Driver, connectors: &[&str], failing: Option<&str>) -> Vec<Check> {
    let (bound, address) = tokio::sync::oneshot::channel();
    let suite = tokio::spawn(conformance::run(
        Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            connectors: connectors.iter().map(|id| id.to_string()).collect(),
            failing: failing.map(str::to_owned),
            timeout: Duration::from_secs(30),
        },
        move |addr| {
            let _ = bound.send(addr);
        },
    ));
    let addr = address.await.unwrap();
    let config = agent_config(addr, "under-test");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(agent::run(config, driver, async {
        let _ = stopped.await;
    }));
    let checks = suite.await.unwrap().unwrap();
    drop(stop);
    checks
}

/// Every check passed, except those named in `expected_skipped`, which
/// must have been skipped (not failed, not passed).
fn assert_passed(checks: &[Check], expected_skipped: &[&str]) {
    let table = conformance::table(checks);
    assert_eq!(checks.len(), 12, "{table}");
    for check in checks {
        let expected = if expected_skipped
            .iter()
            .any(|name| check.name.contains(name))
        {
            Outcome::Skipped
        } else {
            Outcome::Passed
        };
        assert_eq!(check.outcome, expected, "{}\n{table}", check.name);
    }
}

#[tokio::test]
async fn the_reference_agent_with_simulated_connectors_passes_every_check() {
    let driver = Simulated::new(Duration::from_secs(1), Duration::from_secs(3600));
    let checks = check(driver, &["c1"], None).await;
    assert_passed(&checks, &["failing on its own"]);
}

/// A connector process that refuses a pull-back or a checkpoint its store
/// (one day) cannot serve, and otherwise runs until stopped. Each start
/// leaves its generation in `starts`, beside the script.
const REPLICATOR: &str = r#"echo "$CONNECTOR_GENERATION" >> "$(dirname "$0")/starts"
earliest=$(date -u -d '1 day ago' +%s)
if [ -n "$CONNECTOR_PULL_BACK_TIME" ]; then
  if [ "$(date -u -d "$CONNECTOR_PULL_BACK_TIME" +%s)" -lt "$earliest" ]; then
    echo '{"error_reason": "PULL_BACK_OUT_OF_RANGE", "retriable": false, "message": "the store holds one day"}'
    exit 2
  fi
elif [ -n "$CONNECTOR_CHECKPOINT_TIME" ] && [ "$CONNECTOR_SKIP_TO_EARLIEST" = false ]; then
  if [ "$(date -u -d "$CONNECTOR_CHECKPOINT_TIME" +%s)" -lt "$earliest" ]; then
    echo '{"error_reason": "CHECKPOINT_OUT_OF_RANGE", "retriable": false, "message": "the checkpoint is gone"}'
    exit 2
  fi
fi
echo '{"message": "replicating"}'
exec sleep 600
"#;

#[tokio::test]
async fn the_reference_agent_with_supervised_processes_passes_every_check() {
    let dir = TempDir::new();
    let replicator = dir.0.join("replicator.sh");
    std::fs::write(&replicator, REPLICATOR).unwrap();
    let crashing = dir.0.join("crashing.sh");
    std::fs::write(
        &crashing,
        "echo '{}'\nsleep 0.5\necho 'lost the source' >&2\nexit 1\n",
    )
    .unwrap();
    let specs = spec::parse(&format!(
        "[connectors.c1]\ncommand = [\"/bin/sh\", {:?}]\n\
         [connectors.c3]\ncommand = [\"/bin/sh\", {:?}]\n",
        replicator.display().to_string(),
        crashing.display().to_string(),
    ))
    .unwrap();
    let checks = check(Processes::new(specs), &["c1", "c3"], Some("c3")).await;
    assert_passed(&checks, &[]);
    // The duplicate START of generation 1 ran nothing: one process per
    // start (the refused ones at generation 3 included).
    let starts = std::fs::read_to_string(dir.0.join("starts")).unwrap();
    assert_eq!(starts.lines().collect::<Vec<_>>(), ["1", "3", "3", "4"]);
}

/// The simulation, except that it ignores the store: it starts from any
/// pull-back or checkpoint, however old (data skipped silently).
struct IgnoresTheStore(Simulated);

impl Driver for IgnoresTheStore {
    fn name(&self) -> &str {
        "ignores-the-store"
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    async fn start(&self, start: Start) -> Result<(), Refusal> {
        self.0
            .start(Start {
                pull_back_time: None,
                checkpoint_time: None,
                ..start
            })
            .await
    }
    async fn pause(&self, connector_id: &str, generation: i64) -> Result<(), Refusal> {
        self.0.pause(connector_id, generation).await
    }
    fn observe(&self) -> Vec<Observation> {
        self.0.observe()
    }
}

#[tokio::test]
async fn an_agent_that_skips_data_the_store_lost_fails_those_checks_alone() {
    let driver = IgnoresTheStore(Simulated::new(
        Duration::from_secs(1),
        Duration::from_secs(3600),
    ));
    let checks = check(driver, &["c1"], None).await;
    let table = conformance::table(&checks);
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.outcome == Outcome::Failed)
        .map(|c| c.name)
        .collect();
    assert_eq!(
        failed,
        [
            "a pull-back outside the store refused, not retriable",
            "a start from a checkpoint the store lost refused, not retriable"
        ],
        "{table}"
    );
}

#[tokio::test]
async fn an_agent_that_skips_hello_fails_and_the_rest_is_not_reached() {
    use connector_control::proto::v1::{self, agent_service_client::AgentServiceClient};
    let (bound, address) = tokio::sync::oneshot::channel();
    let suite = tokio::spawn(conformance::run(
        Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            connectors: vec!["c1".to_owned()],
            failing: None,
            timeout: Duration::from_secs(10),
        },
        move |addr| {
            let _ = bound.send(addr);
        },
    ));
    let addr = address.await.unwrap();
    let (outbound, receiver) = tokio::sync::mpsc::channel(4);
    outbound
        .send(v1::AgentMessage {
            message: Some(v1::agent_message::Message::Heartbeat(v1::Heartbeat {
                sequence: 1,
                connectors: Vec::new(),
            })),
        })
        .await
        .unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AgentServiceClient::new(channel);
    let _call = client
        .connect(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await;
    let checks = suite.await.unwrap().unwrap();
    let table = conformance::table(&checks);
    assert_eq!(checks[0].outcome, Outcome::Failed, "{table}");
    assert!(checks[0].saw.contains("not hello"), "{table}");
    assert!(
        checks[1..]
            .iter()
            .all(|c| c.outcome == Outcome::Failed && c.saw.starts_with("not reached")),
        "{table}"
    );
    drop(outbound);
}

#[tokio::test]
async fn the_python_agent_written_from_the_proto_passes_every_check() {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python-agent");
    let python = here.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run examples/python-agent/install.sh once (.ci/run does)",
        python.display()
    );
    let (bound, address) = tokio::sync::oneshot::channel();
    let suite = tokio::spawn(conformance::run(
        Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            connectors: vec!["c1".to_owned(), "fail-1".to_owned()],
            failing: Some("fail-1".to_owned()),
            timeout: Duration::from_secs(30),
        },
        move |addr| {
            let _ = bound.send(addr);
        },
    ));
    let addr = address.await.unwrap();
    let mut agent = std::process::Command::new(&python)
        .arg(here.join("agent.py"))
        .args(["--control-plane", &addr.to_string()])
        .args([
            "--region",
            "eu-2",
            "--server-ip",
            "10.0.2.9",
            "--agent-id",
            "py-1",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let checks = suite.await.unwrap().unwrap();
    let _ = agent.kill();
    let _ = agent.wait();
    assert_passed(&checks, &[]);
}
