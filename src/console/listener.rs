//! The console's listener for `axum::serve`: plain TCP, or TLS with each
//! handshake in a task of its own (bounded in time and number), so that a
//! slow or silent client holds up nobody else's connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tracing::{debug, warn};

/// A TLS handshake must complete within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes in progress at once, at most; more wait to be accepted.
const MAX_HANDSHAKES: usize = 256;

pub struct ConsoleListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(Either<TcpStream, TlsStream<TcpStream>>, SocketAddr)>,
}

impl ConsoleListener {
    /// Accepts on `listener` from now on; with `tls`, yields connections
    /// once their handshake completed.
    pub fn new(
        listener: TcpListener,
        tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    ) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (sender, ready) = mpsc::channel(64);
        tokio::spawn(accept_loop(listener, tls.map(TlsAcceptor::from), sender));
        Self { local, ready }
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    sender: mpsc::Sender<(Either<TcpStream, TlsStream<TcpStream>>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let accepted = tokio::select! {
            _ = sender.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, or reset before it was accepted.
                warn!(%error, "accepting a console connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let Some(acceptor) = tls.clone() else {
            if sender.send((Either::Left(tcp), peer)).await.is_err() {
                return;
            }
            continue;
        };
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let sender = sender.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = sender.send((Either::Right(stream), peer)).await;
                }
                Ok(Err(error)) => debug!(%peer, %error, "console TLS handshake failed"),
                Err(_) => debug!(%peer, "console TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for ConsoleListener {
    type Io = Either<TcpStream, TlsStream<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
