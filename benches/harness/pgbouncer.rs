//! Start latency through Debian's PgBouncer in transaction pooling mode
//! (`serve --transaction-pooling`: unnamed statements, polling) against a
//! server straight on the same database, call by call alternated: what
//! the pooler's hop and statements parsed at every call cost; a third
//! server, straight and with `--transaction-pooling`, shows the statements'
//! share.

use crate::bouncer::PgBouncer;
use crate::prelude::*;

pub(crate) async fn pgbouncer(plan: &Plan, url: String) -> anyhow::Result<Vec<Line>> {
    let calls = plan.latency_calls as u64;
    let config: tokio_postgres::Config = url.parse()?;
    let name = config
        .get_dbname()
        .ok_or_else(|| anyhow::anyhow!("no database name"))?
        .to_owned();
    {
        let db = sql(&url).await?;
        connector_control::store::PgStore::connect(&url, 1)
            .await?
            .migrate()
            .await?;
        preload(&db, "b", calls + 100).await?;
        preload(&db, "d", calls + 100).await?;
        preload(&db, "u", calls + 100).await?;
        settle(&db).await?;
    }
    let bouncer = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            PgBouncer::in_front_of(&url, "transaction", crate::cluster::postgres_owner())
        })
        .await?
    };
    let pooled = server(Some(&bouncer.url(&name)), None, &["--transaction-pooling"])?;
    let direct = server(Some(&url), None, &[])?;
    // Unnamed statements without the pooler: their share of the cost.
    let unnamed = server(Some(&url), None, &["--transaction-pooling"])?;
    let (mut through, mut straight, mut unnamed) = (
        connectors_client(&pooled.addr).await?,
        connectors_client(&direct.addr).await?,
        connectors_client(&unnamed.addr).await?,
    );
    // Warm both (connections, statements' parameter types or prepared
    // statements).
    for n in 1..=100 {
        timed_start(&mut through, connector_id("b", calls + n)).await?;
        timed_start(&mut straight, connector_id("d", calls + n)).await?;
        timed_start(&mut unnamed, connector_id("u", calls + n)).await?;
    }
    let (mut ours, mut baseline, mut alone) = (Vec::new(), Vec::new(), Vec::new());
    let started = Instant::now();
    for n in 1..=calls {
        ours.push(timed_start(&mut through, connector_id("b", n)).await?);
        baseline.push(timed_start(&mut straight, connector_id("d", n)).await?);
        alone.push(timed_start(&mut unnamed, connector_id("u", n)).await?);
    }
    let elapsed = started.elapsed() / 3;
    let (ours, baseline, alone) = (
        Stats::of(ours, elapsed),
        Stats::of(baseline, elapsed),
        Stats::of(alone, elapsed),
    );
    let added = ms(ours.p50) - ms(baseline.p50);
    let line = Line {
        scenario: "Start latency through PgBouncer 1.18, transaction pooling (--transaction-pooling), one caller".to_owned(),
        ours: format!("{:.2} / {:.2} ms", ms(ours.p50), ms(ours.p99)),
        baseline: format!(
            "straight to PostgreSQL: {:.2} / {:.2} ms (unnamed statements there: {:.2} / {:.2} ms)",
            ms(baseline.p50),
            ms(baseline.p99),
            ms(alone.p50),
            ms(alone.p99)
        ),
        ratio: format!("p50 {:+.2} ms ({:.2}x)", added, ms(ours.p50) / ms(baseline.p50)),
        target: "p50 <= straight + 1 ms".to_owned(),
        met: added <= 1.0,
    };
    report(&line);
    Ok(vec![line])
}
