//! Authenticating calls against the auth file in force (reloadable
//! without touching calls in progress), and checking long calls again
//! after each reload.

use super::error::AuthError;
use super::failures::{self, Failure};
use super::permission::Permission;
use super::principal::{Credential, Principal};
use super::principals::{BuiltinAgent, Principals, load};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tonic::metadata::MetadataMap;

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

    /// Completes when a reload of the auth file no longer gives
    /// `principal` `permission` (long calls: waits and watches end then).
    pub async fn revoked(&self, principal: &Principal, permission: Permission) -> AuthError {
        let mut reloads = self.reloads();
        loop {
            // Checked once right after subscribing too: a reload between the
            // call's authentication and now is not missed.
            if let Err(error) = self.still_allows(principal, permission) {
                return error;
            }
            if reloads.changed().await.is_err() {
                // The authenticator is gone: nothing will be revoked.
                std::future::pending::<()>().await;
            }
        }
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
