//! Agents held to their region and agent id, and to the connectors they
//! run.

use super::*;

#[tokio::test]
async fn an_agent_cannot_claim_another_region_or_agent_id() {
    let (app, _dir) = secured().await;
    let channel = app.channel().await;
    create_as_admin(&ConnectorServiceClient::new(channel.clone()), "c1").await;
    // The hello also reports c1 as running: none of it may be applied.
    let claim = |agent_id: &str, region: &str| {
        let mut hello = hello(agent_id, region, "10.6.6.6");
        hello.connectors = vec![status("c1", v1::ConnectorState::Running, 0)];
        hello
    };
    for (agent_id, region) in [("a1", "eu-1"), ("a2", "eu-2")] {
        let status = connect_as(&channel, Some(AGENT), claim(agent_id, region))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{agent_id}@{region}");
        assert_eq!(error_info(&status).reason, "PERMISSION_DENIED");
        assert!(status.message().contains("nothing"), "{}", status.message());
    }
    assert_eq!(app.count("SELECT count(*) FROM agents").await, 0);
    let server_ip: String = app
        .db
        .client()
        .await
        .query_one("SELECT server_ip FROM connectors WHERE id = 'c1'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(server_ip, "");
    // Its own region and id are accepted.
    connect_as(&channel, Some(AGENT), claim("a1", "eu-2"))
        .await
        .expect("the agent's own claim");
}

#[tokio::test]
async fn a_region_token_cannot_take_over_an_agent_id_of_another_region() {
    const EU_AGENTS: &str = "eu-1-agents-token";
    const US_AGENTS: &str = "us-1-agents-token";
    let dir = TempDir::new();
    let extra = format!(
        "[[principal]]\nname = \"eu-1-agents\"\nrole = \"agent\"\nregion = \"eu-1\"\n\
         token_sha256 = \"{}\"\n\n[[principal]]\nname = \"us-1-agents\"\nrole = \"agent\"\n\
         region = \"us-1\"\ntoken_sha256 = \"{}\"\n",
        token_sha256(EU_AGENTS),
        token_sha256(US_AGENTS)
    );
    let auth = Authenticator::from_file(&auth_file(&dir, &extra)).unwrap();
    let app = spawn_with_auth(auth, None).await;
    let channel = app.channel().await;
    let mut us = connect_as(
        &channel,
        Some(US_AGENTS),
        hello("us-1a", "us-1", "10.1.0.7"),
    )
    .await
    .expect("the real us-1a");
    let before = app
        .db
        .client()
        .await
        .query_one(
            "SELECT region, server_ip, session_epoch FROM agents WHERE id = 'us-1a'",
            &[],
        )
        .await
        .unwrap();

    // A token bound to eu-1 (no agent_id) says hello as us-1a, in eu-1.
    let status = connect_as(
        &channel,
        Some(EU_AGENTS),
        hello("us-1a", "eu-1", "10.6.6.6"),
    )
    .await
    .expect_err("an agent id belongs to one region");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let info = error_info(&status);
    assert_eq!(info.metadata["registered_region"], "us-1");
    assert_eq!(info.metadata["claimed_region"], "eu-1");
    assert!(
        status.message().contains("untouched"),
        "{}",
        status.message()
    );

    // The real session goes on, its row unchanged.
    let after = app
        .db
        .client()
        .await
        .query_one(
            "SELECT region, server_ip, session_epoch FROM agents WHERE id = 'us-1a'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            after.get::<_, String>(0),
            after.get::<_, String>(1),
            after.get::<_, i64>(2)
        ),
        (before.get(0), before.get(1), before.get(2))
    );
    // ... and still receives us-1's commands.
    let mut us_connector = connector("us-c1", "orders us");
    us_connector.destination.as_mut().unwrap().region = "us-1".to_owned();
    let mut client = ConnectorServiceClient::new(channel.clone());
    client
        .create_connector(with_token(
            v1::CreateConnectorRequest {
                connector: Some(us_connector),
            },
            Some(ADMIN),
        ))
        .await
        .unwrap();
    let started = client
        .start_connector(with_token(start_request("us-c1"), Some(OPERATOR)))
        .await
        .unwrap()
        .into_inner();
    let next = tokio::time::timeout(Duration::from_secs(10), us.1.message())
        .await
        .expect("a command in time")
        .expect("the real session is open")
        .expect("not ended");
    match next.message {
        Some(v1::control_message::Message::Command(command)) => {
            assert_eq!(command.id, started.command.unwrap().id);
        }
        other => panic!("expected us-c1's start, got {other:?}"),
    }
    // Audited, with who tried.
    assert_eq!(
        app.count(
            "SELECT count(*) FROM audit_events WHERE principal = 'eu-1-agents'
             AND action = 'AGENT_SESSION_START' AND outcome = 'PERMISSION_DENIED'
             AND detail LIKE '%us-1a%us-1%'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn an_agent_cannot_change_a_connector_another_agent_runs() {
    let (app, _dir) = secured().await;
    let channel = app.channel().await;
    let client = ConnectorServiceClient::new(channel.clone());
    for id in ["c1", "c2"] {
        create_as_admin(&client, id).await;
    }
    app.sql(
        "UPDATE connectors SET agent_id = 'a9', state = 'RUNNING', server_ip = '10.0.2.9'
         WHERE id = 'c1'",
    )
    .await;
    let (outbound, _inbound) = connect_as(&channel, Some(AGENT), hello("a1", "eu-2", "10.0.2.7"))
        .await
        .unwrap();
    outbound
        .send(v1::AgentMessage {
            message: Some(v1::agent_message::Message::Heartbeat(v1::Heartbeat {
                sequence: 1,
                connectors: vec![status("c1", v1::ConnectorState::Failed, 99)],
            })),
        })
        .await
        .unwrap();
    // A second heartbeat adopts c2, which nobody runs: once it shows, the
    // first (handled before it, on the same stream) was handled too.
    outbound
        .send(v1::AgentMessage {
            message: Some(v1::agent_message::Message::Heartbeat(v1::Heartbeat {
                sequence: 2,
                connectors: vec![status("c2", v1::ConnectorState::Running, 0)],
            })),
        })
        .await
        .unwrap();
    eventually(Duration::from_secs(10), || async {
        (app.count("SELECT count(*) FROM connectors WHERE id = 'c2' AND agent_id = 'a1'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    let row = app
        .db
        .client()
        .await
        .query_one(
            "SELECT state, agent_id, server_ip FROM connectors WHERE id = 'c1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2)
        ),
        ("RUNNING".to_owned(), "a9".to_owned(), "10.0.2.9".to_owned())
    );
}
