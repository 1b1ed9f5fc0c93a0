//! Query strings and form bodies, as name-value pairs (a name may repeat:
//! the bulk form sends one `ids` per selected row), and a page's query
//! string read as what it holds (`Query`).

use axum::http::request::Parts;
use std::convert::Infallible;

/// Parsed `application/x-www-form-urlencoded` pairs.
#[derive(Clone, Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(text: &str) -> Self {
        Params(
            form_urlencoded::parse(text.as_bytes())
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`, trimmed; "" when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, value)| value.trim())
    }

    /// Every non-empty value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, value)| n == name && !value.trim().is_empty())
            .map(|(_, value)| value.trim().to_owned())
            .collect()
    }

    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), "1" | "on" | "true" | "yes")
    }
}

/// What name-value pairs are read as: a tab's filters, ...
pub trait FromParams {
    fn from_params(params: &Params) -> Self;
}

impl FromParams for Params {
    fn from_params(params: &Params) -> Self {
        params.clone()
    }
}

/// A request's query string read as `F`, as a handler's argument (no
/// query string: no pairs).
pub struct Query<F = Params>(pub F);

impl<S: Send + Sync, F: FromParams> axum::extract::FromRequestParts<S> for Query<F> {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let params = Params::parse(parts.uri.query().unwrap_or(""));
        Ok(Query(F::from_params(&params)))
    }
}

/// Builds a query string (values encoded), skipping empty values.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        if !value.is_empty() {
            out.append_pair(name, value);
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_names_and_encoding_round_trip() {
        let params = Params::parse("ids=a&ids=b%20c&ids=&q=10.0.&lagging=1");
        assert_eq!(params.all("ids"), ["a", "b c"]);
        assert_eq!(params.get("q"), "10.0.");
        assert!(params.flag("lagging"));
        assert_eq!(params.get("missing"), "");
        assert_eq!(query(&[("q", "a b&c"), ("region", "")]), "q=a+b%26c");
    }
}
