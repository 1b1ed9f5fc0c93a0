//! How a failure becomes a gRPC status: a fitting code, a
//! `google.rpc.ErrorInfo` with a stable reason and metadata, and the
//! details a client can act on; and the statuses of what fails beneath the
//! API (store errors, rule rejections, auth refusals). Internal causes are
//! logged here and never sent.

use crate::auth::AuthError;
use crate::domain::Rejection;
use crate::proto::{ERROR_DOMAIN, v1::ErrorReason};
use crate::store::StoreError;
use std::collections::HashMap;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A status of `code` with an ErrorInfo of `reason` and `metadata`, and
/// what `details` adds.
pub(super) fn status(
    code: Code,
    reason: ErrorReason,
    message: String,
    metadata: &[(&str, String)],
    details: impl FnOnce(&mut ErrorDetails),
) -> Status {
    let metadata: HashMap<String, String> = metadata
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.clone()))
        .collect();
    let mut error_details = ErrorDetails::new();
    error_details.set_error_info(reason.reason(), ERROR_DOMAIN, metadata);
    details(&mut error_details);
    Status::with_error_details(code, message, error_details)
}

/// For `status`: no details beyond the ErrorInfo.
pub(super) fn no_details(_: &mut ErrorDetails) {}

/// INVALID_ARGUMENT for one bad `field`: the message is the violation's
/// description too.
pub(super) fn bad_field(
    reason: ErrorReason,
    field: &str,
    message: String,
    metadata: &[(&str, String)],
) -> Status {
    status(
        Code::InvalidArgument,
        reason,
        message.clone(),
        metadata,
        |details| {
            details.add_bad_request_violation(field, message);
        },
    )
}

pub(super) fn auth_status(error: AuthError) -> Status {
    match error {
        AuthError::Unauthenticated(_, why) => status(
            Code::Unauthenticated,
            ErrorReason::Unauthenticated,
            why,
            &[],
            no_details,
        ),
        AuthError::PermissionDenied {
            principal,
            role,
            permission,
        } => status(
            Code::PermissionDenied,
            ErrorReason::PermissionDenied,
            format!(
                "principal {principal} (role {role}) lacks permission {permission}, which role \
                 {} has; ask an administrator of the auth file",
                permission.granted_by()
            ),
            &[
                ("principal", principal),
                ("role", role.to_owned()),
                ("permission", permission.name().to_owned()),
            ],
            no_details,
        ),
        AuthError::Revoked {
            principal,
            reason,
            removed,
        } => status(
            if removed {
                Code::Unauthenticated
            } else {
                Code::PermissionDenied
            },
            ErrorReason::CredentialsRevoked,
            format!(
                "{reason} (it was reloaded while this call was open); the call is ended: \
                 call again with current credentials"
            ),
            &[("principal", principal)],
            no_details,
        ),
        AuthError::AgentClaimRefused { principal, reason } => status(
            Code::PermissionDenied,
            ErrorReason::PermissionDenied,
            format!("{reason}; nothing this session sent was applied"),
            &[
                ("principal", principal),
                ("permission", "agents.connect".to_owned()),
            ],
            no_details,
        ),
    }
}

pub(super) fn store_status(error: StoreError) -> Status {
    match error {
        StoreError::ConnectorNotFound(id) => status(
            Code::NotFound,
            ErrorReason::ConnectorNotFound,
            format!(
                "connector {id} does not exist; search with ListConnectors (query matches names, \
                 project names, ids and server IPs)"
            ),
            &[("connector_id", id)],
            no_details,
        ),
        StoreError::ConnectorAlreadyExists(id) => status(
            Code::AlreadyExists,
            ErrorReason::ConnectorAlreadyExists,
            format!(
                "connector {id} already exists; choose another id, or leave id empty to have one \
                 assigned"
            ),
            &[("connector_id", id)],
            no_details,
        ),
        StoreError::Rejected(rejection) => rejection_status(rejection),
        error @ (StoreError::Unavailable(_) | StoreError::Contention(_)) => {
            tracing::warn!(%error, "database unavailable");
            status(
                Code::Unavailable,
                ErrorReason::StoreUnavailable,
                "the database is unavailable; retry shortly (a Start or Pause retried with the same \
                 request_id takes effect at most once)"
                    .to_owned(),
                &[],
                |details| {
                    details.set_retry_info(Some(std::time::Duration::from_secs(1)));
                },
            )
        }
        StoreError::AgentInOtherRegion {
            agent_id,
            registered,
            claimed,
        } => status(
            Code::PermissionDenied,
            ErrorReason::PermissionDenied,
            format!(
                "agent id {agent_id} is registered in region {registered}; a session claiming \
                 region {claimed} is refused (an agent id belongs to one region: give this agent \
                 an id of its own). Nothing this session sent was applied, and {agent_id}'s \
                 session is untouched"
            ),
            &[
                ("agent_id", agent_id),
                ("registered_region", registered),
                ("claimed_region", claimed),
            ],
            no_details,
        ),
        StoreError::ChangesPruned { pruned_through, .. } => status(
            Code::FailedPrecondition,
            ErrorReason::ResumeTokenExpired,
            format!(
                "the changes after this resume_token are no longer kept (kept from position \
                 {pruned_through} on); watch again without resume_token: it starts with a new \
                 snapshot of the matching connectors"
            ),
            &[("kept_from", pruned_through.to_string())],
            |details| {
                details.add_precondition_failure_violation(
                    "RESUME_TOKEN_EXPIRED",
                    "resume_token",
                    "the changes after it were pruned",
                );
            },
        ),
        StoreError::Fenced { agent_id, epoch } => status(
            Code::Aborted,
            ErrorReason::SessionSuperseded,
            format!("session {epoch} of agent {agent_id} was replaced by a newer session"),
            &[("agent_id", agent_id)],
            no_details,
        ),
        error @ (StoreError::Internal(_)
        | StoreError::CommandNotFound(_)
        | StoreError::NotLeader { .. }) => {
            tracing::error!(%error, "internal error");
            status(
                Code::Internal,
                ErrorReason::Internal,
                "internal error; the server log has the cause".to_owned(),
                &[],
                no_details,
            )
        }
    }
}

