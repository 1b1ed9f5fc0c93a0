//! The service's metrics (OpenTelemetry instruments; Prometheus names in
//! parentheses are what `/metrics` shows):
//!
//! - `rpc.server.call.duration` (`rpc_server_call_duration_seconds`): every
//!   call by `rpc_service`, `rpc_method` and `rpc_grpc_status_code`; its
//!   `_count` is the call count. For the agents' stream it measures the time
//!   to the response headers.
//! - `connector_control.agents.connected`: agent sessions on this replica
//!   by `region`.
//! - `connector_control.commands.open`, `connector_control.commands.oldest_age`:
//!   commands not yet answered by `region` and `status` (PENDING, DELIVERED).
//! - `connector_control.command.delivery_delay`: commit of a command to its
//!   hand-over to the agent's stream; `connector_control.command.completion_delay`:
//!   commit to the recorded result, by `region`, `kind` and `status`.
//! - `connector_control.heartbeat.flush.size` and `.duration`: the batched
//!   writes of heartbeat times and of changed statuses (`kind`), and
//!   `connector_control.heartbeat.writes`: the transactions they cost.
//! - `connector_control.db.pool.*`: connections in use, idle, the maximum,
//!   and callers waiting for one.
//! - `connector_control.connectors`: connectors by `region` and `state`;
//!   `connector_control.connectors.lagging` by `region` and `cause`
//!   (`latency` over `--latency-alert`, `agent_offline`).
//! - `connector_control.connector.latency`: replication latency reported in
//!   heartbeats, by `region`.
//! - `connector_control.unauthenticated.calls`: calls refused with
//!   UNAUTHENTICATED, by `peer` (the address; the first 100 distinct ones,
//!   the rest as `other`) and `reason` (`no_credentials`, `unknown_token`,
//!   `malformed`, `unknown_certificate`).
//! - `connector_control.connections.refused`: connections closed before
//!   they were served, by `reason` (`handshake_timeout`, `evicted`,
//!   `connection_cap`, `handshake_failed`).
//! - `connector_control.agent_reports.refused`: parts of agents' reports
//!   that were not recorded, by `reason` (`checkpoint_in_future`,
//!   `store_range_in_future`, `unwritable`: a row the database refused,
//!   dropped so that it never blocks the others).
//!
//! The database-wide gauges come from one sample every `--metrics-interval`
//! (15 s), taken only while metrics are exported; every replica reports
//! them (aggregate with `max by (region, ...)`, not `sum`). Counts that
//! fall to zero are reported as 0 for every region that has connectors or
//! commands; while the database cannot be sampled they are not reported.

use crate::domain::{CommandStatus, ConnectorState, LagCause};
use crate::store::{FleetStore, MetricsSample, OpenCommands, PoolStatus};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Seconds: a gRPC call, from 100 µs to 30 s.
const CALL_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];
/// Seconds: a command's delivery or completion, from 100 µs to an hour
/// (a redelivery comes after `--delivery-timeout`, 5 min).
const DELAY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
/// Seconds: replication latency, from 100 ms to 6 h.
const LATENCY_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0,
];
/// Agents per heartbeat flush.
const FLUSH_BUCKETS: &[f64] = &[
    0.0, 1.0, 10.0, 100.0, 1000.0, 5000.0, 10000.0, 50000.0, 100000.0,
];

/// The instruments recorded as things happen.
pub struct Instruments {
    pub rpc_duration: Histogram<f64>,
    pub delivery_delay: Histogram<f64>,
    pub completion_delay: Histogram<f64>,
    pub flush_size: Histogram<u64>,
    pub flush_duration: Histogram<f64>,
    pub heartbeat_writes: opentelemetry::metrics::Counter<u64>,
    pub connector_latency: Histogram<f64>,
    pub unauthenticated: opentelemetry::metrics::Counter<u64>,
    pub connections_refused: opentelemetry::metrics::Counter<u64>,
    pub reports_refused: opentelemetry::metrics::Counter<u64>,
    pub changes_sequenced: opentelemetry::metrics::Counter<u64>,
}

fn meter() -> Meter {
    opentelemetry::global::meter("connector-control")
}

