//! ListConnectors at scale against the same SQL, raw.

use crate::prelude::*;
use connector_control::store::postgres::{CONNECTOR_COLUMNS, EXACT_COUNT_LIMIT};

/// A search as the server runs it: the page statement and the capped count.
pub(crate) struct RawSearch {
    pub(crate) page: String,
    pub(crate) count: String,
    pub(crate) page_params: Vec<Param>,
    pub(crate) count_params: Vec<Param>,
}

pub(crate) type Param = Box<dyn tokio_postgres::types::ToSql + Sync + Send>;

pub(crate) fn borrowed(params: &[Param]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

pub(crate) fn texts(values: &[&str]) -> Vec<Param> {
    values
        .iter()
        .map(|v| Box::new((*v).to_owned()) as Param)
        .collect()
}

pub(crate) async fn search(plan: &Plan, url: String) -> anyhow::Result<Vec<Line>> {
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
    // The console on a port of its own, to measure its first page beside
    // ListConnectors'.
    let console = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let process = server(
        Some(&url),
        None,
        &["--console-listen", &console.to_string()],
    )?;
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
    lines.push(console_first_page(plan, &mut client, console, count).await?);
    report(lines.last().unwrap());
    Ok(lines)
}

/// The console's Connector tab (the whole HTML page: the first 50
/// connectors, the region selector, the live stream's token) against
/// ListConnectors' first page, interleaved.
async fn console_first_page(
    plan: &Plan,
    client: &mut ConnectorServiceClient<Channel>,
    console: std::net::SocketAddr,
    count: u64,
) -> anyhow::Result<Line> {
    use http_body_util::BodyExt;
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let uri: axum::http::Uri = format!("http://{console}/").parse()?;
    let mut ours_samples = Vec::new();
    let mut api_samples = Vec::new();
    let started = Instant::now();
    for i in 0..plan.search_calls + 5 {
        let t = Instant::now();
        let response = http.get(uri.clone()).await?;
        anyhow::ensure!(
            response.status() == 200,
            "the console answered {}",
            response.status()
        );
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::ensure!(
            body.windows(12).filter(|w| w == b"<tr id=\"row-").count() == 50,
            "the console's first page shows 50 rows"
        );
        let ours = t.elapsed();
        let t = Instant::now();
        client
            .list_connectors(v1::ListConnectorsRequest::default())
            .await?;
        let api = t.elapsed();
        if i >= 5 {
            ours_samples.push(ours);
            api_samples.push(api);
        }
    }
    let elapsed = started.elapsed();
    let ours = Stats::of(ours_samples, elapsed);
    let api = Stats::of(api_samples, elapsed);
    let limit = ms(api.p99) + 5.0;
    Ok(Line {
        scenario: format!("console Connector tab, {count} connectors: first page"),
        ours: format!("{:.2} / {:.2} ms", ms(ours.p50), ms(ours.p99)),
        baseline: format!("ListConnectors: {:.2} / {:.2} ms", ms(api.p50), ms(api.p99)),
        ratio: format!("p99 +{:.2} ms", ms(ours.p99) - ms(api.p99)),
        target: format!("p99 <= {limit:.2} ms"),
        met: ms(ours.p99) <= limit,
    })
}
