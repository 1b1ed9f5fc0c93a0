//! One agent session: the hello handshake, then a task serving the stream.

use super::{Fleet, SESSION_QUEUE};
use crate::api::{ApiError, agent_convert};
use crate::domain::{ObservedStatus, Session};
use crate::proto::v1::{
    AgentMessage, ControlMessage, Reconnect, Welcome, agent_message, control_message,
};
use crate::proto::{ERROR_DOMAIN, v1::ErrorReason};
use crate::store::{FleetStore, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::{Instrument, debug, info, info_span, warn};

/// How long a new stream may take to send its `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

fn hello_required(message: String) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(
        ErrorReason::HelloRequired.reason(),
        ERROR_DOMAIN,
        HashMap::new(),
    );
    Status::with_error_details(Code::InvalidArgument, message, details)
}

fn superseded(agent_id: &str) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(
        ErrorReason::SessionSuperseded.reason(),
        ERROR_DOMAIN,
        HashMap::from([("agent_id".to_owned(), agent_id.to_owned())]),
    );
    Status::with_error_details(
        Code::Aborted,
        format!("a newer session of agent {agent_id} replaced this one; this stream is closed"),
        details,
    )
}

/// Accepts an agent's stream: waits for its `hello`, opens the session and
/// returns the outbound stream, whose first message is `welcome`.
pub async fn connect<S: FleetStore>(
    fleet: Arc<Fleet<S>>,
    mut inbound: Streaming<AgentMessage>,
) -> Result<ReceiverStream<Result<ControlMessage, Status>>, Status> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
        .await
        .map_err(|_| {
            hello_required(format!(
                "no hello within {HELLO_TIMEOUT:?}: send hello as the first message"
            ))
        })??;
    let hello = match first {
        Some(AgentMessage {
            message: Some(agent_message::Message::Hello(hello)),
        }) => agent_convert::hello(hello).map_err(Status::from)?,
        _ => {
            return Err(hello_required(
                "the first message of a session must be hello".to_owned(),
            ));
        }
    };
    let session = fleet
        .store
        .open_session(&hello)
        .await
        .map_err(|e| Status::from(ApiError::from(e)))?;
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
            heartbeat_interval: prost_types::Duration::try_from(fleet.heartbeat_interval).ok(),
        })),
    };
    outbound
        .try_send(Ok(welcome))
        .expect("a new channel has room");
    let superseded_token = fleet.register(session.clone(), outbound.clone());
    fleet.saw(&session);
    fleet.signals.wake(&session.region);

    let span = info_span!("agent_session", agent_id = %session.agent_id, epoch = session.epoch);
    let mut served = Served {
        fleet,
        session,
        outbound,
        reported: HashMap::new(),
        last_heard: Instant::now(),
    };
    for status in hello.connectors {
        served.reported.insert(status.connector_id.clone(), status);
    }
    tokio::spawn(
        async move {
            let end = served.serve(inbound, superseded_token).await;
            served.finish(end).await;
        }
        .instrument(span),
    );
    Ok(ReceiverStream::new(receiver))
}

/// Why a session ended.
enum End {
    /// The agent closed its side, or the connection broke.
    Gone,
    /// A newer session of the agent exists.
    Superseded,
    /// The server is shutting down; the agent is asked to reconnect.
    Draining,
    /// The agent broke the protocol.
    Violation(Status),
}

struct Served<S> {
    fleet: Arc<Fleet<S>>,
    session: Session,
    outbound: super::Outbound,
    /// The last status written per connector: unchanged reports cost nothing.
    reported: HashMap<String, ObservedStatus>,
    last_heard: Instant,
}

impl<S: FleetStore> Served<S> {
    async fn serve(
        &mut self,
        mut inbound: Streaming<AgentMessage>,
        superseded: tokio_util::sync::CancellationToken,
    ) -> End {
        loop {
            let message = tokio::select! {
                _ = superseded.cancelled() => {
                    return if self.fleet.is_current(&self.session) {
                        // Cancelled by the dispatcher, not by a newer session.
                        End::Violation(Status::unavailable(
                            "the control plane could not hand over a command; reconnect",
                        ))
                    } else {
                        End::Superseded
                    };
                }
                _ = self.fleet.shutdown.cancelled() => return End::Draining,
                message = inbound.message() => message,
            };
            let message = match message {
                Ok(Some(message)) => message,
                Ok(None) => return End::Gone,
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
                // A result that could not be recorded would leave its
                // command delivered and unanswered, blocking the connector:
                // end the session, so that its commands are requeued and the
                // agent, reconnecting, answers them again.
                Err(error) => {
                    warn!(%error, "recording an agent report failed; ending the session");
                    return End::Violation(Status::unavailable(
                        "the control plane could not record your report; reconnect",
                    ));
                }
            }
        }
    }

    async fn heartbeat(&mut self, statuses: Vec<ObservedStatus>) -> Result<(), StoreError> {
        self.fleet.saw(&self.session);
        // Back from silence: the sweep may have marked its connectors
        // UNKNOWN (the database's last-seen time lags by up to one flush
        // interval), so everything it reports is written again.
        let silence = self
            .fleet
            .offline_after()
            .saturating_sub(self.fleet.heartbeat_interval);
        if self.last_heard.elapsed() >= silence {
            self.reported.clear();
        }
        self.last_heard = Instant::now();
        let changed: Vec<ObservedStatus> = statuses
            .into_iter()
            .filter(|status| self.reported.get(&status.connector_id) != Some(status))
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        self.fleet
            .store
            .record_statuses(&self.session, &changed)
            .await?;
        for status in changed {
            self.reported.insert(status.connector_id.clone(), status);
        }
        Ok(())
    }

    async fn result(&mut self, report: crate::domain::CommandReport) -> Result<(), StoreError> {
        self.last_heard = Instant::now();
        self.fleet.saw(&self.session);
        match self
            .fleet
            .store
            .complete_command(&self.session, &report)
            .await?
        {
            Some(command) => {
                info!(
                    command_id = %command.id,
                    connector_id = %command.connector_id,
                    status = %command.status,
                    "command completed"
                );
                self.fleet.signals.command_completed();
                // The connector's next command may be for any region.
                self.fleet.signals.wake_all();
            }
            None => debug!(command_id = %report.command_id, "duplicate or stale result ignored"),
        }
        Ok(())
    }

    async fn finish(self, end: End) {
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
            End::Violation(status) => Some(Err(status)),
        };
        if let Some(farewell) = farewell {
            let _ = self
                .outbound
                .send_timeout(farewell, Duration::from_secs(1))
                .await;
        }
        self.fleet.unregister(&self.session);
        match self.fleet.store.close_session(&self.session).await {
            Ok(0) => {}
            Ok(_) => self.fleet.signals.wake(&self.session.region),
            Err(error) => warn!(%error, "recording the session end failed"),
        }
        info!("agent session ended");
    }
}
