//! A hand-driven agent speaking the real protocol, for precise scenarios.

use super::*;
use connector_control::agent::AgentConfig;
use connector_control::proto::v1;
use std::time::Duration;
use tonic::transport::Channel;

/// A hand-driven agent speaking the real protocol, for precise scenarios.
pub struct TestAgent {
    pub id: String,
    pub welcome: v1::Welcome,
    outbound: tokio::sync::mpsc::Sender<v1::AgentMessage>,
    inbound: tonic::Streaming<v1::ControlMessage>,
}

pub fn hello(agent_id: &str, region: &str, server_ip: &str) -> v1::Hello {
    v1::Hello {
        agent_id: agent_id.to_owned(),
        instance_id: uuid::Uuid::new_v4().to_string(),
        region: region.to_owned(),
        server_ip: server_ip.to_owned(),
        version: "test".to_owned(),
        connectors: Vec::new(),
        capabilities: None,
    }
}

/// Opens a stream whose first message is `first`; the server's answer.
pub async fn open_stream(
    app: &TestApp,
    first: v1::AgentMessage,
) -> Result<
    (
        tokio::sync::mpsc::Sender<v1::AgentMessage>,
        tonic::Streaming<v1::ControlMessage>,
    ),
    tonic::Status,
> {
    open_stream_to(app.channel().await, first).await
}

/// As `open_stream`, over any channel.
pub async fn open_stream_to(
    channel: Channel,
    first: v1::AgentMessage,
) -> Result<
    (
        tokio::sync::mpsc::Sender<v1::AgentMessage>,
        tonic::Streaming<v1::ControlMessage>,
    ),
    tonic::Status,
> {
    use connector_control::proto::v1::agent_service_client::AgentServiceClient;
    let (outbound, receiver) = tokio::sync::mpsc::channel(16);
    // The hello is queued before the call is awaited, as agents must.
    outbound.send(first).await.unwrap();
    let mut client = AgentServiceClient::new(channel);
    let response = client
        .connect(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await?;
    Ok((outbound, response.into_inner()))
}

impl TestAgent {
    pub async fn connect(app: &TestApp, hello: v1::Hello) -> TestAgent {
        Self::connect_to(app.channel().await, hello).await
    }

    pub async fn connect_to(channel: Channel, hello: v1::Hello) -> TestAgent {
        let id = hello.agent_id.clone();
        let first = v1::AgentMessage {
            message: Some(v1::agent_message::Message::Hello(hello)),
        };
        let (outbound, mut inbound) = open_stream_to(channel, first).await.expect("Connect");
        let welcome = match next_message(&mut inbound).await {
            Ok(v1::control_message::Message::Welcome(welcome)) => welcome,
            other => panic!("expected welcome, got {other:?}"),
        };
        TestAgent {
            id,
            welcome,
            outbound,
            inbound,
        }
    }

    /// The next message from the control plane, or the stream's error.
    pub async fn next(&mut self) -> Result<v1::control_message::Message, tonic::Status> {
        next_message(&mut self.inbound).await
    }

    /// The next command; panics on anything else.
    pub async fn next_command(&mut self) -> v1::Command {
        match self.next().await {
            Ok(v1::control_message::Message::Command(command)) => command,
            other => panic!("agent {} expected a command, got {other:?}", self.id),
        }
    }

    /// A second handle on the outbound stream (for a background heartbeat).
    pub fn sender(&self) -> tokio::sync::mpsc::Sender<v1::AgentMessage> {
        self.outbound.clone()
    }

    pub async fn send(&self, message: v1::agent_message::Message) {
        self.outbound
            .send(v1::AgentMessage {
                message: Some(message),
            })
            .await
            .expect("the stream is open");
    }

    pub async fn heartbeat(&self, sequence: i64, connectors: Vec<v1::ConnectorStatus>) {
        self.send(v1::agent_message::Message::Heartbeat(v1::Heartbeat {
            sequence,
            connectors,
        }))
        .await;
    }

    /// Keeps the agent online while a test waits longer than it may stay
    /// silent: empty heartbeats, twice per interval, until the stream
    /// closes or the handle is dropped.
    pub fn keep_alive(&self) -> tokio_util::sync::DropGuard {
        let sender = self.sender();
        let stop = tokio_util::sync::CancellationToken::new();
        let guard = stop.clone().drop_guard();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(super::app::HEARTBEAT_INTERVAL / 2);
            for sequence in 1_000_000.. {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let heartbeat = v1::agent_message::Message::Heartbeat(v1::Heartbeat {
                    sequence,
                    connectors: Vec::new(),
                });
                let message = v1::AgentMessage {
                    message: Some(heartbeat),
                };
                if sender.send(message).await.is_err() {
                    return;
                }
            }
        });
        guard
    }

    /// Answers `command` as carried out, reporting the connector in `state`.
    pub async fn succeed(&self, command: &v1::Command, state: v1::ConnectorState) {
        self.send(v1::agent_message::Message::Result(v1::CommandResult {
            command_id: command.id.clone(),
            success: true,
            status: Some(status(&command.connector_id, state, command.generation)),
            ..Default::default()
        }))
        .await;
    }

    /// Like `fail`, on a stream that may already be closed.
    pub async fn try_fail(&self, command: &v1::Command, reason: &str, message: &str) {
        let _ = self
            .outbound
            .send(v1::AgentMessage {
                message: Some(v1::agent_message::Message::Result(v1::CommandResult {
                    retriable: None,
                    trace_context: Default::default(),
                    command_id: command.id.clone(),
                    success: false,
                    error_reason: reason.to_owned(),
                    error_message: message.to_owned(),
                    status: None,
                })),
            })
            .await;
    }

    pub async fn fail(&self, command: &v1::Command, reason: &str, message: &str) {
        self.send(v1::agent_message::Message::Result(v1::CommandResult {
            retriable: None,
            trace_context: Default::default(),
            command_id: command.id.clone(),
            success: false,
            error_reason: reason.to_owned(),
            error_message: message.to_owned(),
            status: None,
        }))
        .await;
    }
}

