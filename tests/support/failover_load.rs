//! A bounded load of starts and pauses through a database failover, shared
//! by the Patroni test (which checks what it left in the database) and the
//! benchmark (which reports its timing).
//!
//! One caller per connector, through the replicas in turn: start it, pause
//! it, start it again, without waiting in between, so that calls are in
//! flight whenever the database goes. Every call carries a request id of
//! its own; a call answered UNAVAILABLE (or not answered in time) is
//! retried with the same id until it is acknowledged or refused
//! (FAILED_PRECONDITION: a start before the agent stopped the connector;
//! the caller tries again a moment later, with a new id). Any other answer
//! fails the run.

#![allow(dead_code)] // each includer (test, benchmark) uses its own part

use connector_control::proto::v1::{self, connector_service_client::ConnectorServiceClient};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// How long a single call may take before the caller gives up on it and
/// retries (with the same request id).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one call may keep failing before the run fails.
const GIVE_UP_AFTER: Duration = Duration::from_secs(90);
/// How long a caller waits after a refusal before its next call.
const REFUSED_PAUSE: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Start,
    Pause,
}

/// A call the control plane acknowledged.
#[derive(Debug, Clone)]
pub struct Acknowledged {
    pub connector_id: String,
    pub kind: Kind,
    pub request_id: String,
    pub command_id: String,
    /// When the caller made its first attempt.
    pub began: Instant,
    /// When the caller got the acknowledgement.
    pub at: Instant,
    /// Answers UNAVAILABLE (or no answer in time) before it.
    pub failed_attempts: u32,
}

#[derive(Debug, Default)]
pub struct Report {
    pub acknowledged: Vec<Acknowledged>,
    /// Attempts of starts and pauses answered UNAVAILABLE, or not answered
    /// within `CALL_TIMEOUT`; each was retried.
    pub failed_attempts: u64,
    /// Request ids of calls refused with FAILED_PRECONDITION (the agent
    /// had not yet carried out the connector's previous command).
    pub refused: Vec<String>,
    /// What went wrong beyond UNAVAILABLE; empty in a good run.
    pub errors: Vec<String>,
}

impl Report {
    /// How long after `instant` (the kill) the first start was acknowledged
    /// that needed the database after it: begun after it, or failed before
    /// it went through. A call that committed just before the kill and was
    /// answered after it does not count.
    pub fn first_start_after(&self, instant: Instant) -> Option<Duration> {
        self.acknowledged
            .iter()
            .filter(|call| call.kind == Kind::Start && call.at > instant)
            .filter(|call| call.began > instant || call.failed_attempts > 0)
            .map(|call| call.at - instant)
            .min()
    }
}

/// The callers, running until `finish`, which lets each end the call it
/// is in.
pub struct Load {
    report: Arc<Mutex<Report>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    callers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(clients: Vec<ConnectorServiceClient<Channel>>, connector_ids: &[String]) -> Self {
        let report = Arc::new(Mutex::new(Report::default()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let callers = connector_ids
            .iter()
            .enumerate()
            .map(|(index, id)| {
                let caller = Caller {
                    // Each caller's calls alternate between the replicas.
                    clients: clients.clone(),
                    next: index,
                    connector_id: id.clone(),
                    report: Arc::clone(&report),
                };
                let stop = Arc::clone(&stop);
                tokio::spawn(caller.run(stop))
            })
            .collect();
        Self {
            report,
            stop,
            callers,
        }
    }

    /// Acknowledged calls so far.
    pub fn acknowledged(&self) -> usize {
        self.report.lock().unwrap().acknowledged.len()
    }

    /// Acknowledged calls of each kind since `instant`.
    pub fn acknowledged_since(&self, instant: Instant) -> (usize, usize) {
        let report = self.report.lock().unwrap();
        let since = report.acknowledged.iter().filter(|call| call.at > instant);
        let starts = since
            .clone()
            .filter(|call| call.kind == Kind::Start)
            .count();
        (starts, since.count() - starts)
    }

    /// Attempts failed and retried so far.
    pub fn failed_attempts(&self) -> u64 {
        self.report.lock().unwrap().failed_attempts
    }

    /// See `Report::first_start_after`, on the calls so far.
    pub fn first_start_after(&self, instant: Instant) -> Option<Duration> {
        self.report.lock().unwrap().first_start_after(instant)
    }

    /// Errors so far (beyond UNAVAILABLE).
    pub fn errors(&self) -> Vec<String> {
        self.report.lock().unwrap().errors.clone()
    }

    /// Stops the callers after their current call and returns the report.
    pub async fn finish(self) -> Report {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for caller in self.callers {
            caller.await.expect("a caller panicked");
        }
        Arc::try_unwrap(self.report)
            .expect("callers done")
            .into_inner()
            .unwrap()
    }
}

struct Caller {
    clients: Vec<ConnectorServiceClient<Channel>>,
    next: usize,
    connector_id: String,
    report: Arc<Mutex<Report>>,
}

impl Caller {
    async fn run(mut self, stop: Arc<std::sync::atomic::AtomicBool>) {
        let mut kind = Kind::Start;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            match self.call(kind).await {
                Ok(Answer::Acknowledged) => {
                    kind = match kind {
                        Kind::Start => Kind::Pause,
                        Kind::Pause => Kind::Start,
                    }
                }
                // The agent has not finished the previous command (a start
                // needs a stopped connector): a moment, then a new call.
                Ok(Answer::Refused) => tokio::time::sleep(REFUSED_PAUSE).await,
                Err(error) => {
                    self.report.lock().unwrap().errors.push(error);
                    return;
                }
            }
        }
    }

    fn client(&mut self) -> ConnectorServiceClient<Channel> {
        self.next += 1;
        self.clients[self.next % self.clients.len()].clone()
    }

    /// One start or pause, retried with its request id until it is
    /// acknowledged or refused.
    async fn call(&mut self, kind: Kind) -> Result<Answer, String> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let began = Instant::now();
        let mut failed_attempts = 0;
        loop {
            let mut client = self.client();
            let answer = match kind {
                Kind::Start => {
                    let mut request = tonic::Request::new(v1::StartConnectorRequest {
                        id: self.connector_id.clone(),
                        request_id: request_id.clone(),
                        ..Default::default()
                    });
                    request.set_timeout(CALL_TIMEOUT);
                    client
                        .start_connector(request)
                        .await
                        .map(|response| response.into_inner().command)
                }
                Kind::Pause => {
                    let mut request = tonic::Request::new(v1::PauseConnectorRequest {
                        id: self.connector_id.clone(),
                        reason: "failover test".to_owned(),
                        request_id: request_id.clone(),
                        ..Default::default()
                    });
                    request.set_timeout(CALL_TIMEOUT);
                    client
                        .pause_connector(request)
                        .await
                        .map(|response| response.into_inner().command)
                }
            };
            match answer {
                Ok(command) => {
                    let command = command.ok_or("an acknowledgement without its command")?;
                    let mut report = self.report.lock().unwrap();
                    report.acknowledged.push(Acknowledged {
                        connector_id: self.connector_id.clone(),
                        kind,
                        request_id,
                        command_id: command.id,
                        began,
                        at: Instant::now(),
                        failed_attempts,
                    });
                    return Ok(Answer::Acknowledged);
                }
                Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                    self.report.lock().unwrap().refused.push(request_id);
                    return Ok(Answer::Refused);
                }
                Err(status) if retryable(&status) && began.elapsed() < GIVE_UP_AFTER => {
                    failed_attempts += 1;
                    self.report.lock().unwrap().failed_attempts += 1;
                    tokio::time::sleep(retry_delay(&status)).await;
                }
                Err(status) => {
                    return Err(format!(
                        "{kind:?} {} (request {request_id}, after {failed_attempts} failed \
                         attempts): {:?} {}",
                        self.connector_id,
                        status.code(),
                        status.message()
                    ));
                }
            }
        }
    }
}

