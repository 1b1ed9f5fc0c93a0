//! One agent session: the hello handshake, then a task serving the stream.

use super::agent_convert;
use super::error::ApiError;
use super::status::{hello_required, superseded};
use crate::auth::{AuthError, Authenticator, Permission, Principal};
use crate::domain::{
    Actor, CommandReport, Gone, ObservedStatus, Session, SessionEnd, SessionReport,
};
use crate::fleet::{Fleet, Outbound, SESSION_QUEUE};
use crate::proto::v1::{
    AgentMessage, ControlMessage, Reconnect, Welcome, agent_message, control_message,
};
use crate::store::{FleetStore, StoreError};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};
use tonic_types::StatusExt;
use tracing::{Instrument, debug, info, info_span, warn};

/// How often results held during a database outage are retried.
const RESULT_RETRY: Duration = Duration::from_secs(1);

/// How long a new stream may take to send its `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts an agent's stream: waits for its `hello`, opens the session and
/// returns the outbound stream, whose first message is `welcome`.
pub async fn connect<S: FleetStore>(
    fleet: Arc<Fleet<S>>,
    mut inbound: Streaming<AgentMessage>,
    principal: Principal,
    actor: Actor,
    auth: Authenticator,
) -> Result<ReceiverStream<Result<ControlMessage, Status>>, Status> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
        .await
        .map_err(|_| {
            hello_required(format!(
                "no hello within {HELLO_TIMEOUT:?}: send hello as the first message"
            ))
        })?
        .inspect_err(|status| {
            warn!(peer = %actor.peer, code = ?status.code(), message = status.message(),
                  "agent stream refused before its hello");
        })?;
    let mut hello = match first {
        Some(AgentMessage {
            message: Some(agent_message::Message::Hello(hello)),
        }) => agent_convert::hello(hello).map_err(Status::from)?,
        _ => {
            return Err(hello_required(
                "the first message of a session must be hello".to_owned(),
            ));
        }
    };
    // Checked before anything the hello carries is written.
    if let Some(reason) = principal.agent_claim_refused(&hello.agent_id, &hello.region) {
        refused(&fleet, &actor, &hello, &principal.name, &reason).await;
        return Err(ApiError::from(AuthError::AgentClaimRefused {
            principal: principal.name,
            reason,
        })
        .into());
    }
    hello.actor = actor.clone();
    let session = match fleet.store().open_session(&hello).await {
        Ok(session) => session,
        Err(error @ StoreError::AgentInOtherRegion { .. }) => {
            refused(&fleet, &actor, &hello, &principal.name, &error.to_string()).await;
            return Err(ApiError::from(error).into());
        }
        Err(error) => return Err(ApiError::from(error).into()),
    };
    info!(
        agent_id = %session.agent_id,
        region = %session.region,
        epoch = session.epoch,
        "agent connected"
    );

    let (outbound, receiver) = mpsc::channel(SESSION_QUEUE);
    let welcome = ControlMessage {
        message: Some(control_message::Message::Welcome(Welcome {
            session_id: session.session_id.clone(),
            session_epoch: session.epoch,
            heartbeat_interval: prost_types::Duration::try_from(fleet.heartbeat_interval()).ok(),
        })),
    };
    outbound
        .try_send(Ok(welcome))
        .expect("a new channel has room");
    // Connectors it runs that it must not (another agent runs them now,
    // or an operator marked them stopped while it was away): told to stop.
    let strays = strays(&fleet, &session, &hello.connectors).await;
    if !strays.is_empty() {
        let outbound = outbound.clone();
        tokio::spawn(async move {
            for command in strays {
                let stop = ControlMessage {
                    message: Some(control_message::Message::Command(command)),
                };
                if outbound.send(Ok(stop)).await.is_err() {
                    return;
                }
            }
        });
    }
    let (superseded_token, recycle) = fleet.register(session.clone(), outbound.clone());
    fleet.saw(&session);
    fleet.signals_ref().wake(&session.region);

    let span = info_span!("agent_session", agent_id = %session.agent_id, epoch = session.epoch);
    let recycle_at = fleet
        .max_stream_age()
        .map(|age| Instant::now() + jittered(age));
    let mut served = Served {
        fleet,
        // Subscribed before the first check below: no reload is missed.
        reloads: auth.reloads(),
        auth,
        principal,
        session,
        outbound,
        reported: HashMap::new(),
        listed: hello
            .connectors
            .iter()
            .map(|status| (status.connector_id.clone(), status.generation))
            .collect(),
        last_heard: Instant::now(),
        unrecorded: VecDeque::new(),
        recycle_at,
    };
    for status in hello.connectors {
        served.reported.insert(status.connector_id.clone(), status);
    }
    tokio::spawn(
        async move {
            // A reload between the hello's authentication and the
            // subscription above ends the session now.
            let end = match served.still_allowed() {
                Ok(()) => served.serve(inbound, superseded_token, recycle).await,
                Err(status) => End::Revoked(status),
            };
            served.finish(end).await;
        }
        .instrument(span),
    );
    Ok(ReceiverStream::new(receiver))
}

