//! Why a call was not authenticated or not allowed (`AuthError`); how it
//! becomes a gRPC status is the API's.

use super::failures::Failure;
use super::permission::Permission;

/// Why a call was not authenticated or not allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("{1}")]
    Unauthenticated(Failure, String),
    #[error("principal {principal} (role {role}) lacks permission {permission}")]
    PermissionDenied {
        principal: String,
        role: &'static str,
        permission: Permission,
    },
    /// An agent's hello claims a region or agent id its token does not
    /// allow.
    #[error("{reason}")]
    AgentClaimRefused { principal: String, reason: String },
    /// A stream or a `wait` of a principal that a reloaded auth file no
    /// longer has (`removed`), or no longer allows what it is doing.
    #[error("{reason}")]
    Revoked {
        principal: String,
        reason: String,
        removed: bool,
    },
}
