//! The client side of authentication: the bearer token the CLI and the
//! reference agent send with every call.

use std::fmt;
use std::path::Path;

/// The client side: adds `authorization: Bearer <token>` to every call
/// (the CLI and the reference agent).
#[derive(Clone, Default)]
pub struct Bearer(Option<tonic::metadata::AsciiMetadataValue>);

/// Never prints the token.
impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Bearer(<redacted>)"
        } else {
            "Bearer(None)"
        })
    }
}

impl Bearer {
    /// From `--token`, else the first line of `--token-file`, else none.
    pub fn from_args(token: Option<&str>, file: Option<&Path>) -> anyhow::Result<Self> {
        let token = match (token, file) {
            (Some(token), _) => Some(token.trim().to_owned()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        anyhow::anyhow!("cannot read the token file {}: {e}", path.display())
                    })?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        match token.filter(|token| !token.is_empty()) {
            None => Ok(Bearer(None)),
            Some(token) => format!("Bearer {token}")
                .parse::<tonic::metadata::AsciiMetadataValue>()
                .map(|mut value| {
                    value.set_sensitive(true);
                    Bearer(Some(value))
                })
                .map_err(|_| anyhow::anyhow!("the token must be printable ASCII")),
        }
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}
