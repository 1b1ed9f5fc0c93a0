//! Field-level checks shared by every entry point. Each returns a sentence
//! saying what is wrong and what is accepted, ready for a BadRequest
//! field violation.

/// A field that failed validation: the proto field path and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

/// Collects violations so that a caller learns about every bad field at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<Violation>);

impl Violations {
    pub fn check(&mut self, field: &str, result: Result<(), String>) {
        if let Err(description) = result {
            self.add(field, description);
        }
    }

    pub fn add(&mut self, field: &str, description: impl Into<String>) {
        self.0.push(Violation {
            field: field.to_owned(),
            description: description.into(),
        });
    }

    /// Ok when nothing was wrong.
    pub fn finish(self) -> Result<(), Vec<Violation>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

pub const MAX_ID_LEN: usize = 64;
pub const MAX_NAME_LEN: usize = 200;
pub const MAX_QUERY_LEN: usize = 200;
pub const MAX_REGION_LEN: usize = 63;
pub const MAX_ENDPOINT_TYPE_LEN: usize = 64;
pub const MAX_ADDRESS_LEN: usize = 512;
pub const MAX_REQUEST_ID_LEN: usize = 128;
pub const MAX_REASON_LEN: usize = 1000;

fn required(value: &str) -> Result<(), String> {
    if value.is_empty() {
        Err("is required".to_owned())
    } else {
        Ok(())
    }
}

fn max_chars(value: &str, max: usize) -> Result<(), String> {
    let len = value.chars().count();
    if len > max {
        Err(format!(
            "is {len} characters long; at most {max} are allowed"
        ))
    } else {
        Ok(())
    }
}

fn charset(value: &str, allowed: impl Fn(char) -> bool, what: &str) -> Result<(), String> {
    match value.chars().find(|c| !allowed(*c)) {
        Some(bad) => Err(format!("contains {bad:?}; only {what} are allowed")),
        None => Ok(()),
    }
}

/// Connector and project ids: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
pub fn id(value: &str) -> Result<(), String> {
    required(value)?;
    max_chars(value, MAX_ID_LEN)?;
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("'{value}' must start with a letter or digit"));
    }
    charset(
        value,
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'),
        "letters, digits, '.', '_' and '-'",
    )
}

/// Human names: not blank, no control characters, nothing that makes a
/// printed name read differently from what it is (bidi overrides, line
/// separators), and at least one visible character.
pub fn name(value: &str) -> Result<(), String> {
    required(value)?;
    max_chars(value, MAX_NAME_LEN)?;
    if value.trim().is_empty() {
        return Err("must not be blank".to_owned());
    }
    if value.trim() != value {
        return Err("must not start or end with whitespace".to_owned());
    }
    no_control(value)?;
    if value.chars().all(|c| c.is_whitespace() || invisible(c)) {
        return Err(
            "has no visible character (only zero-width or formatting characters)".to_owned(),
        );
    }
    Ok(())
}

/// Control characters, and the characters that change how the text
/// around them is displayed: bidirectional overrides, embeddings and
/// isolates (U+202A..U+202E, U+2066..U+2069), which can make a name read
/// backwards in a terminal, and line and paragraph separators (U+2028,
/// U+2029), which break a table row in two.
fn no_control(value: &str) -> Result<(), String> {
    match value.chars().find(|c| c.is_control() || deceptive(*c)) {
        Some(bad) if bad.is_control() => Err(format!("contains the control character {bad:?}")),
        Some(bad) => Err(format!(
            "contains U+{:04X}, a character that changes how the text is displayed \
             (bidirectional control or line separator); remove it",
            bad as u32
        )),
        None => Ok(()),
    }
}

/// Free text an agent reports (a status message, an error), made safe to
/// store and to show: NUL and the other control characters except newline
/// and tab, and the characters that change how text around them displays
/// (bidirectional controls, line separators), become visible escapes such
/// as `\u{202e}`. Escaped rather than refused: an honest agent may relay a
/// database's error text with anything in it, and refusing it would end
/// its session over words.
pub fn agent_text(value: &str) -> String {
    escape(value, true)
}