/// PAUSE commands for the connectors a hello lists as running that the
/// agent must not run (`domain::presence::stray`). They are the control
/// plane's own, kept nowhere: the agent applies them (their generation is
/// the connector's, newer than what it runs) and its answer, for no
/// command the store knows, changes nothing. A failed read sends none:
/// the agent's next session looks again.
async fn strays<S: FleetStore>(
    fleet: &Fleet<S>,
    session: &Session,
    reported: &[ObservedStatus],
) -> Vec<crate::proto::v1::Command> {
    let running: Vec<String> = reported
        .iter()
        .filter(|status| status.state == crate::domain::ConnectorState::Running)
        .map(|status| status.connector_id.clone())
        .collect();
    if running.is_empty() {
        return Vec::new();
    }
    let connectors = match fleet.store().connectors_by_id(&running).await {
        Ok(connectors) => connectors,
        Err(error) => {
            warn!(%error, "reading the connectors a hello lists failed; strays not looked for");
            return Vec::new();
        }
    };
    let mut commands = Vec::new();
    for connector in connectors {
        let Some(status) = reported.iter().find(|s| s.connector_id == connector.id) else {
            continue;
        };
        if !crate::domain::presence::stray(&connector, status, session) {
            continue;
        }
        warn!(
            agent_id = %session.agent_id,
            connector_id = %connector.id,
            reported_generation = status.generation,
            generation = connector.generation,
            runner = %connector.agent_id,
            "the agent runs a connector it must not (another agent runs it, or it was marked \
             stopped): telling it to stop"
        );
        commands.push(crate::proto::v1::Command {
            id: format!("stop-stray-{}", uuid::Uuid::new_v4()),
            connector_id: connector.id.clone(),
            kind: crate::proto::v1::CommandKind::Pause as i32,
            region: session.region.clone(),
            generation: connector.generation,
            status: crate::proto::v1::CommandStatus::Delivered as i32,
            agent_id: session.agent_id.clone(),
            reason: "this agent runs a copy the control plane does not: another agent runs \
                     it, or it was marked stopped while this agent was away"
                .to_owned(),
            principal: "system:stray".to_owned(),
            ..Default::default()
        });
    }
    commands
}

/// Logs and audits a hello refused before anything it carries was written.
async fn refused<S: FleetStore>(
    fleet: &Fleet<S>,
    actor: &Actor,
    hello: &crate::domain::Hello,
    principal: &str,
    reason: &str,
) {
    warn!(%principal, agent_id = %hello.agent_id, region = %hello.region, peer = %actor.peer,
          "agent session refused: {reason}");
    let refused = crate::domain::NewAuditEvent {
        outcome: "PERMISSION_DENIED".to_owned(),
        reason: "PERMISSION_DENIED".to_owned(),
        detail: format!("agent {} region {}: {reason}", hello.agent_id, hello.region),
        ..crate::domain::NewAuditEvent::ok(actor, crate::domain::AuditAction::AgentSessionStart, "")
    };
    fleet.refusals().record(fleet.store(), refused).await;
}

