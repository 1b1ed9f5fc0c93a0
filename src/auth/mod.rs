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

mod failures;

pub use failures::Failure;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;

/// What a call needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// GetConnector, ListConnectors, ListCommands, ListRegions.
    ConnectorsRead,
    /// ListAgents, ListReplicas.
    AgentsRead,
    /// StartConnector, PauseConnector and their batch calls.
    ConnectorsOperate,
    /// CreateConnector.
    ConnectorsCreate,
    /// AgentService/Connect.
    AgentsConnect,
    /// AuditService/ListAuditEvents.
    AuditRead,
}

impl Permission {
    pub fn name(self) -> &'static str {
        match self {
            Permission::ConnectorsRead => "connectors.read",
            Permission::AgentsRead => "agents.read",
            Permission::ConnectorsOperate => "connectors.operate",
            Permission::ConnectorsCreate => "connectors.create",
            Permission::AgentsConnect => "agents.connect",
            Permission::AuditRead => "audit.read",
        }
    }

    /// The roles that grant it, for error messages.
    pub fn granted_by(self) -> &'static str {
        match self {
            Permission::ConnectorsRead | Permission::AgentsRead | Permission::AuditRead => {
                "viewer, operator or admin"
            }
            Permission::ConnectorsOperate => "operator or admin",
            Permission::ConnectorsCreate => "admin",
            Permission::AgentsConnect => "agent",
        }
    }
}

/// A principal's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
    Agent,
}

