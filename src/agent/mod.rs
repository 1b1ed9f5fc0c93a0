//! The reference agent: a real client of AgentService that runs simulated
//! connectors. It is what docker-compose, the demo and the tests run, and
//! the model for production agents:
//!
//! - queues `hello` before awaiting the call, then waits for `welcome`;
//! - applies a command only if its generation is newer than what it has
//!   applied for that connector, and acknowledges duplicates as no-ops;
//! - checks a pull-back time against its store's range and fails the
//!   command with `PULL_BACK_OUT_OF_RANGE` when the store does not reach;
//! - fails a start without pull-back whose checkpoint the store no longer
//!   holds with `CHECKPOINT_OUT_OF_RANGE`, unless the command says
//!   `skip_to_earliest` (then it resumes from the earliest data);
//! - reports every connector in a heartbeat per `heartbeat_interval`
//!   (a checkpoint that advances, a store range that moves, a latency set
//!   by `--latency`);
//! - reconnects with jittered exponential backoff (1 s x 1.6, at most 30 s).

use crate::domain::TimeRange;
use crate::domain::pull_back::{checkpoint_lost, pull_back_out_of_range};
use crate::proto::convert::{
    time_range_to_proto, timestamp as timestamp_from_proto, timestamp_to_proto,
};
use crate::proto::v1::{
    self, AgentMessage, ConnectorState, agent_message, agent_service_client::AgentServiceClient,
    control_message,
};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_FACTOR: f64 = 1.6;
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What the reference agent is and simulates.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The control plane's replicas, for example http://127.0.0.1:50051; the
    /// agent starts at a random one and moves to the next whenever its
    /// stream ends.
    pub control_plane: Vec<String>,
    pub agent_id: String,
    pub region: String,
    pub server_ip: String,
    /// The lag every running connector reports.
    pub latency: Duration,
    /// How far back each connector's store holds change data.
    pub store_retention: Duration,
    /// Sent as `authorization: Bearer <token>`.
    pub bearer: crate::auth::Bearer,
    /// TLS towards `https://` replicas.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
}

/// How much faster than real time a simulated connector replays change
/// data it is behind on (after a pull-back, or a pause): an hour behind
/// catches up in a minute.
const CATCH_UP_SPEED: i32 = 60;

/// One simulated connector.
#[derive(Clone, Debug)]
struct Simulated {
    running: bool,
    generation: i64,
    /// Where replication stands; advances while running, towards `now -
    /// latency`, at `CATCH_UP_SPEED` while it is further behind.
    checkpoint: DateTime<Utc>,
    /// When the checkpoint last advanced.
    advanced: DateTime<Utc>,
}

impl Simulated {
    /// Replays what came since the last call: the checkpoint moves towards
    /// `now - lag`, at most `CATCH_UP_SPEED` times the time that passed.
    fn advance(&mut self, lag: chrono::Duration, now: DateTime<Utc>) {
        if self.running {
            let target = now - lag;
            let replayed = (now - self.advanced) * CATCH_UP_SPEED;
            if self.checkpoint < target {
                self.checkpoint = (self.checkpoint + replayed).min(target);
            }
        }
        self.advanced = now;
    }
}

/// The agent's connectors, by id.
#[derive(Debug, Default)]
pub struct Connectors(BTreeMap<String, Simulated>);

impl Connectors {
    /// What the simulated store holds: the last `store_retention`.
    fn store_range(config: &AgentConfig, now: DateTime<Utc>) -> TimeRange {
        let retention =
            chrono::Duration::from_std(config.store_retention).unwrap_or(chrono::Duration::days(1));
        TimeRange {
            earliest: now - retention,
            latest: now,
        }
    }

    fn statuses(&mut self, config: &AgentConfig) -> Vec<v1::ConnectorStatus> {
        let now = Utc::now();
        self.0
            .iter_mut()
            .map(|(id, c)| {
                let lag = chrono::Duration::from_std(config.latency).unwrap_or_default();
                c.advance(lag, now);
                status(config, id, c, now)
            })
            .collect()
    }