/// The instruments, from the meter provider installed at start-up (a
/// no-op one when nothing is exported).
pub fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = meter();
        let seconds = |name: &'static str, description: &'static str, buckets: &[f64]| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(buckets.to_vec())
                .build()
        };
        Instruments {
            rpc_duration: seconds(
                "rpc.server.call.duration",
                "gRPC calls served, by service, method and status code",
                CALL_BUCKETS,
            ),
            delivery_delay: seconds(
                "connector_control.command.delivery_delay",
                "From a command's commit to its hand-over to the agent's stream (each delivery)",
                DELAY_BUCKETS,
            ),
            completion_delay: seconds(
                "connector_control.command.completion_delay",
                "From a command's commit to the recording of the agent's result",
                DELAY_BUCKETS,
            ),
            flush_size: meter
                .u64_histogram("connector_control.heartbeat.flush.size")
                .with_unit("{agent}")
                .with_description("Agents whose heartbeat times one flush writes")
                .with_boundaries(FLUSH_BUCKETS.to_vec())
                .build(),
            flush_duration: seconds(
                "connector_control.heartbeat.flush.duration",
                "Time to write one batch of heartbeat times",
                CALL_BUCKETS,
            ),
            heartbeat_writes: meter
                .u64_counter("connector_control.heartbeat.writes")
                .with_unit("{transaction}")
                .with_description(
                    "Write transactions heartbeats cost, by kind: times (last seen) or statuses",
                )
                .build(),
            connector_latency: seconds(
                "connector_control.connector.latency",
                "Replication latency that agents report in heartbeats, by region",
                LATENCY_BUCKETS,
            ),
            unauthenticated: meter
                .u64_counter("connector_control.unauthenticated.calls")
                .with_unit("{call}")
                .with_description(
                    "Calls refused for lack of valid credentials, by peer address and why",
                )
                .build(),
            connections_refused: meter
                .u64_counter("connector_control.connections.refused")
                .with_unit("{connection}")
                .with_description(
                    "Connections closed before serving them, by reason: handshake_timeout, \
                     evicted (for a newer handshake), connection_cap, handshake_failed",
                )
                .build(),
            reports_refused: meter
                .u64_counter("connector_control.agent_reports.refused")
                .with_unit("{report}")
                .with_description(
                    "Parts of agent reports not recorded, by reason: checkpoint_in_future, \
                     store_range_in_future, unwritable",
                )
                .build(),
            changes_sequenced: meter
                .u64_counter("connector_control.feed.changes_sequenced")
                .with_unit("{change}")
                .with_description(
                    "Connector changes this replica gave their positions in the change feed",
                )
                .build(),
        }
    })
}

/// Counts changes this replica put in the change feed.
pub fn changes_sequenced(count: usize) {
    instruments()
        .changes_sequenced
        .add(u64::try_from(count).unwrap_or(u64::MAX), &[]);
}

/// Records one heartbeat write transaction of `kind` ("times" or
/// "statuses"): `size` entries, begun at `started`.
pub fn heartbeat_write(kind: &'static str, size: usize, started: std::time::Instant) {
    let metrics = instruments();
    let kind = [KeyValue::new("kind", kind)];
    metrics.heartbeat_writes.add(1, &kind);
    metrics
        .flush_duration
        .record(started.elapsed().as_secs_f64(), &kind);
    metrics
        .flush_size
        .record(u64::try_from(size).unwrap_or(u64::MAX), &kind);
}

/// Counts a part of an agent's report that was not recorded, and why.
pub fn report_refused(reason: &'static str, count: usize) {
    instruments().reports_refused.add(
        u64::try_from(count).unwrap_or(u64::MAX),
        &[KeyValue::new("reason", reason)],
    );
}

/// The latest database-wide sample, shared by the sampler and the gauges.
pub type SharedSample = Arc<Mutex<Option<MetricsSample>>>;

/// What the observable gauges read: the local sessions, the pool, the
/// sample. Each source is a closure so that this module needs no generic
/// parameter.
pub struct GaugeSources {
    pub connected_agents: Box<dyn Fn() -> BTreeMap<String, u64> + Send + Sync>,
    pub pool: Box<dyn Fn() -> Option<PoolStatus> + Send + Sync>,
    pub sample: SharedSample,
}

/// Values of a gauge, each with its labels.
type Observations<T> = Vec<(T, Vec<KeyValue>)>;

