//! The console speaks to people, not to programs: the API's refusals reach
//! a page in the console's words (its field labels, not proto field names
//! or RPC names) and with times to the second in UTC.

/// Proto field names and API words as the console's forms name them.
const WORDS: &[(&str, &str)] = &[
    ("skip_to_earliest", "\"Skip to the earliest data\""),
    ("a pull_back_time", "a pull-back time"),
    ("without pull_back_time", "without pull-back"),
    ("pull_back_time", "the pull-back time"),
    ("max_connectors", "the guard"),
    ("request_id", "the request"),
    ("filter.server_ip", "Server"),
    ("server_ip", "Server"),
    ("filter.query", "Search"),
    ("page_token", "the page link"),
    ("validate_only", "the check"),
    (
        "invalid ListConnectors request",
        "the search could not be run",
    ),
    (
        "invalid BatchPauseConnectors request",
        "the pause could not be run",
    ),
    (
        "invalid BatchStartConnectors request",
        "the start could not be run",
    ),
    (
        "invalid StartConnector request",
        "the start could not be run",
    ),
    (
        "invalid PauseConnector request",
        "the pause could not be run",
    ),
    (
        "invalid MarkConnectorStopped request",
        "the mark could not be made",
    ),
    ("ListConnectors", "the search"),
];

/// A field path of a BadRequest violation as the form labels it.
pub fn field_label(field: &str) -> String {
    WORDS.iter().find(|(api, _)| *api == field).map_or_else(
        || field.to_owned(),
        |(_, words)| words.trim_matches('"').to_owned(),
    )
}

/// An API message in the console's words, its times to the second in UTC.
pub fn console_words(message: &str) -> String {
    let mut text = times_to_the_second(message);
    for (api, words) in WORDS {
        if text.contains(api) {
            text = text.replace(api, words);
        }
    }
    text
}

/// RFC 3339 times (`2026-01-01T00:00:00.123456+00:00`) as
/// `2026-01-01 00:00:00 UTC`.
fn times_to_the_second(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(|c: char| c.is_ascii_digit()) {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        // The longest prefix that parses as a time, if any.
        let end = rest
            .char_indices()
            .map(|(i, c)| i + c.len_utf8())
            .take_while(|&end| end <= 40)
            .filter(|&end| end >= 20)
            .filter(|&end| chrono::DateTime::parse_from_rfc3339(&rest[..end]).is_ok())
            .last();
        match end {
            Some(end) => {
                let time = chrono::DateTime::parse_from_rfc3339(&rest[..end])
                    .expect("parsed above")
                    .with_timezone(&chrono::Utc);
                out.push_str(&time.format("%Y-%m-%d %H:%M:%S UTC").to_string());
                rest = &rest[end..];
            }
            None => {
                let digits = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                out.push_str(&rest[..digits]);
                rest = &rest[digits..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_words_and_times_become_the_consoles() {
        assert_eq!(
            console_words(
                "connector c1's store holds data from 2026-01-01T00:00:00.123456+00:00 to \
                 2026-01-03T00:00:00Z: choose a pull_back_time"
            ),
            "connector c1's store holds data from 2026-01-01 00:00:00 UTC to 2026-01-03 00:00:00 \
             UTC: choose a pull-back time"
        );
        assert_eq!(field_label("max_connectors"), "the guard");
        assert_eq!(field_label("filter.server_ip"), "Server");
        assert_eq!(field_label("something_else"), "something_else");
        assert_eq!(console_words("10 of 20, id 42"), "10 of 20, id 42");
        assert!(!console_words("invalid ListConnectors request: x").contains("ListConnectors"));
        // Another zone is shown in UTC.
        assert_eq!(
            console_words("at 2026-01-01T02:00:00+02:00"),
            "at 2026-01-01 00:00:00 UTC"
        );
    }
}
