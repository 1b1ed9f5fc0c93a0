//! The checks, in the order a control plane meets them. A check that
//! cannot go on (the agent never connected, the stream broke) fails, and
//! the ones after it fail as not reached.

use super::harness::Stream;
use super::{Check, Options, Outcome};
use crate::proto::convert::timestamp_to_proto;
use crate::proto::v1::{self, agent_message, control_message};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const HELLO: &str = "hello first, and complete";
const HEARTBEATS: &str = "heartbeats at the interval, sequence rising by one";
const START: &str = "START carried out: RUNNING at its generation";
const DUPLICATE: &str = "a duplicate delivery acknowledged, no second effect";
const STALE: &str = "a stale generation acknowledged and ignored";
const PAUSE: &str = "PAUSE carried out: STOPPED at its generation";
const PULL_BACK: &str = "a pull-back outside the store refused, not retriable";
const CHECKPOINT: &str = "a start from a checkpoint the store lost refused, not retriable";
const FAILING: &str = "a connector failing on its own reported FAILED";
const UNKNOWN: &str = "unknown fields and message kinds ignored";
const RECONNECT: &str = "reconnect honoured after retry_after; hello lists what runs";
const BACKOFF: &str = "backoff while the control plane is down";

const ALL: [&str; 12] = [
    HELLO, HEARTBEATS, START, DUPLICATE, STALE, PAUSE, PULL_BACK, CHECKPOINT, FAILING, UNKNOWN,
    RECONNECT, BACKOFF,
];

/// The heartbeat interval the suite's welcome asks for.
const INTERVAL: Duration = Duration::from_secs(1);
/// How long the suite asks the agent to wait before reconnecting.
const RETRY_AFTER: Duration = Duration::from_secs(2);

struct Report(Vec<Check>);

impl Report {
    fn add(&mut self, name: &'static str, result: Result<String, String>) -> bool {
        let (outcome, saw) = match result {
            Ok(saw) => (Outcome::Passed, saw),
            Err(saw) => (Outcome::Failed, saw),
        };
        self.0.push(Check { name, outcome, saw });
        outcome == Outcome::Passed
    }

    fn skip(&mut self, name: &'static str, why: &str) {
        self.0.push(Check {
            name,
            outcome: Outcome::Skipped,
            saw: why.to_owned(),
        });
    }

    /// Every check not reported yet, failed as not reached.
    fn not_reached(mut self, why: &str) -> Vec<Check> {
        for name in ALL {
            if !self.0.iter().any(|check| check.name == name) {
                self.0.push(Check {
                    name,
                    outcome: Outcome::Failed,
                    saw: format!("not reached: {why}"),
                });
            }
        }
        self.0
    }
}

pub(super) async fn run(options: &Options, mut calls: mpsc::Receiver<Stream>) -> Vec<Check> {
    let mut report = Report(Vec::new());
    match script(options, &mut calls, &mut report).await {
        Ok(()) => report.0,
        Err(why) => report.not_reached(&why),
    }
}

/// A command for `connector` from the suite.
fn command(id: &str, connector: &str, kind: v1::CommandKind, generation: i64) -> v1::Command {
    v1::Command {
        id: id.to_owned(),
        connector_id: connector.to_owned(),
        kind: kind as i32,
        generation,
        region: String::new(),
        ..Default::default()
    }
}

fn state(status: Option<&v1::ConnectorStatus>) -> (String, i64) {
    match status {
        Some(status) => (
            crate::proto::short_name::<v1::ConnectorState>(status.state),
            status.generation,
        ),
        None => ("no status".to_owned(), -1),
    }
}

/// The result of `command` sent on `stream`: it must succeed (or not, as
/// `success` says) with the connector `expected` at `generation`.
async fn carried_out(
    stream: &mut Stream,
    command: v1::Command,
    success: bool,
    expected: &str,
    generation: i64,
    within: Duration,
) -> Result<String, String> {
    let result = answer(stream, command, within).await?;
    let (now, applied) = state(result.status.as_ref());
    let saw = format!(
        "success {}, {now} at generation {applied}{}",
        result.success,
        if result.error_reason.is_empty() {
            String::new()
        } else {
            format!(", {}", result.error_reason)
        }
    );
    if result.success == success && now == expected && applied == generation {
        Ok(saw)
    } else {
        Err(format!(
            "{saw}; expected success {success}, {expected} at generation {generation}"
        ))
    }
}

