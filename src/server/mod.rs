//! Builds the tonic server: ConnectorService, health, reflection (v1 and
//! v1alpha, so grpcurl works without proto files) and graceful shutdown.

mod limits;

use limits::{MAX_AGENT_MESSAGE_BYTES, MAX_REQUEST_BYTES, MessageLimitLayer};

use crate::api::limits::{MutationLimiter, RateLimits};
use crate::api::{AgentApi, AuditApi, ConnectorApi};
use crate::auth::Authenticator;
use crate::connections;
use crate::defaults::{self, duration};
use crate::domain::PageTokenCodec;
use crate::fleet::{Fleet, FleetOptions};
use crate::proto::{
    self, v1::agent_service_server::AgentServiceServer,
    v1::audit_service_server::AuditServiceServer,
    v1::connector_service_server::ConnectorServiceServer,
};
use crate::store::refusals::RefusalLog;
use crate::store::{FleetStore, Store};
use anyhow::Context;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::{info, warn};

/// How often the health service re-checks the database (one `SHOW` on a
/// pooled connection). Load balancers poll health every few seconds; this
/// keeps the answer at most this stale, and a failover of a few seconds
/// shows as NOT_SERVING.
const DATABASE_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// HTTP/2 pings detect half-open connections (a vanished client or a
/// silently dropped NAT entry) well before TCP would.
const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serving options that are not about where to listen or what to store in.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Upper bound of a `wait: true` call without a deadline of its own.
    pub max_wait: Duration,
    /// On shutdown, how long calls in flight may take to finish.
    pub drain_timeout: Duration,
    /// Agents and replicas: heartbeat interval (four missed ones make an
    /// agent offline), polling, wake-ups, stream recycling.
    pub fleet: FleetOptions,
    /// Who may call what. `Authenticator::open()` lets everyone in.
    pub auth: Authenticator,
    /// TLS (and mutual TLS with a client CA); None serves plaintext.
    pub tls: Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Connections open past their handshake, at most (lowered to fit the
    /// open-file limit).
    pub max_connections: usize,
    /// Time a new connection has for its TLS handshake and HTTP/2 preface.
    pub handshake_timeout: Duration,
    /// Each principal's allowance of changes (create, start, pause), by
    /// role.
    pub rate_limits: RateLimits,
    /// Connectors reporting more latency than this are flagged as lagging.
    pub latency_alert: Duration,
    /// How often the database-wide gauges are re-read (when metrics are
    /// exported).
    pub metrics_interval: Duration,
    /// Identical refused calls within this window are one audit event with
    /// a count (after the first, recorded at once).
    pub refusal_window: Duration,
    /// The web console, if it is served.
    pub console: Option<crate::console::ConsoleOptions>,
    /// WatchConnectors streams open at once on this replica, and per
    /// caller.
    pub max_watches: usize,
    pub max_watches_per_caller: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_wait: duration(defaults::MAX_WAIT),
            drain_timeout: duration(defaults::DRAIN_TIMEOUT),
            fleet: FleetOptions::new(duration(defaults::HEARTBEAT_INTERVAL)),
            auth: Authenticator::open(),
            tls: None,
            max_connections: defaults::MAX_CONNECTIONS,
            handshake_timeout: duration(defaults::HANDSHAKE_TIMEOUT),
            rate_limits: RateLimits::default(),
            latency_alert: duration(defaults::LATENCY_ALERT),
            metrics_interval: duration(defaults::METRICS_INTERVAL),
            refusal_window: duration(defaults::REFUSAL_WINDOW),
            console: None,
            max_watches: defaults::MAX_WATCHES,
            max_watches_per_caller: defaults::MAX_WATCHES_PER_CALLER,
        }
    }
}

/// The health service name a liveness probe asks for: SERVING while this
/// process runs and answers, through database outages and the drain.
const LIVENESS_SERVICE: &str = "liveness";

/// The service names the health service reports on: "" (the whole server)
/// and each API service.
const HEALTH_SERVICES: &[&str] = &[
    "",
    "connector.v1.ConnectorService",
    "connector.v1.AgentService",
    "connector.v1.AuditService",
];

