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
//! search, noop, delivery, streams, storm, bulk, watch, restarts, pgbouncer,
//! failover, embedded, processes (the process driver, no server),
//! slowstart (a slow start in the reference agent holds up nothing else),
//! replication (the postgres driver on a logical-replication cluster of
//! its own, beside PostgreSQL's own ENABLE / DISABLE), feedcost (what the
//! change feed's triggers cost single-row updates, pgbench style). Each starts the release server as a
//! child process on a fresh PostgreSQL database (DATABASE_URL, default
//! postgres://postgres@127.0.0.1:5432/postgres) and drives it with the
//! generated tonic client. Baselines: the same SQL issued directly with
//! tokio-postgres at the same concurrency, a bare tonic server in a child
//! process, or none where the target is absolute. `pgbouncer` puts Debian's
//! PgBouncer in front of that database; `failover` runs its own Patroni
//! cluster (Debian's `patroni` and `etcd-server`) instead.

#[path = "../../tests/support/pgbouncer.rs"]
mod bouncer;
mod bulk;
mod changes;
#[path = "../../tests/support/patroni.rs"]
mod cluster;
#[path = "../common/mod.rs"]
mod common;
mod delivery;
mod embedded;
mod failover;
#[path = "../../tests/support/failover_load.rs"]
mod failover_load;
mod feed_cost;
mod limiter;
#[path = "../../tests/support/logical.rs"]
mod logical;
mod noop;
mod pgbouncer;
mod prelude;
mod processes;
mod refusals;
mod replication;
mod restarts;
mod runner;
mod search;
mod server;
mod slow_start;
mod storm;
mod streams;
mod watch;

use prelude::*;

fn main() -> anyhow::Result<()> {
    if std::env::var("HARNESS_ROLE").as_deref() == Ok("hello") {
        return server::hello_server();
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
        lines.extend(common::with_database_returning(|url| changes::changes(&plan, url)).await?);
    }
    if plan.runs("limiter") {
        lines.extend(common::with_database_returning(|url| limiter::limiter(&plan, url)).await?);
    }
    if plan.runs("refusals") {
        lines.extend(common::with_database_returning(|url| refusals::refusals(&plan, url)).await?);
    }
    if plan.runs("search") {
        lines.extend(common::with_database_returning(|url| search::search(&plan, url)).await?);
    }
    if plan.runs("noop") {
        lines.extend(common::with_database_returning(|url| noop::noop(&plan, url)).await?);
    }
    if plan.runs("delivery") {
        lines.extend(common::with_database_returning(delivery::delivery).await?);
    }
    if plan.runs("streams") {
        lines.extend(common::with_database_returning(|url| streams::streams(&plan, url)).await?);
    }
    if plan.runs("storm") {
        lines.extend(common::with_database_returning(|url| storm::storm(&plan, url)).await?);
    }
    if plan.runs("bulk") {
        lines.extend(common::with_database_returning(|url| bulk::bulk(&plan, url)).await?);
    }
    if plan.runs("restarts") {
        lines.extend(common::with_database_returning(|url| restarts::restarts(&plan, url)).await?);
    }
    if plan.runs("watch") {
        lines.extend(common::with_database_returning(|url| watch::watch(&plan, url)).await?);
    }
    if plan.runs("pgbouncer") {
        lines
            .extend(common::with_database_returning(|url| pgbouncer::pgbouncer(&plan, url)).await?);
    }
    if plan.runs("failover") {
        lines.extend(failover::failover(&plan).await?);
    }
    if plan.runs("slowstart") {
        lines.extend(
            common::with_database_returning(|url| slow_start::slow_start(&plan, url)).await?,
        );
    }
    if plan.runs("feedcost") {
        lines
            .extend(common::with_database_returning(|url| feed_cost::feed_cost(&plan, url)).await?);
    }
    if plan.runs("replication") {
        lines.extend(
            common::with_database_returning(|url| replication::replication(&plan, url)).await?,
        );
    }
    if plan.runs("processes") {
        lines.extend(processes::processes(&plan).await?);
    }
    if plan.runs("embedded") {
        lines.extend(embedded::embedded(&plan).await?);
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