/// Registers the observable gauges. They are read at each export (each
/// scrape of `/metrics`).
pub fn register_gauges(sources: GaugeSources) {
    let meter = meter();
    let GaugeSources {
        connected_agents,
        pool,
        sample,
    } = sources;
    meter
        .u64_observable_gauge("connector_control.agents.connected")
        .with_unit("{agent}")
        .with_description("Agent sessions held by this replica, by region")
        .with_callback(move |gauge| {
            for (region, count) in connected_agents() {
                gauge.observe(count, &[KeyValue::new("region", region)]);
            }
        })
        .build();
    let pool: Arc<dyn Fn() -> Option<PoolStatus> + Send + Sync> = Arc::from(pool);
    let pool_gauge = |name: &'static str,
                      unit: &'static str,
                      description: &'static str,
                      observations: fn(&PoolStatus) -> Observations<u64>| {
        let read = pool.clone();
        meter
            .u64_observable_gauge(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |gauge| {
                if let Some(status) = read() {
                    for (value, labels) in observations(&status) {
                        gauge.observe(value, &labels);
                    }
                }
            })
            .build();
    };
    pool_gauge(
        "connector_control.db.pool.connections",
        "{connection}",
        "Database connections of this replica, by state (in_use, idle)",
        |status| {
            vec![
                (status.in_use, vec![KeyValue::new("state", "in_use")]),
                (status.idle, vec![KeyValue::new("state", "idle")]),
            ]
        },
    );
    pool_gauge(
        "connector_control.db.pool.max",
        "{connection}",
        "The most database connections this replica opens",
        |status| vec![(status.max, Vec::new())],
    );
    pool_gauge(
        "connector_control.db.pool.waiting",
        "{call}",
        "Callers waiting for a database connection",
        |status| vec![(status.waiting, Vec::new())],
    );

    // The database-wide gauges: one observation per (region, label) of
    // the latest sample, none while there is no sample.
    let region_gauge =
        |name: &'static str,
         unit: &'static str,
         description: &'static str,
         observations: fn(&MetricsSample) -> Vec<(f64, String, KeyValue)>| {
            let read = sample.clone();
            meter
                .f64_observable_gauge(name)
                .with_unit(unit)
                .with_description(description)
                .with_callback(move |gauge| {
                    if let Some(sample) = read.lock().unwrap().as_ref() {
                        for (value, region, label) in observations(sample) {
                            gauge.observe(value, &[KeyValue::new("region", region), label]);
                        }
                    }
                })
                .build();
        };
    region_gauge(
        "connector_control.connectors",
        "{connector}",
        "Connectors by region and state",
        |sample| {
            let count = |n: &u64| *n as f64;
            by_region(&sample.connectors, "state", ConnectorState::as_str, count)
        },
    );
    region_gauge(
        "connector_control.connectors.lagging",
        "{connector}",
        "Connectors that should run and lag: latency over --latency-alert, or agent offline",
        |sample| {
            let count = |n: &u64| *n as f64;
            by_region(&sample.lagging, "cause", LagCause::as_str, count)
        },
    );
    region_gauge(
        "connector_control.commands.open",
        "{command}",
        "Commands not answered yet, by region and status (PENDING, DELIVERED)",
        |sample| {
            let open = |open: &OpenCommands| open.count as f64;
            by_region(&sample.open_commands, "status", CommandStatus::as_str, open)
        },
    );
    region_gauge(
        "connector_control.commands.oldest_age",
        "s",
        "Age of the oldest unanswered command, by region and status",
        |sample| {
            let age = |open: &OpenCommands| open.oldest_age.as_secs_f64();
            by_region(&sample.open_commands, "status", CommandStatus::as_str, age)
        },
    );
}

/// One observation per (region, label) entry of a sample's figures: its
/// value, its region, and the label `key` with the entry's second key.
fn by_region<L: Copy, V>(
    figures: &BTreeMap<(String, L), V>,
    key: &'static str,
    label: fn(L) -> &'static str,
    value: fn(&V) -> f64,
) -> Vec<(f64, String, KeyValue)> {
    figures
        .iter()
        .map(|((region, second), figure)| {
            let labelled = KeyValue::new(key, label(*second));
            (value(figure), region.clone(), labelled)
        })
        .collect()
}

/// Refreshes `sample` every `interval` until the task is aborted.
pub async fn sample_loop<S: FleetStore>(
    store: S,
    latency_alert: Duration,
    interval: Duration,
    sample: SharedSample,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        match store.metrics_sample(latency_alert).await {
            Ok(fresh) => {
                failing = false;
                *sample.lock().unwrap() = Some(fresh.with_zeros());
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "sampling connector metrics failed; the database-wide gauges are not reported until it succeeds");
                }
                failing = true;
                // No figures rather than stale ones.
                *sample.lock().unwrap() = None;
            }
        }
    }
}

/// Serves `GET /metrics` (Prometheus text format) until the task is aborted.
pub async fn serve_prometheus(
    listener: tokio::net::TcpListener,
    registry: &'static prometheus::Registry,
) -> std::io::Result<()> {
    use axum::http::header::CONTENT_TYPE;
    let render = move || async move {
        let encoder = prometheus::TextEncoder::new();
        match encoder.encode_to_string(&registry.gather()) {
            Ok(text) => (
                axum::http::StatusCode::OK,
                [(CONTENT_TYPE, prometheus::TEXT_FORMAT)],
                text,
            ),
            Err(error) => (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                [(CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("rendering metrics failed: {error}\n"),
            ),
        }
    };
    let app = axum::Router::new().route("/metrics", axum::routing::get(render));
    axum::serve(listener, app).await
}
