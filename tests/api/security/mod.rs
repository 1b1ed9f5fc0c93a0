//! Who may do what: the role matrix (every RPC, every role, no token, a bad
//! token), agents held to their region, the auth file reloaded on SIGHUP,
//! secure defaults, and the CLI's token.

mod agents;
mod audit;
mod limits;
mod reload;
mod roles;

// The vocabulary of the tests, which the area files take with
// `use super::*`.
#[allow(unused_imports)]
use crate::helpers::*;
#[allow(unused_imports)]
use connector_control::auth::{Authenticator, token_sha256};
#[allow(unused_imports)]
use connector_control::proto::v1::{
    self, agent_service_client::AgentServiceClient, audit_service_client::AuditServiceClient,
    connector_service_client::ConnectorServiceClient,
};
#[allow(unused_imports)]
use std::time::Duration;
#[allow(unused_imports)]
use tonic::Code;
#[allow(unused_imports)]
use tonic::transport::Channel;

pub(super) const VIEWER: &str = "viewer-token-1";
pub(super) const OPERATOR: &str = "operator-token-2";
pub(super) const ADMIN: &str = "admin-token-3";
pub(super) const AGENT: &str = "agent-token-4";

pub(super) fn auth_file(dir: &TempDir, extra: &str) -> std::path::PathBuf {
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
pub(super) async fn create_as_admin(client: &ConnectorServiceClient<Channel>, id: &str) {
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

pub(super) async fn secured() -> (TestApp, TempDir) {
    let dir = TempDir::new();
    let auth = Authenticator::from_file(&auth_file(&dir, "")).unwrap();
    (spawn_with_auth(auth, None).await, dir)
}

pub(super) fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Allowed,
    Unauthenticated,
    Denied,
}

pub(super) fn outcome<T>(result: Result<T, tonic::Status>) -> Outcome {
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
pub(super) async fn call(channel: &Channel, rpc: &str, token: Option<&str>, n: usize) -> Outcome {
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
        "BatchPauseConnectors" => outcome(
            connectors
                .batch_pause_connectors(with_token(
                    v1::BatchPauseConnectorsRequest {
                        ids: vec!["missing".into()],
                        ..Default::default()
                    },
                    token,
                ))
                .await,
        ),
        "BatchStartConnectors" => outcome(
            connectors
                .batch_start_connectors(with_token(
                    v1::BatchStartConnectorsRequest {
                        ids: vec!["missing".into()],
                        ..Default::default()
                    },
                    token,
                ))
                .await,
        ),
        "MarkConnectorStopped" => outcome(
            connectors
                .mark_connector_stopped(with_token(
                    v1::MarkConnectorStoppedRequest {
                        id: "missing".into(),
                        reason: "test".into(),
                        ..Default::default()
                    },
                    token,
                ))
                .await,
        ),
        "UpdateRestartPolicy" => outcome(
            connectors
                .update_restart_policy(with_token(
                    v1::UpdateRestartPolicyRequest {
                        id: "missing".into(),
                        restart_policy: Some(Default::default()),
                        ..Default::default()
                    },
                    token,
                ))
                .await,
        ),
        "ListCommands" => outcome(
            connectors
                .list_commands(with_token(
                    v1::ListCommandsRequest {
                        connector_id: "c1".into(),
                        ..Default::default()
                    },
                    token,
                ))
                .await,
        ),
        // Allowed once the stream is open (its first event is then read).
        "WatchConnectors" => outcome(
            connectors
                .watch_connectors(with_token(v1::WatchConnectorsRequest::default(), token))
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
pub(super) type AgentStream = (
    tokio::sync::mpsc::Sender<v1::AgentMessage>,
    tonic::Streaming<v1::ControlMessage>,
);

/// Opens an agent stream as the holder of `token`.
pub(super) async fn connect_as(
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