async fn next_message(
    inbound: &mut tonic::Streaming<v1::ControlMessage>,
) -> Result<v1::control_message::Message, tonic::Status> {
    match tokio::time::timeout(Duration::from_secs(10), inbound.message()).await {
        Ok(Ok(Some(message))) => Ok(message.message.expect("a message")),
        Ok(Ok(None)) => Err(tonic::Status::unavailable("stream ended")),
        Ok(Err(status)) => Err(status),
        Err(_) => panic!("no control message within 10 s"),
    }
}

pub fn status(
    connector_id: &str,
    state: v1::ConnectorState,
    generation: i64,
) -> v1::ConnectorStatus {
    v1::ConnectorStatus {
        connector_id: connector_id.to_owned(),
        state: state as i32,
        generation,
        ..Default::default()
    }
}

/// The reference agent `agent_id` in eu-2 (10.0.2.9), connecting to
/// `address` (host:port) without TLS or a token.
pub fn agent_config(address: impl std::fmt::Display, agent_id: &str) -> AgentConfig {
    AgentConfig {
        control_plane: vec![format!("http://{address}")],
        bearer: Default::default(),
        tls: None,
        agent_id: agent_id.to_owned(),
        region: "eu-2".to_owned(),
        server_ip: "10.0.2.9".to_owned(),
    }
}

/// An app whose connector c1 runs on agent a1 (eu-2): the start answered
/// RUNNING and recorded.
pub async fn running_c1() -> (TestApp, TestAgent, v1::Command) {
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let mut agent = TestAgent::connect(&app, hello("a1", "eu-2", "10.0.2.7")).await;
    app.start(start_request("c1")).await.unwrap();
    let command = agent.next_command().await;
    agent.succeed(&command, v1::ConnectorState::Running).await;
    app.connector_becomes("c1", |c| c.state == v1::ConnectorState::Running as i32)
        .await;
    (app, agent, command)
}
