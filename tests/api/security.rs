//! Who may do what: the role matrix (every RPC, every role, no token, a bad
//! token), agents held to their region, the auth file reloaded on SIGHUP,
//! secure defaults, and the CLI's token.

use crate::helpers::*;
use connector_control::auth::{Authenticator, token_sha256};
use connector_control::proto::v1::{
    self, agent_service_client::AgentServiceClient, audit_service_client::AuditServiceClient,
    connector_service_client::ConnectorServiceClient,
};
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;

const VIEWER: &str = "viewer-token-1";
const OPERATOR: &str = "operator-token-2";
const ADMIN: &str = "admin-token-3";
const AGENT: &str = "agent-token-4";

fn auth_file(dir: &TempDir, extra: &str) -> std::path::PathBuf {
    let principal = |name: &str, role: &str, token: &str, more: &str| {
        format!(
            "[[principal]]\nname = \"{name}\"\nrole = \"{role}\"\n{more}token_sha256 = \"{}\"\n\n",
            token_sha256(token)
        )
    };
    let text = [
        principal("vera", "viewer", VIEWER, ""),
        principal("otto", "operator", OPERATOR, ""),
        principal("ada", "admin", ADMIN, ""),
        principal(
            "agent-eu-2",
            "agent",
            AGENT,
            "region = \"eu-2\"\nagent_id = \"a1\"\n",
        ),
        extra.to_owned(),
    ]
    .concat();
    let path = dir.0.join("auth.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Creates connector `id` as the admin.
async fn create_as_admin(client: &ConnectorServiceClient<Channel>, id: &str) {
    client
        .clone()
        .create_connector(with_token(
            v1::CreateConnectorRequest {
                connector: Some(connector(id, "orders")),
            },
            Some(ADMIN),
        ))
        .await
        .unwrap();
}

async fn secured() -> (TestApp, TempDir) {
    let dir = TempDir::new();
    let auth = Authenticator::from_file(&auth_file(&dir, "")).unwrap();
    (spawn_with_auth(auth, None).await, dir)
}

fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Allowed,
    Unauthenticated,
    Denied,
}

fn outcome<T>(result: Result<T, tonic::Status>) -> Outcome {
    match result {
        Err(status) if status.code() == Code::Unauthenticated => {
            assert_eq!(error_info(&status).reason, "UNAUTHENTICATED");
            Outcome::Unauthenticated
        }
        Err(status) if status.code() == Code::PermissionDenied => {
            let info = error_info(&status);
            assert_eq!(info.reason, "PERMISSION_DENIED");
            assert!(
                status.message().contains(&info.metadata["permission"]),
                "the message names the permission: {}",
                status.message()
            );
            Outcome::Denied
        }
        _ => Outcome::Allowed,
    }
}

/// Calls `rpc` as the holder of `token`.
async fn call(channel: &Channel, rpc: &str, token: Option<&str>, n: usize) -> Outcome {
    let mut connectors = ConnectorServiceClient::new(channel.clone());
    let mut agents = AgentServiceClient::new(channel.clone());
    match rpc {
        "CreateConnector" => outcome(
            connectors
                .create_connector(with_token(
                    v1::CreateConnectorRequest {
                        connector: Some(connector(&format!("new-{n}"), "new")),
                    },
                    token,
                ))
                .await,
        ),
        "GetConnector" => outcome(
            connectors
                .get_connector(with_token(
                    v1::GetConnectorRequest { id: "c1".into() },
                    token,
                ))
                .await,
        ),
        "ListConnectors" => outcome(
            connectors
                .list_connectors(with_token(v1::ListConnectorsRequest::default(), token))
                .await,
        ),
        "StartConnector" => outcome(
            connectors
                .start_connector(with_token(start_request("missing"), token))
                .await,
        ),
        "PauseConnector" => outcome(
            connectors
                .pause_connector(with_token(pause_request("missing"), token))
                .await,
        ),
        "ListRegions" => outcome(
            connectors
                .list_regions(with_token(v1::ListRegionsRequest {}, token))
                .await,
        ),
        "ListAgents" => outcome(
            agents
                .list_agents(with_token(v1::ListAgentsRequest::default(), token))
                .await,
        ),
        "ListReplicas" => outcome(
            agents
                .list_replicas(with_token(v1::ListReplicasRequest {}, token))
                .await,
        ),
        "ListAuditEvents" => outcome(
            AuditServiceClient::new(channel.clone())
                .list_audit_events(with_token(v1::ListAuditEventsRequest::default(), token))
                .await,
        ),
        "Connect" => outcome(connect_as(channel, token, hello("a1", "eu-2", "10.0.2.7")).await),
        other => panic!("unknown rpc {other}"),
    }
}

/// An open agent stream; dropping it ends the session.
type AgentStream = (
    tokio::sync::mpsc::Sender<v1::AgentMessage>,
    tonic::Streaming<v1::ControlMessage>,
);

/// Opens an agent stream as the holder of `token`.
async fn connect_as(
    channel: &Channel,
    token: Option<&str>,
    hello: v1::Hello,
) -> Result<AgentStream, tonic::Status> {
    let (outbound, receiver) = tokio::sync::mpsc::channel(4);
    outbound
        .send(v1::AgentMessage {
            message: Some(v1::agent_message::Message::Hello(hello)),
        })
        .await
        .unwrap();
    let mut stream = AgentServiceClient::new(channel.clone())
        .connect(with_token(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
            token,
        ))
        .await?
        .into_inner();
    match stream.message().await? {
        Some(_) => Ok((outbound, stream)),
        None => Err(tonic::Status::unknown("the stream ended")),
    }
}

#[tokio::test]
async fn every_rpc_checks_every_role() {
    use Outcome::*;
    let (app, _dir) = secured().await;
    let channel = app.channel().await;
    create_as_admin(&ConnectorServiceClient::new(channel.clone()), "c1").await;
    // Columns: no token, unknown token, viewer, operator, admin, agent.
    let matrix: [(&str, [Outcome; 6]); 10] = [
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
async fn serve_refuses_a_public_address_without_an_auth_file() {
    let db = TestDatabase::create().await;
    let output = tokio::task::spawn_blocking({
        let url = db.url.clone();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_connector-control"))
                .args(["serve", "--listen", "0.0.0.0:0"])
                .env("DATABASE_URL", url)
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
async fn the_audit_trail_names_who_did_what_from_where_allowed_or_not() {
    let (app, _dir) = secured().await;
    let channel = app.channel().await;
    let mut client = ConnectorServiceClient::new(channel.clone());
    create_as_admin(&client, "c1").await;
    client
        .start_connector(with_token(
            v1::StartConnectorRequest {
                request_id: "inc-7-start".into(),
                ..start_request("c1")
            },
            Some(OPERATOR),
        ))
        .await
        .unwrap();
    // Refused: not allowed, then not in a state to start.
    client
        .pause_connector(with_token(pause_request("c1"), Some(VIEWER)))
        .await
        .unwrap_err();
    client
        .start_connector(with_token(start_request("c1"), Some(OPERATOR)))
        .await
        .unwrap_err();
    let agent = connect_as(&channel, Some(AGENT), hello("a1", "eu-2", "10.0.2.7"))
        .await
        .unwrap();
    drop(agent);
    let audit = AuditServiceClient::new(channel.clone());
    let list = |request: v1::ListAuditEventsRequest| {
        let mut audit = audit.clone();
        async move {
            audit
                .list_audit_events(with_token(request, Some(VIEWER)))
                .await
                .map(|r| r.into_inner())
        }
    };
    // The session end is written when the server notices the stream closed.
    eventually(Duration::from_secs(10), || async {
        let events = list(v1::ListAuditEventsRequest::default())
            .await
            .unwrap()
            .events;
        events
            .iter()
            .any(|e| e.action == "AGENT_SESSION_END")
            .then_some(())
    })
    .await;
    connect_as(&channel, Some(AGENT), hello("a1", "eu-1", "10.0.2.7"))
        .await
        .unwrap_err();
    let events = list(v1::ListAuditEventsRequest::default())
        .await
        .unwrap()
        .events;
    let summary: Vec<(String, String, String, String)> = events
        .iter()
        .rev()
        .map(|e| {
            (
                e.action.clone(),
                e.principal.clone(),
                e.outcome.clone(),
                e.reason.clone(),
            )
        })
        .collect();
    let row = |a: &str, p: &str, o: &str, r: &str| {
        (a.to_owned(), p.to_owned(), o.to_owned(), r.to_owned())
    };
    assert_eq!(
        summary,
        [
            row("CREATE_CONNECTOR", "ada", "OK", ""),
            row("START_CONNECTOR", "otto", "OK", ""),
            row(
                "PAUSE_CONNECTOR",
                "vera",
                "PERMISSION_DENIED",
                "PERMISSION_DENIED"
            ),
            row(
                "START_CONNECTOR",
                "otto",
                "FAILED_PRECONDITION",
                "CONNECTOR_NOT_STOPPED"
            ),
            row("AGENT_SESSION_START", "agent-eu-2", "OK", ""),
            row(
                "AGENT_SESSION_END",
                "agent-eu-2",
                "OK",
                "AGENT_DISCONNECTED"
            ),
            row(
                "AGENT_SESSION_START",
                "agent-eu-2",
                "PERMISSION_DENIED",
                "PERMISSION_DENIED"
            ),
        ]
    );
    let started = &events[events.len() - 2];
    assert_eq!(started.request_id, "inc-7-start");
    assert!(started.peer.starts_with("127.0.0.1:"), "{started:?}");
    assert!(started.detail.starts_with("command "), "{started:?}");

    // One connector, two per page, oldest last.
    let first = list(v1::ListAuditEventsRequest {
        connector_id: "c1".into(),
        page_size: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(first.events.len(), 2);
    let second = list(v1::ListAuditEventsRequest {
        connector_id: "c1".into(),
        page_size: 2,
        page_token: first.next_page_token.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(second.events.len(), 2);
    assert_eq!(second.events[1].action, "CREATE_CONNECTOR");
    assert!(second.next_page_token.is_empty());
    let by_vera = list(v1::ListAuditEventsRequest {
        principal: "vera".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(by_vera.events.len(), 1);

    let bad = list(v1::ListAuditEventsRequest {
        page_token: "garbage".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(error_info(&bad).reason, "INVALID_PAGE_TOKEN");
    let bad = list(v1::ListAuditEventsRequest {
        page_size: 100_000,
        start_time: Some(timestamp(chrono::Utc::now())),
        end_time: Some(timestamp(chrono::Utc::now() - chrono::Duration::hours(1))),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&bad), ["end_time", "page_size"]);
}

#[tokio::test]
async fn each_principal_has_its_own_rate_limit_on_changes() {
    use connector_control::api::limits::{RateLimit, RateLimits};
    let dir = TempDir::new();
    let auth = Authenticator::from_file(&auth_file(&dir, "")).unwrap();
    // Admins: a burst of three, then one change a second: the fourth is
    // refused. Operators keep the default allowance.
    let limits = RateLimits {
        admin: RateLimit::new(1, 3),
        ..RateLimits::default()
    };
    let app = spawn_with_auth(auth, Some(limits)).await;
    let mut client = ConnectorServiceClient::new(app.channel().await);
    for i in 0..3 {
        create_as_admin(&client, &format!("c{i}")).await;
    }
    let status = client
        .start_connector(with_token(start_request("c0"), Some(ADMIN)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let info = error_info(&status);
    assert_eq!(info.reason, "RATE_LIMITED");
    // The limit and its purpose are in the answer.
    assert_eq!(info.metadata["role"], "admin");
    assert_eq!(info.metadata["limit_per_second"], "1");
    assert_eq!(info.metadata["burst"], "3");
    assert!(
        status.message().contains("--admin-rate-limit"),
        "{}",
        status.message()
    );
    let retry = tonic_types::StatusExt::get_error_details(&status)
        .retry_info()
        .and_then(|info| info.retry_delay)
        .expect("a RetryInfo with a delay");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(1),
        "{retry:?}"
    );
    assert_eq!(app.count("SELECT count(*) FROM commands").await, 0);
    // Another principal is not slowed by the first one's calls; reads are
    // not limited.
    client
        .start_connector(with_token(start_request("c0"), Some(OPERATOR)))
        .await
        .expect("operator has its own allowance");
    for _ in 0..5 {
        client
            .get_connector(with_token(
                v1::GetConnectorRequest { id: "c0".into() },
                Some(ADMIN),
            ))
            .await
            .expect("reads are not limited");
    }
}

#[tokio::test]
async fn the_default_limits_let_a_registration_job_and_an_incident_script_through() {
    // No auth file: every caller is an admin, as a registration job is.
    let app = spawn_app().await;
    for i in 0..300 {
        app.create(connector(&format!("c{i}"), "bulk")).await;
    }
    // An operator pausing thirty connectors in a row, with an auth file.
    let (secured, _dir) = secured().await;
    let client = ConnectorServiceClient::new(secured.channel().await);
    for i in 0..30 {
        create_as_admin(&client, &format!("c{i}")).await;
    }
    secured
        .sql("UPDATE connectors SET state = 'RUNNING', desired_state = 'RUNNING'")
        .await;
    for i in 0..30 {
        client
            .clone()
            .pause_connector(with_token(pause_request(&format!("c{i}")), Some(OPERATOR)))
            .await
            .unwrap_or_else(|status| panic!("pause {i}: {status:?}"));
    }
}

#[tokio::test]
async fn oversized_and_malformed_input_gets_a_precise_status_and_changes_nothing() {
    let (app, _dir) = secured().await;
    let mut client = ConnectorServiceClient::new(app.channel().await);
    // A request far beyond anything valid is refused before decoding.
    let mut huge = connector("c1", "orders");
    huge.name = "x".repeat(200_000);
    let status = client
        .create_connector(with_token(
            v1::CreateConnectorRequest {
                connector: Some(huge),
            },
            Some(ADMIN),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let info = error_info(&status);
    assert_eq!(info.reason, "MESSAGE_TOO_LARGE");
    assert_eq!(info.metadata["limit_bytes"], "65536");
    // Too long, but small enough to decode: the field is named.
    let mut long = connector("c1", "orders");
    long.name = "x".repeat(201);
    long.source.as_mut().unwrap().address = "a".repeat(513);
    let status = client
        .create_connector(with_token(
            v1::CreateConnectorRequest {
                connector: Some(long),
            },
            Some(ADMIN),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        ["connector.name", "connector.source.address"]
    );
    // Too many repeated entries.
    let status = client
        .list_connectors(with_token(
            v1::ListConnectorsRequest {
                states: vec![1; 5000],
                ..Default::default()
            },
            Some(VIEWER),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["states"]);
    assert_eq!(app.count("SELECT count(*) FROM connectors").await, 0);
    assert_eq!(
        app.count("SELECT count(*) FROM audit_events WHERE outcome = 'OK'")
            .await,
        0
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

#[tokio::test]
async fn a_flood_of_refused_calls_stays_bounded_and_hides_no_real_event() {
    use crate::observability::{sample, scrape};
    let db = TestDatabase::create().await;
    let dir = TempDir::new();
    let path = auth_file(&dir, "");
    let mut server = ServerProcess::spawn_with(
        &db.url,
        &[
            "--auth-file",
            path.to_str().unwrap(),
            // One window for the whole flood: its refusals are one event
            // now and one, with the count, when the server stops.
            "--refusal-window",
            "1h",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let metrics = server.metrics_addr();
    let channel = channel_to(&server.addr).await;
    let client = ConnectorServiceClient::new(channel.clone());
    create_as_admin(&client, "c1").await;
    const FLOOD: usize = 2_000;
    let flood = |token: &'static str| {
        (0..16)
            .map(|caller| {
                let client = client.clone();
                tokio::spawn(async move {
                    for i in (caller..FLOOD).step_by(16) {
                        let status = client
                            .clone()
                            .pause_connector(with_token(
                                pause_request(&format!("c{i}")),
                                Some(token),
                            ))
                            .await
                            .unwrap_err();
                        assert!(
                            matches!(
                                status.code(),
                                Code::PermissionDenied | Code::Unauthenticated
                            ),
                            "{status:?}"
                        );
                    }
                })
            })
            .collect::<Vec<_>>()
    };
    // The viewer may not pause: 2,000 denied calls; and 2,000 with a token
    // nobody has. Meanwhile an operator's real start.
    let mut callers = flood(VIEWER);
    callers.extend(flood("guessed-token"));
    let started = client
        .clone()
        .start_connector(with_token(start_request("c1"), Some(OPERATOR)))
        .await
        .unwrap()
        .into_inner();
    for caller in callers {
        caller.await.unwrap();
    }
    let count = |query: &'static str| {
        let db = &db;
        async move {
            db.client()
                .await
                .query_one(query, &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    // The real change is recorded at once, the flood as one event so far.
    let command_id = started.command.unwrap().id;
    let real: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM audit_events WHERE principal = 'otto'
             AND action = 'START_CONNECTOR' AND outcome = 'OK' AND detail LIKE '%' || $1",
            &[&command_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(real, 1);
    assert_eq!(
        count("SELECT count(*) FROM audit_events WHERE principal = 'vera'").await,
        1
    );
    // Unauthenticated calls: counted by peer, logged once.
    let body = scrape(&metrics).await;
    assert_eq!(
        sample(
            &body,
            "connector_control_unauthenticated_calls_total",
            &["peer=\"127.0.0.1\"", "reason=\"unknown_token\""]
        ),
        Some(FLOOD as f64),
        "{body}"
    );
    let lines = server.count_logged("unauthenticated calls refused");
    assert!((1..=2).contains(&lines), "{lines} log lines for the flood");

    // Stopped: the rest of the window is one more event, with the count.
    server.signal("TERM");
    tokio::task::spawn_blocking(move || {
        server.child.wait().unwrap();
    })
    .await
    .unwrap();
    assert_eq!(
        count("SELECT count(*) FROM audit_events WHERE principal = 'vera'").await,
        2
    );
    assert_eq!(
        count(
            "SELECT sum(count)::int8 FROM audit_events WHERE principal = 'vera'
               AND action = 'PAUSE_CONNECTOR' AND outcome = 'PERMISSION_DENIED'"
        )
        .await,
        FLOOD as i64
    );
}
