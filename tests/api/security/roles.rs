//! The role matrix, denials that say what is missing, secure defaults
//! and the CLI's token.

use super::*;

#[tokio::test]
async fn every_rpc_checks_every_role() {
    use Outcome::*;
    let (app, _dir) = secured().await;
    let channel = app.channel().await;
    create_as_admin(&ConnectorServiceClient::new(channel.clone()), "c1").await;
    // Columns: no token, unknown token, viewer, operator, admin, agent.
    let matrix: [(&str, [Outcome; 6]); 16] = [
        (
            "MarkConnectorStopped",
            [
                Unauthenticated,
                Unauthenticated,
                Denied,
                Allowed,
                Allowed,
                Denied,
            ],
        ),
        (
            "UpdateRestartPolicy",
            [
                Unauthenticated,
                Unauthenticated,
                Denied,
                Allowed,
                Allowed,
                Denied,
            ],
        ),
        (
            "BatchPauseConnectors",
            [
                Unauthenticated,
                Unauthenticated,
                Denied,
                Allowed,
                Allowed,
                Denied,
            ],
        ),
        (
            "BatchStartConnectors",
            [
                Unauthenticated,
                Unauthenticated,
                Denied,
                Allowed,
                Allowed,
                Denied,
            ],
        ),
        (
            "ListCommands",
            [
                Unauthenticated,
                Unauthenticated,
                Allowed,
                Allowed,
                Allowed,
                Denied,
            ],
        ),
        (
            "WatchConnectors",
            [
                Unauthenticated,
                Unauthenticated,
                Allowed,
                Allowed,
                Allowed,
                Denied,
            ],
        ),
        (
            "GetConnector",
            [
                Unauthenticated,
                Unauthenticated,
                Allowed,
                Allowed,
                Allowed,
                Denied,
            ],
        ),
        (
            "ListConnectors",
            [
                Unauthenticated,
                Unauthenticated,
                Allowed,
                Allowed,
                Allowed,
                Denied,
            ],
        ),
        (
            "ListRegions",
            [
                Unauthenticated,
                Unauthenticated,
                Allowed,
                Allowed,
                Allowed,
                Denied,
            ],
        ),
        (
            "ListAgents",
            [
                Unauthenticated,
                Unauthenticated,
                Allowed,
                Allowed,
                Allowed,
                Denied,
            ],
        ),
        (
            "ListAuditEvents",
            [
                Unauthenticated,
                Unauthenticated,
                Allowed,
                Allowed,
                Allowed,
                Denied,
            ],
        ),
        (
            "ListReplicas",
            [
                Unauthenticated,
                Unauthenticated,
                Allowed,
                Allowed,
                Allowed,
                Denied,
            ],
        ),
        (
            "StartConnector",
            [
                Unauthenticated,
                Unauthenticated,
                Denied,
                Allowed,
                Allowed,
                Denied,
            ],
        ),
        (
            "PauseConnector",
            [
                Unauthenticated,
                Unauthenticated,
                Denied,
                Allowed,
                Allowed,
                Denied,
            ],
        ),
        (
            "CreateConnector",
            [
                Unauthenticated,
                Unauthenticated,
                Denied,
                Denied,
                Allowed,
                Denied,
            ],
        ),
        (
            "Connect",
            [
                Unauthenticated,
                Unauthenticated,
                Denied,
                Denied,
                Denied,
                Allowed,
            ],
        ),
    ];
    let callers = [
        None,
        Some("not-a-token"),
        Some(VIEWER),
        Some(OPERATOR),
        Some(ADMIN),
        Some(AGENT),
    ];
    // The rows are every RPC the services declare, read from the descriptors
    // the server serves: a new RPC without a row fails here.
    let rows: std::collections::BTreeSet<String> =
        matrix.iter().map(|(rpc, _)| (*rpc).to_owned()).collect();
    assert_eq!(rows.len(), matrix.len(), "an RPC has two rows");
    assert_eq!(
        rows,
        declared_rpcs(),
        "the role matrix must have one row per RPC the services declare"
    );
    let mut n = 0;
    for (rpc, expected) in matrix {
        for (token, want) in callers.iter().zip(expected) {
            n += 1;
            let got = call(&channel, rpc, *token, n).await;
            assert_eq!(got, want, "{rpc} as {token:?}");
        }
    }
    // Health stays open (load balancers, grpcurl).
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health needs no token")
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Only the admin's CreateConnector wrote a connector; denied calls
    // wrote nothing.
    assert_eq!(app.count("SELECT count(*) FROM connectors").await, 2);
    assert_eq!(app.count("SELECT count(*) FROM commands").await, 0);
}

