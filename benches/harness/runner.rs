//! The run: what `--quick` and the flags ask for, the statistics of one
//! side of a comparison, and the report lines.

use crate::prelude::*;

/// What a run measures: `--quick` shrinks every scenario.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) quick: bool,
    pub(crate) window: Duration,
    pub(crate) concurrency: Vec<usize>,
    pub(crate) latency_calls: usize,
    pub(crate) search_connectors: u64,
    pub(crate) search_calls: usize,
    pub(crate) streams: usize,
    pub(crate) storm_agents: usize,
    pub(crate) only: Option<Vec<String>>,
}

impl Plan {
    pub(crate) fn from_args() -> Self {
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

    pub(crate) fn runs(&self, scenario: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|s| s == scenario))
    }
}

/// Latencies and throughput of one side of a comparison.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stats {
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) per_second: f64,
}

impl Stats {
    pub(crate) fn of(mut samples: Vec<Duration>, elapsed: Duration) -> Self {
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
    pub(crate) fn merge(slices: &[Stats]) -> Self {
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

    pub(crate) fn cell(&self) -> String {
        format!(
            "{:.2} / {:.2} ms, {:.0}/s",
            ms(self.p50),
            ms(self.p99),
            self.per_second
        )
    }
}

/// The samples of concurrent callers, as one measurement since `started`.
pub(crate) async fn gather(
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
pub(crate) struct Line {
    pub(crate) scenario: String,
    pub(crate) ours: String,
    pub(crate) baseline: String,
    pub(crate) ratio: String,
    pub(crate) target: String,
    pub(crate) met: bool,
}

pub(crate) fn report(line: &Line) {
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
