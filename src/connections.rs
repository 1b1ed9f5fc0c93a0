//! Accepting connections with bounds, so that idle or hostile connections
//! cannot take the file descriptors that health checks, callers and the
//! database pool need.
//!
//! - A new connection must complete its handshake (TLS, when served) and
//!   send the HTTP/2 client preface within `handshake_timeout`; until then
//!   it is *handshaking*, and only then handed to the gRPC server.
//! - At most `handshaking` connections handshake at once. When one more
//!   arrives, the oldest is closed: a flood of silent connections evicts
//!   itself, while a health check, which sends its preface at once, gets
//!   through.
//! - At most `max_connections` connections are open past their handshake;
//!   beyond it a new one is closed, and the cap is logged (bounded) and
//!   counted. Connections already open go on being served, and
//!   `LOCAL_RESERVE` more are kept for the host's own probes (from
//!   127.0.0.1 or ::1: grpc_health_probe, an exec health check), so that
//!   the process still reports its health at the cap.
//! - `budget` sizes both from the process's open-file limit (raised to its
//!   hard limit at start-up), keeping a reserve for everything else, and,
//!   when the console is served, a share of its own for the console's
//!   port, so that silent sockets to the console never take what gRPC
//!   callers and health checks need.
//! - The console (HTTP/1.1) is accepted by the same loop: its greeting is
//!   its first request's header block (within `handshake_timeout`: the
//!   header timeout), and a connection with no traffic either way for
//!   `--console-idle-timeout` is closed.

use bytes::Bytes;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// What every HTTP/2 client sends first (RFC 9113, 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Connections handshaking at once, at most (fewer when the open-file
/// limit is low).
const MAX_HANDSHAKING: usize = 1024;

/// File descriptors kept for the rest of the process: the listener, the
/// database pool and listener connection, the metrics listener, logs,
/// files, and headroom.
const RESERVED_FDS: u64 = 256;

/// Connections beyond the cap for the host's own probes.
const LOCAL_RESERVE: usize = 32;

/// The cap is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The console's connections past their first request, at most: a few
/// people's browsers (each opens a handful, one of them the live stream).
const CONSOLE_MAX_CONNECTIONS: usize = 256;

/// Console connections still sending their first request, at most.
const CONSOLE_HANDSHAKING: usize = 64;

/// The largest header block of a console request.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// What a new connection must send first, within the handshake timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Greeting {
    /// The HTTP/2 client preface (gRPC).
    Http2,
    /// An HTTP/1.1 request's whole header block (the console); afterwards
    /// the connection closes after `idle` without traffic.
    Http1 { idle: Duration },
}

/// How many connections may be open, and how fast they must say hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections past their handshake.
    pub max_connections: usize,
    /// Connections still handshaking.
    pub handshaking: usize,
    /// Time for TLS and the HTTP/2 preface (or the console's first
    /// request headers).
    pub handshake_timeout: Duration,
}

/// The limits of the gRPC port and, if served, the console's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub grpc: ConnectionLimits,
    pub console: Option<ConnectionLimits>,
}

impl ConnectionLimits {
    /// Limits within an open-file limit of `nofile`, with `pool` database
    /// connections: `max_connections` is lowered (and a warning logged)
    /// when the limit cannot hold it beside the handshaking connections
    /// and the reserve.
    pub fn budget(
        max_connections: usize,
        handshake_timeout: Duration,
        nofile: u64,
        pool: usize,
    ) -> Self {
        Self::share(max_connections, handshake_timeout, nofile, pool, false).grpc
    }

