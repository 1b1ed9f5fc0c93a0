//! The embedded store, for comparison.

use crate::changes::single_starts_grpc;
use crate::prelude::*;
use crate::streams::open_agents;

/// Start latency and memory with the embedded store, beside PostgreSQL's.
pub(crate) async fn embedded(plan: &Plan) -> anyhow::Result<Vec<Line>> {
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
