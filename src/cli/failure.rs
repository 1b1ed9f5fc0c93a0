//! How a failed call of the people's CLI ends: `error: REASON: message` on
//! standard error and an exit code that says what kind of failure it was.

use super::render::printable;
use tonic_types::StatusExt;

/// Exit codes of a failed call (clap itself exits with 2 on bad usage).
pub mod exit {
    pub const FAILED: u8 = 1;
    pub const INVALID_ARGUMENT: u8 = 2;
    pub const NOT_FOUND: u8 = 3;
    pub const FAILED_PRECONDITION: u8 = 4;
    pub const NOT_CONFIRMED: u8 = 5;
    pub const UNAVAILABLE: u8 = 6;
    /// UNAUTHENTICATED or PERMISSION_DENIED.
    pub const NOT_ALLOWED: u8 = 7;
}

/// A call that failed, ready to print: `error: REASON: message`.
#[derive(Debug)]
pub struct Failure {
    pub exit_code: u8,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        let exit_code = match status.code() {
            tonic::Code::InvalidArgument => exit::INVALID_ARGUMENT,
            tonic::Code::NotFound => exit::NOT_FOUND,
            tonic::Code::FailedPrecondition => exit::FAILED_PRECONDITION,
            tonic::Code::DeadlineExceeded => exit::NOT_CONFIRMED,
            tonic::Code::Unavailable => exit::UNAVAILABLE,
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => exit::NOT_ALLOWED,
            _ => exit::FAILED,
        };
        let reason = status
            .get_details_error_info()
            .map_or_else(|| format!("{:?}", status.code()), |info| info.reason);
        let mut message = format!("error: {reason}: {}", printable(status.message()));
        if let Some(info) = status.get_details_error_info()
            && info.reason == "CHECKPOINT_OUT_OF_RANGE"
        {
            let id = info
                .metadata
                .get("connector_id")
                .cloned()
                .unwrap_or_default();
            // A minute past the store's earliest time: a store that keeps
            // a sliding window has moved on by the time this is run.
            let earliest = info
                .metadata
                .get("earliest_time")
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| {
                    (t.with_timezone(&chrono::Utc) + chrono::TimeDelta::seconds(60))
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                })
                .unwrap_or_default();
            message.push_str(&format!(
                "\n  replay from just after the earliest data the store holds: connector-control connectors \
                 start {id} --pull-back {earliest}\n  or skip the lost changes on purpose \
                 (audited): connector-control connectors start {id} --skip-to-earliest"
            ));
        }
        if let Some(bad) = status.get_details_bad_request() {
            for violation in bad.field_violations {
                message.push_str(&format!(
                    "\n  {}: {}",
                    violation.field, violation.description
                ));
            }
        }
        Failure { exit_code, message }
    }
}

pub(super) fn usage(message: String) -> anyhow::Error {
    Failure {
        exit_code: exit::INVALID_ARGUMENT,
        message: format!("error: {message}"),
    }
    .into()
}
