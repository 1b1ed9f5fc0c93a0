//! The benchmark harness: every scenario of BENCHMARKS.md against a
//! baseline measured in the same run on the same machine, one line each.
//!
//!     cargo bench --bench harness                  # the full run BENCHMARKS.md reports
//!     cargo bench --bench harness -- --quick       # the same scenarios, smaller, < 2 min
//!     cargo bench --bench harness -- --only throughput,search
//!     cargo bench --bench harness -- --server-arg=--poll-only   # an experiment
//!     cargo bench --bench harness -- --only throughput --concurrency=16
//!
//! Scenarios (names for --only): throughput, latency, limiter, refusals,
//! search, noop, delivery, streams, storm, embedded. Each starts the release server as a
//! child process on a fresh PostgreSQL database (DATABASE_URL, default
//! postgres://postgres@127.0.0.1:5432/postgres) and drives it with the
//! generated tonic client. Baselines: the same SQL issued directly with
//! tokio-postgres at the same concurrency, a bare tonic server in a child
//! process, or none where the target is absolute.

mod common;

use common::{ms, percentile};
use connector_control::proto::v1::{
    self, agent_message, agent_service_client::AgentServiceClient,
    connector_service_client::ConnectorServiceClient, control_message,
};
use connector_control::store::postgres::{COMMAND_COLUMNS, CONNECTOR_COLUMNS, EXACT_COUNT_LIMIT};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// What a run measures: `--quick` shrinks every scenario.
#[derive(Clone, Debug)]
struct Plan {
    quick: bool,
    window: Duration,
    concurrency: Vec<usize>,
    latency_calls: usize,
    search_connectors: u64,
    search_calls: usize,
    streams: usize,
    storm_agents: usize,
    only: Option<Vec<String>>,
}

impl Plan {
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let quick = args.iter().any(|a| a == "--quick");
        let only = args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1))
            .map(|list| list.split(',').map(str::to_owned).collect());
        Plan {
            quick,
            window: args
                .iter()
                .find_map(|a| a.strip_prefix("--window="))
                .and_then(|w| humantime::parse_duration(w).ok())
                .unwrap_or(Duration::from_secs(if quick { 2 } else { 8 })),
            concurrency: args
                .iter()
                .find_map(|a| a.strip_prefix("--concurrency="))
                .map(|list| list.split(',').filter_map(|n| n.parse().ok()).collect())
                .unwrap_or_else(|| vec![4, 16, 64]),
            latency_calls: if quick { 200 } else { 1000 },
            search_connectors: if quick { 100_000 } else { 1_000_000 },
            search_calls: if quick { 40 } else { 400 },
            streams: if quick { 1_000 } else { 10_000 },
            storm_agents: if quick { 1_000 } else { 10_000 },
            only,
        }
    }

    fn runs(&self, scenario: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|s| s == scenario))
    }
}

/// Latencies and throughput of one side of a comparison.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    p50: Duration,
    p99: Duration,
    per_second: f64,
}

impl Stats {
    fn of(mut samples: Vec<Duration>, elapsed: Duration) -> Self {
        samples.sort();
        if samples.is_empty() {
            return Stats::default();
        }
        Stats {
            p50: percentile(&samples, 50),
            p99: percentile(&samples, 99),
            per_second: samples.len() as f64 / elapsed.as_secs_f64(),
        }
    }

    /// Slices of one measurement: the median of the slices' percentiles
    /// and their mean rate.
    fn merge(slices: &[Stats]) -> Self {
        let mut p50: Vec<Duration> = slices.iter().map(|s| s.p50).collect();
        let mut p99: Vec<Duration> = slices.iter().map(|s| s.p99).collect();
        p50.sort();
        p99.sort();
        Stats {
            p50: p50[p50.len() / 2],
            p99: p99[p99.len() / 2],
            per_second: slices.iter().map(|s| s.per_second).sum::<f64>() / slices.len() as f64,
        }
    }

    fn cell(&self) -> String {
        format!(
            "{:.2} / {:.2} ms, {:.0}/s",
            ms(self.p50),
            ms(self.p99),
            self.per_second
        )
    }
}

/// The samples of concurrent callers, as one measurement since `started`.
async fn gather(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Vec<Duration>>>>,
    started: Instant,
) -> anyhow::Result<Stats> {
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await??);
    }
    Ok(Stats::of(samples, started.elapsed()))
}

/// One line of the report.
struct Line {
    scenario: String,
    ours: String,
    baseline: String,
    ratio: String,
    target: String,
    met: bool,
}

fn report(line: &Line) {
    println!(
        "| {} | {} | {} | {} | {} | {} |",
        line.scenario,
        line.ours,
        line.baseline,
        line.ratio,
        line.target,
        if line.met { "met" } else { "MISSED" }
    );
}

fn main() -> anyhow::Result<()> {
    if std::env::var("HARNESS_ROLE").as_deref() == Ok("hello") {
        return hello_server();
    }
    let plan = Plan::from_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(plan))
}

async fn run(plan: Plan) -> anyhow::Result<()> {
    let started = Instant::now();
    println!(
        "connector-control benchmark harness ({} run), {} cores",
        if plan.quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!("| scenario | ours (p50 / p99, rate) | baseline | ratio | target | |");
    println!("|---|---|---|---|---|---|");
    let mut missed = 0;
    let mut lines = Vec::new();
    if plan.runs("throughput") || plan.runs("latency") {
        lines.extend(common::with_database_returning(|url| changes(&plan, url)).await?);
    }
    if plan.runs("limiter") {
        lines.extend(common::with_database_returning(|url| limiter(&plan, url)).await?);
    }
    if plan.runs("refusals") {
        lines.extend(common::with_database_returning(|url| refusals(&plan, url)).await?);
    }
    if plan.runs("search") {
        lines.extend(common::with_database_returning(|url| search(&plan, url)).await?);
    }
    if plan.runs("noop") {
        lines.extend(common::with_database_returning(|url| noop(&plan, url)).await?);
    }
    if plan.runs("delivery") {
        lines.extend(common::with_database_returning(delivery).await?);
    }
    if plan.runs("streams") {
        lines.extend(common::with_database_returning(|url| streams(&plan, url)).await?);
    }
    if plan.runs("storm") {
        lines.extend(common::with_database_returning(|url| storm(&plan, url)).await?);
    }
    if plan.runs("embedded") {
        lines.extend(embedded(&plan).await?);
    }
    // The embedded-store line is for comparison: it has no target.
    let judged: Vec<&Line> = lines
        .iter()
        .filter(|line| line.target != "for comparison")
        .collect();
    for line in &judged {
        if !line.met {
            missed += 1;
        }
    }
    println!();
    println!(
        "{} scenarios with a target, {missed} missed it, in {:.0?}",
        judged.len(),
        started.elapsed()
    );
    Ok(())
}

// ---------------------------------------------------------------- server

/// A child process serving gRPC; killed when dropped.
struct Process {
    child: Child,
    addr: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in bytes (VmRSS).
    fn rss(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// User + system CPU time so far.
    fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which may hold spaces).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
            .sum();
        Duration::from_millis(ticks * 10) // USER_HZ = 100
    }
}