impl Role {
    pub fn grants(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Viewer => matches!(permission, ConnectorsRead | AgentsRead | AuditRead),
            Role::Operator => matches!(
                permission,
                ConnectorsRead | AgentsRead | AuditRead | ConnectorsOperate
            ),
            Role::Admin => matches!(
                permission,
                ConnectorsRead | AgentsRead | AuditRead | ConnectorsOperate | ConnectorsCreate
            ),
            Role::Agent => permission == AgentsConnect,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Agent => "agent",
        }
    }
}

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

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFileToml {
    #[serde(default)]
    principal: Vec<PrincipalToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalToml {
    name: String,
    role: Role,
    token_sha256: Option<String>,
    /// With mutual TLS: a client certificate whose subject common name or
    /// DNS alternative name is this stands for the principal.
    tls_client_name: Option<String>,
    region: Option<String>,
    agent_id: Option<String>,
}

/// One principal and what proves it is the caller.
#[derive(Debug)]
struct Entry {
    principal: Principal,
    token_sha256: Option<[u8; 32]>,
    tls_client_name: Option<String>,
}

/// The principals of one version of the auth file.
#[derive(Debug, Default)]
pub struct Principals {
    entries: Vec<Entry>,
}

impl Principals {
    /// Parses and checks an auth file's text; errors say which principal
    /// and field is wrong.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: AuthFileToml = toml::from_str(text)?;
        let mut entries: Vec<Entry> = Vec::new();
        for (index, p) in file.principal.into_iter().enumerate() {
            let at = format!("principal {} ({:?})", index + 1, p.name);
            anyhow::ensure!(!p.name.trim().is_empty(), "{at}: name is empty");
            anyhow::ensure!(
                entries.iter().all(|e| e.principal.name != p.name),
                "{at}: the name is used twice"
            );
            anyhow::ensure!(
                p.token_sha256.is_some() || p.tls_client_name.is_some(),
                "{at}: give token_sha256, tls_client_name or both"
            );
            let digest = match &p.token_sha256 {
                None => None,
                Some(hex) => Some(parse_sha256(hex).ok_or_else(|| {
                    anyhow::anyhow!(
                        "{at}: token_sha256 must be 64 hexadecimal digits (the SHA-256 of the \
                         token, e.g. `printf %s TOKEN | sha256sum`)"
                    )
                })?),
            };
            anyhow::ensure!(
                digest.is_none() || entries.iter().all(|e| e.token_sha256 != digest),
                "{at}: the same token as another principal"
            );
            anyhow::ensure!(
                p.tls_client_name.is_none()
                    || entries
                        .iter()
                        .all(|e| e.tls_client_name != p.tls_client_name),
                "{at}: the same tls_client_name as another principal"
            );
            match p.role {
                Role::Agent => anyhow::ensure!(
                    p.region.as_deref().is_some_and(|r| !r.is_empty()),
                    "{at}: an agent needs a region"
                ),
                _ => anyhow::ensure!(
                    p.region.is_none() && p.agent_id.is_none(),
                    "{at}: region and agent_id are for role agent only"
                ),
            }
            entries.push(Entry {
                principal: Principal {
                    name: p.name,
                    role: p.role,
                    region: p.region,
                    agent_id: p.agent_id,
                    unrestricted: false,
                    // Set to what the caller presented, when authenticated.
                    credential: Credential::None,
                },
                token_sha256: digest,
                tls_client_name: p.tls_client_name,
            });
        }
        Ok(Self { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal whose token is `token`.
    fn find(&self, token: &str) -> Option<Principal> {
        self.find_digest(&Sha256::digest(token.as_bytes()).into())
    }

    /// The principal whose token has this digest. Every entry is compared,
    /// in constant time, so timing tells nothing about which digest is
    /// close.
    fn find_digest(&self, digest: &[u8; 32]) -> Option<Principal> {
        let mut found = None;
        for entry in &self.entries {
            if let Some(expected) = &entry.token_sha256
                && bool::from(expected.ct_eq(digest))
            {
                found = Some(&entry.principal);
            }
        }
        found.map(|principal| Principal {
            credential: Credential::Token(*digest),
            ..principal.clone()
        })
    }

    /// The principal a client certificate with these names stands for.
    fn find_certificate(&self, names: &[String]) -> Option<Principal> {
        self.entries
            .iter()
            .find(|e| {
                e.tls_client_name
                    .as_ref()
                    .is_some_and(|wanted| names.contains(wanted))
            })
            .map(|e| Principal {
                credential: Credential::Certificate(names.to_vec()),
                ..e.principal.clone()
            })
    }

    /// The principal the same credential stands for in this version.
    fn find_credential(&self, credential: &Credential) -> Option<Principal> {
        match credential {
            Credential::None => None,
            Credential::Token(digest) => self.find_digest(digest),
            Credential::Certificate(names) => self.find_certificate(names),
        }
    }
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The lowercase hex SHA-256 of `token`: what the auth file holds.
pub fn token_sha256(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Authenticates calls: against the auth file's principals, or, without
/// one, lets everyone in as `anonymous`. Reloadable (SIGHUP) without
/// touching calls and streams in progress.
#[derive(Clone, Debug)]
pub struct Authenticator {
    file: Option<PathBuf>,
    principals: Arc<RwLock<Arc<Principals>>>,
    /// Bumped at every reload that took effect.
    reloaded: Arc<tokio::sync::watch::Sender<u64>>,
    /// Calls refused UNAUTHENTICATED: counted and logged, bounded.
    failures: Arc<failures::Failures>,
    /// Agent principals the process adds itself (the demo's agents, each
    /// with a token made at start-up and known to nobody else), kept
    /// across reloads of the file.
    builtin: Arc<Vec<BuiltinAgent>>,
}

/// An agent principal the process adds itself: its name, region and the
/// digest of its token.
#[derive(Clone, Debug)]
struct BuiltinAgent {
    name: String,
    region: String,
    token_sha256: [u8; 32],
}

impl Principals {
    /// These principals and the process's own agents after them.
    fn with_builtin(mut self, builtin: &[BuiltinAgent]) -> Self {
        for agent in builtin {
            self.entries.push(Entry {
                principal: Principal {
                    name: agent.name.clone(),
                    role: Role::Agent,
                    region: Some(agent.region.clone()),
                    agent_id: None,
                    unrestricted: false,
                    credential: Credential::None,
                },
                token_sha256: Some(agent.token_sha256),
                tls_client_name: None,
            });
        }
        self
    }
}

impl Authenticator {
    /// Everyone may do everything (no auth file).
    pub fn open() -> Self {
        Self {
            file: None,
            principals: Arc::default(),
            reloaded: Arc::new(tokio::sync::watch::channel(0).0),
            failures: Arc::default(),
            builtin: Arc::default(),
        }
    }

    /// Adds an agent principal of the process's own for each of
    /// `regions` (named `process:agent-<region>`, with a token made now and
    /// known to nobody else), kept across reloads; returns each region's
    /// token. Without an auth file everyone is let in and there is none.
    /// Call it before cloning: clones made earlier do not know them.
    pub fn with_process_agents(
        &mut self,
        regions: &[&str],
    ) -> anyhow::Result<Vec<(String, String)>> {
        let Some(path) = self.file.clone() else {
            return Ok(Vec::new());
        };
        let mut builtin = (*self.builtin).clone();
        let mut tokens = Vec::new();
        for region in regions {
            let token = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            builtin.push(BuiltinAgent {
                name: format!("process:agent-{region}"),
                region: (*region).to_owned(),
                token_sha256: Sha256::digest(token.as_bytes()).into(),
            });
            tokens.push(((*region).to_owned(), token));
        }
        self.builtin = Arc::new(builtin);
        *self.principals.write().unwrap() = Arc::new(load(&path)?.with_builtin(&self.builtin));
        Ok(tokens)
    }

    /// Loads `path`; fails if it cannot be read or is invalid.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let principals = load(path)?;
        Ok(Self {
            file: Some(path.to_owned()),
            principals: Arc::new(RwLock::new(Arc::new(principals))),
            reloaded: Arc::new(tokio::sync::watch::channel(0).0),
            failures: Arc::default(),
            builtin: Arc::default(),
        })
    }

    /// Changes after every reload that took effect: streams and waits
    /// check their principal again then (`still_allows`).
    pub fn reloads(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reloaded.subscribe()
    }

    /// `principal`, as the auth file in force now knows it, if it still
    /// may do `permission`: a stream or a `wait` that began before a
    /// reload ends when this fails (`AuthError::Revoked`).
    pub fn still_allows(
        &self,
        principal: &Principal,
        permission: Permission,
    ) -> Result<Principal, AuthError> {
        if !self.enabled() || principal.credential == Credential::None {
            return Ok(principal.clone());
        }
        let principals = self.principals.read().unwrap().clone();
        let Some(current) = principals.find_credential(&principal.credential) else {
            return Err(AuthError::Revoked {
                principal: principal.name.clone(),
                reason: format!(
                    "the credentials of principal {} were removed from the auth file",
                    principal.name
                ),
                removed: true,
            });
        };
        if !current.allows(permission) {
            return Err(AuthError::Revoked {
                principal: current.name.clone(),
                reason: format!(
                    "principal {} (now role {}) no longer has permission {permission} in the \
                     reloaded auth file",
                    current.name,
                    current.role.as_str()
                ),
                removed: false,
            });
        }
        Ok(current)
    }

    pub fn enabled(&self) -> bool {
        self.file.is_some()
    }

    /// The principal that `credential` proves under the auth file in force
    /// now, if any (the console checks its sessions with it at every
    /// request, so that a reload revokes them).
    pub fn current(&self, credential: &Credential) -> Option<Principal> {
        self.principals
            .read()
            .unwrap()
            .clone()
            .find_credential(credential)
    }

    /// Reads the auth file again. On error the principals in force stay.
    /// Returns how many principals are now in force.
    pub fn reload(&self) -> anyhow::Result<usize> {
        let Some(path) = &self.file else {
            return Ok(0);
        };
        let principals = load(path)?;
        let count = principals.len();
        *self.principals.write().unwrap() = Arc::new(principals.with_builtin(&self.builtin));
        self.reloaded.send_modify(|n| *n = n.wrapping_add(1));
        Ok(count)
    }

    /// The caller named by the `authorization: Bearer <token>` metadata,
    /// else by its TLS client certificate (`certificate_names`).
    pub fn authenticate(
        &self,
        metadata: &MetadataMap,
        certificate_names: &[String],
    ) -> Result<Principal, AuthError> {
        if !self.enabled() {
            return Ok(Principal::anonymous());
        }
        let Some(header) = metadata.get("authorization") else {
            if certificate_names.is_empty() {
                return Err(AuthError::Unauthenticated(
                    Failure::NoCredentials,
                    "no credentials: send `authorization: Bearer <token>` (grpcurl -H, or \
                     --token / CONNECTOR_CONTROL_TOKEN for the CLI)"
                        .to_owned(),
                ));
            }
            let principals = self.principals.read().unwrap().clone();
            return principals
                .find_certificate(certificate_names)
                .ok_or_else(|| {
                    AuthError::Unauthenticated(
                        Failure::UnknownCertificate,
                        format!(
                            "the client certificate ({}) is no principal's tls_client_name, and no \
                         bearer token was sent",
                            certificate_names.join(", ")
                        ),
                    )
                });
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|value| {
                let (scheme, token) = value.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                AuthError::Unauthenticated(
                    Failure::Malformed,
                    "malformed authorization metadata: expected `Bearer <token>`".to_owned(),
                )
            })?;
        let principals = self.principals.read().unwrap().clone();
        principals.find(token).ok_or_else(|| {
            AuthError::Unauthenticated(
                Failure::UnknownToken,
                "unknown token: it matches no principal".to_owned(),
            )
        })
    }

    /// `authenticate` for a call from `peer` presenting a client
    /// certificate with `certificate_names`; a refusal is counted and
    /// logged (bounded, see `failures`).
    pub fn authenticate_call(
        &self,
        metadata: &MetadataMap,
        certificate_names: &[String],
        peer: Option<std::net::IpAddr>,
    ) -> Result<Principal, AuthError> {
        self.authenticate(metadata, certificate_names)
            .inspect_err(|error| {
                if let AuthError::Unauthenticated(failure, _) = error {
                    self.failures.record(peer, *failure);
                }
            })
    }
}

/// The client side: adds `authorization: Bearer <token>` to every call
/// (the CLI and the reference agent).
#[derive(Clone, Default)]
pub struct Bearer(Option<tonic::metadata::AsciiMetadataValue>);

/// Never prints the token.
impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Bearer(<redacted>)"
        } else {
            "Bearer(None)"
        })
    }
}

