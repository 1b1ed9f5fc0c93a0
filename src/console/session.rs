//! Console sessions: a signed, expiring cookie that names the principal
//! (by its token's digest, checked against the auth file in force at every
//! request) and the CSRF token bound to it.
//!
//! The cookie is signed with a key derived from the page-token key, which
//! every replica reads from the database: a session made on one replica is
//! valid on all of them, and a restart does not log anyone out. Nothing is
//! stored server-side, so logging out clears the cookie and remembers the
//! session as ended on this replica until it would have expired.

use crate::auth::{Authenticator, Credential, Principal};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

/// The session cookie's name. `__Host-` under TLS: the browser then
/// refuses it unless it is Secure, host-only and for every path.
pub const COOKIE: &str = "cc_session";
const COOKIE_TLS: &str = "__Host-cc_session";

/// A signed-in (or, without an auth file, anonymous) browser.
#[derive(Clone, Debug)]
pub struct Session {
    /// Random, per sign-in: what the CSRF token and a logout are bound to.
    pub id: String,
    pub principal: Principal,
    /// Seconds since the epoch when the cookie stops being accepted.
    pub expires: u64,
}

/// Signs and checks session cookies and CSRF tokens.
#[derive(Clone)]
pub struct Sessions {
    key: Arc<[u8]>,
    ttl: Duration,
    secure: bool,
    auth: Authenticator,
    /// Sessions logged out on this replica, until they would have expired.
    ended: Arc<Mutex<HashMap<String, u64>>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("ttl", &self.ttl)
            .field("secure", &self.secure)
            .finish_non_exhaustive()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Sessions {
    /// `page_token_key` is the database's shared secret; the session key is
    /// derived from it so that neither can be computed from the other's
    /// outputs.
    pub fn new(page_token_key: &[u8], ttl: Duration, secure: bool, auth: Authenticator) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(page_token_key).expect("any key length");
        mac.update(b"connector-control console session v1");
        Self {
            key: mac.finalize().into_bytes().to_vec().into(),
            ttl,
            secure,
            auth,
            ended: Arc::default(),
        }
    }

    pub fn auth_enabled(&self) -> bool {
        self.auth.enabled()
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    pub fn cookie_name(&self) -> &'static str {
        if self.secure { COOKIE_TLS } else { COOKIE }
    }

    fn sign(&self, purpose: &str, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(body.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// A new session for `principal` and the `Set-Cookie` value that holds
    /// it.
    pub fn create(&self, principal: Principal) -> (Session, String) {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let expires = now() + self.ttl.as_secs();
        let digest = match &principal.credential {
            Credential::Token(digest) => hex(digest),
            _ => String::new(),
        };
        let body = format!("{id}.{expires}.{digest}");
        let value = format!("{body}.{}", self.sign("cookie", &body));
        let cookie = format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            self.cookie_name(),
            self.ttl.as_secs(),
            if self.secure { "; Secure" } else { "" }
        );
        let session = Session {
            id,
            principal,
            expires,
        };
        (session, cookie)
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn clear_cookie(&self) -> String {
        format!(
            "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
            self.cookie_name(),
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// The session a `Cookie` header carries, if it is genuine, unexpired,
    /// not logged out, and its principal is still in the auth file.
    pub fn from_cookie_header(&self, header: Option<&str>) -> Option<Session> {
        let value = header?.split(';').find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == self.cookie_name()).then_some(value)
        })?;
        let (body, tag) = value.rsplit_once('.')?;
        let expected = self.sign("cookie", body);
        if !bool::from(expected.as_bytes().ct_eq(tag.as_bytes())) {
            return None;
        }
        let mut parts = body.splitn(3, '.');
        let id = parts.next()?.to_owned();
        let expires: u64 = parts.next()?.parse().ok()?;
        let digest = parts.next()?;
        if expires <= now() || self.is_ended(&id) {
            return None;
        }
        let principal = if self.auth.enabled() {
            let credential = Credential::Token(unhex(digest)?);
            self.auth.current(&credential)?
        } else {
            Principal::anonymous()
        };
        Some(Session {
            id,
            principal,
            expires,
        })
    }

    /// The CSRF token of a session: forms carry it in a hidden field and
    /// scripts in the `X-CSRF-Token` header.
    pub fn csrf(&self, session: &Session) -> String {
        self.sign("csrf", &session.id)
    }

    pub fn csrf_matches(&self, session: &Session, token: &str) -> bool {
        bool::from(self.csrf(session).as_bytes().ct_eq(token.as_bytes()))
    }

    /// Logging out: the cookie is cleared, and the session refused here
    /// even if a copy of it is presented again.
    pub fn end(&self, session: &Session) {
        let mut ended = self.ended.lock().unwrap();
        let now = now();
        ended.retain(|_, expires| *expires > now);
        ended.insert(session.id.clone(), session.expires);
    }

    fn is_ended(&self, id: &str) -> bool {
        self.ended.lock().unwrap().contains_key(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> Sessions {
        Sessions::new(
            b"key",
            Duration::from_secs(60),
            false,
            Authenticator::open(),
        )
    }

    #[test]
    fn a_cookie_round_trips_and_a_tampered_one_is_refused() {
        let sessions = sessions();
        let (session, cookie) = sessions.create(Principal::anonymous());
        let value = cookie.split(';').next().unwrap();
        let back = sessions
            .from_cookie_header(Some(&format!("other=1; {value}")))
            .expect("the cookie is accepted");
        assert_eq!(back.id, session.id);
        let tampered = value.replacen(&session.id[..4], "ffff", 1);
        assert!(sessions.from_cookie_header(Some(&tampered)).is_none());
        let foreign = Sessions::new(
            b"other",
            Duration::from_secs(60),
            false,
            Authenticator::open(),
        );
        assert!(foreign.from_cookie_header(Some(value)).is_none());
    }

    #[test]
    fn csrf_tokens_are_bound_to_their_session_and_logout_ends_it() {
        let sessions = sessions();
        let (first, cookie) = sessions.create(Principal::anonymous());
        let (second, _) = sessions.create(Principal::anonymous());
        assert!(sessions.csrf_matches(&first, &sessions.csrf(&first)));
        assert!(!sessions.csrf_matches(&first, &sessions.csrf(&second)));
        assert!(!sessions.csrf_matches(&first, ""));
        sessions.end(&first);
        assert!(sessions.from_cookie_header(Some(&cookie)).is_none());
    }
}
