//! Who is calling (`Principal`), what proved it (`Credential`), and the
//! check of a request's principal against a permission (`require`).

use super::error::AuthError;
use super::failures::Failure;
use super::permission::{Permission, Role};
use std::fmt;

/// Who is calling. Put into each request's extensions by the interceptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// For agents: the only region their sessions may claim.
    pub region: Option<String>,
    /// For agents: the only agent id their sessions may claim, if set.
    pub agent_id: Option<String>,
    /// Without an auth file every caller may do everything.
    pub unrestricted: bool,
    /// What proved it, so that a stream or a wait can be checked again
    /// against a reloaded auth file.
    pub credential: Credential,
}

/// What authenticated a principal.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// No auth file: nothing to check.
    None,
    /// A bearer token, by its SHA-256 digest.
    Token([u8; 32]),
    /// A client certificate, by the names it carries.
    Certificate(Vec<String>),
}

/// Never prints a token's digest.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::None => f.write_str("None"),
            Credential::Token(_) => f.write_str("Token(<redacted>)"),
            Credential::Certificate(names) => f.debug_tuple("Certificate").field(names).finish(),
        }
    }
}

impl Principal {
    /// The caller when the server runs without an auth file.
    pub fn anonymous() -> Self {
        Principal {
            name: "anonymous".to_owned(),
            role: Role::Admin,
            region: None,
            agent_id: None,
            unrestricted: true,
            credential: Credential::None,
        }
    }

    pub fn allows(&self, permission: Permission) -> bool {
        self.unrestricted || self.role.grants(permission)
    }

    /// Why an agent session claiming `agent_id` in `region` is refused,
    /// if it is.
    pub fn agent_claim_refused(&self, agent_id: &str, region: &str) -> Option<String> {
        if self.unrestricted {
            return None;
        }
        if self.region.as_deref() != Some(region) {
            return Some(format!(
                "principal {} may connect agents of region {} only, not {region}",
                self.name,
                self.region.as_deref().unwrap_or("(none)")
            ));
        }
        match &self.agent_id {
            Some(allowed) if allowed != agent_id => Some(format!(
                "principal {} may connect as agent {allowed} only, not {agent_id}",
                self.name
            )),
            _ => None,
        }
    }
}

/// The request's principal checked against `permission`.
pub fn require<T>(
    request: &tonic::Request<T>,
    permission: Permission,
) -> Result<Principal, AuthError> {
    let principal = request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| {
            AuthError::Unauthenticated(
                Failure::NoCredentials,
                "no credentials were checked".to_owned(),
            )
        })?;
    if principal.allows(permission) {
        Ok(principal)
    } else {
        Err(AuthError::PermissionDenied {
            principal: principal.name.clone(),
            role: principal.role.as_str(),
            permission,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_are_held_to_their_region_and_id() {
        let agent = Principal {
            name: "ag".into(),
            role: Role::Agent,
            region: Some("eu-1".into()),
            agent_id: Some("eu-1a".into()),
            unrestricted: false,
            credential: Credential::None,
        };
        assert!(agent.agent_claim_refused("eu-1a", "eu-1").is_none());
        assert!(agent.agent_claim_refused("eu-1a", "eu-2").is_some());
        assert!(agent.agent_claim_refused("eu-1b", "eu-1").is_some());
        assert!(
            Principal::anonymous()
                .agent_claim_refused("x", "y")
                .is_none()
        );
    }
}