/// Spawns `command` and waits for its "serving gRPC" log line.
fn spawn_logged(mut command: Command) -> anyhow::Result<Process> {
    let mut child = command.stderr(Stdio::piped()).spawn()?;
    let addr = common::serving_address(&mut child)?;
    Ok(Process { child, addr })
}

/// The release server on PostgreSQL (`url`) or, with None, the embedded
/// store in `dir`.
fn server(
    url: Option<&str>,
    dir: Option<&std::path::Path>,
    args: &[&str],
) -> anyhow::Result<Process> {
    let mut command = common::serve_command(args);
    command.args(extra_server_args());
    match url {
        Some(url) => {
            command.env("DATABASE_URL", url);
        }
        None => {
            command.env_remove("DATABASE_URL");
        }
    }
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    spawn_logged(command)
}

/// `--server-arg=X` arguments of the harness, passed to every server.
fn extra_server_args() -> Vec<String> {
    std::env::args()
        .filter_map(|arg| arg.strip_prefix("--server-arg=").map(str::to_owned))
        .collect()
}

/// The baseline for the no-op RPC: a bare tonic server (health service
/// only, default settings) in a child process like ours.
fn hello_server() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        eprintln!("serving gRPC addr={}", listener.local_addr()?);
        tonic::transport::Server::builder()
            .add_service(service)
            // The same socket option as ours: the comparison is of the
            // servers, not of Nagle's algorithm.
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            )
            .await?;
        Ok(())
    })
}

async fn connectors_client(addr: &str) -> anyhow::Result<ConnectorServiceClient<Channel>> {
    Ok(ConnectorServiceClient::new(common::channel(addr).await?))
}

async fn sql(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let mut config: tokio_postgres::Config = url.parse()?;
    // As the server's connections: plans made with the real values.
    config.options("-c plan_cache_mode=force_custom_plan");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// `count` STOPPED incremental-sync connectors `<prefix>-0000001`, ... in
/// region eu-1.
async fn preload(db: &tokio_postgres::Client, prefix: &str, count: u64) -> anyhow::Result<()> {
    db.batch_execute(&format!(
        "INSERT INTO connectors (id, name, project_id, project_name, name_folded,
            project_name_folded, kind, source_type, source_region, source_address,
            destination_type, destination_region, destination_address,
            region, server_ip, state, desired_state)
         SELECT '{prefix}-' || lpad(n::text, 7, '0'), 'bench ' || n, 'proj-bench', 'Bench',
                'bench ' || n, 'bench', 'INCREMENTAL_SYNC', 'MYSQL', 'eu-1', '10.200.0.1:3306',
                'OCEANBASE', 'eu-1', '10.201.0.1:2881', 'eu-1', '', 'STOPPED', 'STOPPED'
         FROM generate_series(1, {count}) AS n"
    ))
    .await?;
    Ok(())
}

/// After a bulk load: vacuumed and analyzed (no autovacuum starts in the
/// middle of a measurement) and checkpointed (no checkpoint writes the
/// load out during one).
async fn settle(db: &tokio_postgres::Client) -> anyhow::Result<()> {
    // One statement each: VACUUM cannot run in a multi-statement batch.
    db.batch_execute("VACUUM ANALYZE connectors").await?;
    db.batch_execute("CHECKPOINT").await?;
    Ok(())
}

fn connector_id(prefix: &str, n: u64) -> String {
    format!("{prefix}-{n:07}")
}

// ------------------------------------------------- start + pause, latency

/// The statements one Start or Pause runs in the store: the baseline issues
/// exactly these (prepared and cached per connection, as the store does),
/// without the service around them.
struct RawChange {
    lock: String,
    previous: &'static str,
    supersede: &'static str,
    insert: String,
    update: String,
    audit: &'static str,
}

