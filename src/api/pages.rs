//! The pages of every list RPC: one default and one maximum page size, one
//! rule for a `page_size` (AIP-158), and the page tokens of the lists whose
//! position is plain text (ListCommands, ListAuditEvents).

use crate::domain::PageTokenError;
use crate::domain::validate::Violations;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Entries per page when a request's `page_size` is 0.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// The most entries a page holds.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The page size a list uses for the request's `page_size`: 0 means
/// `DEFAULT_PAGE_SIZE`, a negative size is a violation of `page_size`, and
/// one over `MAX_PAGE_SIZE` is lowered to it (AIP-158: the caller asked for
/// "as many as you give").
pub fn page_size(violations: &mut Violations, requested: i32) -> usize {
    match requested {
        0 => DEFAULT_PAGE_SIZE,
        n if n < 0 => {
            violations.add(
                "page_size",
                format!(
                    "is {n}; must not be negative (0 means {DEFAULT_PAGE_SIZE}; a page holds at \
                     most {MAX_PAGE_SIZE})"
                ),
            );
            DEFAULT_PAGE_SIZE
        }
        n => (n as usize).min(MAX_PAGE_SIZE),
    }
}

/// A page token of a list whose position is plain text: `prefix` names the
/// list, so that a token of another list is refused.
pub fn encode_token(prefix: &str, position: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{prefix}{position}"))
}

/// The position in a token `encode_token` made with `prefix`.
pub fn decode_token(prefix: &str, token: &str) -> Result<String, PageTokenError> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| Some(text.strip_prefix(prefix)?.to_owned()))
        .ok_or(PageTokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_default_lower_and_refuse_by_one_rule() {
        let size = |requested| {
            let mut violations = Violations::default();
            let size = page_size(&mut violations, requested);
            (size, violations.finish().is_err())
        };
        assert_eq!(size(0), (DEFAULT_PAGE_SIZE, false));
        assert_eq!(size(7), (7, false));
        assert_eq!(size(5000), (MAX_PAGE_SIZE, false));
        assert!(size(-1).1);
    }
}