#[tokio::test]
async fn a_denied_start_changes_nothing_and_says_which_permission_is_missing() {
    let (app, _dir) = secured().await;
    let channel = app.channel().await;
    let mut client = ConnectorServiceClient::new(channel);
    create_as_admin(&client, "c1").await;
    let status = client
        .start_connector(with_token(start_request("c1"), Some(VIEWER)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let info = error_info(&status);
    assert_eq!(info.metadata["permission"], "connectors.operate");
    assert_eq!(info.metadata["principal"], "vera");
    assert!(
        status.message().contains("operator or admin"),
        "{}",
        status.message()
    );
    assert_eq!(app.count("SELECT count(*) FROM commands").await, 0);
    let state: String = app
        .db
        .client()
        .await
        .query_one("SELECT state FROM connectors WHERE id = 'c1'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "STOPPED");

    // A malformed header is not a token.
    let mut request = tonic::Request::new(start_request("c1"));
    request
        .metadata_mut()
        .insert("authorization", OPERATOR.parse().unwrap());
    let status = client.start_connector(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("Bearer"), "{}", status.message());
}

#[tokio::test]
async fn serve_refuses_a_public_address_without_an_auth_file() {
    let db = TestDatabase::create().await;
    let output = tokio::task::spawn_blocking({
        let url = db.url.clone();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_connector-control"))
                .args(["serve", "--listen", "0.0.0.0:0"])
                .env("DATABASE_URL", url)
                .env("CONNECTOR_CONTROL_CONSOLE_LISTEN", "127.0.0.1:0")
                .env_remove("CONNECTOR_CONTROL_INSECURE_NO_AUTH")
                .env_remove("CONNECTOR_CONTROL_AUTH_FILE")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--auth-file"), "{stderr}");

    let mut server =
        ServerProcess::spawn_with(&db.url, &["--listen", "0.0.0.0:0", "--insecure-no-auth"]);
    server.wait_for_log("INSECURE");
}

#[tokio::test]
async fn the_cli_sends_its_token() {
    let (app, dir) = secured().await;
    let token_file = dir.0.join("token");
    std::fs::write(&token_file, format!("{VIEWER}\n")).unwrap();
    let run = |args: Vec<String>| {
        let server = format!("http://{}", app.addr);
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_connector-control"))
                .args(&args)
                .env("CONNECTOR_CONTROL_SERVER", server)
                .env_remove("CONNECTOR_CONTROL_TOKEN")
                .env_remove("CONNECTOR_CONTROL_TOKEN_FILE")
                .output()
                .unwrap()
        })
    };
    let args = |extra: &[&str]| -> Vec<String> {
        ["connectors", "list"]
            .iter()
            .chain(extra)
            .map(|s| (*s).to_owned())
            .collect()
    };
    let without = run(args(&[])).await.unwrap();
    assert_eq!(without.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&without.stderr).contains("UNAUTHENTICATED"));
    let with = run(args(&["--token", VIEWER])).await.unwrap();
    assert_eq!(
        with.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    let from_file = run(args(&["--token-file", token_file.to_str().unwrap()]))
        .await
        .unwrap();
    assert_eq!(from_file.status.code(), Some(0));
    let denied = run(vec![
        "connectors".into(),
        "start".into(),
        "c1".into(),
        "--token".into(),
        VIEWER.into(),
    ])
    .await
    .unwrap();
    assert_eq!(denied.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("connectors.operate"));
}

#[tokio::test]
async fn a_request_id_repeats_only_its_own_principals_call() {
    let (app, _dir) = secured().await;
    let client = ConnectorServiceClient::new(app.channel().await);
    create_as_admin(&client, "c1").await;
    create_as_admin(&client, "c2").await;
    let start = v1::StartConnectorRequest {
        request_id: "otto-1".into(),
        ..start_request("c1")
    };
    let first = client
        .clone()
        .start_connector(with_token(start.clone(), Some(OPERATOR)))
        .await
        .unwrap()
        .into_inner();
    // The same principal gets its command back; another principal is
    // refused, never handed it.
    let again = client
        .clone()
        .start_connector(with_token(start.clone(), Some(OPERATOR)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.command.unwrap().id, first.command.unwrap().id);
    let refused = assert_error(
        client
            .clone()
            .start_connector(with_token(start, Some(ADMIN)))
            .await,
        Code::InvalidArgument,
        "REQUEST_ID_REUSED",
    );
    assert!(
        refused.message().contains("another principal"),
        "{}",
        refused.message()
    );
    // Batches alike: another principal's retry gets no answer of theirs.
    let batch = v1::BatchPauseConnectorsRequest {
        ids: vec!["c1".into()],
        reason: "INC-1".into(),
        request_id: "otto-batch".into(),
        ..Default::default()
    };
    client
        .clone()
        .batch_pause_connectors(with_token(batch.clone(), Some(OPERATOR)))
        .await
        .unwrap();
    let refused = assert_error(
        client
            .clone()
            .batch_pause_connectors(with_token(batch, Some(ADMIN)))
            .await,
        Code::InvalidArgument,
        "REQUEST_ID_REUSED",
    );
    assert!(refused.message().contains("another principal"));
}

/// Every RPC of every `connector.v1` service, from the encoded descriptors
/// that server reflection serves.
fn declared_rpcs() -> std::collections::BTreeSet<String> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(connector_control::proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let rpcs: std::collections::BTreeSet<String> = set
        .file
        .iter()
        .filter(|file| file.package() == "connector.v1")
        .flat_map(|file| &file.service)
        .flat_map(|service| &service.method)
        .map(|method| method.name().to_owned())
        .collect();
    assert!(
        rpcs.contains("StartConnector"),
        "the descriptors hold the services"
    );
    rpcs
}