impl RawChange {
    fn new() -> Self {
        RawChange {
            lock: format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE id = $1 FOR UPDATE"),
            previous: "SELECT previous_region FROM commands
                       WHERE connector_id = $1 AND kind = 'START' AND status = 'PENDING'
                       ORDER BY generation DESC LIMIT 1 FOR UPDATE",
            supersede: "UPDATE commands SET status = 'SUPERSEDED', complete_time = now()
                        WHERE connector_id = $1 AND status = 'PENDING'",
            insert: format!(
                "INSERT INTO commands
                   (id, connector_id, kind, pull_back_time, region, previous_region,
                    generation, request_id, reason, status, trace_context)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'PENDING', $10)
                 RETURNING {COMMAND_COLUMNS}"
            ),
            update: format!(
                "UPDATE connectors
                 SET state = $2, desired_state = $3, generation = $4, region = $5,
                     update_time = now()
                 WHERE id = $1
                 RETURNING {CONNECTOR_COLUMNS}"
            ),
            audit: "INSERT INTO audit_events
                      (principal, action, connector_id, request_id, outcome, reason, peer, detail)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        }
    }

    /// One Start (`start`) or Pause of `id`, as the store runs it.
    async fn change(
        &self,
        pool: &deadpool_postgres::Pool,
        id: &str,
        start: bool,
    ) -> anyhow::Result<()> {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let lock = tx.prepare_cached(&self.lock).await?;
        let row = tx.query_one(&lock, &[&id]).await?;
        let generation: i64 = row.get::<_, i64>("generation") + 1;
        let region: String = row.get("region");
        if !start {
            let previous = tx.prepare_cached(self.previous).await?;
            tx.query_opt(&previous, &[&id]).await?;
        }
        let supersede = tx.prepare_cached(self.supersede).await?;
        tx.execute(&supersede, &[&id]).await?;
        let command_id = uuid::Uuid::now_v7().to_string();
        let (kind, state, desired, reason) = if start {
            ("START", "STARTING", "RUNNING", "")
        } else {
            ("PAUSE", "PAUSING", "STOPPED", "bench")
        };
        let no_time: Option<chrono::DateTime<chrono::Utc>> = None;
        let no_request: Option<String> = None;
        let insert = tx.prepare_cached(&self.insert).await?;
        tx.query_one(
            &insert,
            &[
                &command_id,
                &id,
                &kind,
                &no_time,
                &region,
                &region,
                &generation,
                &no_request,
                &reason,
                &"",
            ],
        )
        .await?;
        let update = tx.prepare_cached(&self.update).await?;
        tx.query_one(&update, &[&id, &state, &desired, &generation, &region])
            .await?;
        let action = if start {
            "START_CONNECTOR"
        } else {
            "PAUSE_CONNECTOR"
        };
        let detail = format!("command {command_id}");
        let audit = tx.prepare_cached(self.audit).await?;
        tx.execute(
            &audit,
            &[
                &"anonymous",
                &action,
                &id,
                &"",
                &"OK",
                &reason,
                &"127.0.0.1:1",
                &detail,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Database connections on each side: the server's `--pool-size` and the
/// baseline's pool, so that both have the same budget (PostgreSQL allows
/// 100 here).
const POOL_SIZE: usize = 32;

/// A pool like the server's, for the baseline.
fn raw_pool(url: &str) -> anyhow::Result<deadpool_postgres::Pool> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.options("-c plan_cache_mode=force_custom_plan");
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    Ok(deadpool_postgres::Pool::builder(manager)
        .max_size(POOL_SIZE)
        .build()?)
}

/// Start+Pause pairs by `callers` concurrent callers for `window`: each
/// caller takes the next unused connector, starts it, then pauses it.
async fn pairs_via_grpc(
    addr: &str,
    callers: usize,
    window: Duration,
    next: Arc<AtomicU64>,
    limit: u64,
) -> anyhow::Result<Stats> {
    let mut clients = Vec::with_capacity(callers);
    for _ in 0..callers {
        clients.push(connectors_client(addr).await?);
    }
    // The clock starts once every caller is connected.
    let started = Instant::now();
    let deadline = started + window;
    let mut tasks = Vec::new();
    for mut client in clients {
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                anyhow::ensure!(
                    n <= limit,
                    "ran out of preloaded connectors; raise per_side"
                );
                let id = connector_id("g", n);
                let t = Instant::now();
                client
                    .start_connector(v1::StartConnectorRequest {
                        id: id.clone(),
                        ..Default::default()
                    })
                    .await?;
                samples.push(t.elapsed());
                let t = Instant::now();
                client
                    .pause_connector(v1::PauseConnectorRequest {
                        id,
                        reason: "bench".to_owned(),
                        ..Default::default()
                    })
                    .await?;
                samples.push(t.elapsed());
            }
            anyhow::Ok(samples)
        }));
    }
    gather(tasks, started).await
}

/// The same pairs as raw SQL transactions, `callers` at a time on `pool`.
async fn pairs_via_sql(
    pool: &deadpool_postgres::Pool,
    callers: usize,
    window: Duration,
    next: Arc<AtomicU64>,
    limit: u64,
) -> anyhow::Result<Stats> {
    let statements = Arc::new(RawChange::new());
    let started = Instant::now();
    let deadline = started + window;
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (next, pool, statements) = (next.clone(), pool.clone(), statements.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                anyhow::ensure!(
                    n <= limit,
                    "ran out of preloaded connectors; raise per_side"
                );
                let id = connector_id("r", n);
                let t = Instant::now();
                statements.change(&pool, &id, true).await?;
                samples.push(t.elapsed());
                let t = Instant::now();
                statements.change(&pool, &id, false).await?;
                samples.push(t.elapsed());
            }
            anyhow::Ok(samples)
        }));
    }
    gather(tasks, started).await
}

/// Start+Pause throughput at each concurrency, and the latency of a Start
/// with one caller, against the same transactions issued directly.
async fn changes(plan: &Plan, url: String) -> anyhow::Result<Vec<Line>> {
    let per_side: u64 = if plan.quick { 40_000 } else { 100_000 };
    {
        let db = sql(&url).await?;
        connector_control::store::PgStore::connect(&url, 1)
            .await?
            .migrate()
            .await?;
        preload(&db, "g", per_side).await?;
        preload(&db, "r", per_side).await?;
        settle(&db).await?;
    }
    let pool_size = POOL_SIZE.to_string();
    let process = server(Some(&url), None, &["--pool-size", &pool_size])?;
    let pool = raw_pool(&url)?;
    let (grpc_next, sql_next) = (Arc::new(AtomicU64::new(1)), Arc::new(AtomicU64::new(1)));
    let mut lines = Vec::new();
    // Warm both paths (connections, prepared statements, caches).
    pairs_via_grpc(
        &process.addr,
        4,
        Duration::from_millis(500),
        grpc_next.clone(),
        per_side,
    )
    .await?;
    pairs_via_sql(
        &pool,
        4,
        Duration::from_millis(500),
        sql_next.clone(),
        per_side,
    )
    .await?;

    if plan.runs("throughput") {
        for &callers in &plan.concurrency {
            // Alternated in four slices each: both sides see the tables
            // grow alike (every pair leaves two commands and two audit
            // events behind).
            let slice = plan.window / 4;
            let (mut ours, mut raw) = (Vec::new(), Vec::new());
            for _ in 0..4 {
                ours.push(
                    pairs_via_grpc(&process.addr, callers, slice, grpc_next.clone(), per_side)
                        .await?,
                );
                raw.push(pairs_via_sql(&pool, callers, slice, sql_next.clone(), per_side).await?);
            }
            let (ours, raw) = (Stats::merge(&ours), Stats::merge(&raw));
            let ratio = ours.per_second / raw.per_second;
            lines.push(Line {
                scenario: format!("Start+Pause throughput, {callers} callers"),
                ours: ours.cell(),
                baseline: format!("raw SQL: {}", raw.cell()),
                ratio: format!("{ratio:.2}x"),
                target: ">= 0.7x".to_owned(),
                met: ratio >= 0.7,
            });
            report(lines.last().unwrap());
        }
    }
    if plan.runs("latency") {
        let (ours, raw) = single_starts(
            &process.addr,
            &pool,
            plan.latency_calls,
            grpc_next.clone(),
            sql_next.clone(),
        )
        .await?;
        let extra = ms(ours.p50) - ms(raw.p50);
        lines.push(Line {
            scenario: "Start latency, one caller".to_owned(),
            ours: format!("{:.2} / {:.2} ms", ms(ours.p50), ms(ours.p99)),
            baseline: format!("raw SQL: {:.2} / {:.2} ms", ms(raw.p50), ms(raw.p99)),
            ratio: format!("p50 {extra:+.2} ms"),
            target: "p50 <= raw + 0.5 ms".to_owned(),
            met: extra <= 0.5,
        });
        report(lines.last().unwrap());
    }
    Ok(lines)
}

