//! ListConnectors at scale: N connectors (default 1,000,000; set
//! BENCH_CONNECTORS) in a fresh PostgreSQL database, each kind of search
//! timed through the real gRPC server, reported against GetConnector (a
//! primary-key lookup) measured in the same run.
//!
//!     cargo bench --bench search
//!
//! Needs PostgreSQL at DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).

mod common;

use connector_control::proto::v1::{self, connector_service_client::ConnectorServiceClient};
use connector_control::server::{self, ServeOptions};
use connector_control::store::PgStore;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const ITERATIONS: usize = 60;
const WARMUP: usize = 5;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count: u64 = std::env::var("BENCH_CONNECTORS")
        .ok()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    common::with_database(|url| async move { run(&url, count).await }).await
}

async fn run(url: &str, count: u64) -> anyhow::Result<()> {
    let store = PgStore::connect(url, 16).await?;
    store.migrate().await?;

    let (db, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let loading = Instant::now();
    common::load_fleet(&db, count).await?;
    db.batch_execute("ANALYZE connectors").await?;
    println!("loaded {count} connectors in {:.1?}", loading.elapsed());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(server::serve(
        listener,
        store,
        ServeOptions {
            rate_limits: connector_control::api::limits::RateLimits::off(),
            ..ServeOptions::default()
        },
        std::future::pending(),
    ));
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let client = ConnectorServiceClient::new(channel);

    let some_id = format!("conn-{:07}", count / 2 + 42);
    let baseline = time("GetConnector by id (baseline)", &client, |mut c| {
        let id = some_id.clone();
        async move {
            c.get_connector(v1::GetConnectorRequest { id })
                .await
                .map(|_| 1)
        }
    })
    .await?;

    let deep_token = {
        let mut c = client.clone();
        c.list_connectors(v1::ListConnectorsRequest {
            query: "orders".to_owned(),
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .next_page_token
    };

    let searches: Vec<(&str, v1::ListConnectorsRequest)> = vec![
        (
            "first page, no filter",
            v1::ListConnectorsRequest::default(),
        ),
        ("name substring, rare (\"3f2a9\")", query("3f2a9")),
        ("one-letter query (\"a\")", query("a")),
        ("name substring, common (\"orders\")", query("orders")),
        (
            "second page of \"orders\" (keyset)",
            v1::ListConnectorsRequest {
                query: "orders".to_owned(),
                page_size: 50,
                page_token: deep_token,
                ..Default::default()
            },
        ),
        ("project name (\"cobalt 4242\")", query("cobalt 4242")),
        ("connector id prefix (\"conn-00424\")", query("conn-00424")),
        ("project id exact (\"proj-4242\")", query("proj-4242")),
        ("server IP exact (\"10.6.121.66\")", query("10.6.121.66")),
        ("server IP prefix (\"10.6.121.\")", query("10.6.121.")),
        (
            "region filter (\"ap-2\")",
            v1::ListConnectorsRequest {
                region: "ap-2".to_owned(),
                ..Default::default()
            },
        ),
        (
            "state filter (FAILED) + region",
            v1::ListConnectorsRequest {
                region: "us-1".to_owned(),
                states: vec![v1::ConnectorState::Failed as i32],
                ..Default::default()
            },
        ),
    ];
    println!();
    println!(
        "{:<42} {:>9} {:>9} {:>9} {:>12}",
        "ListConnectors search", "matches", "p50 ms", "p99 ms", "p50 / Get"
    );
    for (label, request) in searches {
        let stats = time(label, &client, |mut c| {
            let request = request.clone();
            async move {
                c.list_connectors(request)
                    .await
                    .map(|r| r.into_inner().total_size as i64)
            }
        })
        .await?;
        println!(
            "{label:<42} {:>9} {:>9.2} {:>9.2} {:>11.1}x",
            stats.matches,
            ms(stats.p50),
            ms(stats.p99),
            stats.p50.as_secs_f64() / baseline.p50.as_secs_f64()
        );
    }
    println!(
        "\nbaseline GetConnector: p50 {:.2} ms, p99 {:.2} ms ({count} connectors, {ITERATIONS} calls each)",
        ms(baseline.p50),
        ms(baseline.p99)
    );
    Ok(())
}

fn query(text: &str) -> v1::ListConnectorsRequest {
    v1::ListConnectorsRequest {
        query: text.to_owned(),
        ..Default::default()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Stats {
    p50: Duration,
    p99: Duration,
    matches: i64,
}

async fn time<F, Fut>(
    label: &str,
    client: &ConnectorServiceClient<Channel>,
    call: F,
) -> anyhow::Result<Stats>
where
    F: Fn(ConnectorServiceClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<i64, tonic::Status>>,
{
    let mut matches = 0;
    for _ in 0..WARMUP {
        matches = call(client.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
    }
    let mut samples = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let started = Instant::now();
        call(client.clone()).await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    Ok(Stats {
        p50: samples[samples.len() / 2],
        p99: samples[(samples.len() * 99 / 100).min(samples.len() - 1)],
        matches,
    })
}
