//! Command delivery delay to a connected agent.

use crate::prelude::*;

pub(crate) async fn delivery(url: String) -> anyhow::Result<Vec<Line>> {
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