enum Answer {
    Acknowledged,
    /// FAILED_PRECONDITION: nothing was written.
    Refused,
}

/// UNAVAILABLE, or no answer within the call's deadline (the database's
/// connection was cut mid-call): safe to retry with the same request id.
fn retryable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
    )
}

/// The delay the RetryInfo asks for, capped for the test's pace.
fn retry_delay(status: &tonic::Status) -> Duration {
    use tonic_types::StatusExt;
    status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .map_or(Duration::from_millis(200), |delay| {
            delay.min(Duration::from_secs(1))
        })
}

/// What the database holds of a run's calls, read on the primary after it.
/// A good run is all zeros.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Acknowledged calls whose command is missing (or is not the one the
    /// caller was given, or not of its kind).
    pub lost: usize,
    /// Request ids with more than one command, or more than one audit row
    /// of success.
    pub duplicated: usize,
    /// Commands, or successful audit rows, no caller was acknowledged.
    pub unacknowledged: usize,
    /// Refused calls that left a command.
    pub refused_but_written: usize,
}

pub async fn tally(db: &tokio_postgres::Client, report: &Report) -> Result<Tally, String> {
    use std::collections::{HashMap, HashSet};
    let error = |e: tokio_postgres::Error| e.to_string();
    let mut commands: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for row in db
        .query("SELECT request_id, id, kind FROM commands", &[])
        .await
        .map_err(error)?
    {
        let request_id: Option<String> = row.get(0);
        commands
            .entry(request_id.unwrap_or_default())
            .or_default()
            .push((row.get(1), row.get(2)));
    }
    let audited: HashMap<String, i64> = db
        .query(
            "SELECT request_id, count(*) FROM audit_events
             WHERE action IN ('START_CONNECTOR', 'PAUSE_CONNECTOR') AND outcome = 'OK'
             GROUP BY request_id",
            &[],
        )
        .await
        .map_err(error)?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let mut tally = Tally::default();
    let acknowledged: HashSet<&str> = report
        .acknowledged
        .iter()
        .map(|call| call.request_id.as_str())
        .collect();
    for call in &report.acknowledged {
        let kind = match call.kind {
            Kind::Start => "START",
            Kind::Pause => "PAUSE",
        };
        let found = commands.get(&call.request_id).is_some_and(|written| {
            written
                .iter()
                .any(|(id, written_kind)| id == &call.command_id && written_kind == kind)
        });
        if !found || !audited.contains_key(&call.request_id) {
            tally.lost += 1;
        }
    }
    tally.duplicated = commands
        .values()
        .filter(|written| written.len() > 1)
        .count()
        + audited.values().filter(|&&count| count > 1).count();
    tally.unacknowledged = commands
        .keys()
        .chain(audited.keys())
        .filter(|request_id| !acknowledged.contains(request_id.as_str()))
        .count();
    tally.refused_but_written = report
        .refused
        .iter()
        .filter(|request_id| commands.contains_key(*request_id))
        .count();
    Ok(tally)
}
