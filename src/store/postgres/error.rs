//! Driver errors, translated once at the store boundary.

use crate::store::StoreError;
use tokio_postgres::error::SqlState;

/// Connection problems become `Unavailable` (the caller may retry); anything
/// else is `Internal`, with the driver's words kept for the log.
pub fn translate(error: tokio_postgres::Error) -> StoreError {
    if error.is_closed() {
        return StoreError::Unavailable(error.to_string());
    }
    match error.code() {
        // No SQLSTATE: either the socket failed, or a value did not convert.
        None if is_io(&error) => StoreError::Unavailable(error.to_string()),
        None => StoreError::Internal(error.to_string()),
        Some(code) if is_unavailable(code) => StoreError::Unavailable(error.to_string()),
        Some(code) => StoreError::Internal(format!("{error} (SQLSTATE {})", code.code())),
    }
}

fn is_unavailable(code: &SqlState) -> bool {
    // Class 08: connection exceptions; 57P0x: the server is shutting down or
    // starting; 53300: too many connections.
    code.code().starts_with("08")
        || [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
        ]
        .contains(code)
}

fn is_io(error: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}
