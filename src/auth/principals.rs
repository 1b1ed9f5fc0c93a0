//! The auth file: its principals parsed and checked, found by token digest
//! or client certificate, and the process's own agents added to them.

use super::permission::Role;
use super::principal::{Credential, Principal};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::Path;
use subtle::ConstantTimeEq;

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
    pub(super) fn find(&self, token: &str) -> Option<Principal> {
        self.find_digest(&Sha256::digest(token.as_bytes()).into())
    }

    /// The principal whose token has this digest. Every entry is compared,
    /// in constant time, so timing tells nothing about which digest is
    /// close.
    pub(super) fn find_digest(&self, digest: &[u8; 32]) -> Option<Principal> {
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
    pub(super) fn find_certificate(&self, names: &[String]) -> Option<Principal> {
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
    pub(super) fn find_credential(&self, credential: &Credential) -> Option<Principal> {
        match credential {
            Credential::None => None,
            Credential::Token(digest) => self.find_digest(digest),
            Credential::Certificate(names) => self.find_certificate(names),
        }
    }
}

/// An agent principal the process adds itself: its name, region and the
/// digest of its token.
#[derive(Clone, Debug)]
pub(super) struct BuiltinAgent {
    pub(super) name: String,
    pub(super) region: String,
    pub(super) token_sha256: [u8; 32],
}

impl Principals {
    /// These principals and the process's own agents after them.
    pub(super) fn with_builtin(mut self, builtin: &[BuiltinAgent]) -> Self {
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

pub(super) fn load(path: &Path) -> anyhow::Result<Principals> {
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
}