/// Starts one after another, alternating a gRPC call and the same raw
/// transaction, so that both see the same state of the database.
async fn single_starts(
    addr: &str,
    pool: &deadpool_postgres::Pool,
    calls: usize,
    grpc_next: Arc<AtomicU64>,
    sql_next: Arc<AtomicU64>,
) -> anyhow::Result<(Stats, Stats)> {
    let mut client = connectors_client(addr).await?;
    let statements = RawChange::new();
    let (mut ours, mut raw) = (Vec::with_capacity(calls), Vec::with_capacity(calls));
    let started = Instant::now();
    for _ in 0..calls {
        let id = connector_id("g", grpc_next.fetch_add(1, Ordering::Relaxed));
        let t = Instant::now();
        client
            .start_connector(v1::StartConnectorRequest {
                id,
                ..Default::default()
            })
            .await?;
        ours.push(t.elapsed());
        let id = connector_id("r", sql_next.fetch_add(1, Ordering::Relaxed));
        let t = Instant::now();
        statements.change(pool, &id, true).await?;
        raw.push(t.elapsed());
    }
    let elapsed = started.elapsed() / 2;
    Ok((Stats::of(ours, elapsed), Stats::of(raw, elapsed)))
}

/// Start latency with one caller through a server whose rate limiter
/// checks every call (an allowance no call exhausts) against a server
/// without one, on the same database, call by call alternated.
async fn limiter(plan: &Plan, url: String) -> anyhow::Result<Vec<Line>> {
    let calls = plan.latency_calls as u64;
    {
        let db = sql(&url).await?;
        connector_control::store::PgStore::connect(&url, 1)
            .await?
            .migrate()
            .await?;
        preload(&db, "l", calls + 100).await?;
        preload(&db, "u", calls + 100).await?;
        settle(&db).await?;
    }
    let allowance = "1000000";
    let limited = server(
        Some(&url),
        None,
        &[
            "--admin-rate-limit",
            allowance,
            "--admin-rate-burst",
            allowance,
            "--operator-rate-limit",
            allowance,
        ],
    )?;
    let unlimited = server(Some(&url), None, &[])?;
    let (mut with, mut without) = (
        connectors_client(&limited.addr).await?,
        connectors_client(&unlimited.addr).await?,
    );
    let start = |client: &mut ConnectorServiceClient<Channel>, id: String| {
        let mut client = client.clone();
        async move {
            let t = Instant::now();
            client
                .start_connector(v1::StartConnectorRequest {
                    id,
                    ..Default::default()
                })
                .await?;
            anyhow::Ok(t.elapsed())
        }
    };
    // Warm both (connections, prepared statements).
    for n in 1..=100 {
        start(&mut with, connector_id("l", calls + n)).await?;
        start(&mut without, connector_id("u", calls + n)).await?;
    }
    let (mut ours, mut baseline) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for n in 1..=calls {
        ours.push(start(&mut with, connector_id("l", n)).await?);
        baseline.push(start(&mut without, connector_id("u", n)).await?);
    }
    let elapsed = started.elapsed() / 2;
    let (ours, baseline) = (Stats::of(ours, elapsed), Stats::of(baseline, elapsed));
    let ratio = ms(ours.p50) / ms(baseline.p50);
    let line = Line {
        scenario: "Start latency with the rate limiter, one caller".to_owned(),
        ours: format!("{:.2} / {:.2} ms", ms(ours.p50), ms(ours.p99)),
        baseline: format!(
            "no limiter: {:.2} / {:.2} ms",
            ms(baseline.p50),
            ms(baseline.p99)
        ),
        ratio: format!("p50 {ratio:.2}x"),
        target: "p50 <= 1.05x".to_owned(),
        met: ratio <= 1.05,
    };
    report(&line);
    Ok(vec![line])
}

/// A flood of refused changes (Pauses of connectors that do not exist:
/// NOT_FOUND, audited) from 16 callers, against the same number of
/// GetConnector calls refused alike (reads: not audited). What it costs the
/// database is the audit rows it writes: identical refusals are one row at
/// once and one with the count per window.
async fn refusals(plan: &Plan, url: String) -> anyhow::Result<Vec<Line>> {
    let calls: usize = if plan.quick { 5_000 } else { 20_000 };
    let process = server(Some(&url), None, &[])?;
    let client = connectors_client(&process.addr).await?;
    async fn flood(
        client: &ConnectorServiceClient<Channel>,
        calls: usize,
        change: bool,
    ) -> anyhow::Result<Stats> {
        let started = Instant::now();
        let tasks = (0..16)
            .map(|caller| {
                let mut client = client.clone();
                tokio::spawn(async move {
                    let mut samples = Vec::new();
                    for i in (caller..calls).step_by(16) {
                        let id = format!("missing-{i}");
                        let t = Instant::now();
                        let refused = if change {
                            client
                                .pause_connector(v1::PauseConnectorRequest {
                                    id,
                                    ..Default::default()
                                })
                                .await
                                .is_err()
                        } else {
                            client
                                .get_connector(v1::GetConnectorRequest { id })
                                .await
                                .is_err()
                        };
                        anyhow::ensure!(refused, "a call for a missing connector succeeded");
                        samples.push(t.elapsed());
                    }
                    anyhow::Ok(samples)
                })
            })
            .collect();
        gather(tasks, started).await
    }
    flood(&client, 1_000, false).await?;
    let started = Instant::now();
    let ours = flood(&client, calls, true).await?;
    let elapsed = started.elapsed();
    let baseline = flood(&client, calls, false).await?;
    let rows: i64 = sql(&url)
        .await?
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action = 'PAUSE_CONNECTOR'",
            &[],
        )
        .await?
        .get(0);
    let windows = elapsed.as_secs().div_ceil(10).max(1) as i64;
    let ratio = ours.per_second / baseline.per_second;
    let line = Line {
        scenario: format!("{calls} refused Pauses (NOT_FOUND, audited), 16 callers"),
        ours: format!("{}; {rows} audit rows", ours.cell()),
        baseline: format!("refused GetConnector: {}", baseline.cell()),
        ratio: format!("{ratio:.2}x"),
        target: "<= 2 audit rows per 10 s window".to_owned(),
        met: rows <= 2 * windows,
    };
    report(&line);
    Ok(vec![line])
}

