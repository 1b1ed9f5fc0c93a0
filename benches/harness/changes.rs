//! Start+Pause throughput and Start latency against the store's own
//! statements issued directly (`store::postgres::transition_sql`).

use crate::prelude::*;
use connector_control::store::postgres::transition_sql;

/// The statements one Start or Pause runs in the store: the baseline issues
/// exactly these (prepared and cached per connection, as the store does),
/// without the service around them.
pub(crate) struct RawChange {
    pub(crate) lock: String,
    pub(crate) previous: &'static str,
    pub(crate) supersede: &'static str,
    pub(crate) insert: String,
    pub(crate) update: String,
    pub(crate) audit: &'static str,
}

impl RawChange {
    /// The store's own statements (`store::postgres::transition_sql`).
    pub(crate) fn new() -> Self {
        RawChange {
            lock: transition_sql::lock_connectors(),
            previous: transition_sql::UNDELIVERED_STARTS,
            supersede: transition_sql::SUPERSEDE,
            insert: transition_sql::insert_commands(),
            update: transition_sql::update_connectors(),
            audit: transition_sql::INSERT_AUDITS,
        }
    }

    /// One Start (`start`) or Pause of `id`, as the store runs it (its
    /// statements take arrays: here of one connector).
    pub(crate) async fn change(
        &self,
        pool: &deadpool_postgres::Pool,
        id: &str,
        start: bool,
    ) -> anyhow::Result<()> {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let ids = [id];
        let lock = tx.prepare_cached(&self.lock).await?;
        let row = tx.query_one(&lock, &[&&ids[..]]).await?;
        let generation: i64 = row.get::<_, i64>("generation") + 1;
        let region: String = row.get("region");
        if !start {
            let previous = tx.prepare_cached(self.previous).await?;
            tx.query(&previous, &[&&ids[..]]).await?;
        }
        let supersede = tx.prepare_cached(self.supersede).await?;
        tx.execute(&supersede, &[&&ids[..]]).await?;
        let command_id = uuid::Uuid::now_v7().to_string();
        let (kind, state, desired, reason) = if start {
            ("START", "STARTING", "RUNNING", "")
        } else {
            ("PAUSE", "PAUSING", "STOPPED", "bench")
        };
        let no_time: [Option<chrono::DateTime<chrono::Utc>>; 1] = [None];
        let no_request: [Option<&str>; 1] = [None];
        let insert = tx.prepare_cached(&self.insert).await?;
        tx.query(
            &insert,
            &[
                &&[command_id.as_str()][..],
                &&ids[..],
                &&[kind][..],
                &&no_time[..],
                &&[region.as_str()][..],
                &&[region.as_str()][..],
                &&[generation][..],
                &&no_request[..],
                &&[reason][..],
                &&[""][..],
                &&["anonymous"][..],
                &&[false][..],
            ],
        )
        .await?;
        let update = tx.prepare_cached(&self.update).await?;
        tx.query(
            &update,
            &[
                &&ids[..],
                &&[state][..],
                &&[desired][..],
                &&[generation][..],
                &&[region.as_str()][..],
                // An operator's start resets the automatic starts' count.
                &&[start.then_some(0_i64)][..],
            ],
        )
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
                &&["anonymous"][..],
                &&[action][..],
                &&ids[..],
                &&[""][..],
                &&["OK"][..],
                &&[reason][..],
                &&["127.0.0.1:1"][..],
                &&[detail.as_str()][..],
                &&[1_i64][..],
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
pub(crate) const POOL_SIZE: usize = 32;

/// A pool like the server's, for the baseline.
pub(crate) fn raw_pool(url: &str) -> anyhow::Result<deadpool_postgres::Pool> {
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
pub(crate) async fn pairs_via_grpc(
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
pub(crate) async fn pairs_via_sql(
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
pub(crate) async fn changes(plan: &Plan, url: String) -> anyhow::Result<Vec<Line>> {
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
            // The third side runs the same raw statements with the change
            // feed's triggers disabled (for its slices only): what the
            // writes cost without any feed.
            let slice = plan.window / 4;
            let (mut ours, mut raw, mut bare) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..4 {
                ours.push(
                    pairs_via_grpc(&process.addr, callers, slice, grpc_next.clone(), per_side)
                        .await?,
                );
                raw.push(pairs_via_sql(&pool, callers, slice, sql_next.clone(), per_side).await?);
                feed_triggers(&url, false).await?;
                let no_feed =
                    pairs_via_sql(&pool, callers, slice, sql_next.clone(), per_side).await;
                feed_triggers(&url, true).await?;
                bare.push(no_feed?);
            }
            let (ours, raw, bare) = (Stats::merge(&ours), Stats::merge(&raw), Stats::merge(&bare));
            let ratio = ours.per_second / bare.per_second;
            lines.push(Line {
                scenario: format!("Start+Pause throughput, {callers} callers"),
                ours: ours.cell(),
                baseline: format!(
                    "raw SQL, no feed: {}; raw SQL: {} ({:.2}x)",
                    bare.cell(),
                    raw.cell(),
                    ours.per_second / raw.per_second
                ),
                ratio: format!("{ratio:.2}x of no feed"),
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

/// Enables or disables the change feed's triggers on `connectors`.
pub(crate) async fn feed_triggers(url: &str, enabled: bool) -> anyhow::Result<()> {
    let enable = if enabled { "ENABLE" } else { "DISABLE" };
    sql(url)
        .await?
        .batch_execute(&format!(
            "ALTER TABLE connectors {enable} TRIGGER connectors_updated;
             ALTER TABLE connectors {enable} TRIGGER connectors_inserted_or_deleted"
        ))
        .await?;
    Ok(())
}

/// Starts one after another, alternating a gRPC call and the same raw
/// transaction, so that both see the same state of the database.
pub(crate) async fn single_starts(
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
        ours.push(timed_start(&mut client, id).await?);
        let id = connector_id("r", sql_next.fetch_add(1, Ordering::Relaxed));
        let t = Instant::now();
        statements.change(pool, &id, true).await?;
        raw.push(t.elapsed());
    }
    let elapsed = started.elapsed() / 2;
    Ok((Stats::of(ours, elapsed), Stats::of(raw, elapsed)))
}

/// Starts one after another through `addr` (the embedded-store line).
pub(crate) async fn single_starts_grpc(
    addr: &str,
    calls: usize,
    next: Arc<AtomicU64>,
) -> anyhow::Result<Stats> {
    let mut client = connectors_client(addr).await?;
    let mut samples = Vec::with_capacity(calls);
    let started = Instant::now();
    for _ in 0..calls {
        let id = connector_id("g", next.fetch_add(1, Ordering::Relaxed));
        samples.push(timed_start(&mut client, id).await?);
    }
    Ok(Stats::of(samples, started.elapsed()))
}
