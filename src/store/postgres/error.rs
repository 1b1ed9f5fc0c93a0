//! Driver errors, translated once at the store boundary: every SQLSTATE the
//! store acts on is named here.

use crate::store::StoreError;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_postgres::error::SqlState;

/// How many times a statement was refused because its server takes no
/// writes (25006): the pools compare it with what they saw last and, when
/// it moved, drop the connections they hold (`PgStore::connect`'s hook), so
/// the connection that met a standby or a demoted primary is not handed out
/// again. Process-wide because the translation has no pool at hand; a
/// second pool in the process (tests) at worst reconnects once.
static READ_ONLY_REFUSALS: AtomicU64 = AtomicU64::new(0);

/// `READ_ONLY_REFUSALS` now.
pub fn read_only_refusals() -> u64 {
    READ_ONLY_REFUSALS.load(Ordering::Relaxed)
}

/// Connection problems become `Unavailable` (the caller may retry), a lost
/// deadlock or serialization conflict `Contention` (the transaction may be
/// run again); anything else is `Internal`, with the driver's error kept
/// as its cause for the log.
pub fn translate(error: tokio_postgres::Error) -> StoreError {
    if error.is_closed() {
        return StoreError::Unavailable(error.into());
    }
    if error.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) {
        READ_ONLY_REFUSALS.fetch_add(1, Ordering::Relaxed);
    }
    match error.code() {
        // No SQLSTATE: either the socket failed, or a value did not convert.
        None if is_io(&error) => StoreError::Unavailable(error.into()),
        None => StoreError::Internal(error.into()),
        Some(code) if is_unavailable(code) => StoreError::Unavailable(error.into()),
        Some(code) if is_contention(code) => StoreError::Contention(error.into()),
        Some(_) => StoreError::Internal(error.into()),
    }
}

/// A unique constraint refused the row (23505): it exists already. Asked
/// of a translated error, whose cause is the driver's.
pub fn is_unique_violation(error: &StoreError) -> bool {
    matches!(error, StoreError::Internal(cause)
        if cause
            .downcast_ref::<tokio_postgres::Error>()
            .is_some_and(|e| e.code() == Some(&SqlState::UNIQUE_VIOLATION)))
}

fn is_unavailable(code: &SqlState) -> bool {
    // Class 08: connection exceptions; 57P0x: the server is shutting down or
    // starting; 53300: too many connections; 25006: the server takes no
    // writes (a standby, or a primary demoted under this connection: the
    // pool replaces its connections).
    code.code().starts_with("08")
        || [
            SqlState::READ_ONLY_SQL_TRANSACTION,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
        ]
        .contains(code)
}

/// 40P01 deadlock detected, 40001 serialization failure.
fn is_contention(code: &SqlState) -> bool {
    [
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::T_R_SERIALIZATION_FAILURE,
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
