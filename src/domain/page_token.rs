//! Opaque page tokens: the keyset cursor of a page, bound to the filters it
//! was issued for and authenticated with an HMAC, so a token that was
//! altered, truncated or replayed against another search is recognised.
//!
//! Layout before base64url: version (1) | filter fingerprint (16) |
//! name length (2, big endian) | name | id | HMAC-SHA256 tag (16).

use super::model::{Cursor, SearchFilter};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const VERSION: u8 = 1;
const FINGERPRINT_LEN: usize = 16;
const TAG_LEN: usize = 16;

/// Why a page token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PageTokenError {
    #[error(
        "page_token is not a token this service issued (altered or truncated); repeat the search from the first page"
    )]
    Malformed,
    #[error(
        "page_token was issued for a different query, region or states; repeat the search from the first page"
    )]
    FilterMismatch,
    #[error(
        "page_token was issued for another connector's commands; list this connector's from the first page"
    )]
    OtherConnector,
}

/// Signs and checks page tokens with a key shared by every replica (it lives
/// in the database).
#[derive(Clone)]
pub struct PageTokenCodec {
    key: Vec<u8>,
}

impl std::fmt::Debug for PageTokenCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokenCodec { .. }")
    }
}

impl PageTokenCodec {
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    pub fn encode(&self, filter: &SearchFilter, cursor: &Cursor) -> String {
        let name = cursor.name.as_bytes();
        let name_len = u16::try_from(name.len()).expect("names are at most 200 characters");
        let mut bytes = Vec::with_capacity(1 + FINGERPRINT_LEN + 2 + name.len() + cursor.id.len());
        bytes.push(VERSION);
        bytes.extend_from_slice(&fingerprint(filter));
        bytes.extend_from_slice(&name_len.to_be_bytes());
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(cursor.id.as_bytes());
        let tag = self.tag(&bytes);
        bytes.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn decode(&self, token: &str, filter: &SearchFilter) -> Result<Cursor, PageTokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| PageTokenError::Malformed)?;
        if bytes.len() < 1 + FINGERPRINT_LEN + 2 + TAG_LEN {
            return Err(PageTokenError::Malformed);
        }
        let (body, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_truncated_left(tag)
            .map_err(|_| PageTokenError::Malformed)?;
        if body[0] != VERSION {
            return Err(PageTokenError::Malformed);
        }
        if body[1..1 + FINGERPRINT_LEN] != fingerprint(filter) {
            return Err(PageTokenError::FilterMismatch);
        }
        let rest = &body[1 + FINGERPRINT_LEN..];
        let name_len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let rest = &rest[2..];
        if rest.len() < name_len {
            return Err(PageTokenError::Malformed);
        }
        let (name, id) = rest.split_at(name_len);
        Ok(Cursor {
            name: String::from_utf8(name.to_vec()).map_err(|_| PageTokenError::Malformed)?,
            id: String::from_utf8(id.to_vec()).map_err(|_| PageTokenError::Malformed)?,
        })
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts keys of any length")
    }

    fn tag(&self, body: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.mac();
        mac.update(body);
        let full = mac.finalize().into_bytes();
        let mut tag = [0; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }
}

/// A digest of the normalised filters; fields are length-prefixed so that no
/// two different filters share an encoding.
fn fingerprint(filter: &SearchFilter) -> [u8; FINGERPRINT_LEN] {
    let mut hasher = Sha256::new();
    for part in [filter.query.as_bytes(), filter.region.as_bytes()] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    for state in &filter.states {
        hasher.update(state.as_str().as_bytes());
        hasher.update([0]);
    }
    // 0xFF never occurs in a state name; filters without it keep the
    // fingerprint they always had.
    if let Some(alert) = filter.lagging_over {
        hasher.update([0xFF]);
        hasher.update(alert.as_micros().to_be_bytes());
    }
    if filter.awaiting_restart {
        hasher.update([0xFE]);
    }
    if let Some(server) = &filter.server {
        hasher.update([0xFD]);
        hasher.update(server.to_string().as_bytes());
    }
    let mut out = [0; FINGERPRINT_LEN];
    out.copy_from_slice(&hasher.finalize()[..FINGERPRINT_LEN]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ConnectorState;

    fn filter(query: &str) -> SearchFilter {
        SearchFilter {
            lagging_over: None,
            awaiting_restart: false,
            query: query.to_owned(),
            region: "eu-1".to_owned(),
            server: None,
            states: vec![ConnectorState::Running],
        }
    }

    fn cursor() -> Cursor {
        Cursor {
            name: "orders → dw".to_owned(),
            id: "c-42".to_owned(),
        }
    }

    #[test]
    fn a_token_round_trips_for_its_own_filter() {
        let codec = PageTokenCodec::new(b"k".to_vec());
        let token = codec.encode(&filter("ord"), &cursor());
        assert_eq!(codec.decode(&token, &filter("ord")), Ok(cursor()));
    }

    #[test]
    fn a_token_is_refused_for_another_filter_or_key() {
        let codec = PageTokenCodec::new(b"k".to_vec());
        let token = codec.encode(&filter("ord"), &cursor());
        assert_eq!(
            codec.decode(&token, &filter("ore")),
            Err(PageTokenError::FilterMismatch)
        );
        let other = PageTokenCodec::new(b"other".to_vec());
        assert_eq!(
            other.decode(&token, &filter("ord")),
            Err(PageTokenError::Malformed)
        );
    }

    #[test]
    fn every_single_byte_change_is_detected() {
        let codec = PageTokenCodec::new(b"k".to_vec());
        let token = codec.encode(&filter("ord"), &cursor());
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for i in 0..bytes.len() {
            let mut forged = bytes.clone();
            forged[i] ^= 0x01;
            let forged = URL_SAFE_NO_PAD.encode(forged);
            assert!(codec.decode(&forged, &filter("ord")).is_err(), "byte {i}");
        }
        assert!(codec.decode("not base64!", &filter("ord")).is_err());
        assert!(
            codec
                .decode(&token[..token.len() - 3], &filter("ord"))
                .is_err()
        );
    }
}
