//! The auth file reloaded on SIGHUP, and what a reload revokes.

use super::*;

#[tokio::test]
async fn the_auth_file_is_reloaded_on_sighup_without_dropping_streams() {
    let db = TestDatabase::create().await;
    let dir = TempDir::new();
    let path = auth_file(&dir, "");
    let mut server = ServerProcess::spawn_with(&db.url, &["--auth-file", path.to_str().unwrap()]);
    let channel = channel_to(&server.addr).await;
    let mut client = ConnectorServiceClient::new(channel.clone());
    create_as_admin(&client, "c1").await;
    let mut agent = connect_as(&channel, Some(AGENT), hello("a1", "eu-2", "10.0.2.7"))
        .await
        .unwrap();

    // The viewer's token is replaced by a new one.
    let replaced = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&token_sha256(VIEWER), &token_sha256("viewer-token-new"));
    std::fs::write(&path, replaced).unwrap();
    server.signal("HUP");
    server.wait_for_log("auth file reloaded");
    let reader = client.clone();
    let list = |token: &'static str| {
        let mut client = reader.clone();
        async move {
            client
                .list_connectors(with_token(
                    v1::ListConnectorsRequest::default(),
                    Some(token),
                ))
                .await
        }
    };
    assert_eq!(
        list(VIEWER).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    list("viewer-token-new").await.expect("the new token works");

    // The agent's stream, opened before the reload, still carries commands.
    let started = client
        .start_connector(with_token(start_request("c1"), Some(OPERATOR)))
        .await
        .unwrap()
        .into_inner();
    let next = tokio::time::timeout(Duration::from_secs(10), agent.1.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match next.message {
        Some(v1::control_message::Message::Command(command)) => {
            assert_eq!(command.id, started.command.unwrap().id);
        }
        other => panic!("expected a command, got {other:?}"),
    }

    // A broken file is refused; the principals in force stay.
    std::fs::write(&path, "[[principal]]\nname = 1").unwrap();
    server.signal("HUP");
    server.wait_for_log("auth file not reloaded");
    list("viewer-token-new").await.expect("still in force");
}

#[tokio::test]
async fn a_reload_that_revokes_a_principal_ends_its_streams_and_waits() {
    let dir = TempDir::new();
    let path = auth_file(&dir, "");
    let auth = Authenticator::from_file(&path).unwrap();
    let app = spawn_with_auth(auth.clone(), None).await;
    let channel = app.channel().await;
    let client = ConnectorServiceClient::new(channel.clone());
    // c9 runs where no agent is: a wait on it waits.
    let mut far = connector("c9", "far away");
    far.destination.as_mut().unwrap().region = "eu-9".to_owned();
    client
        .clone()
        .create_connector(with_token(
            v1::CreateConnectorRequest {
                connector: Some(far),
            },
            Some(ADMIN),
        ))
        .await
        .unwrap();
    let mut agent = connect_as(&channel, Some(AGENT), hello("a1", "eu-2", "10.0.2.7"))
        .await
        .unwrap();
    let waiting = tokio::spawn({
        let mut client = client.clone();
        async move {
            client
                .start_connector(with_token(
                    v1::StartConnectorRequest {
                        wait: true,
                        ..start_request("c9")
                    },
                    Some(OPERATOR),
                ))
                .await
        }
    });
    eventually(Duration::from_secs(10), || async {
        (app.count("SELECT count(*) FROM commands").await == 1).then_some(())
    })
    .await;

    // The agent's principal goes; the operator becomes a viewer.
    let text = std::fs::read_to_string(&path).unwrap();
    let agent_entry = text.find("[[principal]]\nname = \"agent-eu-2\"").unwrap();
    let revoked = text[..agent_entry].replace(
        "name = \"otto\"\nrole = \"operator\"",
        "name = \"otto\"\nrole = \"viewer\"",
    );
    std::fs::write(&path, revoked).unwrap();
    auth.reload().unwrap();

    let end = tokio::time::timeout(Duration::from_secs(10), agent.1.message())
        .await
        .expect("the stream ends at the reload")
        .expect_err("with an error");
    assert_eq!(end.code(), Code::Unauthenticated, "{end:?}");
    assert_eq!(error_info(&end).reason, "CREDENTIALS_REVOKED");
    let wait = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the wait ends at the reload")
        .unwrap()
        .expect_err("refused");
    assert_eq!(wait.code(), Code::PermissionDenied, "{wait:?}");
    let info = error_info(&wait);
    assert_eq!(info.reason, "CREDENTIALS_REVOKED");
    assert_eq!(info.metadata["principal"], "otto");
    assert!(!info.metadata["command_id"].is_empty());
    assert!(wait.message().contains("viewer"), "{}", wait.message());
    assert!(
        wait.message().contains("stays accepted"),
        "{}",
        wait.message()
    );
    // The command it waited for stays accepted.
    assert_eq!(
        app.count("SELECT count(*) FROM commands WHERE status = 'PENDING'")
            .await,
        1
    );
    // Both are audited.
    eventually(Duration::from_secs(10), || async {
        (app.count(
            "SELECT count(*) FROM audit_events WHERE action = 'AGENT_SESSION_END'
             AND principal = 'agent-eu-2' AND reason = 'CREDENTIALS_REVOKED'",
        )
        .await
            == 1)
            .then_some(())
    })
    .await;
    assert_eq!(
        app.count(
            "SELECT count(*) FROM audit_events WHERE action = 'START_CONNECTOR'
             AND principal = 'otto' AND outcome = 'PERMISSION_DENIED'
             AND reason = 'CREDENTIALS_REVOKED'"
        )
        .await,
        1
    );
    // And the revoked token no longer opens a stream.
    let status = connect_as(&channel, Some(AGENT), hello("a1", "eu-2", "10.0.2.7"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_reload_that_removes_a_viewer_ends_its_watch() {
    let dir = TempDir::new();
    let path = auth_file(&dir, "");
    let auth = Authenticator::from_file(&path).unwrap();
    let app = spawn_with_auth(auth.clone(), None).await;
    let mut client = ConnectorServiceClient::new(app.channel().await);
    let mut events = client
        .watch_connectors(with_token(
            v1::WatchConnectorsRequest::default(),
            Some(VIEWER),
        ))
        .await
        .unwrap()
        .into_inner();
    let end = tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(end.r#type, v1::WatchEventType::SnapshotEnd as i32);

    let text = std::fs::read_to_string(&path).unwrap();
    let without_vera = text.replace(
        &format!(
            "[[principal]]\nname = \"vera\"\nrole = \"viewer\"\ntoken_sha256 = \"{}\"\n\n",
            token_sha256(VIEWER)
        ),
        "",
    );
    assert_ne!(without_vera, text);
    std::fs::write(&path, without_vera).unwrap();
    auth.reload().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .expect("the watch ends at the reload")
        .expect_err("with an error");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(error_info(&status).reason, "CREDENTIALS_REVOKED");
}