    /// `budget`, and with `console` a share for the console's port taken
    /// out first (a quarter of the limit at most), so that the console's
    /// connections, however many, never use what the gRPC port has.
    pub fn share(
        max_connections: usize,
        handshake_timeout: Duration,
        nofile: u64,
        pool: usize,
        console: bool,
    ) -> Budget {
        let console = console.then(|| {
            let quarter = usize::try_from(nofile / 4).unwrap_or(usize::MAX).max(2);
            let handshaking = CONSOLE_HANDSHAKING.min(quarter / 2).max(1);
            ConnectionLimits {
                max_connections: CONSOLE_MAX_CONNECTIONS.min(quarter - handshaking).max(1),
                handshaking,
                handshake_timeout,
            }
        });
        let console_share = console.map_or(0, |c| (c.max_connections + c.handshaking) as u64);
        let nofile = nofile.saturating_sub(console_share);
        let reserve = RESERVED_FDS + LOCAL_RESERVE as u64 + pool as u64;
        let handshaking = MAX_HANDSHAKING.min(usize::try_from(nofile / 4).unwrap_or(usize::MAX));
        let room = nofile.saturating_sub(reserve + handshaking as u64);
        let room = usize::try_from(room).unwrap_or(usize::MAX).max(1);
        if max_connections > room {
            warn!(
                requested = max_connections,
                allowed = room,
                open_file_limit = nofile + console_share,
                console_share,
                "--max-connections lowered to fit the open-file limit (raise it with ulimit -n \
                 or LimitNOFILE)"
            );
        }
        Budget {
            grpc: Self {
                max_connections: max_connections.min(room),
                handshaking: handshaking.max(1),
                handshake_timeout,
            },
            console,
        }
    }
}

/// Raises the soft open-file limit to the hard one; returns the limit in
/// force.
pub fn raise_open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
            warn!(%error, soft, "could not raise the open-file limit");
            soft
        }
    }
}

/// A connection past its handshake: what it sent first (the preface, or
/// the console's request headers) is read again by the HTTP server, then
/// the stream itself. Counted while it lives; closed after `idle` without
/// traffic, if set.
pub struct Conn<IO> {
    io: IO,
    preface: Bytes,
    peer: std::net::SocketAddr,
    idle: Option<Idle>,
    _open: OpenGuard,
}

/// The idle timeout of a connection: reset by every byte either way.
struct Idle {
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Idle {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn active(&mut self) {
        let deadline = tokio::time::Instant::now() + self.timeout;
        self.sleep.as_mut().reset(deadline);
    }

    /// Ready (an error) once the connection was idle too long.
    fn expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        self.sleep.as_mut().poll(cx).map(|()| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "no traffic within the idle timeout",
            )
        })
    }
}

impl<IO> Conn<IO> {
    /// The address the connection came from.
    pub fn peer(&self) -> std::net::SocketAddr {
        self.peer
    }

    /// A write that went through is traffic: the idle clock starts again.
    fn wrote(&mut self, written: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let (Poll::Ready(Ok(_)), Some(idle)) = (&written, &mut self.idle) {
            idle.active();
        }
        written
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Conn<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.preface.is_empty() {
            let n = self.preface.len().min(buf.remaining());
            let head = self.preface.split_to(n);
            buf.put_slice(&head);
            return Poll::Ready(Ok(()));
        }
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if let Some(idle) = &mut this.idle {
                    idle.active();
                }
                Poll::Ready(result)
            }
            Poll::Pending => match &mut this.idle {
                Some(idle) => idle.expired(cx).map(Err),
                None => Poll::Pending,
            },
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Conn<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(written)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The peer's address (and, over TLS, its certificates), as tonic's own
/// streams report them: `Request::remote_addr` and `peer_certs` work.
impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for Conn<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// Counts an open connection until it is dropped.
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Turns an accepted TCP stream into the stream HTTP/2 runs on (TLS, or
/// the stream itself).
pub type Handshake<IO> =
    Arc<dyn Fn(TcpStream) -> Pin<Box<dyn Future<Output = io::Result<IO>> + Send>> + Send + Sync>;

/// The plaintext handshake: nothing.
pub fn plaintext() -> Handshake<TcpStream> {
    Arc::new(|tcp| Box::pin(async move { Ok(tcp) }))
}

/// The TLS handshake.
pub fn tls(
    config: Arc<tokio_rustls::rustls::ServerConfig>,
) -> Handshake<tokio_rustls::server::TlsStream<TcpStream>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    Arc::new(move |tcp| {
        let acceptor = acceptor.clone();
        Box::pin(async move { acceptor.accept(tcp).await })
    })
}

/// Why a connection was closed before the gRPC server saw it.
#[derive(Clone, Copy, Debug)]
enum Refused {
    /// No handshake and preface in time.
    Timeout,
    /// The oldest handshaking connection, closed for a newer one.
    Evicted,
    /// The cap of open connections was reached.
    Cap,
    /// The handshake failed or the preface was not HTTP/2's.
    Handshake,
}

impl Refused {
    fn as_str(self) -> &'static str {
        match self {
            Refused::Timeout => "handshake_timeout",
            Refused::Evicted => "evicted",
            Refused::Cap => "connection_cap",
            Refused::Handshake => "handshake_failed",
        }
    }
}