/// Starts one after another through `addr` (the embedded-store line).
async fn single_starts_grpc(
    addr: &str,
    calls: usize,
    next: Arc<AtomicU64>,
) -> anyhow::Result<Stats> {
    let mut client = connectors_client(addr).await?;
    let mut samples = Vec::with_capacity(calls);
    let started = Instant::now();
    for _ in 0..calls {
        let id = connector_id("g", next.fetch_add(1, Ordering::Relaxed));
        let t = Instant::now();
        client
            .start_connector(v1::StartConnectorRequest {
                id,
                ..Default::default()
            })
            .await?;
        samples.push(t.elapsed());
    }
    Ok(Stats::of(samples, started.elapsed()))
}

// ---------------------------------------------------------------- search

/// A search as the server runs it: the page statement and the capped count.
struct RawSearch {
    page: String,
    count: String,
    page_params: Vec<Param>,
    count_params: Vec<Param>,
}

type Param = Box<dyn tokio_postgres::types::ToSql + Sync + Send>;

fn borrowed(params: &[Param]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

fn texts(values: &[&str]) -> Vec<Param> {
    values
        .iter()
        .map(|v| Box::new((*v).to_owned()) as Param)
        .collect()
}

async fn search(plan: &Plan, url: String) -> anyhow::Result<Vec<Line>> {
    let count = plan.search_connectors;
    connector_control::store::PgStore::connect(&url, 1)
        .await?
        .migrate()
        .await?;
    let db = sql(&url).await?;
    let loading = Instant::now();
    common::load_fleet(&db, count).await?;
    // On its own: VACUUM cannot run in the implicit transaction of a
    // multi-statement batch. It also sets the visibility map, as a fleet
    // that has been running a while would have.
    settle(&db).await?;
    println!(
        "(search: loaded {count} connectors in {:.1?})",
        loading.elapsed()
    );
    let process = server(Some(&url), None, &[])?;
    let mut client = connectors_client(&process.addr).await?;

    // Page 1,000 of the whole fleet: the token after 999 pages of 50.
    let mut token = String::new();
    for _ in 0..999 {
        token = client
            .list_connectors(v1::ListConnectorsRequest {
                page_token: token,
                ..Default::default()
            })
            .await?
            .into_inner()
            .next_page_token;
    }
    let cursor = db
        .query_one(
            "SELECT name, id FROM connectors ORDER BY name, id OFFSET 49949 LIMIT 1",
            &[],
        )
        .await?;
    let (after_name, after_id): (String, String) = (cursor.get(0), cursor.get(1));
    // A selective name search: a hash fragment shared by a few names.
    let rare: String = db
        .query_one(
            "SELECT substr(name, position('-' in name) + 1, 5) FROM connectors
             WHERE id = 'conn-0004242'",
            &[],
        )
        .await?
        .get(0);
    // An IP prefix of a /24 that exists at this fleet size.
    let ip: String = db
        .query_one(
            "SELECT server_ip FROM connectors WHERE id = 'conn-0004242'",
            &[],
        )
        .await?
        .get(0);
    let ip_prefix = format!(
        "{}.",
        ip.rsplit_once('.').map_or(ip.as_str(), |(net, _)| net)
    );
    let capped = |condition: &str| {
        format!(
            "SELECT count(*) FROM (SELECT 1 FROM connectors WHERE {condition} LIMIT {}) AS capped",
            EXACT_COUNT_LIMIT + 1
        )
    };
    let lagging = "((state = 'UNKNOWN' AND desired_state = 'RUNNING')
          OR (state = 'RUNNING' AND desired_state = 'RUNNING' AND latency_us > $1))";
    let text_condition = "(name_folded LIKE $1 OR project_name_folded LIKE $1
          OR lower(id) LIKE $2 OR lower(project_id) LIKE $2
          OR server_ip LIKE $2)";
    // A free-text search: the request, and the SQL the server runs for it
    // (a query of 3+ characters orders by an expression, see SearchSql).
    let text_search = |name: &'static str, query: &str, selective: bool| {
        let patterns = || texts(&[&format!("%{query}%"), &format!("{query}%")]);
        (
            name,
            v1::ListConnectorsRequest {
                query: query.to_owned(),
                ..Default::default()
            },
            RawSearch {
                page: format!(
                    "SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE {text_condition}
                     ORDER BY name || '', id LIMIT 51"
                ),
                count: capped(text_condition),
                page_params: patterns(),
                count_params: patterns(),
            },
            selective,
        )
    };
    let cases: Vec<(&str, v1::ListConnectorsRequest, RawSearch, bool)> = vec![
        (
            "first page",
            v1::ListConnectorsRequest::default(),
            RawSearch {
                page: format!(
                    "SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE TRUE ORDER BY name, id LIMIT 51"
                ),
                count: capped("TRUE"),
                page_params: vec![],
                count_params: vec![],
            },
            false,
        ),
        (
            "page 1,000",
            v1::ListConnectorsRequest {
                page_token: token,
                ..Default::default()
            },
            RawSearch {
                page: format!(
                    "SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE TRUE AND (name, id) > ($1, $2)
                     ORDER BY name, id LIMIT 51"
                ),
                count: capped("TRUE"),
                page_params: texts(&[&after_name, &after_id]),
                count_params: vec![],
            },
            false,
        ),
        text_search("selective name search", &rare, true),
        text_search("IP prefix search (a /24)", &ip_prefix, false),
        (
            "lagging filter (1% lag 2 min)",
            v1::ListConnectorsRequest {
                lagging: true,
                ..Default::default()
            },
            RawSearch {
                page: format!(
                    "SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE {lagging}
                     ORDER BY name || '', id LIMIT 51"
                ),
                count: capped(lagging),
                page_params: vec![Box::new(60_000_000_i64)],
                count_params: vec![Box::new(60_000_000_i64)],
            },
            false,
        ),
    ];
    let mut lines = Vec::new();
    for (name, request, raw, selective) in cases {
        let mut ours_samples = Vec::new();
        let mut raw_samples = Vec::new();
        let page = db.prepare(&raw.page).await?;
        let count_statement = db.prepare(&raw.count).await?;
        // Past the exact-count limit the server asks the planner for an
        // estimate: so does the baseline.
        let condition = raw
            .count
            .split_once(" WHERE ")
            .and_then(|(_, rest)| rest.rsplit_once(" LIMIT "))
            .map(|(condition, _)| condition.to_owned())
            .expect("a capped count");
        let explain = db
            .prepare(&format!(
                "EXPLAIN SELECT 1 FROM connectors WHERE {condition}"
            ))
            .await?;
        let (params, count_params) = (borrowed(&raw.page_params), borrowed(&raw.count_params));
        let started = Instant::now();
        // Interleaved, so that both sides see the same cache and load.
        for i in 0..plan.search_calls + 5 {
            let t = Instant::now();
            client.list_connectors(request.clone()).await?;
            let ours = t.elapsed();
            let t = Instant::now();
            db.query(&page, &params).await?;
            let counted: i64 = db.query_one(&count_statement, &count_params).await?.get(0);
            if counted > EXACT_COUNT_LIMIT {
                db.query(&explain, &count_params).await?;
            }
            let direct = t.elapsed();
            if i >= 5 {
                ours_samples.push(ours);
                raw_samples.push(direct);
            }
        }
        let elapsed = started.elapsed();
        let ours = Stats::of(ours_samples, elapsed);
        let raw = Stats::of(raw_samples, elapsed);
        let p50_limit = 1.2 * ms(raw.p50) + 1.0;
        let p99_limit = 1.5 * ms(raw.p99) + 2.0;
        let mut met = ms(ours.p50) <= p50_limit && ms(ours.p99) <= p99_limit;
        let mut target = format!("p50 <= {p50_limit:.2}, p99 <= {p99_limit:.2} ms");
        if selective {
            met &= ms(ours.p99) <= 20.0;
            target.push_str(", p99 <= 20 ms");
        }
        lines.push(Line {
            scenario: format!("ListConnectors, {count} connectors: {name}"),
            ours: format!("{:.2} / {:.2} ms", ms(ours.p50), ms(ours.p99)),
            baseline: format!("raw SQL: {:.2} / {:.2} ms", ms(raw.p50), ms(raw.p99)),
            ratio: format!("p50 {:.2}x", ms(ours.p50) / ms(raw.p50)),
            target,
            met,
        });
        report(lines.last().unwrap());
    }
    Ok(lines)
}

