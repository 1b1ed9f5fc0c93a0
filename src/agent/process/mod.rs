//! `--driver process`: each connector a supervised child process, as
//! supervisord or Nomad's exec driver run them.
//!
//! - `spec.rs`: the `--connectors-file` (TOML) saying, per connector id,
//!   the command line, environment, working directory, stop signal, grace
//!   period, readiness time and the exit codes that starting again cannot
//!   fix;
//! - `report.rs`: the JSON lines a process writes on stdout to report its
//!   progress;
//! - this file: starting (ready once the process reported a status, or
//!   stayed up for its readiness time; failed if it exits first), pausing
//!   (the stop signal to its process group, SIGKILL after the grace
//!   period), and a process that exits by itself reported FAILED with its
//!   exit code or signal and the last lines of its stderr.
//!
//! No orphans: each process leads a process group of its own, and is
//! killed (SIGKILL, by the kernel's parent-death signal) when the agent
//! dies, however it dies. A process's own children should end with it (or
//! the process `exec` its work). An agent that restarts runs nothing, and
//! its hello says so: nothing stays RUNNING that no process serves.
//!
//! The process is told what to do by environment variables, also usable as
//! `{placeholders}` in its arguments: `CONNECTOR_ID`, `CONNECTOR_GENERATION`,
//! `CONNECTOR_PULL_BACK_TIME` (RFC 3339; empty without a pull-back),
//! `CONNECTOR_CHECKPOINT_TIME` (where to resume: the checkpoint the control
//! plane recorded last, else the last one the process reported; empty if
//! none) and `CONNECTOR_SKIP_TO_EARLIEST` (`true` or `false`).

pub mod report;
pub mod spec;

use super::driver::{Capabilities, Driver, Observation, Refusal, Run, Start};
use crate::domain::TimeRange;
use chrono::{DateTime, Utc};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use report::Report;
pub use spec::ProcessSpec;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;
use tracing::{info, warn};

/// Lines of a process's stderr kept for the message of its failure.
const STDERR_LINES: usize = 10;
/// The longest stderr line kept, in characters.
const STDERR_LINE_CHARS: usize = 300;

/// The process driver: the connectors file and what runs.
pub struct Processes {
    specs: BTreeMap<String, ProcessSpec>,
    connectors: Mutex<HashMap<String, Arc<Supervised>>>,
}

/// Where a process is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Starting,
    /// It reported its first status.
    Ready,
    /// It exited: why, its exit code if it had one, and the reason and
    /// retriability it reported before, if it did.
    Exited {
        why: String,
        code: Option<i32>,
        reason: Option<String>,
        retriable: Option<bool>,
    },
}

/// One process (the latest of its connector).
struct Supervised {
    connector_id: String,
    /// Exit codes after which starting again cannot help.
    no_retry_exit_codes: Vec<i32>,
    /// Its process group (its own pid).
    group: Pid,
    phase: watch::Sender<Phase>,
    /// Set before the stop signal: its exit is then a stop, not a failure.
    stopping: AtomicBool,
    observed: Mutex<Observed>,
    /// Lines of stdout that were no report.
    garbage: AtomicU64,
}

/// What the process reported, and how it is.
#[derive(Clone, Debug)]
struct Observed {
    run: Run,
    checkpoint_time: Option<DateTime<Utc>>,
    latency: Option<Duration>,
    store_range: Option<TimeRange>,
    message: String,
    stderr: VecDeque<String>,
    /// Set when it exited with one of its no-retry exit codes, or said so.
    retriable: Option<bool>,
    /// The reason it gave for giving up, if it did.
    error_reason: Option<String>,
}

impl Processes {
    /// A driver for the connectors `specs` name.
    pub fn new(specs: BTreeMap<String, ProcessSpec>) -> Self {
        Processes {
            specs,
            connectors: Mutex::default(),
        }
    }