struct Shared {
    limits: ConnectionLimits,
    open: Arc<AtomicUsize>,
    /// Handshaking connections, oldest first: an id and how to close it.
    handshaking: Mutex<VecDeque<(u64, CancellationToken)>>,
    next_id: AtomicU64,
    /// Refused at the cap since the last log line, and when that was.
    capped: Mutex<(u64, Option<Instant>)>,
}

impl Shared {
    fn refused(&self, why: Refused) {
        crate::telemetry::metrics::instruments()
            .connections_refused
            .add(1, &[opentelemetry::KeyValue::new("reason", why.as_str())]);
        if !matches!(why, Refused::Cap) {
            return;
        }
        let mut capped = self.capped.lock().unwrap();
        capped.0 += 1;
        if capped.1.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            warn!(
                max_connections = self.limits.max_connections,
                refused = capped.0,
                "connection cap reached: new connections are closed (open ones are served); \
                 raise --max-connections if these callers are legitimate"
            );
            *capped = (0, Some(Instant::now()));
        }
    }

    /// Counts one more open connection from `peer`, unless the cap (and,
    /// for the host's own probes, the reserve above it) is reached.
    fn admit(&self, peer: Option<std::net::SocketAddr>) -> Option<OpenGuard> {
        // A v4 probe on a dual-stack listener arrives as ::ffff:127.0.0.1.
        let local = peer.is_some_and(|peer| match peer.ip().to_canonical() {
            std::net::IpAddr::V4(ip) => ip == std::net::Ipv4Addr::LOCALHOST,
            std::net::IpAddr::V6(ip) => ip == std::net::Ipv6Addr::LOCALHOST,
        });
        let cap = self.limits.max_connections + if local { LOCAL_RESERVE } else { 0 };
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < cap).then_some(open + 1)
            })
            .ok()
            .map(|_| OpenGuard(self.open.clone()))
    }
}

/// Accepts on `listener`; yields the connections that completed their
/// handshake and preface in time, within the limits. Dropping the stream
/// stops accepting and closes the listener.
pub fn incoming<IO>(
    listener: TcpListener,
    limits: ConnectionLimits,
    handshake: Handshake<IO>,
    greeting: Greeting,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Conn<IO>>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, receiver) = mpsc::channel(64);
    let shared = Arc::new(Shared {
        limits,
        open: Arc::new(AtomicUsize::new(0)),
        handshaking: Mutex::new(VecDeque::new()),
        next_id: AtomicU64::new(0),
        capped: Mutex::new((0, None)),
    });
    info!(
        max_connections = limits.max_connections,
        handshaking = limits.handshaking,
        handshake_timeout = ?limits.handshake_timeout,
        ?greeting,
        "accepting connections"
    );
    tokio::spawn(accept_loop(listener, shared, handshake, greeting, sender));
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

