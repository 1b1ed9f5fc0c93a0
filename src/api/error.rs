//! The one place where failures become gRPC statuses: a fitting code, a
//! `google.rpc.ErrorInfo` with a stable reason, `BadRequest` violations for
//! bad fields, and a message a person can act on. Internal causes are logged
//! here and never sent.

use crate::domain::{CommandKind, PageTokenError, Rejection, Violation};
use crate::proto::{ERROR_DOMAIN, v1::ErrorReason};
use crate::store::StoreError;
use std::collections::HashMap;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid {rpc} request")]
    InvalidArgument {
        rpc: &'static str,
        violations: Vec<Violation>,
    },
    #[error(transparent)]
    InvalidPageToken(#[from] PageTokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error("{principal} is over its rate limit")]
    RateLimited {
        principal: String,
        role: &'static str,
        limit: super::limits::RateLimit,
        retry_after: std::time::Duration,
    },
    /// A `wait` ended because a reload revoked its principal; the command
    /// stays accepted.
    #[error("the wait for command {command_id} was ended: {error}")]
    WaitRevoked {
        connector_id: String,
        command_id: String,
        error: crate::auth::AuthError,
    },
    /// A batch call chose more connectors than its `max_connectors`.
    #[error("{selected} connectors match; at most {max} may be changed")]
    TooManyConnectors { selected: i64, max: usize },
    /// A watcher's buffer filled; its stream ends and it resumes.
    #[error("the watcher read too slowly; its buffer of {buffer} events filled")]
    WatcherTooSlow {
        resume_token: String,
        buffer: usize,
        grace: std::time::Duration,
    },
    /// More watches than a cap allows (`scope`: this replica, or one
    /// caller); `flag` raises it.
    #[error("too many watches for {scope}")]
    TooManyWatches {
        limit: usize,
        scope: String,
        flag: &'static str,
    },
    /// A batch call's request id was used for a batch asking otherwise.
    #[error("request id {request_id} was used for another batch")]
    BatchRequestIdReused { request_id: String },
    /// A request id another principal used: its answer is theirs.
    #[error("request id {request_id} belongs to another principal")]
    RequestIdOfAnother { request_id: String },
    #[error("command {command_id} not confirmed")]
    NotConfirmed {
        connector_id: String,
        command_id: String,
        kind: CommandKind,
        region: String,
        end: WaitEnd,
    },
}

/// Why a `wait: true` call stopped waiting without a confirmation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitEnd {
    /// The caller's deadline (or the server's `--max-wait`) passed.
    Deadline,
    /// The server is shutting down.
    Draining,
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        ApiError::Store(StoreError::Rejected(rejection))
    }
}