    /// The connectors file at `path`, read and checked.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        Ok(Self::new(spec::load(path)?))
    }

    fn current(&self, connector_id: &str) -> Option<Arc<Supervised>> {
        self.connectors.lock().unwrap().get(connector_id).cloned()
    }
}

impl Supervised {
    fn alive(&self) -> bool {
        !matches!(*self.phase.borrow(), Phase::Exited { .. })
    }

    fn observation(&self) -> Observation {
        let observed = self.observed.lock().unwrap();
        Observation {
            connector_id: self.connector_id.clone(),
            run: observed.run,
            checkpoint_time: observed.checkpoint_time,
            latency: (observed.run == Run::Running)
                .then_some(observed.latency)
                .flatten(),
            store_range: observed.store_range,
            message: observed.message.clone(),
            retriable: (observed.run == Run::Failed)
                .then_some(observed.retriable)
                .flatten(),
            generation: None,
        }
    }

    fn signal(&self, signal: Signal) {
        if let Err(error) = killpg(self.group, signal) {
            // ESRCH: it is gone already.
            tracing::debug!(connector_id = %self.connector_id, %error, "signalling the process group");
        }
    }

    /// Waits until the process exited; false when `within` passed first.
    async fn exited_within(&self, within: Duration) -> bool {
        let mut phase = self.phase.subscribe();
        tokio::time::timeout(
            within,
            phase.wait_for(|phase| matches!(phase, Phase::Exited { .. })),
        )
        .await
        .is_ok()
    }

    /// A line of stdout: a report, or garbage that is logged and dropped.
    fn stdout_line(&self, line: &str) {
        match Report::parse(line) {
            Ok(report) => {
                let mut observed = self.observed.lock().unwrap();
                if let Some(checkpoint) = report.checkpoint_time {
                    observed.checkpoint_time = Some(checkpoint);
                }
                if let Some(latency) = report.latency() {
                    observed.latency = Some(latency);
                }
                if let Some(range) = report.store_range() {
                    observed.store_range = Some(range);
                }
                if let Some(message) = report.message {
                    observed.message = message;
                }
                if report.retriable.is_some() {
                    observed.retriable = report.retriable;
                }
                let giving_up = report.error_reason.is_some();
                if giving_up {
                    observed.error_reason = report.error_reason;
                }
                drop(observed);
                if giving_up {
                    // Not ready: it is about to exit.
                    return;
                }
                self.phase.send_if_modified(|phase| {
                    let first = *phase == Phase::Starting;
                    if first {
                        *phase = Phase::Ready;
                    }
                    first
                });
            }
            Err(why) => {
                let count = self.garbage.fetch_add(1, Ordering::Relaxed) + 1;
                // The first few, then one in a thousand: a chatty process
                // does not flood the agent's log.
                if count <= 3 || count.is_multiple_of(1000) {
                    let line: String = line.chars().take(200).collect();
                    warn!(
                        connector_id = %self.connector_id,
                        %why, %line, count,
                        "a line of the process's stdout is no report; ignored"
                    );
                }
            }
        }
    }

    fn stderr_line(&self, line: &str) {
        let mut observed = self.observed.lock().unwrap();
        if observed.stderr.len() == STDERR_LINES {
            observed.stderr.pop_front();
        }
        observed
            .stderr
            .push_back(line.chars().take(STDERR_LINE_CHARS).collect());
    }

    /// The process exited with `status`.
    fn exited(&self, status: std::process::ExitStatus) {
        let why = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => match Signal::try_from(signal) {
                Ok(signal) => format!("was killed by {signal}"),
                Err(_) => format!("was killed by signal {signal}"),
            },
            (None, None) => "exited".to_owned(),
        };
        let stopping = self.stopping.load(Ordering::SeqCst);
        let mut observed = self.observed.lock().unwrap();
        if stopping {
            observed.run = Run::Stopped;
            observed.message = format!("stopped (it {why})");
        } else {
            observed.run = Run::Failed;
            if status
                .code()
                .is_some_and(|code| self.no_retry_exit_codes.contains(&code))
            {
                observed.retriable = Some(false);
            }
            let stderr = Vec::from(observed.stderr.clone()).join(" | ");
            observed.message = if stderr.is_empty() {
                format!("the process {why}")
            } else {
                format!("the process {why}; its stderr ends: {stderr}")
            };
        }
        let message = observed.message.clone();
        let reason = observed.error_reason.clone();
        let retriable = observed.retriable;
        drop(observed);
        info!(connector_id = %self.connector_id, %why, stopping, "connector process ended");
        self.phase.send_replace(Phase::Exited {
            why: message,
            code: status.code(),
            reason,
            retriable,
        });
    }
}

