//! One agent session with the control plane, written once for every
//! driver: `hello` (queued before the call is awaited, listing what runs and
//! the generation each connector applied), `welcome`, a heartbeat per
//! `heartbeat_interval` with a rising sequence, and every command carried
//! out on its connector's own task (`Connectors`), fenced by generation, its
//! result sent when the driver is done.

use super::AgentConfig;
use super::driver::{Driver, Observation, Refusal, Run, Start};
use crate::proto::convert::timestamp_to_proto;
use crate::proto::convert::{time_range_to_proto, timestamp as timestamp_from_proto};
use crate::proto::v1::{
    self, AgentMessage, agent_message, agent_service_client::AgentServiceClient, control_message,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tracing::{Instrument, info};

/// How a session ended.
pub(super) enum SessionEnd {
    /// The control plane asked to come back after this long.
    Reconnect(Duration),
    Lost {
        was_welcomed: bool,
        why: String,
    },
}

/// The agent's connectors across sessions: the driver, the generation each
/// has applied, and one task per connector that carries out its commands in
/// order. Results wait in `results` for whichever session is open.
pub(super) struct Connectors<D> {
    driver: Arc<D>,
    applied: Arc<Mutex<HashMap<String, i64>>>,
    queues: Mutex<HashMap<String, mpsc::UnboundedSender<v1::Command>>>,
    results: mpsc::UnboundedSender<v1::CommandResult>,
}

impl<D: Driver> Connectors<D> {
    pub(super) fn new(driver: Arc<D>) -> (Self, mpsc::UnboundedReceiver<v1::CommandResult>) {
        let (results, receiver) = mpsc::unbounded_channel();
        let connectors = Connectors {
            driver,
            applied: Arc::default(),
            queues: Mutex::default(),
            results,
        };
        (connectors, receiver)
    }

    /// Every connector the driver reports, with the generation it applied.
    pub(super) fn statuses(&self) -> Vec<v1::ConnectorStatus> {
        let applied = self.applied.lock().unwrap();
        self.driver
            .observe()
            .into_iter()
            .map(|observed| {
                let applied = applied.get(&observed.connector_id).copied();
                let generation = newest(applied, observed.generation);
                status(observed, generation)
            })
            .collect()
    }

    /// The driver's shutdown.
    pub(super) async fn shutdown(&self) {
        self.driver.shutdown().await;
    }

    /// Queues `command` on its connector's task (made on its first
    /// command): commands of one connector run in order, those of others
    /// meanwhile.
    fn dispatch(&self, command: v1::Command) {
        let mut queues = self.queues.lock().unwrap();
        let queue = queues
            .entry(command.connector_id.clone())
            .or_insert_with(|| {
                let (queue, mut commands) = mpsc::unbounded_channel::<v1::Command>();
                let driver = self.driver.clone();
                let applied = self.applied.clone();
                let results = self.results.clone();
                tokio::spawn(async move {
                    while let Some(command) = commands.recv().await {
                        let result = carry_out(&*driver, &applied, command).await;
                        if results.send(result).is_err() {
                            return;
                        }
                    }
                });
                queue
            });
        let _ = queue.send(command);
    }
}

/// Carries out one command: a generation at or below what the connector
/// applied is a redelivery, acknowledged without acting; a newer one goes
/// to the driver, and its generation counts as applied once the driver is
/// done.
async fn carry_out<D: Driver>(
    driver: &D,
    applied: &Mutex<HashMap<String, i64>>,
    command: v1::Command,
) -> v1::CommandResult {
    // The command carries the trace of the call that issued it; the
    // handling joins it, and the result carries it back.
    let span = tracing::info_span!(
        "apply command",
        otel.kind = "consumer",
        command_id = %command.id,
        connector_id = %command.connector_id,
        success = tracing::field::Empty,
    );
    crate::telemetry::continue_trace(&span, &command.trace_context);
    async {
        let id = &command.connector_id;
        // What this agent applied, or what the runtime keeps (from before an
        // agent restart, or a start it could not undo), whichever is newer.
        let kept = driver.observe_connector(id).and_then(|o| o.generation);
        let before = applied.lock().unwrap().get(id).copied();
        let before = newest(before, kept);
        let outcome = if command.generation <= before {
            // Already applied: a redelivery.
            Ok(())
        } else {
            let outcome = run(driver, &command).await;
            if outcome.is_ok() {
                applied
                    .lock()
                    .unwrap()
                    .insert(id.clone(), command.generation);
            }
            outcome
        };
        let observed = driver
            .observe_connector(id)
            .unwrap_or_else(|| Observation::stopped(id));
        let generation = applied.lock().unwrap().get(id).copied();
        let generation = newest(generation, observed.generation);
        let mut result = v1::CommandResult {
            command_id: command.id.clone(),
            success: outcome.is_ok(),
            status: Some(status(observed, generation)),
            trace_context: crate::telemetry::inject_current(),
            ..Default::default()
        };
        if let Err(refusal) = outcome {
            result.error_reason = refusal.reason;
            result.error_message = refusal.message;
            result.retriable = refusal.retriable;
        }
        tracing::Span::current().record("success", result.success);
        info!(success = result.success, "command applied");
        result
    }
    .instrument(span)
    .await
}

/// The newer of what the session applied and what the runtime keeps (0:
/// neither).
fn newest(applied: Option<i64>, kept: Option<i64>) -> i64 {
    applied.into_iter().chain(kept).max().unwrap_or(0)
}

/// The driver's part of a command.
async fn run<D: Driver>(driver: &D, command: &v1::Command) -> Result<(), Refusal> {
    match v1::CommandKind::try_from(command.kind) {
        Ok(v1::CommandKind::Start) => {
            // The server sends only well-formed times.
            let pull_back_time = command
                .pull_back_time
                .as_ref()
                .and_then(|time| timestamp_from_proto(time).ok());
            if pull_back_time.is_some() && !driver.capabilities().pull_back {
                return Err(Refusal::new(
                    "PULL_BACK_NOT_SUPPORTED",
                    format!(
                        "the {} driver cannot start a connector from a pull-back time",
                        driver.name()
                    ),
                )
                .not_retriable());
            }
            driver
                .start(Start {
                    connector_id: command.connector_id.clone(),
                    generation: command.generation,
                    pull_back_time,
                    checkpoint_time: command
                        .checkpoint_time
                        .as_ref()
                        .and_then(|time| timestamp_from_proto(time).ok()),
                    skip_to_earliest: command.skip_to_earliest,
                })
                .await
        }
        Ok(v1::CommandKind::Pause) => {
            driver
                .pause(&command.connector_id, command.generation)
                .await
        }
        _ => Err(Refusal::new(
            "UNKNOWN_COMMAND",
            format!("command kind {} is not known", command.kind),
        )),
    }
}

/// An observation as the protocol carries it.
fn status(observed: Observation, generation: i64) -> v1::ConnectorStatus {
    let state = match observed.run {
        Run::Running => v1::ConnectorState::Running,
        Run::Stopped => v1::ConnectorState::Stopped,
        Run::Failed => v1::ConnectorState::Failed,
    };
    v1::ConnectorStatus {
        connector_id: observed.connector_id,
        state: state as i32,
        checkpoint_time: observed.checkpoint_time.map(timestamp_to_proto),
        latency: observed
            .latency
            .and_then(|latency| prost_types::Duration::try_from(latency).ok()),
        store_range: observed.store_range.map(time_range_to_proto),
        generation,
        message: observed.message,
        retriable: observed.retriable,
    }
}

/// One session on `endpoint`, until it ends.
pub(super) async fn session<D: Driver>(
    endpoint: &Endpoint,
    config: &AgentConfig,
    instance_id: &str,
    connectors: &Connectors<D>,
    results: &mut mpsc::UnboundedReceiver<v1::CommandResult>,
) -> SessionEnd {
    let lost = |was_welcomed, why: String| SessionEnd::Lost { was_welcomed, why };
    let channel: Channel = match endpoint.connect().await {
        Ok(channel) => channel,
        Err(error) => return lost(false, format!("connecting: {error}")),
    };
    let (outbound, receiver) = mpsc::channel::<AgentMessage>(16);
    let capabilities = connectors.driver.capabilities();
    let hello = v1::Hello {
        agent_id: config.agent_id.clone(),
        instance_id: instance_id.to_owned(),
        region: config.region.clone(),
        server_ip: config.server_ip.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        connectors: connectors.statuses(),
        capabilities: Some(v1::AgentCapabilities {
            driver: connectors.driver.name().to_owned(),
            pull_back: capabilities.pull_back,
        }),
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
        let send = tokio::select! {
            _ = heartbeat.tick() => {
                sequence += 1;
                let beat = v1::Heartbeat { sequence, connectors: connectors.statuses() };
                agent_message::Message::Heartbeat(beat)
            }
            Some(result) = results.recv() => agent_message::Message::Result(result),
            message = inbound.message() => match message {
                Ok(Some(v1::ControlMessage {
                    message: Some(control_message::Message::Command(command)),
                })) => {
                    connectors.dispatch(command);
                    continue;
                }
                Ok(Some(v1::ControlMessage {
                    message: Some(control_message::Message::Reconnect(reconnect)),
                })) => {
                    info!(agent_id = %config.agent_id, reason = %reconnect.reason, "asked to reconnect");
                    let after = reconnect
                        .retry_after
                        .and_then(|d| Duration::try_from(d).ok())
                        .unwrap_or(super::BACKOFF_START);
                    return SessionEnd::Reconnect(after);
                }
                Ok(Some(v1::ControlMessage {
                    message: Some(control_message::Message::ReportRefused(refused)),
                })) => {
                    tracing::warn!(
                        command_id = %refused.command_id,
                        heartbeat_sequence = refused.heartbeat_sequence,
                        message = %refused.message,
                        "the control plane refused a report of this agent"
                    );
                    continue;
                }
                Ok(Some(_)) => continue,
                Ok(None) => return lost(true, "the control plane closed the stream".to_owned()),
                Err(status) => {
                    return lost(true, format!("{}: {}", status.code(), status.message()));
                }
            },
        };
        if outbound
            .send(AgentMessage {
                message: Some(send),
            })
            .await
            .is_err()
        {
            return lost(true, "the stream closed".to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::driver::Capabilities;
    use crate::agent::simulated::Simulated;

    fn simulated() -> Simulated {
        Simulated::new(Duration::from_secs(2), Duration::from_secs(3600))
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

    fn state(result: &v1::CommandResult) -> (v1::ConnectorState, i64) {
        let status = result.status.as_ref().unwrap();
        (status.state(), status.generation)
    }

    #[tokio::test]
    async fn commands_apply_once_per_generation() {
        use v1::ConnectorState::{Running, Stopped};
        let driver = simulated();
        let applied = Mutex::default();
        let start = command(v1::CommandKind::Start, 1);
        let result = carry_out(&driver, &applied, start.clone()).await;
        assert!(result.success);
        assert_eq!(state(&result), (Running, 1));
        driver.pause("c1", 2).await.unwrap();
        // A redelivery is acknowledged and changes nothing.
        let result = carry_out(&driver, &applied, start).await;
        assert!(result.success);
        assert_eq!(state(&result), (Stopped, 1));
        let result = carry_out(&driver, &applied, command(v1::CommandKind::Start, 2)).await;
        assert_eq!(state(&result), (Running, 2));
    }

    #[tokio::test]
    async fn a_failed_start_says_the_state_and_keeps_the_generation() {
        let driver = simulated();
        let applied = Mutex::default();
        let mut start = command(v1::CommandKind::Start, 1);
        start.pull_back_time = Some(timestamp_to_proto(
            chrono::Utc::now() - chrono::Duration::hours(2),
        ));
        let result = carry_out(&driver, &applied, start).await;
        assert!(!result.success);
        assert_eq!(result.error_reason, "PULL_BACK_OUT_OF_RANGE");
        assert_eq!(state(&result), (v1::ConnectorState::Stopped, 0));
    }

    /// The simulation, claiming it cannot pull back.
    struct NoPullBack(Simulated);

    impl Driver for NoPullBack {
        fn name(&self) -> &str {
            "no-pull-back"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities { pull_back: false }
        }
        async fn start(&self, start: Start) -> Result<(), Refusal> {
            self.0.start(start).await
        }
        async fn pause(&self, connector_id: &str, generation: i64) -> Result<(), Refusal> {
            self.0.pause(connector_id, generation).await
        }
        fn observe(&self) -> Vec<Observation> {
            self.0.observe()
        }
    }

    #[tokio::test]
    async fn a_pull_back_the_driver_cannot_do_is_refused_without_calling_it() {
        let driver = NoPullBack(simulated());
        let applied = Mutex::default();
        let mut start = command(v1::CommandKind::Start, 1);
        start.pull_back_time = Some(timestamp_to_proto(chrono::Utc::now()));
        let result = carry_out(&driver, &applied, start).await;
        assert_eq!(result.error_reason, "PULL_BACK_NOT_SUPPORTED");
        assert_eq!(result.retriable, Some(false));
        assert!(driver.observe().is_empty(), "the driver was called");
    }
}
