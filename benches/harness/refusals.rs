//! A flood of refused changes: what it writes to the audit trail.

use crate::prelude::*;

/// A flood of refused changes (Pauses of connectors that do not exist:
/// NOT_FOUND, audited) from 16 callers, against the same number of
/// GetConnector calls refused alike (reads: not audited). What it costs the
/// database is the audit rows it writes: identical refusals are one row at
/// once and one with the count per window.
pub(crate) async fn refusals(plan: &Plan, url: String) -> anyhow::Result<Vec<Line>> {
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