/// `text` with the start's `{placeholders}` filled in.
fn fill(text: &str, values: &[(&str, String)]) -> String {
    values.iter().fold(text.to_owned(), |text, (name, value)| {
        text.replace(&format!("{{{name}}}"), value)
    })
}

/// A task handing each line `output` gives to `each`, until it closes.
fn read_lines(
    output: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    supervised: Arc<Supervised>,
    each: fn(&Supervised, &str),
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(output).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            each(&supervised, &line);
        }
    })
}

/// Spawns `spec`'s process for `start` and the tasks that read its output
/// and wait for its end.
fn spawn(
    spec: &ProcessSpec,
    start: &Start,
    checkpoint_time: Option<DateTime<Utc>>,
) -> std::io::Result<Arc<Supervised>> {
    let time = |time: Option<DateTime<Utc>>| time.map(|t| t.to_rfc3339()).unwrap_or_default();
    let values = [
        ("connector_id", start.connector_id.clone()),
        ("generation", start.generation.to_string()),
        ("pull_back_time", time(start.pull_back_time)),
        ("checkpoint_time", time(checkpoint_time)),
        ("skip_to_earliest", start.skip_to_earliest.to_string()),
    ];
    let mut command = tokio::process::Command::new(fill(&spec.command[0], &values));
    command
        .args(spec.command[1..].iter().map(|arg| fill(arg, &values)))
        .envs(&spec.env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    for (name, value) in &values {
        command.env(format!("CONNECTOR_{}", name.to_ascii_uppercase()), value);
    }
    if let Some(dir) = &spec.working_dir {
        command.current_dir(dir);
    }
    let agent = nix::unistd::getpid();
    // SAFETY: between fork and exec only async-signal-safe calls: prctl
    // and getppid.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            // The agent died before the line above: nobody would kill this.
            if nix::unistd::getppid() != agent {
                return Err(std::io::Error::other("the agent is gone"));
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let pid = child.id().expect("a child that was just spawned has a pid");
    let supervised = Arc::new(Supervised {
        connector_id: start.connector_id.clone(),
        no_retry_exit_codes: spec.no_retry_exit_codes.clone(),
        group: Pid::from_raw(pid as i32),
        phase: watch::Sender::new(Phase::Starting),
        stopping: AtomicBool::new(false),
        observed: Mutex::new(Observed {
            run: Run::Running,
            checkpoint_time,
            latency: None,
            store_range: None,
            message: String::new(),
            stderr: VecDeque::new(),
            retriable: None,
            error_reason: None,
        }),
        garbage: AtomicU64::new(0),
    });
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let reading = read_lines(stdout, supervised.clone(), Supervised::stdout_line);
    let reading_stderr = read_lines(stderr, supervised.clone(), Supervised::stderr_line);
    {
        let supervised = supervised.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            // What it wrote last belongs to its end.
            let _ = reading_stderr.await;
            reading.abort();
            match status {
                Ok(status) => supervised.exited(status),
                Err(error) => {
                    warn!(connector_id = %supervised.connector_id, %error, "waiting for the process");
                    supervised.phase.send_replace(Phase::Exited {
                        why: format!("could not be waited for: {error}"),
                        code: None,
                        reason: None,
                        retriable: None,
                    });
                }
            }
        });
    }
    info!(connector_id = %start.connector_id, pid, generation = start.generation, "connector process started");
    Ok(supervised)
}

