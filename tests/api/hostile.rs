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
async fn undecodable_bytes_are_invalid_argument_on_every_rpc_a_client_does_not_stream() {
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
    assert_eq!(
        checked, 15,
        "every RPC a client does not stream: 14 unary, WatchConnectors"
    );
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

/// A TCP connection from 127.0.0.2 (outside the reserve kept for the
/// host's own probes, 127.0.0.1).
async fn connect_from_elsewhere(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Completes when the server has closed `stream` (EOF or reset).
async fn closed_by_server(stream: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            // HTTP/2 settings or a GOAWAY before the close.
            Ok(_) => continue,
        }
    }
}

async fn health_check(addr: &str) -> tonic_health::pb::health_check_response::ServingStatus {
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel_to(addr).await);
    let response = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("the health check is answered");
    response.into_inner().status()
}

#[tokio::test]
async fn silent_connections_are_closed_and_never_starve_health_checks_or_callers() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let db = TestDatabase::create().await;
    // 1,024 files in all: 3,000 silent connections are three times that.
    let mut server = ServerProcess::spawn_with_open_file_limit(
        &db.url,
        &["--handshake-timeout", "2s", "--max-connections", "100"],
        1024,
    );
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    // A caller connected before the flood.
    let mut client =
        v1::connector_service_client::ConnectorServiceClient::new(channel_to(&server.addr).await);
    client
        .create_connector(v1::CreateConnectorRequest {
            connector: Some(connector("c1", "c1")),
        })
        .await
        .unwrap();

    let mut silent = Vec::new();
    for _ in 0..3_000 {
        silent.push(connect_from_elsewhere(addr).await);
    }
    // During the flood: a health check on a new connection, and the
    // caller's calls, are answered.
    assert_eq!(health_check(&server.addr).await, ServingStatus::Serving);
    client
        .get_connector(v1::GetConnectorRequest { id: "c1".into() })
        .await
        .expect("an existing caller is served");
    // Every silent connection is closed: evicted by newer ones, or at the
    // handshake timeout.
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        for stream in &mut silent {
            closed_by_server(stream).await;
        }
    })
    .await
    .expect("silent connections are closed");
    drop(silent);

    // Connections that did send their preface count against the cap:
    // past it, new ones are closed and the cap is logged, while the
    // caller and the host's own health checks are still served.
    let mut talking = Vec::new();
    for _ in 0..150 {
        use tokio::io::AsyncWriteExt;
        let mut stream = connect_from_elsewhere(addr).await;
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        talking.push(stream);
    }
    let line = tokio::task::spawn_blocking(move || {
        let line = server.wait_for_log("connection cap reached");
        (server, line)
    })
    .await
    .unwrap();
    let (server, line) = line;
    assert!(line.contains("max_connections=100"), "{line}");
    client
        .get_connector(v1::GetConnectorRequest { id: "c1".into() })
        .await
        .expect("an existing caller is served at the cap");
    assert_eq!(health_check(&server.addr).await, ServingStatus::Serving);
    drop(talking);
}

#[tokio::test]
async fn streams_that_never_say_hello_are_closed_and_do_not_stop_other_calls() {
    let app = spawn_app().await;
    let channel = app.channel().await;
    let mut silent = Vec::new();
    for _ in 0..50 {
        let mut client = v1::agent_service_client::AgentServiceClient::new(channel.clone());
        let (tx, rx) = tokio::sync::mpsc::channel::<v1::AgentMessage>(1);
        silent.push(tokio::spawn(async move {
            let _keep_open = tx;
            client
                .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        }));
    }
    // Meanwhile, on the same connection and on a new one, calls are answered.
    app.list(v1::ListConnectorsRequest::default())
        .await
        .expect("answered");
    assert_eq!(
        health_check(&app.addr.to_string()).await,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    for stream in silent {
        let status = tokio::time::timeout(std::time::Duration::from_secs(30), stream)
            .await
            .expect("closed in bounded time")
            .unwrap()
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(error_info(&status).reason, "HELLO_REQUIRED");
    }
    assert_eq!(app.count("SELECT count(*) FROM agents").await, 0);
}

/// The console's address, from the server's log.
fn console_addr(server: &mut ServerProcess) -> std::net::SocketAddr {
    server
        .wait_for_log("serving the console")
        .split("addr=")
        .nth(1)
        .expect("the console line names the address")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A console page fetched on a new connection: its status line.
async fn console_get(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"GET /assets/console.css HTTP/1.1\r\nHost: console\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn silent_connections_to_the_console_are_closed_and_never_starve_the_grpc_port() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let db = TestDatabase::create().await;
    // 1,024 files in all; 3,000 silent sockets to the console.
    let mut server = ServerProcess::spawn_with_open_file_limit(
        &db.url,
        &["--handshake-timeout", "2s", "--console-idle-timeout", "1s"],
        1024,
    );
    let console = console_addr(&mut server);
    let mut silent = Vec::new();
    for _ in 0..3_000 {
        silent.push(connect_from_elsewhere(console).await);
    }
    // During the flood: gRPC health checks and callers on new
    // connections, and the console itself, are served.
    assert_eq!(health_check(&server.addr).await, ServingStatus::Serving);
    v1::connector_service_client::ConnectorServiceClient::new(channel_to(&server.addr).await)
        .list_connectors(v1::ListConnectorsRequest::default())
        .await
        .expect("a new caller is served");
    assert_eq!(console_get(console).await, "HTTP/1.1 200 OK");
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        for stream in &mut silent {
            closed_by_server(stream).await;
        }
    })
    .await
    .expect("silent console connections are closed");
    drop(silent);

    // A connection that asked once and then says nothing is closed after
    // the idle timeout.
    use tokio::io::AsyncWriteExt;
    let mut idle = tokio::net::TcpStream::connect(console).await.unwrap();
    idle.write_all(b"GET /assets/console.css HTTP/1.1\r\nHost: console\r\n\r\n")
        .await
        .unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        closed_by_server(&mut idle),
    )
    .await
    .expect("an idle console connection is closed");
}