/// `value` with its control characters (but newline and tab when
/// `keep_lines`) and display-changing characters as `\u{..}` escapes:
/// what is stored of agents' text, and how the CLI and the console show
/// any text that may hold them (rows written before they were escaped).
pub fn escape(value: &str, keep_lines: bool) -> String {
    let unsafe_char =
        |c: char| (c.is_control() && !(keep_lines && matches!(c, '\n' | '\t'))) || deceptive(c);
    if !value.chars().any(unsafe_char) {
        return value.to_owned();
    }
    let mut escaped = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if unsafe_char(c) {
            escaped.extend(c.escape_unicode());
        } else {
            escaped.push(c);
        }
    }
    escaped
}

/// A short label an agent sends about itself (its instance id, version):
/// printable, without characters that change how text displays.
pub fn agent_label(value: &str) -> Result<(), String> {
    no_control(value)
}

/// Bidirectional controls and line/paragraph separators.
pub fn deceptive(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// Characters that print as nothing: Unicode's default-ignorable code
/// points (zero-width spaces and joiners, word joiners, variation
/// selectors, tags, fillers, the byte order mark).
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Regions: lowercase DNS-label style, `[a-z0-9][a-z0-9-]{0,62}`.
pub fn region(value: &str) -> Result<(), String> {
    required(value)?;
    max_chars(value, MAX_REGION_LEN)?;
    if value.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "'{value}' has uppercase letters; regions are lowercase (try '{}')",
            value.to_ascii_lowercase()
        ));
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("'{value}' must start with a letter or digit"));
    }
    charset(
        value,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
        "lowercase letters, digits and '-'",
    )
}

/// Endpoint types such as "MYSQL": `[A-Za-z0-9_-]{1,64}`.
pub fn endpoint_type(value: &str) -> Result<(), String> {
    required(value)?;
    max_chars(value, MAX_ENDPOINT_TYPE_LEN)?;
    charset(
        value,
        |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'),
        "letters, digits, '_' and '-'",
    )
}

/// Endpoint addresses: host:port or a URL, without whitespace and without
/// credentials (a user or password before `@`, or a password parameter):
/// addresses are shown to every reader of the API, secrets belong in the
/// replication system.
pub fn address(value: &str) -> Result<(), String> {
    required(value)?;
    max_chars(value, MAX_ADDRESS_LEN)?;
    if let Some(bad) = value
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || deceptive(*c))
    {
        return Err(format!(
            "contains {bad:?}; addresses have no whitespace, control or formatting characters"
        ));
    }
    let user_info = match value.split_once("://") {
        // A URL: anything before '@' in its authority.
        Some((_, rest)) => rest
            .split(['/', '?', '#'])
            .next()
            .unwrap_or_default()
            .contains('@'),
        // host:port, user@host, user:pass@host, or Oracle's
        // `jdbc:oracle:thin:scott/tiger@db:1521/orcl`: text right before
        // '@' (back to the ':' before it) is a user (`thin:@db` is not).
        None => value
            .split_once('@')
            .is_some_and(|(before, _)| !before.rsplit(':').next().unwrap_or_default().is_empty()),
    };
    if user_info {
        return Err(
            "holds credentials (a user name or password before '@'); addresses hold none: \
             give host:port (or a URL without user info) and keep secrets in the replication \
             system"
                .to_owned(),
        );
    }
    // Parameters anywhere: `?a=b&c=d`, and JDBC's `;user=sa;password=x`.
    if let Some(key) = value
        .split(['?', '&', ';'])
        .skip(1)
        .filter_map(|pair| pair.split('=').next())
        .find(|key| SECRET_PARAMETERS.contains(&key.trim().to_ascii_lowercase().as_str()))
    {
        return Err(format!(
            "holds credentials (the parameter '{key}'); addresses hold none: remove it and keep \
             secrets in the replication system"
        ));
    }
    Ok(())
}

/// Query parameters that carry secrets in database URLs (JDBC, libpq,
/// MySQL, Oracle and cloud drivers).
const SECRET_PARAMETERS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pass",
    "secret",
    "token",
    "sslpassword",
    "apikey",
    "api_key",
    "access_key",
    "secret_key",
];

/// Idempotency keys: `[A-Za-z0-9._:-]{1,128}` (a UUID fits).
pub fn request_id(value: &str) -> Result<(), String> {
    max_chars(value, MAX_REQUEST_ID_LEN)?;
    charset(
        value,
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'),
        "letters, digits, '.', '_', ':' and '-'",
    )
}

/// Free-text search: bounded, printable.
pub fn query(value: &str) -> Result<(), String> {
    max_chars(value, MAX_QUERY_LEN)?;
    no_control(value)
}