fn status(
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

fn no_details(_: &mut ErrorDetails) {}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        match error {
            ApiError::InvalidArgument { rpc, violations } => {
                let summary = violations
                    .iter()
                    .map(|v| format!("{} {}", v.field, v.description))
                    .collect::<Vec<_>>()
                    .join("; ");
                status(
                    Code::InvalidArgument,
                    ErrorReason::InvalidArgument,
                    format!("invalid {rpc} request: {summary}"),
                    &[],
                    |details| {
                        for v in &violations {
                            details.add_bad_request_violation(&v.field, &v.description);
                        }
                    },
                )
            }
            ApiError::InvalidPageToken(error) => status(
                Code::InvalidArgument,
                ErrorReason::InvalidPageToken,
                error.to_string(),
                &[],
                |details| {
                    details.add_bad_request_violation("page_token", error.to_string());
                },
            ),
            ApiError::NotConfirmed {
                connector_id,
                command_id,
                kind,
                region,
                end,
            } => status(
                Code::DeadlineExceeded,
                ErrorReason::CommandNotConfirmed,
                format!(
                    "no agent confirmed the {kind} command {command_id} of connector {connector_id} \
                     {}; it stays pending and is delivered once an agent in region {region} takes \
                     it: check with GetConnector, or retry with the same request_id to wait again",
                    match end {
                        WaitEnd::Deadline => "before the deadline",
                        WaitEnd::Draining => "before this server began shutting down",
                    }
                ),
                &[("connector_id", connector_id), ("command_id", command_id)],
                no_details,
            ),
            ApiError::WaitRevoked {
                connector_id,
                command_id,
                error,
            } => {
                let revoked = auth_status(error);
                let principal = revoked
                    .get_details_error_info()
                    .and_then(|info| info.metadata.get("principal").cloned())
                    .unwrap_or_default();
                status(
                    revoked.code(),
                    ErrorReason::CredentialsRevoked,
                    format!(
                        "{}; only the wait ended: command {command_id} of connector \
                         {connector_id} stays accepted and is carried out (check with \
                         GetConnector)",
                        revoked.message()
                    ),
                    &[
                        ("principal", principal),
                        ("connector_id", connector_id),
                        ("command_id", command_id),
                    ],
                    no_details,
                )
            }
            ApiError::Store(error) => store_status(error),
            ApiError::Auth(error) => auth_status(error),
            ApiError::TooManyConnectors { selected, max } => {
                let over = if selected > 10_000 {
                    format!("about {selected}")
                } else {
                    selected.to_string()
                };
                status(
                    Code::FailedPrecondition,
                    ErrorReason::TooManyConnectors,
                    format!(
                        "{over} connectors match the selection, more than max_connectors \
                         ({max}) allows; nothing was changed. Narrow the filter (ListConnectors \
                         with the same fields shows what matches), or set max_connectors to the \
                         count if all of them are meant"
                    ),
                    &[
                        ("selected", selected.to_string()),
                        ("max_connectors", max.to_string()),
                    ],
                    |details| {
                        details.add_precondition_failure_violation(
                            "TOO_MANY_CONNECTORS",
                            "max_connectors",
                            format!("{over} connectors match; at most {max} may be changed"),
                        );
                    },
                )
            }
            ApiError::WatcherTooSlow {
                resume_token,
                buffer,
                grace,
            } => status(
                Code::ResourceExhausted,
                ErrorReason::WatcherTooSlow,
                if resume_token.is_empty() {
                    format!(
                        "this watch stopped reading its snapshot: its buffer of {buffer} events \
                         stayed full for {grace:?}, so it was ended (a watch that is not read \
                         holds no memory for long); a snapshot is not resumable: watch again"
                    )
                } else {
                    format!(
                        "this watch read more slowly than changes came: its buffer of {buffer} \
                         events stayed full for {grace:?}, so it was ended (a slow watcher never \
                         slows the service); watch again with the resume_token in this error's \
                         metadata"
                    )
                },
                &[
                    ("resume_token", resume_token),
                    ("buffer", buffer.to_string()),
                ],
                no_details,
            ),
            ApiError::TooManyWatches { limit, scope, flag } => status(
                Code::ResourceExhausted,
                ErrorReason::TooManyWatches,
                format!(
                    "{scope} already has {limit} WatchConnectors streams open, the most allowed \
                     ({flag}): end one you no longer read (a watch with a broader filter can \
                     replace several), then watch again"
                ),
                &[("limit", limit.to_string()), ("scope", scope)],
                no_details,
            ),
            ApiError::BatchRequestIdReused { request_id } => {
                let message = format!(
                    "request_id {request_id} was already used for a batch call with other \
                     parameters (connectors, filter, reason, pull-back time or region); use a \
                     new request id for each distinct call"
                );
                status(
                    Code::InvalidArgument,
                    ErrorReason::RequestIdReused,
                    message.clone(),
                    &[("request_id", request_id)],
                    |details| {
                        details.add_bad_request_violation("request_id", message);
                    },
                )
            }
            ApiError::RequestIdOfAnother { request_id } => {
                let message = format!(
                    "request_id {request_id} was already used by another principal; a request id \
                     repeats only its own caller's call: use a new one"
                );
                status(
                    Code::InvalidArgument,
                    ErrorReason::RequestIdReused,
                    message.clone(),
                    &[("request_id", request_id)],
                    |details| {
                        details.add_bad_request_violation("request_id", message);
                    },
                )
            }
            ApiError::RateLimited {
                principal,
                role,
                limit,
                retry_after,
            } => {
                // Whole milliseconds, at least one: what a person can read.
                let retry_after =
                    std::time::Duration::from_millis(retry_after.as_millis().max(1) as u64);
                status(
                    Code::ResourceExhausted,
                    ErrorReason::RateLimited,
                    format!(
                        "principal {principal} (role {role}) made more changes (create, start, \
                         pause) than role {role} may: {} a second, in bursts of up to {} \
                         (serve --{role}-rate-limit / --{role}-rate-burst); the limit keeps a \
                         runaway caller from flooding the database. Retry in {} ms",
                        limit.per_second,
                        limit.burst,
                        retry_after.as_millis()
                    ),
                    &[
                        ("principal", principal),
                        ("role", role.to_owned()),
                        ("limit_per_second", limit.per_second.to_string()),
                        ("burst", limit.burst.to_string()),
                    ],
                    |details| {
                        details.set_retry_info(Some(retry_after));
                    },
                )
            }
        }
    }
}