// ---------------------------------------------------------------- no-op

async fn health_calls(addr: &str, callers: usize, window: Duration) -> anyhow::Result<Stats> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = common::channel(addr).await?;
    let started = Instant::now();
    let deadline = started + window;
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let mut client = HealthClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                client.check(HealthCheckRequest::default()).await?;
                samples.push(t.elapsed());
            }
            anyhow::Ok(samples)
        }));
    }
    gather(tasks, started).await
}

/// A health check on our server against the same call on a bare tonic
/// server, both child processes, 16 callers on one connection.
async fn noop(plan: &Plan, url: String) -> anyhow::Result<Vec<Line>> {
    let ours = server(Some(&url), None, &[])?;
    let mut command = Command::new(std::env::current_exe()?);
    command.env("HARNESS_ROLE", "hello");
    let bare = spawn_logged(command)?;
    health_calls(&ours.addr, 16, Duration::from_millis(500)).await?;
    health_calls(&bare.addr, 16, Duration::from_millis(500)).await?;
    // Alternated in four slices each, so that drift in the machine's load
    // falls on both sides alike.
    let slice = plan.window / 4;
    let (mut mine, mut baseline) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        mine.push(health_calls(&ours.addr, 16, slice).await?);
        baseline.push(health_calls(&bare.addr, 16, slice).await?);
    }
    let (mine, baseline) = (Stats::merge(&mine), Stats::merge(&baseline));
    let ratio = mine.per_second / baseline.per_second;
    let line = Line {
        scenario: "No-op RPC (health check), 16 callers".to_owned(),
        ours: mine.cell(),
        baseline: format!("bare tonic: {}", baseline.cell()),
        ratio: format!("{ratio:.2}x"),
        target: ">= 0.8x".to_owned(),
        met: ratio >= 0.8,
    };
    report(&line);
    Ok(vec![line])
}

// -------------------------------------------------------------- delivery

async fn delivery(url: String) -> anyhow::Result<Vec<Line>> {
    let process = server(Some(&url), None, &[])?;
    let channel = common::channel(&process.addr).await?;
    let (tx, mut received) = mpsc::unbounded_channel();
    common::open_agent(
        channel.clone(),
        "probe".to_owned(),
        "probe".to_owned(),
        Some(tx),
        Arc::new(AtomicUsize::new(0)),
    )
    .await?;
    let mut client = ConnectorServiceClient::new(channel);
    common::probe_delivery(&mut client, &mut received, 0).await?; // warm-up
    let started = Instant::now();
    let delays = common::probe_delivery(&mut client, &mut received, 1).await?;
    let stats = Stats::of(delays, started.elapsed());
    let line = Line {
        scenario: "Command delivery, StartConnector return -> agent receipt".to_owned(),
        ours: format!("{:.2} / {:.2} ms", ms(stats.p50), ms(stats.p99)),
        baseline: "-".to_owned(),
        ratio: "-".to_owned(),
        target: "p50 <= 2 ms, p99 <= 10 ms".to_owned(),
        met: ms(stats.p50) <= 2.0 && ms(stats.p99) <= 10.0,
    };
    report(&line);
    Ok(vec![line])
}

