//! TLS (rustls) for the server and its clients, and the identity a client
//! certificate carries for mutual TLS.

use anyhow::Context;
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

/// The server's TLS: its certificate and key (PEM), and, for mutual TLS,
/// the CA that client certificates must chain to (then required). rustls
/// with the ring provider, HTTP/2 by ALPN. The handshake is carried out by
/// `server::connections`, within the handshake timeout.
pub fn server(
    cert: Option<&Path>,
    key: Option<&Path>,
    client_ca: Option<&Path>,
) -> anyhow::Result<Option<Arc<ServerConfig>>> {
    let (cert, key) = match (cert, key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) if client_ca.is_none() => return Ok(None),
        (None, None) => anyhow::bail!("--tls-client-ca needs --tls-cert and --tls-key"),
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    };
    let mut config = config(cert, key, client_ca)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// The web console's TLS: the server's certificate and key, HTTP/1.1, and
/// no client certificates (people sign in with their token; a browser
/// seldom holds a client certificate).
pub fn console(
    cert: Option<&Path>,
    key: Option<&Path>,
) -> anyhow::Result<Option<Arc<ServerConfig>>> {
    let (Some(cert), Some(key)) = (cert, key) else {
        return Ok(None);
    };
    let mut config = config(cert, key, None)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

fn config(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<ServerConfig> {
    let certs = CertificateDer::pem_slice_iter(&read(cert, "TLS certificate")?)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("no PEM certificate chain in {}", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", cert.display());
    let key = PrivateKeyDer::from_pem_slice(&read(key, "TLS key")?)
        .with_context(|| format!("no PEM private key in {}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("configuring TLS")?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&read(ca, "client CA")?) {
                let cert =
                    cert.with_context(|| format!("no PEM certificate in {}", ca.display()))?;
                roots
                    .add(cert)
                    .with_context(|| format!("the client CA {} is unusable", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .context("configuring client certificate verification")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not go together")
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
