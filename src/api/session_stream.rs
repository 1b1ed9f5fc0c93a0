//! An open agent session's stream, served in a task of its own:
//! heartbeats and results recorded (held through a database outage), the
//! principal checked again at every auth reload, the stream recycled at
//! its maximum age, and a farewell that says why it ended.

use super::agent_convert;
use super::error::ApiError;
use super::status::{hello_required, superseded};
use crate::auth::{AuthError, Authenticator, Permission, Principal};
use crate::domain::progress;
use crate::domain::{CommandReport, Gone, ObservedStatus, Session, SessionEnd, SessionReport};
use crate::fleet::{Fleet, Outbound};
use crate::proto::v1::{
    self, AgentMessage, ControlMessage, Reconnect, agent_message, control_message,
};
use crate::store::{FleetStore, StoreError};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status, Streaming};
use tonic_types::StatusExt;
use tracing::{Instrument, debug, info, info_span, warn};

/// How often results held during a database outage are retried.
const RESULT_RETRY: Duration = Duration::from_secs(1);

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

pub(super) struct Served<S> {
    fleet: Arc<Fleet<S>>,
    /// Who opened the session, checked again at every auth file reload.
    auth: Authenticator,
    principal: Principal,
    reloads: tokio::sync::watch::Receiver<u64>,
    session: Session,
    outbound: Outbound,
    /// The last status written per connector, and when: unchanged reports
    /// cost nothing, progress alone is written now and then
    /// (`domain::progress`).
    reported: HashMap<String, (ObservedStatus, Instant)>,
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
    /// A session whose hello was accepted and whose `welcome` is queued;
    /// `connectors` is what the hello listed.
    pub(super) fn new(
        fleet: Arc<Fleet<S>>,
        auth: Authenticator,
        principal: Principal,
        session: Session,
        outbound: Outbound,
        connectors: Vec<ObservedStatus>,
    ) -> Self {
        let recycle_at = fleet
            .max_stream_age()
            .map(|age| Instant::now() + jittered(age));
        let listed = connectors
            .iter()
            .map(|status| (status.connector_id.clone(), status.generation))
            .collect();
        Served {
            fleet,
            // Subscribed before the first check in `spawn`: no reload is
            // missed.
            reloads: auth.reloads(),
            auth,
            principal,
            session,
            outbound,
            reported: connectors
                .into_iter()
                .map(|status| (status.connector_id.clone(), (status, Instant::now())))
                .collect(),
            listed,
            last_heard: Instant::now(),
            unrecorded: VecDeque::new(),
            recycle_at,
        }
    }

    /// Serves the stream in a task of its own until it ends (`superseded`
    /// and `recycle` are the fleet's tokens for the session).
    pub(super) fn spawn(
        mut self,
        inbound: Streaming<AgentMessage>,
        (superseded, recycle): (CancellationToken, CancellationToken),
    ) {
        let span = info_span!("agent_session", agent_id = %self.session.agent_id, epoch = self.session.epoch);
        tokio::spawn(
            async move {
                // A reload between the hello's authentication and the
                // subscription in `new` ends the session now.
                let end = match self.still_allowed() {
                    Ok(()) => self.serve(inbound, superseded, recycle).await,
                    Err(status) => End::Revoked(status),
                };
                self.finish(end).await;
            }
            .instrument(span),
        );
    }

    async fn serve(
        &mut self,
        mut inbound: Streaming<AgentMessage>,
        superseded: CancellationToken,
        recycle: CancellationToken,
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
                        Err(error) => {
                            let refused = v1::ReportRefused {
                                heartbeat_sequence: heartbeat.sequence,
                                ..Default::default()
                            };
                            self.refuse(refused, error).await;
                            Ok(())
                        }
                    }
                }
                Some(agent_message::Message::Result(result)) => {
                    let command_id = result.command_id.clone();
                    match agent_convert::report(result) {
                        Ok(report) => self.result(report).await,
                        Err(error) => {
                            let refused = v1::ReportRefused {
                                command_id,
                                ..Default::default()
                            };
                            self.refuse(refused, error).await;
                            Ok(())
                        }
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

    /// Tells the agent why its result or heartbeat was not recorded; the
    /// session goes on (one bad report must not end a session that runs
    /// many connectors).
    async fn refuse(&self, mut refused: v1::ReportRefused, error: ApiError) {
        if let ApiError::InvalidArgument { violations, .. } = &error {
            refused.field_violations = violations
                .iter()
                .map(|violation| v1::FieldViolation {
                    field: violation.field.clone(),
                    description: violation.description.clone(),
                })
                .collect();
        }
        // The message the call would have ended with.
        let status = Status::from(error);
        warn!(
            agent_id = %self.session.agent_id,
            command_id = %refused.command_id,
            heartbeat_sequence = refused.heartbeat_sequence,
            message = status.message(),
            "an agent's report was refused"
        );
        crate::telemetry::metrics::report_refused("report_invalid", 1);
        refused.message = status.message().to_owned();
        let refused = ControlMessage {
            message: Some(control_message::Message::ReportRefused(refused)),
        };
        let _ = self
            .outbound
            .send_timeout(Ok(refused), Duration::from_secs(1))
            .await;
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
        let options = self.fleet.options();
        let changed: Vec<ObservedStatus> = statuses
            .into_iter()
            .filter(|status| {
                let last = self
                    .reported
                    .get(&status.connector_id)
                    .map(|(last, at)| (last, at.elapsed()));
                progress::worth_writing(
                    last,
                    status,
                    options.latency_alert,
                    options.progress_refresh,
                )
            })
            .collect();
        if changed.is_empty() && gone.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        for status in &changed {
            self.reported
                .insert(status.connector_id.clone(), (status.clone(), now));
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