// --------------------------------------------------------------- streams

/// The sum of every sample of `series` (all label sets) at `addr`.
async fn metric_sum(addr: &str, series: &str) -> anyhow::Result<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(body
        .lines()
        .filter(|line| {
            line.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

fn free_port() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.to_string())
}

/// Opens `count` agent sessions (10 per HTTP/2 connection) of `region`;
/// with `report`, agent i reports connector `s-<i>` in every heartbeat.
async fn open_agents(
    addr: &str,
    count: usize,
    region: &str,
    report: bool,
) -> anyhow::Result<Arc<AtomicUsize>> {
    let connected = Arc::new(AtomicUsize::new(0));
    let mut channel = common::channel(addr).await?;
    for i in 0..count {
        if i % 10 == 0 {
            channel = common::channel(addr).await?;
        }
        common::open_agent_reporting(
            channel.clone(),
            format!("{region}-agent-{i}"),
            region.to_owned(),
            report.then(|| connector_id("s", i as u64 + 1)),
            None,
            connected.clone(),
        )
        .await?;
    }
    Ok(connected)
}

/// `streams` agents heartbeating every 10 s, each reporting one connector
/// whose latency changes every time: memory per stream, CPU, and the
/// write transactions heartbeats cost (times and statuses) per second,
/// over two heartbeat rounds.
async fn streams(plan: &Plan, url: String) -> anyhow::Result<Vec<Line>> {
    {
        connector_control::store::PgStore::connect(&url, 1)
            .await?
            .migrate()
            .await?;
        let db = sql(&url).await?;
        preload(&db, "s", plan.streams as u64).await?;
        settle(&db).await?;
    }
    let metrics = free_port()?;
    let process = server(Some(&url), None, &["--metrics-listen", &metrics])?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = process.rss();
    open_agents(&process.addr, plan.streams, "eu-1", true).await?;
    // Every agent's first heartbeat, at a random phase within 10 s.
    tokio::time::sleep(common::HEARTBEAT).await;
    let window = common::HEARTBEAT * 2;
    let writes_series = "connector_control_heartbeat_writes_total";
    let (cpu, writes) = (process.cpu(), metric_sum(&metrics, writes_series).await?);
    tokio::time::sleep(window).await;
    let cpu = process.cpu() - cpu;
    let writes = (metric_sum(&metrics, writes_series).await? - writes) / window.as_secs_f64();
    let connected = metric_sum(&metrics, "connector_control_agents_connected").await?;
    anyhow::ensure!(
        connected as usize == plan.streams,
        "{connected} of {} streams still connected",
        plan.streams
    );
    let db = sql(&url).await?;
    let reported: i64 = db
        .query_one(
            "SELECT count(*) FROM connectors WHERE id LIKE 's-%' AND latency_us IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    anyhow::ensure!(
        reported as usize == plan.streams,
        "only {reported} of {} reported connectors were recorded",
        plan.streams
    );
    let per_stream = (process.rss().saturating_sub(idle)) as f64 / plan.streams as f64 / 1024.0;
    let core = cpu.as_secs_f64() / window.as_secs_f64() * 100.0;
    let line = Line {
        scenario: format!(
            "{} agent streams, heartbeat every 10 s, each reporting a changing status",
            plan.streams
        ),
        ours: format!(
            "{per_stream:.1} KiB/stream, {core:.1}% of a core, {writes:.2} heartbeat write transactions/s"
        ),
        baseline: format!("idle server: {:.1} MiB", idle as f64 / 1048576.0),
        ratio: "-".to_owned(),
        target: "<= 50 KB/stream, <= 10% of a core, <= 1 write/s".to_owned(),
        met: per_stream * 1.024 <= 50.0 && core <= 10.0 && writes <= 1.0,
    };
    report(&line);
    Ok(vec![line])
}

// ----------------------------------------------------------------- storm

/// An agent that reconnects at once, to the next address, whenever its
/// stream ends; `welcomed` counts its sessions; commands are answered.
fn storm_agent(
    channels: Arc<Vec<Channel>>,
    id: String,
    welcomed: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut attempt = 0;
        loop {
            let channel = channels[attempt % channels.len()].clone();
            attempt += 1;
            let (outbound, rx) = mpsc::channel(16);
            let hello = v1::Hello {
                agent_id: id.clone(),
                instance_id: uuid::Uuid::new_v4().to_string(),
                region: "eu-1".to_owned(),
                server_ip: "10.9.0.1".to_owned(),
                version: "bench".to_owned(),
                connectors: Vec::new(),
            };
            if outbound
                .send(common::message(agent_message::Message::Hello(hello)))
                .await
                .is_err()
            {
                return;
            }
            let Ok(response) = AgentServiceClient::new(channel)
                .connect(ReceiverStream::new(rx))
                .await
            else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let mut inbound = response.into_inner();
            loop {
                match inbound.message().await {
                    Ok(Some(v1::ControlMessage {
                        message: Some(control_message::Message::Welcome(_)),
                    })) => {
                        welcomed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Some(v1::ControlMessage {
                        message: Some(control_message::Message::Command(command)),
                    })) => {
                        let result = v1::CommandResult {
                            command_id: command.id,
                            success: true,
                            status: Some(v1::ConnectorStatus {
                                connector_id: command.connector_id,
                                state: v1::ConnectorState::Running as i32,
                                generation: command.generation,
                                ..Default::default()
                            }),
                            ..Default::default()
                        };
                        let _ = outbound
                            .send(common::message(agent_message::Message::Result(result)))
                            .await;
                    }
                    Ok(Some(_)) => {}
                    // Ended (reconnect, drain, broken): at once, elsewhere.
                    _ => break,
                }
            }
        }
    })
}