/// Serves on an already-bound listener until `shutdown` completes, then
/// stops accepting calls and lets the ones in flight finish.
pub async fn serve<S: FleetStore>(
    listener: TcpListener,
    store: S,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let key = store
        .page_token_key()
        .await
        .context("reading the page token key (are migrations applied?)")?;
    let (draining_tx, draining) = tokio::sync::watch::channel(false);
    let probe_draining = draining.clone();
    let stopping = CancellationToken::new();
    let mut fleet_options = options.fleet.clone();
    // One threshold: the views' LAGGING flag and the reports written at once.
    fleet_options.latency_alert = options.latency_alert;
    if fleet_options.address.is_empty() {
        fleet_options.address = listener.local_addr()?.to_string();
    }
    let refusals = RefusalLog::default();
    // Stopped once every call has ended, so that no refusal is left counted.
    let refusals_stop = CancellationToken::new();
    let refusal_flush =
        refusals.spawn_flush(store.clone(), options.refusal_window, refusals_stop.clone());
    let fleet = Fleet::new(
        store.clone(),
        fleet_options,
        refusals.clone(),
        stopping.clone(),
    );
    fleet
        .register_replica()
        .await
        .context("recording this replica in the database")?;
    let loops = fleet.spawn_loops();
    let pool_size = store
        .pool_status()
        .map_or(1, |pool| usize::try_from(pool.max).unwrap_or(usize::MAX));
    let api = ConnectorApi::new(
        store.clone(),
        PageTokenCodec::new(key.clone()),
        options.max_wait,
        draining,
        fleet.signals(),
        fleet.offline_after(),
    )
    .with_limiter(MutationLimiter::new(options.rate_limits))
    .with_latency_alert(options.latency_alert)
    .with_auth(options.auth.clone())
    .with_refusals(refusals.clone())
    .with_watch(fleet.feed().clone(), options.fleet.watch_grace)
    .with_watch_limits(crate::api::watch_limits::WatchLimits::new(
        options.max_watches,
        options.max_watches_per_caller,
        crate::api::watch_limits::WatchLimits::reads_for_pool(pool_size),
    ));
    let agents = AgentApi::new(fleet.clone(), store.clone(), options.auth.clone());
    let audit = AuditApi::new(store.clone());
    let budget = connections::ConnectionLimits::share(
        options.max_connections,
        options.handshake_timeout,
        connections::raise_open_file_limit(),
        pool_size,
        options.console.is_some(),
    );
    let console_stop = CancellationToken::new();
    let (health, health_service) = tonic_health::server::health_reporter();
    let console = options.console.clone().map(|console_options| {
        let console = crate::console::Console {
            connectors: api.clone(),
            agents: agents.clone(),
            audit: audit.clone(),
            sessions: crate::console::Sessions::new(
                &key,
                console_options.session_ttl,
                console_options.tls.is_some(),
                options.auth.clone(),
            ),
            refusals: refusals.clone(),
            store: store.clone(),
            tls: console_options.tls.is_some(),
            draining: probe_draining.clone(),
            health: tonic_health::server::HealthService::from_health_reporter(health.clone()),
            sign_ins: Default::default(),
        };
        tokio::spawn(crate::console::serve(
            console_options,
            console,
            budget.console.expect("a share when the console is served"),
            console_stop.clone(),
        ))
    });

    set_health(&health, ServingStatus::Serving).await;
    // Liveness: SERVING while the process serves, whatever the database
    // does (a probe on "" would restart every replica in an outage).
    health
        .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
        .await;

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            // google.rpc error details, so that grpcurl prints them as JSON.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let sampler = crate::telemetry::metrics_exported().then(|| {
        let sample = crate::telemetry::metrics::SharedSample::default();
        let sessions = fleet.clone();
        let pool = store.clone();
        crate::telemetry::metrics::register_gauges(crate::telemetry::metrics::GaugeSources {
            connected_agents: Box::new(move || sessions.connected_by_region()),
            pool: Box::new(move || pool.pool_status()),
            sample: sample.clone(),
        });
        tokio::spawn(crate::telemetry::metrics::sample_loop(
            store.clone(),
            options.latency_alert,
            options.metrics_interval,
            sample,
        ))
    });
    let probe = tokio::spawn(watch_database(store, health.clone(), probe_draining));
    let addr = listener.local_addr()?;
    info!(%addr, tls = options.tls.is_some(), "serving gRPC");

    let draining = health.clone();
    let drain_fleet = fleet.clone();
    let stop_console = console_stop.clone();
    let (drain_started, drain_deadline) = tokio::sync::oneshot::channel::<()>();
    let router = Server::builder()
        .layer(crate::telemetry::rpc::RpcLayer::new(&[
            proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ]))
        // Inside the per-call span, so that refusals are measured.
        .layer(MessageLimitLayer)
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(InterceptedService::new(
            ConnectorServiceServer::new(api).max_decoding_message_size(MAX_REQUEST_BYTES),
            crate::api::interceptor(&options.auth),
        ))
        .add_service(InterceptedService::new(
            AgentServiceServer::new(agents).max_decoding_message_size(MAX_AGENT_MESSAGE_BYTES),
            crate::api::interceptor(&options.auth),
        ))
        .add_service(InterceptedService::new(
            AuditServiceServer::new(audit).max_decoding_message_size(MAX_REQUEST_BYTES),
            crate::api::interceptor(&options.auth),
        ));
    let signal = async move {
        shutdown.await;
        info!("draining: no new calls; agents are asked to reconnect elsewhere");
        // Draining first: the database probe, seeing it, stops before it
        // could report SERVING again.
        let _ = draining_tx.send(true);
        stop_console.cancel();
        set_health(&draining, ServingStatus::NotServing).await;
        drain_fleet.draining().await;
        // Agent streams end with `reconnect`, so the drain can finish.
        stopping.cancel();
        let _ = drain_started.send(());
    };
    let limits = budget.grpc;
    let server: std::pin::Pin<
        Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>,
    > = match options.tls.clone() {
        None => Box::pin(router.serve_with_incoming_shutdown(
            connections::incoming(
                listener,
                limits,
                connections::plaintext(),
                connections::Greeting::Http2,
            ),
            signal,
        )),
        Some(tls) => Box::pin(router.serve_with_incoming_shutdown(
            connections::incoming(
                listener,
                limits,
                connections::tls(tls),
                connections::Greeting::Http2,
            ),
            signal,
        )),
    };
    let drain_timeout = options.drain_timeout;
    let result = tokio::select! {
        result = server => result.context("serving gRPC"),
        () = async move {
            if drain_deadline.await.is_err() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(drain_timeout).await;
        } => {
            warn!(?drain_timeout, "calls still in flight at the drain deadline are cut off");
            Ok(())
        }
    };
    probe.abort();
    if let Some(mut console) = console {
        // Its live streams ended with the drain; a request still in flight
        // has what is left of the drain timeout.
        console_stop.cancel();
        if tokio::time::timeout(drain_timeout, &mut console)
            .await
            .is_err()
        {
            console.abort();
            warn!("console requests still in flight at the drain deadline are cut off");
        }
    }
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    for task in &loops {
        task.abort();
    }
    // Wait for them to stop, so that no lease renewal lands after the
    // release below.
    for task in loops {
        let _ = task.await;
    }
    // The last counted refusals are recorded before the process goes.
    refusals_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), refusal_flush).await;
    fleet.retire().await;
    result?;
    info!("stopped");
    Ok(())
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    for service in HEALTH_SERVICES {
        health.set_service_status(*service, status).await;
    }
}

/// Reports NOT_SERVING while the database does not answer, so that load
/// balancers and on-call checks see the outage.
/// Stops once the replica drains: it is NOT_SERVING from then on.
async fn watch_database<S: Store>(
    store: S,
    health: HealthReporter,
    draining: tokio::sync::watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(DATABASE_PROBE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut healthy = true;
    loop {
        interval.tick().await;
        let result = store.ping().await;
        if *draining.borrow() {
            return;
        }
        match result {
            Ok(()) if !healthy => {
                info!("database reachable again");
                healthy = true;
                set_health(&health, ServingStatus::Serving).await;
                // A drain that began meanwhile has the last word.
                if *draining.borrow() {
                    set_health(&health, ServingStatus::NotServing).await;
                    return;
                }
            }
            Err(error) if healthy => {
                warn!(%error, "database unreachable; reporting NOT_SERVING");
                healthy = false;
                set_health(&health, ServingStatus::NotServing).await;
            }
            _ => {}
        }
    }
}
