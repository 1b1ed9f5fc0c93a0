//! ListCommands: a connector's command history, newest first.

use super::convert;
use super::error::ApiError;
use super::pages;
use crate::domain::validate::{self, Violations};
use crate::domain::{HistoryQuery, PageTokenError};
use crate::proto::v1;

/// Page tokens: this prefix, the connector id and the generation of the
/// last command returned.
const TOKEN_PREFIX: &str = "commands:";

pub fn query(request: &v1::ListCommandsRequest) -> Result<HistoryQuery, ApiError> {
    let mut violations = Violations::default();
    violations.check("connector_id", validate::id(&request.connector_id));
    let page_size = pages::page_size(&mut violations, request.page_size);
    convert::invalid_request("ListCommands", violations)?;
    let before_generation = match request.page_token.as_str() {
        "" => None,
        token => Some(decode_token(&request.connector_id, token)?),
    };
    Ok(HistoryQuery {
        connector_id: request.connector_id.clone(),
        before_generation,
        page_size,
    })
}

pub fn encode_token(connector_id: &str, last_generation: i64) -> String {
    pages::encode_token(TOKEN_PREFIX, &format!("{last_generation}:{connector_id}"))
}

fn decode_token(connector_id: &str, token: &str) -> Result<i64, PageTokenError> {
    let position = pages::decode_token(TOKEN_PREFIX, token)?;
    let (generation, issued_for) = position
        .split_once(':')
        .and_then(|(generation, id)| Some((generation.parse::<i64>().ok()?, id)))
        .ok_or(PageTokenError::Malformed)?;
    if issued_for != connector_id {
        return Err(PageTokenError::OtherConnector);
    }
    Ok(generation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[test]
    fn a_token_continues_only_the_history_it_was_issued_for() {
        let token = encode_token("c-1", 7);
        assert_eq!(decode_token("c-1", &token), Ok(7));
        assert_eq!(
            decode_token("c-2", &token),
            Err(PageTokenError::OtherConnector)
        );
        assert_eq!(
            decode_token("c-1", "not a token"),
            Err(PageTokenError::Malformed)
        );
        let audit_token = URL_SAFE_NO_PAD.encode("audit:12");
        assert_eq!(
            decode_token("c-1", &audit_token),
            Err(PageTokenError::Malformed)
        );
    }
}