    /// Carries out a command; the result to send.
    fn apply(&mut self, config: &AgentConfig, command: &v1::Command) -> v1::CommandResult {
        let now = Utc::now();
        let lag = chrono::Duration::from_std(config.latency).unwrap_or_default();
        let entry = self
            .0
            .entry(command.connector_id.clone())
            .or_insert(Simulated {
                running: false,
                generation: 0,
                checkpoint: now - lag,
                advanced: now,
            });
        let mut result = v1::CommandResult {
            command_id: command.id.clone(),
            success: true,
            ..Default::default()
        };
        if command.generation <= entry.generation {
            // Already applied: a redelivery. Acknowledge without acting.
            result.status = Some(status(config, &command.connector_id, entry, now));
            return result;
        }
        match v1::CommandKind::try_from(command.kind) {
            Ok(v1::CommandKind::Start) => {
                let range = Self::store_range(config, now);
                // The server sends only well-formed times.
                let requested = command
                    .pull_back_time
                    .as_ref()
                    .map(|time| timestamp_from_proto(time).unwrap_or(now));
                let held = |time: &str| format!("the store holds data {range}; {time}");
                match requested {
                    Some(time) if pull_back_out_of_range(time, Some(&range), now) => {
                        result.success = false;
                        result.error_reason = "PULL_BACK_OUT_OF_RANGE".to_owned();
                        result.error_message =
                            held(&format!("cannot pull back to {}", time.to_rfc3339()));
                    }
                    None if checkpoint_lost(entry.checkpoint, &range)
                        && !command.skip_to_earliest =>
                    {
                        result.success = false;
                        result.error_reason = "CHECKPOINT_OUT_OF_RANGE".to_owned();
                        result.error_message = format!(
                            "the checkpoint {} is gone: {}",
                            entry.checkpoint.to_rfc3339(),
                            held("pull back to a time within it, or start with skip_to_earliest")
                        );
                        result.retriable = Some(false);
                    }
                    Some(time) => entry.checkpoint = time,
                    // Skipping on purpose: from the earliest data held.
                    None if checkpoint_lost(entry.checkpoint, &range) => {
                        entry.checkpoint = range.earliest;
                    }
                    None => {}
                }
                if result.success {
                    entry.running = true;
                    entry.advanced = now;
                    entry.generation = command.generation;
                }
            }
            Ok(v1::CommandKind::Pause) => {
                entry.running = false;
                entry.generation = command.generation;
            }
            _ => {
                result.success = false;
                result.error_reason = "UNKNOWN_COMMAND".to_owned();
                result.error_message = format!("command kind {} is not known", command.kind);
            }
        }
        result.status = Some(status(config, &command.connector_id, entry, now));
        result
    }
}

fn status(
    config: &AgentConfig,
    id: &str,
    c: &Simulated,
    now: DateTime<Utc>,
) -> v1::ConnectorStatus {
    v1::ConnectorStatus {
        connector_id: id.to_owned(),
        state: if c.running {
            ConnectorState::Running
        } else {
            ConnectorState::Stopped
        } as i32,
        checkpoint_time: Some(timestamp_to_proto(c.checkpoint)),
        // How far behind it is: the checkpoint's age, which agrees with
        // the checkpoint whatever happened (a pull-back is minutes behind
        // until it caught up).
        latency: c
            .running
            .then(|| {
                let behind = (now - c.checkpoint)
                    .to_std()
                    .unwrap_or_default()
                    .max(config.latency);
                prost_types::Duration::try_from(behind).ok()
            })
            .flatten(),
        store_range: Some(time_range_to_proto(Connectors::store_range(config, now))),
        generation: c.generation,
        message: String::new(),
    }
}

