//! Bytes no well-behaved client sends: undecodable protobuf on every RPC and
//! on the agents' stream, and messages over the size limit. Sent with a
//! raw codec over a real connection, as an attacker's client would.

use crate::helpers::*;
use bytes::{Buf, BufMut, Bytes};
use connector_control::proto::v1;
use prost::Message;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;

/// Sends and receives message bytes as they are.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Field 1 with wire type 7, which does not exist: no message decodes it.
const GARBAGE: &[u8] = b"\x0f\x01\x02";

async fn raw_unary(
    app: &TestApp,
    path: &str,
    body: Bytes,
) -> Result<tonic::Response<Bytes>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(app.channel().await);
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(body),
        PathAndQuery::try_from(path.to_owned()).unwrap(),
        Raw,
    )
    .await
}

/// Opens Connect with raw messages; the response stream or the status.
async fn raw_stream(
    app: &TestApp,
    messages: Vec<Bytes>,
) -> Result<tonic::Streaming<Bytes>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(app.channel().await);
    grpc.ready().await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    for message in messages {
        tx.send(message).await.unwrap();
    }
    // Kept open: the server, not the end of our stream, ends the session.
    std::mem::forget(tx);
    grpc.streaming(
        tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
        PathAndQuery::from_static("/connector.v1.AgentService/Connect"),
        Raw,
    )
    .await
    .map(tonic::Response::into_inner)
}

fn hello_bytes(agent_id: &str) -> Bytes {
    v1::AgentMessage {
        message: Some(v1::agent_message::Message::Hello(hello(
            agent_id, "eu-2", "10.0.2.7",
        ))),
    }
    .encode_to_vec()
    .into()
}

#[tokio::test]
async fn undecodable_bytes_are_invalid_argument_on_every_unary_rpc() {
    let app = spawn_app().await;
    let pool = prost_reflect::DescriptorPool::decode(connector_control::proto::FILE_DESCRIPTOR_SET)
        .unwrap();
    let mut checked = 0;
    for service in pool.services() {
        for method in service.methods() {
            if method.is_client_streaming() {
                continue;
            }
            let path = format!("/{}/{}", service.full_name(), method.name());
            let status = raw_unary(&app, &path, Bytes::from_static(GARBAGE))
                .await
                .expect_err(&path);
            assert_eq!(status.code(), Code::InvalidArgument, "{path}: {status:?}");
            let info = error_info(&status);
            assert_eq!(info.reason, "MALFORMED_MESSAGE", "{path}");
            assert_eq!(
                info.metadata["message"],
                method.input().full_name(),
                "{path}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 9, "every unary RPC of the three services");
    assert_eq!(app.count("SELECT count(*) FROM audit_events").await, 0);
}

#[tokio::test]
async fn an_undecodable_first_message_on_the_agent_stream_is_invalid_argument() {
    let app = spawn_app().await;
    let status = raw_stream(&app, vec![Bytes::from_static(GARBAGE)])
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(error_info(&status).reason, "MALFORMED_MESSAGE");
    assert_eq!(app.count("SELECT count(*) FROM agents").await, 0);
}

#[tokio::test]
async fn a_request_over_the_size_limit_is_resource_exhausted_naming_the_limit() {
    let app = spawn_app().await;
    // 100 KB of query: gRPC's own message-size answer, with the limit.
    let status = app
        .list(v1::ListConnectorsRequest {
            query: "x".repeat(100_000),
            ..Default::default()
        })
        .await
        .expect_err("too large");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let info = error_info(&status);
    assert_eq!(info.reason, "MESSAGE_TOO_LARGE");
    assert_eq!(info.metadata["limit_bytes"], "65536");
    let size: usize = info.metadata["message_bytes"].parse().unwrap();
    assert!(size > 100_000, "{size}");
    assert!(status.message().contains("65536"), "{}", status.message());
    // Just under the limit, the request is read and its field judged.
    let status = app
        .list(v1::ListConnectorsRequest {
            query: "x".repeat(60_000),
            ..Default::default()
        })
        .await
        .expect_err("too long a query");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["query"]);
}

#[tokio::test]
async fn a_malformed_message_on_an_open_agent_stream_ends_it_with_invalid_argument() {
    let app = spawn_app().await;
    let mut inbound = raw_stream(&app, vec![hello_bytes("a1"), Bytes::from_static(GARBAGE)])
        .await
        .expect("welcomed");
    let welcome = inbound.message().await.unwrap().expect("welcome");
    assert!(matches!(
        v1::ControlMessage::decode(welcome).unwrap().message,
        Some(v1::control_message::Message::Welcome(_))
    ));
    let end = loop {
        match inbound.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended with status OK"),
            Err(status) => break status,
        }
    };
    assert_eq!(end.code(), Code::InvalidArgument, "{end:?}");
    assert_eq!(error_info(&end).reason, "MALFORMED_MESSAGE");
    // The session is recorded as ended.
    eventually(std::time::Duration::from_secs(10), || async {
        (app.count("SELECT count(*) FROM agents WHERE disconnect_time IS NOT NULL")
            .await
            == 1)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_agent_message_over_the_size_limit_ends_the_stream_with_resource_exhausted() {
    let app = spawn_app().await;
    let mut huge = hello("a1", "eu-2", "10.0.2.7");
    huge.version = "v".repeat(9 * 1024 * 1024);
    let first: Bytes = v1::AgentMessage {
        message: Some(v1::agent_message::Message::Hello(huge)),
    }
    .encode_to_vec()
    .into();
    let status = raw_stream(&app, vec![first]).await.expect_err("refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let info = error_info(&status);
    assert_eq!(info.reason, "MESSAGE_TOO_LARGE");
    assert_eq!(info.metadata["limit_bytes"], (8 * 1024 * 1024).to_string());
}

#[test]
fn a_malformed_agent_message_is_logged_with_the_agents_id() {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let db = TestDatabase::create().await;
        let mut server = ServerProcess::spawn(&db.url);
        let channel = channel_to(&server.addr).await;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(hello_bytes("agent-logged")).await.unwrap();
        tx.send(Bytes::from_static(GARBAGE)).await.unwrap();
        let mut inbound = grpc
            .streaming(
                tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
                PathAndQuery::from_static("/connector.v1.AgentService/Connect"),
                Raw,
            )
            .await
            .unwrap()
            .into_inner();
        while let Ok(Some(_)) = inbound.message().await {}
        let line = tokio::task::spawn_blocking(move || {
            server.wait_for_log("ending the agent's session with an error")
        })
        .await
        .unwrap();
        assert!(line.contains("agent_id=agent-logged"), "{line}");
        assert!(line.contains("InvalidArgument"), "{line}");
        drop(tx);
    });
}