/// Why a session ended.
enum End {
    /// The agent closed its side, or the connection broke.
    Gone,
    /// A newer session of the agent exists.
    Superseded,
    /// The server is shutting down; the agent is asked to reconnect.
    Draining,
    /// The agent is asked to reconnect, to any replica, at once.
    Recycle(&'static str),
    /// The agent broke the protocol.
    Violation(Status),
    /// A reloaded auth file no longer lets its principal connect it.
    Revoked(Status),
    /// The control plane failed the session (the agent is asked to
    /// reconnect, and its commands are delivered again).
    Failed(Status),
}

struct Served<S> {
    fleet: Arc<Fleet<S>>,
    /// Who opened the session, checked again at every auth file reload.
    auth: Authenticator,
    principal: Principal,
    reloads: tokio::sync::watch::Receiver<u64>,
    session: Session,
    outbound: Outbound,
    /// The last status written per connector: unchanged reports cost nothing.
    reported: HashMap<String, ObservedStatus>,
    /// The connectors the last hello or heartbeat listed, with the
    /// generation each was at: one that a heartbeat no longer lists is
    /// not running any more.
    listed: HashMap<String, i64>,
    last_heard: Instant,
    /// Results received while the database was unreachable, oldest first;
    /// recorded when it is back.
    unrecorded: VecDeque<CommandReport>,
    /// When this stream is recycled (its maximum age, with jitter).
    recycle_at: Option<Instant>,
}

/// `age` varied by up to ±10%, so that streams opened together (after a
/// restart) are not all recycled together.
fn jittered(age: Duration) -> Duration {
    let random = (uuid::Uuid::new_v4().as_u128() % 10_000) as f64 / 10_000.0;
    age.mul_f64(0.9 + 0.2 * random)
}

impl<S: FleetStore> Served<S> {
    async fn serve(
        &mut self,
        mut inbound: Streaming<AgentMessage>,
        superseded: tokio_util::sync::CancellationToken,
        recycle: tokio_util::sync::CancellationToken,
    ) -> End {
        let recycle_at = self.recycle_at;
        let max_age = async move {
            match recycle_at {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(max_age);
        let mut retry = tokio::time::interval(RESULT_RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let message = tokio::select! {
                _ = recycle.cancelled() => {
                    return End::Recycle(
                        "this control-plane replica was cut off from its database; reconnect",
                    );
                }
                // Not while results wait for the database: they would be lost.
                _ = &mut max_age, if self.unrecorded.is_empty() => {
                    return End::Recycle("the stream reached its maximum age; reconnect to rebalance");
                }
                _ = retry.tick(), if !self.unrecorded.is_empty() => {
                    match self.record_unrecorded().await {
                        Ok(()) => continue,
                        Err(StoreError::Fenced { .. }) => return End::Superseded,
                        Err(error) => return Self::unrecordable(error),
                    }
                }
                _ = superseded.cancelled() => {
                    return if self.fleet.is_current(&self.session) {
                        // Cancelled by the dispatcher, not by a newer session.
                        End::Failed(Status::unavailable(
                            "the control plane could not hand over a command; reconnect",
                        ))
                    } else {
                        End::Superseded
                    };
                }
                _ = self.fleet.shutdown().cancelled() => return End::Draining,
                Ok(()) = self.reloads.changed() => {
                    match self.still_allowed() {
                        Ok(()) => continue,
                        Err(status) => return End::Revoked(status),
                    }
                }
                message = inbound.message() => message,
            };
            let message = match message {
                Ok(Some(message)) => message,
                Ok(None) => return End::Gone,
                // Bytes that are no valid message, or a message over the
                // size limit: the agent's fault, and the stream ends with
                // that status.
                Err(status)
                    if matches!(
                        status.code(),
                        Code::InvalidArgument | Code::ResourceExhausted
                    ) =>
                {
                    return End::Violation(status);
                }
                Err(status) => {
                    debug!(%status, "agent stream broke");
                    return End::Gone;
                }
            };
            let outcome = match message.message {
                Some(agent_message::Message::Heartbeat(heartbeat)) => {
                    match agent_convert::statuses(heartbeat.connectors, "heartbeat.connectors") {
                        Ok(statuses) => self.heartbeat(statuses).await,
                        Err(error) => return End::Violation(error.into()),
                    }
                }
                Some(agent_message::Message::Result(result)) => {
                    match agent_convert::report(result) {
                        Ok(report) => self.result(report).await,
                        Err(error) => return End::Violation(error.into()),
                    }
                }
                Some(agent_message::Message::Hello(_)) => {
                    return End::Violation(hello_required(
                        "hello is only valid as the first message of a session".to_owned(),
                    ));
                }
                None => Ok(()),
            };
            match outcome {
                Ok(()) => {}
                Err(StoreError::Fenced { .. }) => return End::Superseded,
                Err(error) => return Self::unrecordable(error),
            }
        }
    }

    /// Whether the reloaded auth file still lets the session's principal
    /// connect this agent, in this region.
    fn still_allowed(&mut self) -> Result<(), Status> {
        let current = self
            .auth
            .still_allows(&self.principal, Permission::AgentsConnect)
            .and_then(|current| {
                match current.agent_claim_refused(&self.session.agent_id, &self.session.region) {
                    Some(reason) => Err(AuthError::Revoked {
                        principal: current.name.clone(),
                        reason,
                        removed: false,
                    }),
                    None => Ok(current),
                }
            })
            .map_err(|error| Status::from(ApiError::from(error)))?;
        self.principal = current;
        Ok(())
    }

    /// A report that could not be recorded, and not for a passing outage,
    /// would leave its command delivered and unanswered, blocking the
    /// connector: the session ends, so that its commands are requeued and
    /// the agent, reconnecting, answers them again.
    fn unrecordable(error: StoreError) -> End {
        warn!(%error, "recording an agent report failed; ending the session");
        End::Failed(Status::unavailable(
            "the control plane could not record your report; reconnect",
        ))
    }

    /// Records the results held back during an outage, in order; stops at
    /// the first that still cannot be written.
    async fn record_unrecorded(&mut self) -> Result<(), StoreError> {
        while let Some(report) = self.unrecorded.pop_front() {
            match self.complete(&report).await {
                Ok(()) => {}
                Err(error) if error.is_transient() => {
                    self.unrecorded.push_front(report);
                    return Ok(());
                }
                Err(error) => return Err(error),
            }
        }
        info!("results held during a database outage are recorded");
        Ok(())
    }

    async fn heartbeat(&mut self, statuses: Vec<ObservedStatus>) -> Result<(), StoreError> {
        self.fleet.saw(&self.session);
        // Back from silence: the sweep may have marked its connectors
        // UNKNOWN (the database's last-seen time lags by up to one flush
        // interval), so everything it reports is written again.
        let silence = self
            .fleet
            .offline_after()
            .saturating_sub(self.fleet.heartbeat_interval());
        if self.last_heard.elapsed() >= silence {
            self.reported.clear();
        }
        self.last_heard = Instant::now();
        let latency = &crate::telemetry::metrics::instruments().connector_latency;
        let region = [opentelemetry::KeyValue::new(
            "region",
            self.session.region.clone(),
        )];
        for status in &statuses {
            if let Some(lag) = status.latency {
                latency.record(lag.as_secs_f64(), &region);
            }
        }
        // A heartbeat lists every connector the agent runs: one it listed
        // before and lists no more is not running.
        let listed: HashMap<String, i64> = statuses
            .iter()
            .map(|status| (status.connector_id.clone(), status.generation))
            .collect();
        let gone: Vec<Gone> = std::mem::replace(&mut self.listed, listed)
            .into_iter()
            .filter(|(id, _)| !self.listed.contains_key(id))
            .map(|(connector_id, generation)| Gone {
                connector_id,
                generation: Some(generation),
            })
            .collect();
        for gone in &gone {
            self.reported.remove(&gone.connector_id);
        }
        let changed: Vec<ObservedStatus> = statuses
            .into_iter()
            .filter(|status| self.reported.get(&status.connector_id) != Some(status))
            .collect();
        if changed.is_empty() && gone.is_empty() {
            return Ok(());
        }
        for status in &changed {
            self.reported
                .insert(status.connector_id.clone(), status.clone());
        }
        // Written with every session's changes within `STATUS_FLUSH`; a failed
        // write is retried from the queue.
        self.fleet.queue_statuses(
            &self.session,
            SessionReport {
                statuses: changed,
                gone,
            },
        );
        Ok(())
    }

    async fn result(&mut self, report: CommandReport) -> Result<(), StoreError> {
        self.last_heard = Instant::now();
        self.fleet.saw(&self.session);
        if !self.unrecorded.is_empty() {
            // Keep the agent's order: this one waits behind the others.
            self.unrecorded.push_back(report);
            return Ok(());
        }
        match self.complete(&report).await {
            Err(error) if error.is_transient() => {
                warn!(%error, command_id = %report.command_id,
                      "database unavailable; holding the result until it is back");
                self.unrecorded.push_back(report);
                Ok(())
            }
            other => other,
        }
    }

    async fn complete(&mut self, report: &CommandReport) -> Result<(), StoreError> {
        // Joins the agent's trace of its handling, and so the caller's.
        let span = tracing::info_span!(
            "record command result",
            command_id = %report.command_id,
            success = report.success,
            error_reason = %report.error_reason,
        );
        crate::telemetry::continue_trace(&span, &report.trace_context);
        let completed = self
            .fleet
            .store()
            .complete_command(&self.session, report)
            .instrument(span)
            .await?;
        match completed {
            Some(command) => {
                if let Some(done) = command.complete_time {
                    crate::telemetry::metrics::instruments()
                        .completion_delay
                        .record(
                            (done - command.create_time)
                                .to_std()
                                .unwrap_or_default()
                                .as_secs_f64(),
                            &[
                                opentelemetry::KeyValue::new("region", command.region.clone()),
                                opentelemetry::KeyValue::new("kind", command.kind.as_str()),
                                opentelemetry::KeyValue::new("status", command.status.as_str()),
                            ],
                        );
                }
                info!(
                    command_id = %command.id,
                    connector_id = %command.connector_id,
                    status = %command.status,
                    "command completed"
                );
                self.fleet.signals_ref().completed_here(&command.id);
                // The connector's next command may be for any region.
                self.fleet.signals_ref().wake_all();
            }
            None => debug!(command_id = %report.command_id, "duplicate or stale result ignored"),
        }
        Ok(())
    }

    async fn finish(mut self, end: End) {
        if !self.unrecorded.is_empty() {
            // One last, bounded try; what is still unrecorded is delivered
            // again when the agent reconnects, and it answers again.
            let held = self.unrecorded.len();
            let recorded =
                tokio::time::timeout(Duration::from_secs(2), self.record_unrecorded()).await;
            if !matches!(recorded, Ok(Ok(()))) || !self.unrecorded.is_empty() {
                warn!(
                    held,
                    dropped = self.unrecorded.len(),
                    "results could not be recorded before the session ended; their commands will be delivered again"
                );
            }
        }
        let why = match &end {
            End::Gone => SessionEnd::Disconnected,
            End::Superseded => SessionEnd::Superseded,
            End::Draining => SessionEnd::Draining,
            End::Recycle(_) => SessionEnd::Recycled,
            End::Violation(status) => SessionEnd::Violation(
                status
                    .get_details_error_info()
                    .map(|info| info.reason)
                    .unwrap_or_else(|| crate::telemetry::rpc::code_name(status.code()).to_owned()),
            ),
            End::Revoked(_) => SessionEnd::Revoked,
            End::Failed(_) => SessionEnd::ControlPlaneFailure,
        };
        let farewell = match end {
            End::Gone => None,
            End::Superseded => Some(Err(superseded(&self.session.agent_id))),
            End::Draining => Some(Ok(ControlMessage {
                message: Some(control_message::Message::Reconnect(Reconnect {
                    reason: "the control plane is shutting down".to_owned(),
                    retry_after: Some(prost_types::Duration {
                        seconds: 1,
                        nanos: 0,
                    }),
                })),
            })),
            End::Recycle(reason) => Some(Ok(ControlMessage {
                message: Some(control_message::Message::Reconnect(Reconnect {
                    reason: reason.to_owned(),
                    retry_after: Some(prost_types::Duration::default()),
                })),
            })),
            End::Revoked(status) => {
                warn!(
                    agent_id = %self.session.agent_id,
                    principal = %self.principal.name,
                    message = status.message(),
                    "ending the agent's session: its credentials were revoked"
                );
                Some(Err(status))
            }
            End::Violation(status) | End::Failed(status) => {
                warn!(
                    agent_id = %self.session.agent_id,
                    code = ?status.code(),
                    message = status.message(),
                    "ending the agent's session with an error"
                );
                Some(Err(status))
            }
        };
        if let Some(farewell) = farewell {
            let _ = self
                .outbound
                .send_timeout(farewell, Duration::from_secs(1))
                .await;
        }
        self.fleet.unregister(&self.session);
        self.fleet.close(self.session.clone(), why.clone()).await;
        info!(reason = why.reason(), "agent session ended");
    }
}
