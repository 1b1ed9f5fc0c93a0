//! TLS (rustls, through tonic) for the server and its clients, and the
//! identity a client certificate carries for mutual TLS.

use anyhow::Context;
use std::path::Path;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

/// The server's TLS: its certificate and key (PEM), and, for mutual TLS,
/// the CA that client certificates must chain to (then required).
pub fn server(
    cert: Option<&Path>,
    key: Option<&Path>,
    client_ca: Option<&Path>,
) -> anyhow::Result<Option<ServerTlsConfig>> {
    let (cert, key) = match (cert, key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) if client_ca.is_none() => return Ok(None),
        (None, None) => anyhow::bail!("--tls-client-ca needs --tls-cert and --tls-key"),
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    };
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
        read(cert, "TLS certificate")?,
        read(key, "TLS key")?,
    ));
    if let Some(ca) = client_ca {
        config = config.client_ca_root(Certificate::from_pem(read(ca, "client CA")?));
    }
    Ok(Some(config))
}

/// A client's TLS: the CA the server's certificate chains to, and, for
/// mutual TLS, the client's certificate and key (PEM).
pub fn client(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> anyhow::Result<Option<ClientTlsConfig>> {
    let mut config = match ca {
        Some(ca) => ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(ca, "CA certificate")?)),
        None if cert.is_none() && key.is_none() => return Ok(None),
        None => ClientTlsConfig::new(),
    };
    match (cert, key) {
        (Some(cert), Some(key)) => {
            config = config.identity(Identity::from_pem(
                read(cert, "client certificate")?,
                read(key, "client key")?,
            ));
        }
        (None, None) => {}
        _ => anyhow::bail!("--client-cert and --client-key go together"),
    }
    Ok(Some(config))
}

/// The names a client certificate (DER) stands for: its subject's common
/// names and its DNS subject alternative names.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push((*dns).to_owned());
            }
        }
    }
    names
}
