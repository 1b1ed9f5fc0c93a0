//! `agent-conformance`: the conformance suite's flags, its run and its
//! exit code.

use super::failure::{Exit, Failure};
use clap::Args;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ConformanceArgs {
    /// Where to serve AgentService.Connect for the agent under test (port
    /// 0: any free port; the address is printed first).
    #[arg(long, default_value = "127.0.0.1:50071")]
    pub listen: std::net::SocketAddr,

    /// Connectors the agent under test can run, comma-separated (the first
    /// is started, paused, pulled back and listed after a reconnect).
    #[arg(long, value_delimiter = ',', required = true)]
    pub connectors: Vec<String>,

    /// A connector of the agent that fails on its own once started; without
    /// it that check is skipped.
    #[arg(long)]
    pub failing: Option<String>,

    /// How long to wait for the agent to connect, and for each answer.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Runs the suite and prints its table; fails if any check failed.
pub(super) async fn run(args: ConformanceArgs) -> anyhow::Result<()> {
    use crate::conformance::{Options, Outcome};
    let options = Options {
        listen: args.listen,
        connectors: args.connectors,
        failing: args.failing,
        timeout: args.timeout,
    };
    let checks = crate::conformance::run(options, |addr| {
        println!(
            "serving AgentService.Connect on {addr}: point the agent under test at http://{addr}"
        );
    })
    .await?;
    print!("{}", crate::conformance::table(&checks));
    let failed = checks
        .iter()
        .filter(|check| check.outcome == Outcome::Failed)
        .count();
    if failed > 0 {
        return Err(Failure {
            exit_code: Exit::Failed,
            message: format!("error: {failed} of {} checks failed", checks.len()),
        }
        .into());
    }
    println!("all {} checks passed (or skipped)", checks.len());
    Ok(())
}