/// An operator's free-text reason for a pause.
pub fn reason(value: &str) -> Result<(), String> {
    max_chars(value, MAX_REASON_LEN)?;
    let text: String = value
        .chars()
        .filter(|c| !matches!(c, '\n' | '\t'))
        .collect();
    no_control(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_typical_forms_and_reject_the_rest() {
        assert!(id("np_5v3h2kq.x-1").is_ok());
        assert!(id(&"a".repeat(64)).is_ok());
        assert!(id("").unwrap_err().contains("required"));
        assert!(id(&"a".repeat(65)).unwrap_err().contains("at most 64"));
        assert!(id("-abc").unwrap_err().contains("start with"));
        assert!(id("a b").unwrap_err().contains("' '"));
    }

    #[test]
    fn regions_are_lowercase_labels() {
        assert!(region("eu-1").is_ok());
        assert!(region("EU-1").unwrap_err().contains("try 'eu-1'"));
        assert!(region("eu_1").is_err());
    }

    #[test]
    fn names_reject_blank_and_control_characters() {
        assert!(name("orders → warehouse").is_ok());
        for blank in ["   ", " padded"] {
            assert!(name(blank).is_err(), "{blank:?} was accepted");
        }
        assert!(name("a\u{7}b").unwrap_err().contains("control"));
    }

    #[test]
    fn names_that_would_print_misleadingly_are_rejected() {
        // A right-to-left override makes "orders-txt.exe" print as
        // "orders-exe.txt".
        assert!(
            name("orders\u{202E}exe.txt")
                .unwrap_err()
                .contains("U+202E")
        );
        assert!(name("a\u{2066}b").unwrap_err().contains("U+2066"));
        assert!(name("first\u{2028}second").unwrap_err().contains("U+2028"));
        assert!(
            name("\u{200B}\u{200D}\u{FEFF}")
                .unwrap_err()
                .contains("visible")
        );
        assert!(name("\u{200B} \u{2060}").unwrap_err().contains("visible"));
        // Joiners inside real text stay allowed (emoji, Persian, Hindi).
        assert!(name("team 👩\u{200D}💻").is_ok());
        assert!(name("می\u{200C}خواهم").is_ok());
        assert!(query("\u{202E}x").is_err());
        assert!(reason("INC-1\u{2029}").is_err());
    }

    #[test]
    fn agent_text_is_escaped_not_refused() {
        assert_eq!(
            agent_text("plain, with\nlines\tand tabs"),
            "plain, with\nlines\tand tabs"
        );
        assert_eq!(agent_text("a\0b"), "a\\u{0}b");
        assert_eq!(agent_text("x\u{202E}y\u{1b}[2J"), "x\\u{202e}y\\u{1b}[2J");
        assert!(agent_label("0.9.1").is_ok());
        assert!(agent_label("v\0").is_err());
        assert!(agent_label("v\u{2066}").is_err());
    }

    #[test]
    fn addresses_hold_no_credentials() {
        for good in [
            "10.0.1.20:3306",
            "mysql://db.internal:3306/orders?useSSL=true",
            "jdbc:oceanbase://10.0.2.30:2881/dw",
            // '@' after the host is a path.
            "http://h/p@q",
            "jdbc:oracle:thin:@db:1521/orcl",
            "jdbc:oracle:thin:@//db:1521/svc",
            "jdbc:sqlserver://db:1433;databaseName=dw",
        ] {
            assert!(address(good).is_ok(), "{good} was refused");
        }
        for bad in [
            "mysql://root:secret@10.0.1.20:3306",
            "mysql://root@10.0.1.20:3306",
            "root:secret@10.0.1.20:3306",
            "jdbc:mysql://10.0.1.20:3306/db?user=root&password=secret",
            "postgres://h/db?sslmode=require&PASSWORD=x",
            "jdbc:sqlserver://db:1433;user=sa;password=x",
            "jdbc:oracle:thin:scott/tiger@db:1521/orcl",
            "root@10.0.1.20:3306",
        ] {
            assert!(
                address(bad).unwrap_err().contains("credentials"),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn empty_request_id_and_query_mean_absent() {
        assert!(request_id("").is_ok());
        assert!(query("").is_ok());
        assert!(request_id("9f3c-01:retry.2").is_ok());
        assert!(request_id("a/b").is_err());
    }
}
