//! `connectors pause|start` without an id: the batch calls, chosen by
//! filters, shown and confirmed before anything changes.

use super::client::ClientArgs;
use super::failure::{Failure, exit, usage};
use super::people::parse_state;
use super::render;
use crate::proto::v1;
use clap::Args;
use std::io::{BufRead, IsTerminal, Write};

/// Which connectors a batch pause or start applies to (instead of an id).
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Batch: connectors matching this text, as `connectors list QUERY`.
    #[arg(long)]
    pub query: Option<String>,
    /// Batch: connectors on this server (10.0.1.5) or on a server of this
    /// network (10.0.1.0/24), matched on address bits.
    #[arg(long)]
    pub server_ip: Option<String>,
    /// Batch: connectors that run in this region.
    #[arg(long)]
    pub in_region: Option<String>,
    /// Batch: connectors in these states, comma-separated: running,failed,...
    #[arg(long, value_delimiter = ',', value_parser = parse_state)]
    pub state: Vec<v1::ConnectorState>,
    /// Batch: connectors that should run and lag.
    #[arg(long)]
    pub lagging: bool,
    /// Batch: connectors waiting for an automatic start.
    #[arg(long)]
    pub awaiting_restart: bool,
    /// Batch: refuse (change nothing) when more connectors match.
    #[arg(long, default_value_t = 100)]
    pub max: i32,
    /// Batch: change them without showing them and asking first.
    #[arg(long)]
    pub yes: bool,
}

impl SelectArgs {
    pub fn given(&self) -> bool {
        self.query.is_some()
            || self.server_ip.is_some()
            || self.in_region.is_some()
            || !self.state.is_empty()
            || self.lagging
            || self.awaiting_restart
    }

    pub fn filter(&self) -> v1::ConnectorFilter {
        v1::ConnectorFilter {
            query: self.query.clone().unwrap_or_default(),
            server_ip: self.server_ip.clone().unwrap_or_default(),
            region: self.in_region.clone().unwrap_or_default(),
            states: self.state.iter().map(|s| *s as i32).collect(),
            lagging: self.lagging,
            awaiting_restart: self.awaiting_restart,
        }
    }
}

/// Runs a batch call: with `dry_run` only its dry run; without `yes`, its
/// dry run first, then (on a terminal) a question; then the call. `wait`
/// (one connector's flag) is refused.
#[allow(clippy::too_many_arguments)]
pub async fn run<Req: Clone>(
    client: &ClientArgs,
    verb: &str,
    select: &SelectArgs,
    wait: bool,
    dry_run: bool,
    request: Req,
    set_validate_only: impl Fn(&mut Req, bool),
    call: impl AsyncFn(&ClientArgs, Req) -> anyhow::Result<v1::BatchConnectorsResponse>,
) -> anyhow::Result<()> {
    if wait {
        return Err(usage(format!(
            "--wait applies to one connector; a batch {verb} answers once every command is \
             issued (follow them with connectors list)"
        )));
    }
    if !select.given() {
        return Err(usage(format!(
            "{verb} needs a connector id, or filters choosing connectors (--query, --server-ip, \
             --in-region, --state, --lagging)"
        )));
    }
    let mut preview = request.clone();
    set_validate_only(&mut preview, true);
    if dry_run {
        let response = call(client, preview).await?;
        print!("{}", render::batch(&response, client.output)?);
        return Ok(());
    }
    if !select.yes {
        if !std::io::stdin().is_terminal() {
            return Err(usage(format!(
                "standard input is not a terminal, so there is nobody to ask: pass --yes to \
                 {verb} the matching connectors, or --dry-run to only see them"
            )));
        }
        let response = call(client, preview).await?;
        print!("{}", render::batch(&response, render::Output::Table)?);
        if response.changed == 0 {
            println!("nothing to {verb}");
            return Ok(());
        }
        print!("{verb} these {} connectors? [y/N] ", response.changed);
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("cancelled; nothing changed");
            return Ok(());
        }
    }
    let response = call(client, request).await?;
    print!("{}", render::batch(&response, client.output)?);
    if response.failed > 0 {
        return Err(Failure {
            exit_code: exit::FAILED_PRECONDITION,
            message: format!(
                "error: {} of {} connectors were not {verb}d (see above)",
                response.failed, response.selected
            ),
        }
        .into());
    }
    Ok(())
}
