//! `connector-control agent-conformance`: checks any agent, in any
//! language, against the protocol (`docs/agent-protocol.md`), as
//! `csi-sanity` checks a CSI driver. It serves AgentService.Connect on
//! `--listen`, waits for the agent under test, scripts what a control plane
//! sends (welcome, commands, duplicates, stale generations, a pull-back the
//! store cannot hold, a reconnect, an outage), and prints a table: each
//! check, passed or failed, and what it saw.

mod checks;
mod harness;
pub mod wire;

use std::net::SocketAddr;
use std::time::Duration;
use tokio_stream::wrappers::TcpListenerStream;
use wire::agent_service_server::AgentServiceServer;

/// What the run is told.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where to serve Connect (port 0: any; the address is printed).
    pub listen: SocketAddr,
    /// Connectors the agent under test can run (the first is used).
    pub connectors: Vec<String>,
    /// A connector of the agent that fails on its own once started (the
    /// check is skipped without one).
    pub failing: Option<String>,
    /// How long to wait for the agent, and for each answer.
    pub timeout: Duration,
}

/// How a check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
    Skipped,
}

/// One line of the report.
#[derive(Clone, Debug)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
    pub saw: String,
}

/// Runs every check against the agent that connects to `options.listen`;
/// `bound` hears the address served (before the agent is awaited).
pub async fn run(options: Options, bound: impl FnOnce(SocketAddr)) -> anyhow::Result<Vec<Check>> {
    anyhow::ensure!(
        !options.connectors.is_empty(),
        "name at least one connector the agent under test can run (--connectors)"
    );
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    bound(listener.local_addr()?);
    let (calls, streams) = tokio::sync::mpsc::channel(8);
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn({
        let stop = stop.clone();
        tonic::transport::Server::builder()
            .add_service(AgentServiceServer::new(harness::Harness { calls }))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled_owned())
    });
    let checks = checks::run(&options, streams).await;
    stop.cancel();
    let _ = server.await;
    Ok(checks)
}

/// The report as a table.
pub fn table(checks: &[Check]) -> String {
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    table.set_header(["CHECK", "RESULT", "WHAT IT SAW"]);
    for check in checks {
        let outcome = match check.outcome {
            Outcome::Passed => "passed",
            Outcome::Failed => "FAILED",
            Outcome::Skipped => "skipped",
        };
        table.add_row([check.name, outcome, &check.saw]);
    }
    format!("{table}\n")
}