/// Sends `command` and reads its result.
async fn answer(
    stream: &mut Stream,
    command: v1::Command,
    within: Duration,
) -> Result<v1::CommandResult, String> {
    let id = command.id.clone();
    stream
        .send(control_message::Message::Command(command))
        .await?;
    stream.result(&id, within).await
}

async fn next_call(calls: &mut mpsc::Receiver<Stream>, within: Duration) -> Result<Stream, String> {
    match tokio::time::timeout(within, calls.recv()).await {
        Ok(Some(stream)) => Ok(stream),
        _ => Err(format!("no agent connected within {within:?}")),
    }
}

async fn hello(stream: &mut Stream, within: Duration) -> Result<v1::Hello, String> {
    match stream.next(within).await? {
        agent_message::Message::Hello(hello) => Ok(hello),
        other => Err(format!("the first message was not hello: {other:?}")),
    }
}

async fn welcome(stream: &Stream, epoch: i64) -> Result<(), String> {
    stream
        .send(control_message::Message::Welcome(v1::Welcome {
            session_id: format!("conformance-{epoch}"),
            session_epoch: epoch,
            heartbeat_interval: prost_types::Duration::try_from(INTERVAL).ok(),
        }))
        .await
}

async fn script(
    options: &Options,
    calls: &mut mpsc::Receiver<Stream>,
    report: &mut Report,
) -> Result<(), String> {
    let within = options.timeout;
    let connector = options.connectors[0].as_str();
    let mut stream = next_call(calls, within).await?;
    let first = hello(&mut stream, within).await;
    let hello = match first {
        Ok(hello) => hello,
        Err(why) => {
            report.add(HELLO, Err(why.clone()));
            return Err(why);
        }
    };
    let checked = crate::api::agent_hello(hello.clone()).map_err(|status| status.to_string());
    let can_pull_back = hello.capabilities.as_ref().is_none_or(|c| c.pull_back);
    report.add(
        HELLO,
        checked.map(|()| {
            format!(
                "agent {} in {} ({}), {} connectors listed, driver {:?}",
                hello.agent_id,
                hello.region,
                hello.server_ip,
                hello.connectors.len(),
                hello
                    .capabilities
                    .as_ref()
                    .map_or("not said", |c| c.driver.as_str())
            )
        }),
    );
    welcome(&stream, 1).await?;

    let beats = stream.heartbeats(3, within).await;
    report.add(HEARTBEATS, beats.and_then(|()| heartbeat_rhythm(&stream)));

    let start = command("start-1", connector, v1::CommandKind::Start, 1);
    let started = carried_out(&mut stream, start.clone(), true, "RUNNING", 1, within).await;
    if !report.add(START, started) {
        return Err("the start was not carried out".to_owned());
    }
    let again = carried_out(&mut stream, start, true, "RUNNING", 1, within).await;
    report.add(DUPLICATE, again);
    let stale = command("stale-pause-1", connector, v1::CommandKind::Pause, 1);
    let ignored = carried_out(&mut stream, stale, true, "RUNNING", 1, within).await;
    report.add(STALE, ignored);
    let pause = command("pause-2", connector, v1::CommandKind::Pause, 2);
    let paused = carried_out(&mut stream, pause, true, "STOPPED", 2, within).await;
    report.add(PAUSE, paused);

    let mut far_back = command("pull-back-3", connector, v1::CommandKind::Start, 3);
    far_back.pull_back_time = Some(timestamp_to_proto(
        chrono::Utc::now() - chrono::Duration::days(3650),
    ));
    let expected = if can_pull_back {
        "PULL_BACK_OUT_OF_RANGE"
    } else {
        "PULL_BACK_NOT_SUPPORTED"
    };
    report.add(
        PULL_BACK,
        refused(&mut stream, far_back, expected, within).await,
    );

    // Resuming from a checkpoint the control plane recorded, long gone
    // from any store: starting anyway would skip data silently.
    let mut lost = command("checkpoint-lost-3", connector, v1::CommandKind::Start, 3);
    lost.checkpoint_time = Some(timestamp_to_proto(
        chrono::Utc::now() - chrono::Duration::days(3650),
    ));
    let expected = "CHECKPOINT_OUT_OF_RANGE";
    report.add(
        CHECKPOINT,
        refused(&mut stream, lost, expected, within).await,
    );

    match &options.failing {
        None => report.skip(FAILING, "no --failing connector named"),
        Some(failing) => {
            let failed = fails_on_its_own(&mut stream, failing, within).await;
            report.add(FAILING, failed);
        }
    }

    // Running again (told so with fields and a message its proto may not
    // have; skipping to the earliest data held, as an operator does after a
    // lost checkpoint), then asked to reconnect: its next hello lists it.
    let mut start = command("start-4", connector, v1::CommandKind::Start, 4);
    start.skip_to_earliest = true;
    if !report.add(UNKNOWN, unknown_ignored(&mut stream, start, within).await) {
        return Err("the start with unknown fields was not carried out".to_owned());
    }
    let reconnected = reconnect(stream, calls, connector, within).await;
    let stream = match reconnected {
        Ok((stream, saw)) => {
            report.add(RECONNECT, Ok(saw));
            stream
        }
        Err(why) => {
            report.add(RECONNECT, Err(why.clone()));
            return Err(why);
        }
    };
    report.add(BACKOFF, backoff(stream, calls, within).await);
    Ok(())
}

