//! What went wrong, as the console shows it to a person: the API's refusal
//! (or the console's own) with its code, reason, message and each field it
//! found wrong, in the console's words; the box a page shows it in; and the
//! HTTP status the page is served with.

use crate::proto::v1::ErrorReason;
use axum::http::StatusCode;
use maud::{Markup, html};
use tonic::Code;
use tonic_types::StatusExt;

/// A failure as a person reads it: the API's reason and message, and each
/// field it found wrong. (Not the CLI's `Failure`, which is ready to print.)
#[derive(Clone, Debug)]
pub struct ShownFailure {
    pub code: Code,
    /// The `ErrorInfo` reason; "" when the failure has none.
    pub reason: String,
    pub message: String,
    /// (field label, what is wrong with it)
    pub fields: Vec<(String, String)>,
}

impl From<&tonic::Status> for ShownFailure {
    fn from(status: &tonic::Status) -> Self {
        let details = status.get_error_details();
        let reason = details
            .error_info()
            .map(|info| info.reason.clone())
            .unwrap_or_default();
        let fields = details
            .bad_request()
            .map(|bad| {
                bad.field_violations
                    .iter()
                    .map(|v| {
                        (
                            super::words::field_label(&v.field),
                            super::words::console_words(&v.description),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let message = if status.code() == Code::Unavailable && reason.is_empty() {
            format!(
                "{} (the service is unavailable; it retries by itself)",
                status.message()
            )
        } else {
            status.message().to_owned()
        };
        ShownFailure {
            code: status.code(),
            reason,
            message: super::words::console_words(&message),
            fields,
        }
    }
}

impl From<tonic::Status> for ShownFailure {
    fn from(status: tonic::Status) -> Self {
        Self::from(&status)
    }
}

impl ShownFailure {
    /// A refusal of the console's own (no call was made).
    pub fn local(code: Code, reason: ErrorReason, message: &str) -> Self {
        ShownFailure {
            code,
            reason: reason.reason().to_owned(),
            message: message.to_owned(),
            fields: Vec::new(),
        }
    }

    /// A form field the console could not read.
    pub fn field(field: &str, message: &str) -> Self {
        ShownFailure {
            fields: vec![(field.to_owned(), message.to_owned())],
            ..Self::local(Code::InvalidArgument, ErrorReason::InvalidArgument, message)
        }
    }

    /// Whether the failure's reason is `reason`.
    pub fn is(&self, reason: ErrorReason) -> bool {
        self.reason == reason.reason()
    }

    /// The gRPC code's name (`PERMISSION_DENIED`).
    pub fn code_name(&self) -> &'static str {
        crate::telemetry::rpc::code_name(self.code)
    }

    /// What the failure is called: its reason, else its code.
    pub fn headline(&self) -> &str {
        if self.reason.is_empty() {
            self.code_name()
        } else {
            &self.reason
        }
    }

    pub fn one_line(&self) -> String {
        format!("{}: {}", self.headline(), self.message)
    }

    pub fn unavailable(&self) -> bool {
        self.code == Code::Unavailable
    }

    /// The HTTP status a page showing this failure is served with.
    pub fn http_status(&self) -> StatusCode {
        match self.code {
            Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::AlreadyExists => StatusCode::UNPROCESSABLE_ENTITY,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The box a page or dialog shows a failure in.
pub fn failure_box(failure: &ShownFailure) -> Markup {
    html! {
        div.failure role="alert" data-reason=(failure.reason) {
            p {
                strong.reason { (failure.headline()) }
                @if !failure.reason.is_empty() && failure.reason != failure.code_name() {
                    " " span.muted { "(" (failure.code_name()) ")" }
                }
            }
            p.message { (failure.message) }
            @if !failure.fields.is_empty() {
                ul {
                    @for (field, description) in &failure.fields {
                        li { code { (field) } ": " (description) }
                    }
                }
            }
        }
    }
}
