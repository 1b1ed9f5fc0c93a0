//! Who is calling: the authenticated principal and the peer address a
//! request came from, as the audit trail and the watch caps name them.

use crate::auth;
use crate::domain::Actor;
use tonic::Request;

/// Who is calling (the authenticated principal) and from where.
pub fn actor<T>(request: &Request<T>) -> Actor {
    Actor {
        principal: request
            .extensions()
            .get::<auth::Principal>()
            .map_or_else(|| "unknown".to_owned(), |p| p.name.clone()),
        peer: request
            .remote_addr()
            .map(|addr| addr.to_string())
            .unwrap_or_default(),
    }
}