impl Bearer {
    /// From `--token`, else the first line of `--token-file`, else none.
    pub fn from_args(token: Option<&str>, file: Option<&Path>) -> anyhow::Result<Self> {
        let token = match (token, file) {
            (Some(token), _) => Some(token.trim().to_owned()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        anyhow::anyhow!("cannot read the token file {}: {e}", path.display())
                    })?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        match token.filter(|token| !token.is_empty()) {
            None => Ok(Bearer(None)),
            Some(token) => format!("Bearer {token}")
                .parse::<tonic::metadata::AsciiMetadataValue>()
                .map(|mut value| {
                    value.set_sensitive(true);
                    Bearer(Some(value))
                })
                .map_err(|_| anyhow::anyhow!("the token must be printable ASCII")),
        }
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

fn load(path: &Path) -> anyhow::Result<Principals> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the auth file {}: {e}", path.display()))?;
    Principals::parse(&text)
        .map_err(|e| anyhow::anyhow!("invalid auth file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(entries: &[(&str, &str, &str)]) -> String {
        entries
            .iter()
            .map(|(name, role, token)| {
                let region = if *role == "agent" {
                    "region = \"eu-1\"\n"
                } else {
                    ""
                };
                format!(
                    "[[principal]]\nname = \"{name}\"\nrole = \"{role}\"\n{region}token_sha256 = \"{}\"\n",
                    token_sha256(token)
                )
            })
            .collect()
    }

    #[test]
    fn roles_grant_what_the_contract_says() {
        use Permission::*;
        let all = [
            ConnectorsRead,
            AgentsRead,
            AuditRead,
            ConnectorsOperate,
            ConnectorsCreate,
            AgentsConnect,
        ];
        let granted = |role: Role| -> Vec<Permission> {
            all.into_iter().filter(|p| role.grants(*p)).collect()
        };
        assert_eq!(
            granted(Role::Viewer),
            [ConnectorsRead, AgentsRead, AuditRead]
        );
        assert_eq!(
            granted(Role::Operator),
            [ConnectorsRead, AgentsRead, AuditRead, ConnectorsOperate]
        );
        assert_eq!(
            granted(Role::Admin),
            [
                ConnectorsRead,
                AgentsRead,
                AuditRead,
                ConnectorsOperate,
                ConnectorsCreate
            ]
        );
        assert_eq!(granted(Role::Agent), [AgentsConnect]);
    }

    #[test]
    fn tokens_find_their_principal_and_nothing_else() {
        let principals =
            Principals::parse(&file(&[("a", "viewer", "tok-a"), ("b", "agent", "tok-b")])).unwrap();
        assert_eq!(principals.find("tok-a").unwrap().name, "a");
        assert_eq!(principals.find("tok-b").unwrap().role, Role::Agent);
        assert!(principals.find("tok-c").is_none());
        assert!(principals.find("").is_none());
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let error = |text: &str| Principals::parse(text).unwrap_err().to_string();
        assert!(
            error("[[principal]]\nname = \"x\"\nrole = \"root\"\ntoken_sha256 = \"00\"")
                .contains("role")
        );
        assert!(
            error("[[principal]]\nname = \"x\"\nrole = \"viewer\"\ntoken_sha256 = \"00\"")
                .contains("64 hexadecimal")
        );
        assert!(error(&file(&[("x", "viewer", "t"), ("x", "admin", "u")])).contains("twice"));
        assert!(error(&file(&[("x", "viewer", "t"), ("y", "admin", "t")])).contains("same token"));
        let agent_without_region = format!(
            "[[principal]]\nname = \"a\"\nrole = \"agent\"\ntoken_sha256 = \"{}\"",
            token_sha256("t")
        );
        assert!(error(&agent_without_region).contains("needs a region"));
    }

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