/// The heartbeats read so far: sequences rising by one, about an interval
/// apart.
fn heartbeat_rhythm(stream: &Stream) -> Result<String, String> {
    let beats = &stream.heartbeats;
    let sequences: Vec<i64> = beats.iter().map(|(_, beat)| beat.sequence).collect();
    let gaps: Vec<Duration> = beats.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let saw = format!(
        "sequences {sequences:?}, gaps {:?} (interval {INTERVAL:?})",
        gaps.iter()
            .map(|g| format!("{:.2}s", g.as_secs_f64()))
            .collect::<Vec<_>>()
    );
    let rising = sequences.windows(2).all(|w| w[1] == w[0] + 1);
    let on_time = gaps
        .iter()
        .all(|gap| *gap >= INTERVAL / 2 && *gap <= INTERVAL * 2);
    if rising && on_time { Ok(saw) } else { Err(saw) }
}

/// `command` (a START at generation 3, the connector STOPPED at 2) is
/// refused with `expected`, not retriable, and applies nothing: still at
/// generation 2, not running.
async fn refused(
    stream: &mut Stream,
    command: v1::Command,
    expected: &str,
    within: Duration,
) -> Result<String, String> {
    let result = answer(stream, command, within).await?;
    let (now, applied) = state(result.status.as_ref());
    let saw = format!(
        "success {}, reason {:?}, retriable {:?}, {now} at generation {applied}",
        result.success, result.error_reason, result.retriable
    );
    let refused = !result.success
        && result.error_reason == expected
        && result.retriable != Some(true)
        && (now == "STOPPED" || now == "FAILED")
        && applied == 2;
    if refused {
        Ok(saw)
    } else {
        Err(format!(
            "{saw}; expected {expected}, STOPPED or FAILED at generation 2"
        ))
    }
}

/// A control message of a kind no agent knows yet, then `start` with
/// fields its proto does not have (in the command and beside it): the
/// agent must ignore what it does not know and carry out the start.
async fn unknown_ignored(
    stream: &mut Stream,
    start: v1::Command,
    within: Duration,
) -> Result<String, String> {
    use super::wire::append_field;
    use prost::Message;
    // Field 99 of ControlMessage: a message kind from a newer control plane.
    let mut newer = Vec::new();
    append_field(&mut newer, 99, b"a message kind this agent cannot know");
    stream.send_raw(newer).await?;
    let mut command = start.encode_to_vec();
    append_field(
        &mut command,
        1000,
        b"a command field this agent cannot know",
    );
    // Field 2 of ControlMessage is `command`.
    let mut message = Vec::new();
    append_field(&mut message, 2, &command);
    append_field(&mut message, 1001, b"a field beside the command");
    stream.send_raw(message).await?;
    let result = stream.result(&start.id, within).await?;
    let (now, applied) = state(result.status.as_ref());
    let saw = format!(
        "after a message of an unknown kind, a START with unknown fields: success {}, {now} at \
         generation {applied}{}",
        result.success,
        if result.success {
            String::new()
        } else {
            format!(", {}: {}", result.error_reason, result.error_message)
        }
    );
    if result.success && now == "RUNNING" && applied == start.generation {
        Ok(saw)
    } else {
        Err(format!(
            "{saw}; expected RUNNING at generation {}",
            start.generation
        ))
    }
}

