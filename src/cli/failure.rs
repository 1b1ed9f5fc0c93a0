//! How a failed call of the people's CLI ends: `error: REASON: message` on
//! standard error and an exit code that says what kind of failure it was.

use super::render::printable;
use tonic_types::StatusExt;

/// What kind of failure ended a call: its exit code (clap itself exits
/// with 2 on bad usage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Failed = 1,
    InvalidArgument = 2,
    NotFound = 3,
    FailedPrecondition = 4,
    /// `--wait` ended before the agent confirmed.
    NotConfirmed = 5,
    Unavailable = 6,
    /// UNAUTHENTICATED or PERMISSION_DENIED.
    NotAllowed = 7,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        Self::from(exit as u8)
    }
}

/// A call that failed, ready to print: `error: REASON: message`.
#[derive(Debug)]
pub struct Failure {
    pub exit_code: Exit,
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
            tonic::Code::InvalidArgument => Exit::InvalidArgument,
            tonic::Code::NotFound => Exit::NotFound,
            tonic::Code::FailedPrecondition => Exit::FailedPrecondition,
            tonic::Code::DeadlineExceeded => Exit::NotConfirmed,
            tonic::Code::Unavailable => Exit::Unavailable,
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => Exit::NotAllowed,
            _ => Exit::Failed,
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
        exit_code: Exit::InvalidArgument,
        message: format!("error: {message}"),
    }
    .into()
}