async fn accept_loop<IO>(
    listener: TcpListener,
    shared: Arc<Shared>,
    handshake: Handshake<IO>,
    greeting: Greeting,
    sender: mpsc::Sender<io::Result<Conn<IO>>>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut last_error_log: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = sender.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors (EMFILE, ENFILE) or a connection
                // reset before it was accepted: wait a little and go on.
                if last_error_log.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
                    warn!(%error, "accepting a connection failed");
                    last_error_log = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let close = CancellationToken::new();
        {
            let mut handshaking = shared.handshaking.lock().unwrap();
            handshaking.push_back((id, close.clone()));
            while handshaking.len() > shared.limits.handshaking {
                if let Some((_, oldest)) = handshaking.pop_front() {
                    oldest.cancel();
                }
            }
        }
        let (shared, handshake, sender) = (shared.clone(), handshake.clone(), sender.clone());
        tokio::spawn(async move {
            let ready = tokio::select! {
                _ = close.cancelled() => Err(Refused::Evicted),
                ready = tokio::time::timeout(
                    shared.limits.handshake_timeout,
                    greet(tcp, &handshake, greeting),
                ) => match ready {
                    Ok(Ok(ready)) => Ok(ready),
                    Ok(Err(_)) => Err(Refused::Handshake),
                    Err(_) => Err(Refused::Timeout),
                },
            };
            shared
                .handshaking
                .lock()
                .unwrap()
                .retain(|(other, _)| *other != id);
            let (io, preface) = match ready {
                Ok(ready) => ready,
                Err(why) => {
                    debug!(
                        reason = why.as_str(),
                        "connection closed before its handshake"
                    );
                    shared.refused(why);
                    return;
                }
            };
            let Some(open) = shared.admit(Some(peer)) else {
                shared.refused(Refused::Cap);
                return;
            };
            let idle = match greeting {
                Greeting::Http2 => None,
                Greeting::Http1 { idle } => Some(Idle::new(idle)),
            };
            let _ = sender
                .send(Ok(Conn {
                    io,
                    preface,
                    peer,
                    idle,
                    _open: open,
                }))
                .await;
        });
    }
}

/// The handshake, then what the protocol sends first: the HTTP/2
/// preface, or an HTTP/1.1 request's header block.
async fn greet<IO: AsyncRead + Unpin>(
    tcp: TcpStream,
    handshake: &Handshake<IO>,
    greeting: Greeting,
) -> io::Result<(IO, Bytes)> {
    let mut io = handshake(tcp).await?;
    if let Greeting::Http1 { .. } = greeting {
        let mut head = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        loop {
            if head.len() > MAX_HEADER_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "request headers over the size limit",
                ));
            }
            let n = io.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            // Only the new bytes (and the three before them) can complete
            // the blank line: a client trickling its headers costs no
            // rescans.
            let from = head.len().saturating_sub(3);
            head.extend_from_slice(&chunk[..n]);
            if head[from..].windows(4).any(|w| w == b"\r\n\r\n") {
                return Ok((io, Bytes::from(head)));
            }
        }
    }
    let mut preface = [0u8; PREFACE.len()];
    io.read_exact(&mut preface).await?;
    if &preface != PREFACE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an HTTP/2 client preface",
        ));
    }
    Ok((io, Bytes::from_static(PREFACE)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_has_a_share_of_its_own() {
        let shared = ConnectionLimits::share(10_000, Duration::from_secs(10), 1024, 16, true);
        let console = shared.console.unwrap();
        assert_eq!((console.max_connections, console.handshaking), (192, 64));
        // Everything both ports may hold fits beside the reserve.
        let used = shared.grpc.max_connections
            + shared.grpc.handshaking
            + console.max_connections
            + console.handshaking;
        assert!(used as u64 + RESERVED_FDS + LOCAL_RESERVE as u64 + 16 <= 1024);
        let alone = ConnectionLimits::budget(10_000, Duration::from_secs(10), 1024, 16);
        assert!(shared.grpc.max_connections < alone.max_connections);
    }

    #[test]
    fn limits_fit_the_open_file_limit() {
        let roomy = ConnectionLimits::budget(10_000, Duration::from_secs(10), 1_048_576, 16);
        assert_eq!((roomy.max_connections, roomy.handshaking), (10_000, 1024));
        let tight = ConnectionLimits::budget(10_000, Duration::from_secs(10), 1024, 16);
        assert_eq!(tight.handshaking, 256);
        assert_eq!(tight.max_connections, 1024 - 256 - 16 - 256 - 32);
    }
}