/// The next reconnect backoff: 1.6 times the last, at most 30 s.
fn next_backoff(current: Duration) -> Duration {
    current.mul_f64(BACKOFF_FACTOR).min(BACKOFF_MAX)
}

/// `delay` varied by up to ±20% (and still at most 30 s), so that a fleet
/// does not reconnect in lockstep after a control-plane restart.
fn jittered(delay: Duration) -> Duration {
    // A random fraction in [0, 1) from a v4 UUID's random bits.
    let random = (uuid::Uuid::new_v4().as_u128() % 10_000) as f64 / 10_000.0;
    delay.mul_f64(0.8 + 0.4 * random).min(BACKOFF_MAX)
}

/// Runs the agent until `shutdown` completes.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    if config.control_plane.is_empty() {
        anyhow::bail!("no control-plane address given");
    }
    let endpoints = config
        .control_plane
        .iter()
        .map(|address| {
            let endpoint = Endpoint::from_shared(address.trim().to_owned())?
                .http2_keep_alive_interval(Duration::from_secs(20))
                .keep_alive_timeout(Duration::from_secs(10))
                .keep_alive_while_idle(true)
                .connect_timeout(Duration::from_secs(5));
            Ok(match &config.tls {
                Some(tls) => endpoint.tls_config(tls.clone())?,
                None => endpoint,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let instance_id = uuid::Uuid::new_v4().to_string();
    let mut connectors = Connectors::default();
    let mut backoff = BACKOFF_START;
    // A random first replica spreads a fleet that starts together.
    let mut next = (uuid::Uuid::new_v4().as_u128() % endpoints.len() as u128) as usize;
    tokio::pin!(shutdown);
    loop {
        let endpoint = &endpoints[next];
        next = (next + 1) % endpoints.len();
        let session = session(endpoint, &config, &instance_id, &mut connectors);
        let outcome = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            outcome = session => outcome,
        };
        let delay = match outcome {
            SessionEnd::Reconnect(after) => {
                backoff = BACKOFF_START;
                jittered(after)
            }
            SessionEnd::Lost { was_welcomed, why } => {
                if was_welcomed {
                    backoff = BACKOFF_START;
                }
                warn!(agent_id = %config.agent_id, %why, retry_in = ?backoff, "session lost");
                let delay = jittered(backoff);
                backoff = next_backoff(backoff);
                delay
            }
        };
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

enum SessionEnd {
    /// The control plane asked to come back after this long.
    Reconnect(Duration),
    Lost {
        was_welcomed: bool,
        why: String,
    },
}

async fn session(
    endpoint: &Endpoint,
    config: &AgentConfig,
    instance_id: &str,
    connectors: &mut Connectors,
) -> SessionEnd {
    let lost = |was_welcomed, why: String| SessionEnd::Lost { was_welcomed, why };
    let channel: Channel = match endpoint.connect().await {
        Ok(channel) => channel,
        Err(error) => return lost(false, format!("connecting: {error}")),
    };
    let (outbound, receiver) = mpsc::channel::<AgentMessage>(16);
    let hello = v1::Hello {
        agent_id: config.agent_id.clone(),
        instance_id: instance_id.to_owned(),
        region: config.region.clone(),
        server_ip: config.server_ip.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        connectors: connectors.statuses(config),
    };
    // Queued before the call is awaited: the server reads it first.
    let _ = outbound
        .send(AgentMessage {
            message: Some(agent_message::Message::Hello(hello)),
        })
        .await;
    let authed =
        tonic::service::interceptor::InterceptedService::new(channel, config.bearer.clone());
    let mut inbound = match AgentServiceClient::new(authed)
        .connect(ReceiverStream::new(receiver))
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) => return lost(false, format!("{}: {}", status.code(), status.message())),
    };
    let interval = match inbound.message().await {
        Ok(Some(v1::ControlMessage {
            message: Some(control_message::Message::Welcome(welcome)),
        })) => {
            info!(
                agent_id = %config.agent_id,
                epoch = welcome.session_epoch,
                "connected to the control plane"
            );
            welcome
                .heartbeat_interval
                .and_then(|d| Duration::try_from(d).ok())
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(10))
        }
        other => return lost(false, format!("expected welcome, got {other:?}")),
    };
    let mut heartbeat = tokio::time::interval(interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sequence = 0;
    loop {
        let message = tokio::select! {
            _ = heartbeat.tick() => {
                sequence += 1;
                let beat = v1::Heartbeat { sequence, connectors: connectors.statuses(config) };
                if outbound.send(AgentMessage {
                    message: Some(agent_message::Message::Heartbeat(beat)),
                }).await.is_err() {
                    return lost(true, "the stream closed".to_owned());
                }
                continue;
            }
            message = inbound.message() => message,
        };
        match message {
            Ok(Some(v1::ControlMessage {
                message: Some(control_message::Message::Command(command)),
            })) => {
                // The command carries the trace of the call that issued it;
                // the handling joins it, and the result carries it back.
                let span = tracing::info_span!(
                    "apply command",
                    otel.kind = "consumer",
                    agent_id = %config.agent_id,
                    command_id = %command.id,
                    connector_id = %command.connector_id,
                    success = tracing::field::Empty,
                );
                crate::telemetry::continue_trace(&span, &command.trace_context);
                let result = span.in_scope(|| {
                    let mut result = connectors.apply(config, &command);
                    result.trace_context = crate::telemetry::inject_current();
                    tracing::Span::current().record("success", result.success);
                    info!(
                        agent_id = %config.agent_id,
                        command_id = %command.id,
                        connector_id = %command.connector_id,
                        success = result.success,
                        "command applied"
                    );
                    result
                });
                if outbound
                    .send(AgentMessage {
                        message: Some(agent_message::Message::Result(result)),
                    })
                    .await
                    .is_err()
                {
                    return lost(true, "the stream closed".to_owned());
                }
            }
            Ok(Some(v1::ControlMessage {
                message: Some(control_message::Message::Reconnect(reconnect)),
            })) => {
                info!(agent_id = %config.agent_id, reason = %reconnect.reason, "asked to reconnect");
                let after = reconnect
                    .retry_after
                    .and_then(|d| Duration::try_from(d).ok())
                    .unwrap_or(BACKOFF_START);
                return SessionEnd::Reconnect(after);
            }
            Ok(Some(_)) => {}
            Ok(None) => return lost(true, "the control plane closed the stream".to_owned()),
            Err(status) => {
                return lost(true, format!("{}: {}", status.code(), status.message()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AgentConfig {
        AgentConfig {
            control_plane: Vec::new(),
            agent_id: "a1".into(),
            region: "eu-1".into(),
            server_ip: "10.0.0.1".into(),
            latency: Duration::from_secs(2),
            store_retention: Duration::from_secs(3600),
            bearer: Default::default(),
            tls: None,
        }
    }

    fn command(kind: v1::CommandKind, generation: i64) -> v1::Command {
        v1::Command {
            id: format!("k{generation}"),
            connector_id: "c1".into(),
            kind: kind as i32,
            generation,
            ..Default::default()
        }
    }

    #[test]
    fn commands_apply_once_per_generation() {
        let mut connectors = Connectors::default();
        let start = command(v1::CommandKind::Start, 1);
        assert!(connectors.apply(&config(), &start).success);
        assert!(connectors.0["c1"].running);
        connectors.0.get_mut("c1").unwrap().running = false;
        // A redelivery is acknowledged and changes nothing.
        assert!(connectors.apply(&config(), &start).success);
        assert!(!connectors.0["c1"].running);
        assert!(
            connectors
                .apply(&config(), &command(v1::CommandKind::Start, 2))
                .success
        );
        assert!(connectors.0["c1"].running);
    }

    #[test]
    fn pull_back_beyond_the_store_fails_the_command() {
        let mut connectors = Connectors::default();
        let mut start = command(v1::CommandKind::Start, 1);
        start.pull_back_time = Some(timestamp_to_proto(Utc::now() - chrono::Duration::hours(2)));
        let result = connectors.apply(&config(), &start);
        assert!(!result.success);
        assert_eq!(result.error_reason, "PULL_BACK_OUT_OF_RANGE");
        start.pull_back_time = Some(timestamp_to_proto(
            Utc::now() + chrono::Duration::minutes(5),
        ));
        start.generation = 2;
        let result = connectors.apply(&config(), &start);
        assert_eq!(
            result.error_reason, "PULL_BACK_OUT_OF_RANGE",
            "after the latest data"
        );
        start.pull_back_time = Some(timestamp_to_proto(
            Utc::now() - chrono::Duration::minutes(30),
        ));
        start.generation = 3;
        assert!(connectors.apply(&config(), &start).success);
    }

    #[test]
    fn a_start_from_a_checkpoint_the_store_lost_fails_unless_skipping() {
        let mut connectors = Connectors::default();
        assert!(
            connectors
                .apply(&config(), &command(v1::CommandKind::Start, 1))
                .success
        );
        assert!(
            connectors
                .apply(&config(), &command(v1::CommandKind::Pause, 2))
                .success
        );
        // Two hours later, with one hour of retention.
        let stopped_at = Utc::now() - chrono::Duration::hours(2);
        connectors.0.get_mut("c1").unwrap().checkpoint = stopped_at;
        let result = connectors.apply(&config(), &command(v1::CommandKind::Start, 3));
        assert!(!result.success);
        assert_eq!(result.error_reason, "CHECKPOINT_OUT_OF_RANGE");
        assert_eq!(result.retriable, Some(false));
        assert!(!connectors.0["c1"].running);
        let mut skipping = command(v1::CommandKind::Start, 4);
        skipping.skip_to_earliest = true;
        assert!(connectors.apply(&config(), &skipping).success);
        let resumed = connectors.0["c1"].checkpoint;
        assert!(
            resumed > stopped_at + chrono::Duration::minutes(59),
            "{resumed}"
        );
    }

    #[test]
    fn after_a_pull_back_the_latency_is_the_checkpoints_age_until_it_catches_up() {
        let mut connectors = Connectors::default();
        let mut start = command(v1::CommandKind::Start, 1);
        let pulled_back = Utc::now() - chrono::Duration::minutes(30);
        start.pull_back_time = Some(timestamp_to_proto(pulled_back));
        let result = connectors.apply(&config(), &start);
        let status = result.status.unwrap();
        let latency = Duration::try_from(status.latency.unwrap()).unwrap();
        assert!(latency >= Duration::from_secs(29 * 60), "{latency:?}");
        // A minute later it replayed an hour's worth: caught up, to the
        // configured lag.
        let entry = connectors.0.get_mut("c1").unwrap();
        entry.advanced -= chrono::Duration::minutes(1);
        let status = connectors.statuses(&config()).remove(0);
        let latency = Duration::try_from(status.latency.unwrap()).unwrap();
        assert!(latency < Duration::from_secs(3), "{latency:?}");
        let checkpoint = timestamp_from_proto(status.checkpoint_time.as_ref().unwrap()).unwrap();
        assert!(Utc::now() - checkpoint < chrono::Duration::seconds(3));
    }

    #[test]
    fn backoff_grows_by_1_6_and_stops_at_30_seconds() {
        assert_eq!(
            next_backoff(Duration::from_secs(1)),
            Duration::from_millis(1600)
        );
        assert_eq!(
            next_backoff(Duration::from_secs(25)),
            Duration::from_secs(30)
        );
        for _ in 0..100 {
            let delay = jittered(Duration::from_secs(10));
            assert!(delay >= Duration::from_secs(8) && delay <= Duration::from_secs(12));
            assert!(jittered(Duration::from_secs(30)) <= Duration::from_secs(30));
        }
    }
}
