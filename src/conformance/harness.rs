//! The conformance suite's control plane: an AgentService that hands each
//! `Connect` stream to the checks, which script what it sends and read
//! what the agent answers.

use super::wire::{Raw, agent_service_server::AgentService};
use crate::proto::v1::{self, AgentMessage, ControlMessage, agent_message, control_message};
use prost::Message;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// One `Connect` call of the agent under test.
pub struct Stream {
    pub inbound: Streaming<AgentMessage>,
    pub outbound: mpsc::Sender<Result<Raw, Status>>,
    /// When the call arrived.
    pub at: Instant,
    /// Heartbeats read while waiting for something else.
    pub heartbeats: Vec<(Instant, v1::Heartbeat)>,
}

/// The service: every call goes to the checks.
pub struct Harness {
    pub calls: mpsc::Sender<Stream>,
}

#[tonic::async_trait]
impl AgentService for Harness {
    type ConnectStream = ReceiverStream<Result<Raw, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let (outbound, receiver) = mpsc::channel(64);
        let stream = Stream {
            inbound: request.into_inner(),
            outbound,
            at: Instant::now(),
            heartbeats: Vec::new(),
        };
        self.calls
            .send(stream)
            .await
            .map_err(|_| Status::unavailable("the conformance run is over"))?;
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

impl Stream {
    /// The next message, within `within`.
    pub async fn next(&mut self, within: Duration) -> Result<agent_message::Message, String> {
        match tokio::time::timeout(within, self.inbound.message()).await {
            Err(_) => Err(format!("nothing within {within:?}")),
            Ok(Err(status)) => Err(format!("the stream broke: {status}")),
            Ok(Ok(None)) => Err("the agent closed the stream".to_owned()),
            Ok(Ok(Some(AgentMessage { message: None }))) => {
                Err("a message with nothing in it".to_owned())
            }
            Ok(Ok(Some(AgentMessage {
                message: Some(message),
            }))) => Ok(message),
        }
    }

    pub async fn send(&self, message: control_message::Message) -> Result<(), String> {
        let message = ControlMessage {
            message: Some(message),
        };
        self.send_raw(message.encode_to_vec()).await
    }

    /// Sends bytes as they are: an encoded `ControlMessage`, perhaps with
    /// fields the agent's proto does not have.
    pub async fn send_raw(&self, bytes: Vec<u8>) -> Result<(), String> {
        self.outbound
            .send(Ok(Raw(bytes)))
            .await
            .map_err(|_| "the stream is closed".to_owned())
    }

    /// The result answering `command_id`, keeping the heartbeats read on
    /// the way.
    pub async fn result(
        &mut self,
        command_id: &str,
        within: Duration,
    ) -> Result<v1::CommandResult, String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await? {
                agent_message::Message::Result(result) if result.command_id == command_id => {
                    return Ok(result);
                }
                agent_message::Message::Result(other) => {
                    return Err(format!(
                        "a result for command {:?}, waiting for {command_id:?}",
                        other.command_id
                    ));
                }
                agent_message::Message::Heartbeat(beat) => {
                    self.heartbeats.push((Instant::now(), beat));
                }
                agent_message::Message::Hello(_) => {
                    return Err("a second hello on one stream".to_owned());
                }
            }
        }
    }

    /// Reads heartbeats until `count` more arrived.
    pub async fn heartbeats(&mut self, count: usize, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let goal = self.heartbeats.len() + count;
        while self.heartbeats.len() < goal {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await? {
                agent_message::Message::Heartbeat(beat) => {
                    self.heartbeats.push((Instant::now(), beat));
                }
                other => return Err(format!("expected a heartbeat, got {other:?}")),
            }
        }
        Ok(())
    }
}
