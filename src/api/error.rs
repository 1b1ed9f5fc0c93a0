//! The API's failures (`ApiError`) and the one conversion of each to a
//! gRPC status: a fitting code, a `google.rpc.ErrorInfo` with a stable
//! reason, and a message a person can act on (`status` builds them).

use super::limits::RateLimited;
use super::status::{auth_status, bad_field, no_details, status, store_status};
use crate::domain::{CommandKind, PageTokenError, Rejection, Violation};
use crate::proto::v1::ErrorReason;
use crate::store::StoreError;
use tonic::{Code, Status};
use tonic_types::StatusExt;

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
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
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

/// What fails beneath the API becomes a status through `ApiError`, so
/// that `?` carries it out of an RPC body.
macro_rules! status_through_api_error {
    ($($error:ty),*) => {
        $(impl From<$error> for Status {
            fn from(error: $error) -> Status {
                ApiError::from(error).into()
            }
        })*
    };
}

status_through_api_error!(StoreError, crate::auth::AuthError, PageTokenError);

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
            ApiError::InvalidPageToken(error) => bad_field(
                ErrorReason::InvalidPageToken,
                "page_token",
                error.to_string(),
                &[],
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
            ApiError::BatchRequestIdReused { request_id } => bad_field(
                ErrorReason::RequestIdReused,
                "request_id",
                format!(
                    "request_id {request_id} was already used for a batch call with other \
                     parameters (connectors, filter, reason, pull-back time or region); use a \
                     new request id for each distinct call"
                ),
                &[("request_id", request_id)],
            ),
            ApiError::RequestIdOfAnother { request_id } => bad_field(
                ErrorReason::RequestIdReused,
                "request_id",
                format!(
                    "request_id {request_id} was already used by another principal; a request id \
                     repeats only its own caller's call: use a new one"
                ),
                &[("request_id", request_id)],
            ),
            ApiError::RateLimited(RateLimited {
                principal,
                role,
                limit,
                retry_after,
            }) => {
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
