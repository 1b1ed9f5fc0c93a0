//! Who may do what: principals from the auth file, their roles and
//! permissions, and bearer-token authentication.
//!
//! The auth file (`serve --auth-file`, TOML) names principals with a role and
//! the SHA-256 of their bearer token, never the token itself:
//!
//! ```toml
//! [[principal]]
//! name = "oncall"
//! role = "operator"
//! token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//!
//! [[principal]]
//! name = "agent-eu-1"
//! role = "agent"
//! region = "eu-1"
//! agent_id = "eu-1a"          # optional: only this agent id
//! token_sha256 = "..."
//! ```
//!
//! Every API call is authenticated by an interceptor (`api::interceptor`:
//! UNAUTHENTICATED without a known token) and checked by its handler
//! against one permission (PERMISSION_DENIED names it). Reflection and
//! health are not intercepted. This module decides who may do what and
//! returns `AuthError`; how that becomes a gRPC status is the API's.
//!
//! - `permission`: what a call needs and what each role grants.
//! - `principal`: who is calling and what proved it; `require`.
//! - `principals`: the auth file, parsed and searched.
//! - `authenticator`: calls authenticated against the file in force,
//!   reloads, and long calls checked again after them.
//! - `failures`: the bounded trace of unauthenticated calls.
//! - `error`: `AuthError`. `bearer`: the client side's token.

mod authenticator;
mod bearer;
mod error;
mod failures;
mod permission;
mod principal;
mod principals;

pub use authenticator::Authenticator;
pub use bearer::Bearer;
pub use error::AuthError;
pub use failures::Failure;
pub use permission::{Permission, Role};
pub use principal::{Credential, Principal, require};
pub use principals::{Principals, token_sha256};