async fn fails_on_its_own(
    stream: &mut Stream,
    failing: &str,
    within: Duration,
) -> Result<String, String> {
    let start = command("start-failing", failing, v1::CommandKind::Start, 1);
    let result = answer(stream, start, within).await?;
    if !result.success {
        let (now, _) = state(result.status.as_ref());
        return Ok(format!("its start failed ({}), {now}", result.error_reason));
    }
    let deadline = Instant::now() + within;
    loop {
        let failed = stream.heartbeats.iter().find_map(|(_, beat)| {
            beat.connectors.iter().find(|status| {
                status.connector_id == failing && status.state == v1::ConnectorState::Failed as i32
            })
        });
        if let Some(status) = failed {
            return Ok(format!("FAILED in a heartbeat: {:?}", status.message));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no heartbeat reported {failing} FAILED within {within:?}"
            ));
        }
        stream.heartbeats(1, left).await?;
    }
}

async fn reconnect(
    mut stream: Stream,
    calls: &mut mpsc::Receiver<Stream>,
    connector: &str,
    within: Duration,
) -> Result<(Stream, String), String> {
    stream
        .send(control_message::Message::Reconnect(v1::Reconnect {
            reason: "the conformance suite asks".to_owned(),
            retry_after: prost_types::Duration::try_from(RETRY_AFTER).ok(),
        }))
        .await?;
    let asked = Instant::now();
    // The old stream ends (anything still in flight is read and dropped).
    while stream.next(within).await.is_ok() {}
    drop(stream);
    let mut next = next_call(calls, within).await?;
    let waited = next.at - asked;
    let listed = hello(&mut next, within).await?;
    welcome(&next, 2).await?;
    let status = listed
        .connectors
        .iter()
        .find(|status| status.connector_id == connector);
    let (now, applied) = state(status);
    let saw = format!(
        "came back after {:.2}s (retry_after {RETRY_AFTER:?}); hello lists {connector} {now} at \
         generation {applied}",
        waited.as_secs_f64()
    );
    // Jitter may shorten the wait by up to a fifth.
    if waited >= RETRY_AFTER.mul_f64(0.8) && now == "RUNNING" && applied == 4 {
        Ok((next, saw))
    } else {
        Err(format!(
            "{saw}; expected RUNNING at generation 4, after at least 1.6s"
        ))
    }
}

/// Ends the session as a failing control plane would, then refuses every
/// call: the agent must come back at growing intervals.
async fn backoff(
    stream: Stream,
    calls: &mut mpsc::Receiver<Stream>,
    within: Duration,
) -> Result<String, String> {
    let _ = stream
        .outbound
        .send(Err(tonic::Status::unavailable(
            "the conformance suite is down",
        )))
        .await;
    let mut last = Instant::now();
    drop(stream);
    let mut gaps = Vec::new();
    while gaps.len() < 4 {
        let call = next_call(calls, within).await?;
        gaps.push(call.at - last);
        last = call.at;
        let _ = call
            .outbound
            .send(Err(tonic::Status::unavailable("still down")))
            .await;
    }
    let saw = format!(
        "attempts after {:?}",
        gaps.iter()
            .map(|g| format!("{:.2}s", g.as_secs_f64()))
            .collect::<Vec<_>>()
    );
    let growing = gaps[3] > gaps[1] && gaps[2] > gaps[0];
    let not_hammering = gaps
        .iter()
        .skip(1)
        .all(|gap| *gap >= Duration::from_millis(300));
    if growing && not_hammering {
        Ok(saw)
    } else {
        Err(format!("{saw}; expected growing waits"))
    }
}
