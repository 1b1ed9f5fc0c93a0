//! One agent session opened: the hello handshake, the strays it must stop
//! and the refusal of a claim its credentials do not allow; then
//! `session_stream` serves it.

use super::agent_convert;
use super::error::ApiError;
use super::session_stream::Served;
use super::status::hello_required;
use crate::auth::{AuthError, Authenticator, Principal};
use crate::domain::{Actor, AuditAction, NewAuditEvent, ObservedStatus, Refused, Session};
use crate::fleet::{Fleet, SESSION_QUEUE};
use crate::proto::v1::{AgentMessage, ControlMessage, Welcome, agent_message, control_message};
use crate::store::{FleetStore, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};
use tracing::{info, warn};

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
    let fleet_tokens = fleet.register(session.clone(), outbound.clone());
    fleet.saw(&session);
    fleet.signals_ref().wake(&session.region);

    Served::new(fleet, auth, principal, session, outbound, hello.connectors)
        .spawn(inbound, fleet_tokens);
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
    let refused = NewAuditEvent::refused(
        actor,
        AuditAction::AgentSessionStart,
        "",
        "",
        Refused {
            code: "PERMISSION_DENIED",
            reason: "PERMISSION_DENIED",
            message: &format!("agent {} region {}: {reason}", hello.agent_id, hello.region),
            reason_given: "",
        },
    );
    fleet.refusals().record(fleet.store(), refused).await;
}
