//! `serve`: its flags, their checks, and the server they start (gRPC API,
//! console, metrics, demo) until SIGTERM or SIGINT.

use super::database::{Backend, DatabaseArgs};
use super::signals::{reload_on_sighup, shutdown_signal};
use crate::api::limits;
use crate::auth::Authenticator;
use crate::defaults;
use crate::fleet::FleetOptions;
use crate::server::{self, ServeOptions};
use crate::store::FleetStore;
use anyhow::{Context, bail};
use clap::Args;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(
        long,
        env = "CONNECTOR_CONTROL_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Longest a `wait: true` Start or Pause is held when the caller sets no
    /// deadline, for example 30s or 2m.
    #[arg(long, env = "CONNECTOR_CONTROL_MAX_WAIT", default_value = defaults::MAX_WAIT, value_parser = humantime::parse_duration)]
    pub max_wait: Duration,

    /// Seed a demo fleet (when the store is empty) and run demo agents in
    /// this process.
    #[arg(long, env = "CONNECTOR_CONTROL_DEMO")]
    pub demo: bool,

    /// How often agents send heartbeats, for example 10s. An agent that
    /// misses four is offline and its connectors show UNKNOWN.
    #[arg(long, env = "CONNECTOR_CONTROL_HEARTBEAT_INTERVAL", default_value = defaults::HEARTBEAT_INTERVAL, value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,

    /// How often each replica looks for pending commands by itself: the
    /// longest a command waits when a wake-up is lost (or with --poll-only).
    #[arg(long, env = "CONNECTOR_CONTROL_POLL_INTERVAL", default_value = defaults::POLL_INTERVAL, value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,

    /// Replicas do not wake each other with LISTEN/NOTIFY (for databases or
    /// poolers without it, such as PgBouncer in transaction mode); commands
    /// committed on another replica are delivered by polling.
    #[arg(long, env = "CONNECTOR_CONTROL_POLL_ONLY")]
    pub poll_only: bool,

    /// This replica's name in the replicas table and logs (default: host
    /// name and a random suffix).
    #[arg(long, env = "CONNECTOR_CONTROL_REPLICA_ID")]
    pub replica_id: Option<String>,

    /// Agent streams are asked to reconnect after this long (plus or minus
    /// 10%), so that agents spread over replicas added later; 0 never.
    #[arg(long, env = "CONNECTOR_CONTROL_MAX_STREAM_AGE", default_value = defaults::MAX_STREAM_AGE, value_parser = humantime::parse_duration)]
    pub max_stream_age: Duration,

    /// On SIGTERM, how long calls in flight may take before the process
    /// exits anyway.
    #[arg(long, env = "CONNECTOR_CONTROL_DRAIN_TIMEOUT", default_value = defaults::DRAIN_TIMEOUT, value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// Principals, roles and token hashes (TOML; see README "Security").
    /// Reloaded on SIGHUP. Without it, every caller may do everything, and
    /// `serve` listens on loopback addresses only.
    #[arg(long, env = "CONNECTOR_CONTROL_AUTH_FILE")]
    pub auth_file: Option<std::path::PathBuf>,

    /// The server's TLS certificate chain (PEM); with --tls-key, serves TLS.
    #[arg(long, env = "CONNECTOR_CONTROL_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The server's TLS private key (PEM).
    #[arg(long, env = "CONNECTOR_CONTROL_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// Mutual TLS: clients must present a certificate chaining to this CA
    /// (PEM); its common name or DNS name can stand for a principal
    /// (`tls_client_name` in the auth file).
    #[arg(long, env = "CONNECTOR_CONTROL_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<std::path::PathBuf>,

    /// Changes (create, start, pause) each operator principal may make per
    /// second, sustained. Limits protect the database from a runaway
    /// caller, not from a burst of legitimate changes; beyond them calls
    /// get RESOURCE_EXHAUSTED with a retry delay. A batch call counts as
    /// one change. 0: no limit.
    #[arg(long, env = "CONNECTOR_CONTROL_OPERATOR_RATE_LIMIT", default_value_t = defaults::OPERATOR_RATE_LIMIT)]
    pub operator_rate_limit: u32,

    /// How many changes an operator principal may make at once, before its
    /// --operator-rate-limit applies.
    #[arg(long, env = "CONNECTOR_CONTROL_OPERATOR_RATE_BURST", default_value_t = defaults::OPERATOR_RATE_BURST)]
    pub operator_rate_burst: u32,

    /// Changes each admin principal may make per second: services that
    /// register connectors, and every caller without --auth-file. 0: no
    /// limit.
    #[arg(long, env = "CONNECTOR_CONTROL_ADMIN_RATE_LIMIT", default_value_t = defaults::ADMIN_RATE_LIMIT)]
    pub admin_rate_limit: u32,

    /// How many changes an admin principal may make at once, before its
    /// --admin-rate-limit applies.
    #[arg(long, env = "CONNECTOR_CONTROL_ADMIN_RATE_BURST", default_value_t = defaults::ADMIN_RATE_BURST)]
    pub admin_rate_burst: u32,

    /// Connections open at once, at most (lowered to fit the open-file
    /// limit, which is raised to its hard limit at start-up). Beyond it new
    /// connections are closed and the cap is logged; open ones are served.
    #[arg(long, env = "CONNECTOR_CONTROL_MAX_CONNECTIONS", default_value_t = defaults::MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Time a new connection has to complete TLS and send the HTTP/2
    /// preface; silent connections are closed after it.
    #[arg(long, env = "CONNECTOR_CONTROL_HANDSHAKE_TIMEOUT", default_value = defaults::HANDSHAKE_TIMEOUT, value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// Identical refused calls (same principal, action, outcome and reason)
    /// within this window are recorded in the audit trail as two events:
    /// the first at once, the rest as one with their count.
    #[arg(long, env = "CONNECTOR_CONTROL_REFUSAL_WINDOW", default_value = defaults::REFUSAL_WINDOW, value_parser = humantime::parse_duration)]
    pub refusal_window: Duration,

    /// Serve a non-loopback address without --auth-file: anyone who can
    /// reach the port may start and pause every connector.
    #[arg(long, env = "CONNECTOR_CONTROL_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,

    /// A command delivered to an agent and unanswered for this long is
    /// delivered again (agents apply each generation once).
    #[arg(long, env = "CONNECTOR_CONTROL_DELIVERY_TIMEOUT", default_value = defaults::DELIVERY_TIMEOUT, value_parser = humantime::parse_duration)]
    pub delivery_timeout: Duration,

    /// How long connector changes are kept for WatchConnectors to resume
    /// from; a resume token older than this is RESUME_TOKEN_EXPIRED.
    #[arg(long, env = "CONNECTOR_CONTROL_WATCH_RETENTION", default_value = defaults::WATCH_RETENTION, value_parser = humantime::parse_duration)]
    pub watch_retention: Duration,

    /// A connector's progress alone (checkpoint, store range, latency moving
    /// by less than max(1 s, 10%)) is recorded at most this often; a report
    /// that changes its state, generation or message, or a latency that
    /// crosses --latency-alert, is recorded at once. Default: six heartbeat
    /// intervals, at most 60s.
    #[arg(long, env = "CONNECTOR_CONTROL_PROGRESS_REFRESH", value_parser = humantime::parse_duration)]
    pub progress_refresh: Option<Duration>,

    /// Connectors that should run and report more replication latency than
    /// this are flagged LAGGING (status_message, `lagging` filter, metric).
    #[arg(long, env = "CONNECTOR_CONTROL_LATENCY_ALERT", default_value = defaults::LATENCY_ALERT, value_parser = humantime::parse_duration)]
    pub latency_alert: Duration,

    /// Serve Prometheus metrics at http://ADDR/metrics (for example
    /// 127.0.0.1:9464). Metrics also go over OTLP when
    /// OTEL_EXPORTER_OTLP_ENDPOINT is set.
    #[arg(long, env = "CONNECTOR_CONTROL_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Serve the web console at http://ADDR/ (https:// with --tls-cert);
    /// `off` does not serve it. Without --auth-file only a loopback address
    /// is accepted, as for --listen.
    #[arg(long, env = "CONNECTOR_CONTROL_CONSOLE_LISTEN", default_value = defaults::CONSOLE_LISTEN)]
    pub console_listen: ConsoleListen,

    /// How long a console sign-in lasts, for example 12h.
    #[arg(long, env = "CONNECTOR_CONTROL_CONSOLE_SESSION_TTL", default_value = defaults::CONSOLE_SESSION_TTL, value_parser = humantime::parse_duration)]
    pub console_session_ttl: Duration,

    /// WatchConnectors streams this replica serves at once (the console's
    /// live pages are watches too); past it a new watch is refused
    /// (RESOURCE_EXHAUSTED, TOO_MANY_WATCHES).
    #[arg(long, env = "CONNECTOR_CONTROL_MAX_WATCHES", default_value_t = defaults::MAX_WATCHES)]
    pub max_watches: usize,

    /// WatchConnectors streams one caller (a principal; without an auth
    /// file, an address) may have open on this replica.
    #[arg(long, env = "CONNECTOR_CONTROL_MAX_WATCHES_PER_CALLER", default_value_t = defaults::MAX_WATCHES_PER_CALLER)]
    pub max_watches_per_caller: usize,

    /// A console connection with no traffic either way for this long is
    /// closed (a live page's stream sends something every 15 s; a
    /// connection must send its first request headers within
    /// --handshake-timeout).
    #[arg(long, env = "CONNECTOR_CONTROL_CONSOLE_IDLE_TIMEOUT", default_value = defaults::CONSOLE_IDLE_TIMEOUT, value_parser = humantime::parse_duration)]
    pub console_idle_timeout: Duration,

    /// How often the database-wide gauges (connectors by state, lagging
    /// connectors, unanswered commands) are re-read, while metrics are
    /// exported. Each read is three aggregate queries.
    #[arg(long, env = "CONNECTOR_CONTROL_METRICS_INTERVAL", default_value = defaults::METRICS_INTERVAL, value_parser = humantime::parse_duration)]
    pub metrics_interval: Duration,
}