fn auth_status(error: crate::auth::AuthError) -> Status {
    use crate::auth::AuthError;
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

fn store_status(error: StoreError) -> Status {
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

fn rejection_status(rejection: Rejection) -> Status {
    let message = rejection.to_string();
    let precondition = |subject: &str, kind: &str| {
        let subject = format!("connectors/{subject}");
        let kind = kind.to_owned();
        let description = message.clone();
        move |details: &mut ErrorDetails| {
            details.add_precondition_failure_violation(kind, subject, description);
        }
    };
    match &rejection {
        Rejection::NotStopped {
            connector_id,
            state,
        } => status(
            Code::FailedPrecondition,
            ErrorReason::ConnectorNotStopped,
            message.clone(),
            &[
                ("connector_id", connector_id.clone()),
                ("state", state.to_string()),
            ],
            precondition(connector_id, "STATE"),
        ),
        Rejection::NotRunning {
            connector_id,
            state,
        } => status(
            Code::FailedPrecondition,
            ErrorReason::ConnectorNotRunning,
            message.clone(),
            &[
                ("connector_id", connector_id.clone()),
                ("state", state.to_string()),
            ],
            precondition(connector_id, "STATE"),
        ),
        Rejection::PullBackNotSupported { connector_id, kind } => status(
            Code::FailedPrecondition,
            ErrorReason::PullBackNotSupported,
            message.clone(),
            &[
                ("connector_id", connector_id.clone()),
                ("kind", kind.to_string()),
            ],
            precondition(connector_id, "KIND"),
        ),
        Rejection::PullBackOutOfRange {
            connector_id,
            requested,
            range,
            now,
        } => {
            let mut metadata = vec![
                ("connector_id", connector_id.clone()),
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
            status(
                Code::FailedPrecondition,
                ErrorReason::PullBackOutOfRange,
                message.clone(),
                &metadata,
                precondition(connector_id, "STORE_RANGE"),
            )
        }
        Rejection::CheckpointOutOfRange {
            connector_id,
            checkpoint,
            range,
        } => status(
            Code::FailedPrecondition,
            ErrorReason::CheckpointOutOfRange,
            message.clone(),
            &[
                ("connector_id", connector_id.clone()),
                ("checkpoint_time", checkpoint.to_rfc3339()),
                ("earliest_time", range.earliest.to_rfc3339()),
                ("latest_time", range.latest.to_rfc3339()),
            ],
            precondition(connector_id, "STORE_RANGE"),
        ),
        Rejection::AgentOnline {
            connector_id,
            agent_id,
        } => status(
            Code::FailedPrecondition,
            ErrorReason::AgentOnline,
            message.clone(),
            &[
                ("connector_id", connector_id.clone()),
                ("agent_id", agent_id.clone()),
            ],
            precondition(connector_id, "AGENT"),
        ),
        Rejection::AlreadyStopped { connector_id } => status(
            Code::FailedPrecondition,
            ErrorReason::ConnectorNotRunning,
            message.clone(),
            &[
                ("connector_id", connector_id.clone()),
                ("state", "STOPPED".to_owned()),
            ],
            precondition(connector_id, "STATE"),
        ),
        Rejection::UnknownRegion { region } => status(
            Code::InvalidArgument,
            ErrorReason::UnknownRegion,
            message.clone(),
            &[("region", region.clone())],
            |details| {
                details.add_bad_request_violation("region", message.clone());
            },
        ),
        Rejection::RequestIdReused {
            connector_id,
            request_id,
            ..
        } => status(
            Code::InvalidArgument,
            ErrorReason::RequestIdReused,
            message.clone(),
            &[
                ("connector_id", connector_id.clone()),
                ("request_id", request_id.clone()),
            ],
            |details| {
                details.add_bad_request_violation("request_id", message.clone());
            },
        ),
        // Only the control plane's own automatic starts carry the
        // precondition; no call a client makes reaches here.
        Rejection::RestartObsolete { connector_id, .. } => status(
            Code::Aborted,
            ErrorReason::Internal,
            message.clone(),
            &[("connector_id", connector_id.clone())],
            |_| {},
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