/// FAILED_PRECONDITION for a change the rules refuse (its precondition
/// names the connector and what about it failed), or the code the refusal
/// calls for.
fn rejection_status(rejection: Rejection) -> Status {
    let message = rejection.to_string();
    let failed = |reason: ErrorReason, connector_id: &str, kind: &str, more: &[(&str, String)]| {
        let mut metadata = vec![("connector_id", connector_id.to_owned())];
        metadata.extend_from_slice(more);
        status(
            Code::FailedPrecondition,
            reason,
            message.clone(),
            &metadata,
            |details| {
                details.add_precondition_failure_violation(
                    kind,
                    format!("connectors/{connector_id}"),
                    message.clone(),
                );
            },
        )
    };
    match &rejection {
        Rejection::NotStopped {
            connector_id,
            state,
        } => failed(
            ErrorReason::ConnectorNotStopped,
            connector_id,
            "STATE",
            &[("state", state.to_string())],
        ),
        Rejection::NotRunning {
            connector_id,
            state,
        } => failed(
            ErrorReason::ConnectorNotRunning,
            connector_id,
            "STATE",
            &[("state", state.to_string())],
        ),
        Rejection::AlreadyStopped { connector_id } => failed(
            ErrorReason::ConnectorNotRunning,
            connector_id,
            "STATE",
            &[("state", "STOPPED".to_owned())],
        ),
        Rejection::PullBackNotSupported { connector_id, kind } => failed(
            ErrorReason::PullBackNotSupported,
            connector_id,
            "KIND",
            &[("kind", kind.to_string())],
        ),
        Rejection::PullBackNotSupportedByAgents {
            connector_id,
            region,
            agents,
            ..
        } => failed(
            ErrorReason::PullBackNotSupported,
            connector_id,
            "AGENT",
            &[("region", region.clone()), ("agent_ids", agents.join(","))],
        ),
        Rejection::PullBackOutOfRange {
            connector_id,
            requested,
            range,
            now,
        } => {
            let mut metadata = vec![
                ("pull_back_time", requested.to_rfc3339()),
                ("server_time", now.to_rfc3339()),
                (
                    "clock_skew_seconds",
                    crate::domain::rules::PULL_BACK_CLOCK_SKEW
                        .as_secs()
                        .to_string(),
                ),
            ];
            if let Some(range) = range {
                metadata.push(("earliest_time", range.earliest.to_rfc3339()));
                metadata.push(("latest_time", range.latest.to_rfc3339()));
            }
            failed(
                ErrorReason::PullBackOutOfRange,
                connector_id,
                "STORE_RANGE",
                &metadata,
            )
        }
        Rejection::CheckpointOutOfRange {
            connector_id,
            checkpoint,
            range,
        } => failed(
            ErrorReason::CheckpointOutOfRange,
            connector_id,
            "STORE_RANGE",
            &[
                ("checkpoint_time", checkpoint.to_rfc3339()),
                ("earliest_time", range.earliest.to_rfc3339()),
                ("latest_time", range.latest.to_rfc3339()),
            ],
        ),
        Rejection::AgentOnline {
            connector_id,
            agent_id,
        } => failed(
            ErrorReason::AgentOnline,
            connector_id,
            "AGENT",
            &[("agent_id", agent_id.clone())],
        ),
        Rejection::UnknownRegion { region } => bad_field(
            ErrorReason::UnknownRegion,
            "region",
            message.clone(),
            &[("region", region.clone())],
        ),
        Rejection::RequestIdReused {
            connector_id,
            request_id,
            ..
        } => bad_field(
            ErrorReason::RequestIdReused,
            "request_id",
            message.clone(),
            &[
                ("connector_id", connector_id.clone()),
                ("request_id", request_id.clone()),
            ],
        ),
        // Only the control plane's own automatic starts carry the
        // precondition; no call a client makes reaches here.
        Rejection::RestartObsolete { connector_id, .. } => status(
            Code::Aborted,
            ErrorReason::Internal,
            message.clone(),
            &[("connector_id", connector_id.clone())],
            no_details,
        ),
    }
}

/// INVALID_ARGUMENT / `HELLO_REQUIRED`: an agent stream did not begin with
/// a valid hello.
pub(crate) fn hello_required(message: String) -> Status {
    status(
        Code::InvalidArgument,
        ErrorReason::HelloRequired,
        message,
        &[],
        no_details,
    )
}

/// ABORTED / `SESSION_SUPERSEDED`: a newer session of the agent replaced
/// this stream.
pub(crate) fn superseded(agent_id: &str) -> Status {
    status(
        Code::Aborted,
        ErrorReason::SessionSuperseded,
        format!("a newer session of agent {agent_id} replaced this one; this stream is closed"),
        &[("agent_id", agent_id.to_owned())],
        no_details,
    )
}
