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

/// Human names: not blank, no control characters.
pub fn name(value: &str) -> Result<(), String> {
    required(value)?;
    max_chars(value, MAX_NAME_LEN)?;
    if value.trim().is_empty() {
        return Err("must not be blank".to_owned());
    }
    if value.trim() != value {
        return Err("must not start or end with whitespace".to_owned());
    }
    no_control(value)
}

fn no_control(value: &str) -> Result<(), String> {
    match value.chars().find(|c| c.is_control()) {
        Some(bad) => Err(format!("contains the control character {bad:?}")),
        None => Ok(()),
    }
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

/// Endpoint addresses: host:port or a URL, without whitespace.
pub fn address(value: &str) -> Result<(), String> {
    required(value)?;
    max_chars(value, MAX_ADDRESS_LEN)?;
    match value.chars().find(|c| c.is_whitespace() || c.is_control()) {
        Some(bad) => Err(format!("contains {bad:?}; addresses have no whitespace")),
        None => Ok(()),
    }
}

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
    match value
        .chars()
        .find(|c| c.is_control() && *c != '\n' && *c != '\t')
    {
        Some(bad) => Err(format!("contains the control character {bad:?}")),
        None => Ok(()),
    }
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
        assert!(name("   ").is_err());
        assert!(name(" padded").is_err());
        assert!(name("a\u{7}b").unwrap_err().contains("control"));
    }

    #[test]
    fn empty_request_id_and_query_mean_absent() {
        assert!(request_id("").is_ok());
        assert!(query("").is_ok());
        assert!(request_id("9f3c-01:retry.2").is_ok());
        assert!(request_id("a/b").is_err());
    }
}