impl Driver for Processes {
    fn name(&self) -> &str {
        "process"
    }

    /// A process is told the pull-back time; whether it can replay from
    /// there is its own to check (it exits, and the start fails, if not).
    fn capabilities(&self) -> Capabilities {
        Capabilities { pull_back: true }
    }

    async fn start(&self, start: Start) -> Result<(), Refusal> {
        let Some(spec) = self.specs.get(&start.connector_id) else {
            return Err(Refusal::new(
                "CONNECTOR_NOT_CONFIGURED",
                format!(
                    "connector {} is not in this agent's connectors file: add it there and \
                     restart the agent, or run it where an agent has it",
                    start.connector_id
                ),
            )
            .not_retriable());
        };
        let previous = self.current(&start.connector_id);
        if let Some(previous) = &previous
            && previous.alive()
        {
            // Already running (a start the session had not heard of).
            return Ok(());
        }
        // The recorded checkpoint wins: the process's own last report may
        // be older (another agent ran it since) or gone (agent restart).
        let checkpoint = start
            .checkpoint_time
            .or_else(|| previous.and_then(|p| p.observed.lock().unwrap().checkpoint_time));
        let supervised = spawn(spec, &start, checkpoint).map_err(|error| {
            Refusal::new(
                "PROCESS_NOT_STARTED",
                format!("could not run {:?}: {error}", spec.command[0]),
            )
            .not_retriable()
        })?;
        self.connectors
            .lock()
            .unwrap()
            .insert(start.connector_id.clone(), supervised.clone());
        let mut phase = supervised.phase.subscribe();
        let settled = tokio::time::timeout(
            spec.readiness,
            phase.wait_for(|phase| *phase != Phase::Starting),
        )
        .await
        .ok()
        .and_then(|phase| phase.ok().map(|phase| phase.clone()));
        // Ready once it reported a status, or stayed up its readiness time.
        let Some(Phase::Exited {
            why,
            code,
            reason,
            retriable,
        }) = settled
        else {
            return Ok(());
        };
        let mut refusal = Refusal::new(
            reason.as_deref().unwrap_or("PROCESS_EXITED"),
            format!("before it was ready, {why}"),
        );
        refusal.retriable = retriable;
        if code.is_some_and(|code| spec.no_retry_exit_codes.contains(&code)) {
            refusal.retriable = Some(false);
        }
        Err(refusal)
    }

    async fn pause(&self, connector_id: &str, _generation: i64) -> Result<(), Refusal> {
        let Some(supervised) = self.current(connector_id) else {
            return Ok(());
        };
        if supervised.alive() {
            let spec = &self.specs[connector_id];
            supervised.stopping.store(true, Ordering::SeqCst);
            supervised.signal(spec.stop_signal);
            if !supervised.exited_within(spec.stop_grace).await {
                warn!(
                    connector_id,
                    grace = ?spec.stop_grace,
                    "the process outlived its stop grace period; SIGKILL"
                );
                supervised.signal(Signal::SIGKILL);
                supervised.exited_within(Duration::MAX).await;
            }
        } else {
            // Failed earlier: paused, it is stopped.
            supervised.observed.lock().unwrap().run = Run::Stopped;
        }
        Ok(())
    }

    /// Every process is stopped as a pause stops it (its stop signal, then
    /// SIGKILL after its grace period), all at once.
    async fn shutdown(&self) {
        let running: Vec<String> = self
            .connectors
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, supervised)| supervised.alive())
            .map(|(id, _)| id.clone())
            .collect();
        futures_util::future::join_all(running.iter().map(|id| self.pause(id, 0))).await;
    }

    fn observe_connector(&self, connector_id: &str) -> Option<Observation> {
        self.current(connector_id)
            .map(|supervised| supervised.observation())
    }

    fn observe(&self) -> Vec<Observation> {
        self.connectors
            .lock()
            .unwrap()
            .values()
            .map(|supervised| supervised.observation())
            .collect()
    }
}
