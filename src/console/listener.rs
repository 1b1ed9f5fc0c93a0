//! The console's listener for `axum::serve`, on the accept loop the gRPC
//! port uses (`crate::connections`): a cap on open connections, a bound
//! on connections still sending their first request (the header timeout:
//! a silent socket is closed), TLS handshakes each in a task of their own,
//! and an idle timeout. Its share of file descriptors is its own, so that
//! silent sockets to the console never starve the gRPC port.

use crate::connections::{self, Conn, ConnectionLimits, Greeting};
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::either::Either;

type Io = Either<TcpStream, TlsStream<TcpStream>>;

pub struct ConsoleListener {
    local: SocketAddr,
    ready: ReceiverStream<std::io::Result<Conn<Io>>>,
}

impl ConsoleListener {
    /// Accepts on `listener` from now on, within `limits`; with `tls`,
    /// yields connections once their handshake completed.
    pub fn new(
        listener: TcpListener,
        tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
        limits: ConnectionLimits,
        idle: std::time::Duration,
    ) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let handshake: connections::Handshake<Io> = match tls {
            None => Arc::new(|tcp| Box::pin(async move { Ok(Either::Left(tcp)) })),
            Some(config) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                Arc::new(move |tcp| {
                    let acceptor = acceptor.clone();
                    Box::pin(async move { acceptor.accept(tcp).await.map(Either::Right) })
                })
            }
        };
        let greeting = Greeting::Http1 { idle };
        let ready = connections::incoming(listener, limits, handshake, greeting);
        Self { local, ready }
    }
}

impl axum::serve::Listener for ConsoleListener {
    type Io = Conn<Io>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.ready.next().await {
                Some(Ok(conn)) => {
                    let peer = conn.peer();
                    return (conn, peer);
                }
                Some(Err(_)) => continue,
                // The accept loop only ends when this listener is dropped.
                None => std::future::pending().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