/// `storm_agents` agents on replica A; A drains and they all reconnect to
/// B at once, while starts are accepted on B. All back, nothing lost?
async fn storm(plan: &Plan, url: String) -> anyhow::Result<Vec<Line>> {
    let a = server(Some(&url), None, &["--drain-timeout", "5s"])?;
    let b = server(Some(&url), None, &[])?;
    let count = plan.storm_agents;
    let mut channels_a = Vec::new();
    let mut channels_b = Vec::new();
    for _ in 0..count.div_ceil(10) {
        channels_a.push(common::channel(&a.addr).await?);
        // Connected at first use: the storm includes TCP and HTTP/2 set-up.
        channels_b.push(Channel::from_shared(format!("http://{}", b.addr))?.connect_lazy());
    }
    let welcomed = Arc::new(AtomicUsize::new(0));
    let mut agents = Vec::new();
    for i in 0..count {
        let channels = Arc::new(vec![channels_a[i / 10].clone(), channels_b[i / 10].clone()]);
        agents.push(storm_agent(
            channels,
            format!("storm-{i}"),
            welcomed.clone(),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while welcomed.load(Ordering::Relaxed) < count {
        anyhow::ensure!(Instant::now() < deadline, "agents did not all connect to A");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Starts accepted during the storm, on B.
    let commands = 200;
    let mut client = connectors_client(&b.addr).await?;
    for i in 0..commands {
        client
            .create_connector(v1::CreateConnectorRequest {
                connector: Some(v1::Connector {
                    id: format!("storm-c{i}"),
                    name: format!("storm {i}"),
                    project_id: "bench".to_owned(),
                    project_name: "Bench".to_owned(),
                    kind: v1::ConnectorKind::IncrementalSync as i32,
                    source: Some(common::endpoint("eu-1")),
                    destination: Some(common::endpoint("eu-1")),
                    ..Default::default()
                }),
            })
            .await?;
    }
    // Half the starts go through A just before it drains: some are in
    // flight on the streams the drain cuts. The other half go through B
    // during the storm.
    let mut via_a = connectors_client(&a.addr).await?;
    for i in 0..commands / 2 {
        via_a
            .start_connector(v1::StartConnectorRequest {
                id: format!("storm-c{i}"),
                ..Default::default()
            })
            .await?;
    }
    let storm_started = Instant::now();
    let term = Command::new("kill")
        .args(["-TERM", &a.pid().to_string()])
        .status()?;
    anyhow::ensure!(term.success(), "kill -TERM failed");
    for i in commands / 2..commands {
        client
            .start_connector(v1::StartConnectorRequest {
                id: format!("storm-c{i}"),
                ..Default::default()
            })
            .await?;
    }
    let db = sql(&url).await?;
    let online = db
        .prepare("SELECT count(*) FROM agents WHERE disconnect_time IS NULL AND replica_id = $1")
        .await?;
    let b_id: String = db
        .query_one("SELECT id FROM replicas WHERE address = $1", &[&b.addr])
        .await?
        .get(0);
    let limit = Duration::from_secs(60);
    let back = loop {
        let n: i64 = db.query_one(&online, &[&b_id]).await?.get(0);
        if n as usize >= count {
            break Some(storm_started.elapsed());
        }
        if storm_started.elapsed() > limit {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let succeeded = loop {
        let n: i64 = db
            .query_one(
                "SELECT count(*) FROM commands WHERE status = 'SUCCEEDED' AND connector_id LIKE 'storm-c%'",
                &[],
            )
            .await?
            .get(0);
        if n as usize >= commands || storm_started.elapsed() > limit {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let all_done = storm_started.elapsed();
    // Every agent was welcomed twice: by A, then by B.
    let sessions = welcomed.load(Ordering::Relaxed);
    for agent in agents {
        agent.abort();
    }
    let line = Line {
        scenario: format!("Reconnect storm: {count} agents move from a draining replica"),
        ours: match back {
            Some(t) => format!(
                "all back in {:.1} s; {succeeded}/{commands} starts succeeded in {:.1} s",
                t.as_secs_f64(),
                all_done.as_secs_f64()
            ),
            None => format!("not all back in {limit:?}; {succeeded}/{commands} starts succeeded"),
        },
        baseline: "-".to_owned(),
        ratio: "-".to_owned(),
        target: "all back within 30 s, no command lost".to_owned(),
        met: back.is_some_and(|t| t <= Duration::from_secs(30))
            && succeeded as usize == commands
            && sessions >= 2 * count,
    };
    report(&line);
    Ok(vec![line])
}

// -------------------------------------------------------------- embedded

/// Start latency and memory with the embedded store, beside PostgreSQL's.
async fn embedded(plan: &Plan) -> anyhow::Result<Vec<Line>> {
    let dir = std::env::temp_dir().join(format!("cc-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let result = async {
        let process = server(None, Some(&dir), &[])?;
        let mut client = connectors_client(&process.addr).await?;
        let calls = plan.latency_calls.min(500);
        for i in 1..=calls as u64 + 20 {
            client
                .create_connector(v1::CreateConnectorRequest {
                    connector: Some(v1::Connector {
                        id: connector_id("g", i),
                        name: format!("bench {i}"),
                        project_id: "bench".to_owned(),
                        project_name: "Bench".to_owned(),
                        kind: v1::ConnectorKind::IncrementalSync as i32,
                        source: Some(common::endpoint("eu-1")),
                        destination: Some(common::endpoint("eu-1")),
                        ..Default::default()
                    }),
                })
                .await?;
        }
        let next = Arc::new(AtomicU64::new(1));
        single_starts_grpc(&process.addr, 20, next.clone()).await?; // warm-up
        let stats = single_starts_grpc(&process.addr, calls, next).await?;
        let idle = process.rss();
        let streams = plan.streams / 10;
        open_agents(&process.addr, streams, "eu-2", false).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let per_stream = process.rss().saturating_sub(idle) as f64 / streams as f64 / 1024.0;
        let line = Line {
            scenario: "Embedded store (SQLite): Start latency, one caller; memory".to_owned(),
            ours: format!(
                "{:.2} / {:.2} ms; {:.1} MiB idle, {per_stream:.1} KiB/stream ({streams} streams)",
                ms(stats.p50),
                ms(stats.p99),
                idle as f64 / 1048576.0
            ),
            baseline: "compare: the PostgreSQL lines above".to_owned(),
            ratio: "-".to_owned(),
            target: "for comparison".to_owned(),
            met: true,
        };
        report(&line);
        anyhow::Ok(vec![line])
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}