/// `--console-listen`: an address, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleListen {
    Off,
    At(SocketAddr),
}

impl std::str::FromStr for ConsoleListen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(ConsoleListen::Off);
        }
        text.parse().map(ConsoleListen::At).map_err(|_| {
            format!("expected an address such as 127.0.0.1:8080, or `off`; got {text:?}")
        })
    }
}

/// Serves on the store `--database-url` chooses (a replica id only means
/// something to PostgreSQL).
pub(super) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    match args.database.connect().await? {
        Backend::Postgres(store) => {
            if let Some(id) = &args.replica_id
                && (id.is_empty()
                    || id.len() > 100
                    || !id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)))
            {
                bail!(
                    "--replica-id must be 1 to 100 characters: letters, digits, '-', '_', '.' or ':'"
                );
            }
            let store = match &args.replica_id {
                Some(id) => store.with_replica_id(id),
                None => *store,
            };
            serve(args, store).await
        }
        Backend::Embedded(store) => {
            if args.poll_only || args.replica_id.is_some() || args.database.transaction_pooling {
                info!(
                    "the embedded store serves one process: --poll-only, --replica-id and \
                 --transaction-pooling do nothing"
                );
            }
            serve(args, store).await
        }
    }
}

/// `serve` on either backend.
async fn serve<S: FleetStore>(args: ServeArgs, store: S) -> anyhow::Result<()> {
    let mut auth = authenticator(&args)?;
    if args.demo && args.tls_cert.is_some() {
        bail!(
            "--demo runs its agents in this process over plaintext gRPC to 127.0.0.1, and with \
             --tls-cert this server speaks only TLS, so they could never connect: run the demo \
             without --tls-cert, or run agents of your own (`connector-control agent --tls-ca \
             ...`) against a server without --demo"
        );
    }
    // With an auth file, the demo's agents get principals of their own,
    // with tokens made now: the demo connects in every configuration it
    // accepts.
    let demo_tokens: std::collections::HashMap<String, String> = if args.demo {
        auth.with_process_agents(&crate::demo::regions())?
            .into_iter()
            .collect()
    } else {
        Default::default()
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    if args.heartbeat_interval.is_zero() || args.heartbeat_interval > Duration::from_secs(3600) {
        bail!("--heartbeat-interval must be between 1ms and 1h");
    }
    if args.poll_interval.is_zero() || args.poll_interval > Duration::from_secs(3600) {
        bail!("--poll-interval must be between 1ms and 1h");
    }
    if args.delivery_timeout < args.heartbeat_interval {
        bail!("--delivery-timeout must be at least --heartbeat-interval");
    }
    if args.metrics_interval < Duration::from_millis(100) {
        bail!("--metrics-interval must be at least 100ms");
    }
    if args.max_connections == 0 {
        bail!("--max-connections must be at least 1");
    }
    if args.handshake_timeout.is_zero() {
        bail!("--handshake-timeout must be positive, for example 10s");
    }
    if args.refusal_window.is_zero() {
        bail!("--refusal-window must be positive, for example 10s");
    }
    if args.latency_alert.is_zero() {
        bail!("--latency-alert must be positive, for example 60s");
    }
    if args.console_idle_timeout < Duration::from_secs(1) {
        bail!("--console-idle-timeout must be at least 1s");
    }
    if args.console_session_ttl < Duration::from_secs(60) {
        bail!("--console-session-ttl must be at least 1m");
    }
    let console = match args.console_listen {
        ConsoleListen::Off => None,
        ConsoleListen::At(addr) => {
            require_auth_off_loopback(&args, addr, "--console-listen")?;
            let listener = std::net::TcpListener::bind(addr).with_context(|| {
                format!("cannot listen on {addr} for --console-listen (`off` disables the console)")
            })?;
            Some(crate::console::ConsoleOptions {
                listener: std::sync::Arc::new(listener),
                session_ttl: args.console_session_ttl,
                idle_timeout: args.console_idle_timeout,
                tls: crate::tls::console(args.tls_cert.as_deref(), args.tls_key.as_deref())?,
            })
        }
    };
    let metrics = match args.metrics_listen {
        Some(addr) => {
            let metrics_listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for --metrics-listen"))?;
            let registry = crate::telemetry::prometheus_registry()
                .context("the Prometheus exporter failed to start (see the warning above)")?;
            info!(addr = %metrics_listener.local_addr()?, "serving Prometheus metrics at /metrics");
            Some(tokio::spawn(async move {
                if let Err(error) =
                    crate::telemetry::metrics::serve_prometheus(metrics_listener, registry).await
                {
                    tracing::error!(%error, "the /metrics listener failed");
                }
            }))
        }
        None => None,
    };
    let pooled = args.database.transaction_pooling && args.database.database_url.is_some();
    let poll_only = args.poll_only || pooled;
    if pooled && !args.poll_only {
        info!(
            poll_interval = ?args.poll_interval,
            "--transaction-pooling: LISTEN cannot work through a transaction-pooling proxy \
             (each transaction may run on another server session), so replicas wake each \
             other by polling; a command committed on another replica reaches its agent \
             within --poll-interval"
        );
    }
    info!(
        replica = store.replica_id(),
        poll_interval = ?args.poll_interval,
        wakeups = if poll_only { "polling only" } else { "LISTEN/NOTIFY" },
        "replica starting"
    );
    if args.max_watches == 0 || args.max_watches_per_caller == 0 {
        bail!("--max-watches and --max-watches-per-caller must be at least 1");
    }
    let options = ServeOptions {
        max_watches: args.max_watches,
        max_watches_per_caller: args.max_watches_per_caller,
        latency_alert: args.latency_alert,
        metrics_interval: args.metrics_interval,
        refusal_window: args.refusal_window,
        max_connections: args.max_connections,
        handshake_timeout: args.handshake_timeout,
        max_wait: args.max_wait,
        drain_timeout: args.drain_timeout,
        fleet: FleetOptions {
            heartbeat_interval: args.heartbeat_interval,
            poll_interval: args.poll_interval,
            poll_only,
            max_stream_age: (!args.max_stream_age.is_zero()).then_some(args.max_stream_age),
            delivery_timeout: args.delivery_timeout,
            watch_retention: args.watch_retention,
            progress_refresh: args
                .progress_refresh
                .unwrap_or_else(|| defaults::progress_refresh(args.heartbeat_interval)),
            address: listener.local_addr()?.to_string(),
            ..FleetOptions::new(args.heartbeat_interval)
        },
        auth: auth.clone(),
        rate_limits: limits::RateLimits {
            operator: limits::RateLimit::new(args.operator_rate_limit, args.operator_rate_burst),
            admin: limits::RateLimit::new(args.admin_rate_limit, args.admin_rate_burst),
        },
        tls: crate::tls::server(
            args.tls_cert.as_deref(),
            args.tls_key.as_deref(),
            args.tls_client_ca.as_deref(),
        )?,
        console: console.clone(),
    };
    let secured = auth.enabled();
    if secured {
        tokio::spawn(reload_on_sighup(auth));
    }
    let shutdown = CancellationToken::new();
    if args.demo {
        crate::demo::seed(&store).await?;
        let addr = listener.local_addr()?;
        crate::demo::spawn_agents_with(addr, shutdown.clone(), |region| {
            crate::auth::Bearer::from_args(demo_tokens.get(region).map(String::as_str), None)
                .unwrap_or_default()
        });
        if let Some(console) = &console {
            let scheme = if console.tls.is_some() {
                "https"
            } else {
                "http"
            };
            println!("Console: {scheme}://{}/\n", console.listener.local_addr()?);
        }
        println!("{}", crate::demo::banner(addr, secured));
    }
    let stopping = shutdown.clone();
    let signal = async move {
        shutdown_signal().await;
        stopping.cancel();
    };
    let result = server::serve(listener, store, options, signal).await;
    shutdown.cancel();
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    result
}

/// The auth file's principals, or, without one, open access: refused
/// unless the listen address is loopback or --insecure-no-auth says so.
fn authenticator(args: &ServeArgs) -> anyhow::Result<Authenticator> {
    if let Some(path) = &args.auth_file {
        let auth = Authenticator::from_file(path)?;
        info!(file = %path.display(), "callers are authenticated by bearer token");
        return Ok(auth);
    }
    require_auth_off_loopback(args, args.listen, "--listen")?;
    Ok(Authenticator::open())
}

/// Without --auth-file, `addr` must be loopback unless --insecure-no-auth
/// accepts the risk.
fn require_auth_off_loopback(args: &ServeArgs, addr: SocketAddr, flag: &str) -> anyhow::Result<()> {
    if args.auth_file.is_some() || addr.ip().is_loopback() {
        return Ok(());
    }
    if !args.insecure_no_auth {
        bail!(
            "refusing to serve {addr} ({flag}) without --auth-file: anyone who can reach it could \
             start and pause every connector. Give --auth-file, listen on 127.0.0.1, or pass \
             --insecure-no-auth to accept the risk"
        );
    }
    tracing::error!(
        listen = %addr,
        flag,
        "INSECURE: serving a non-loopback address without authentication \
         (--insecure-no-auth); anyone who can reach it may start and pause every connector"
    );
    Ok(())
}
