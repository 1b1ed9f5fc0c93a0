//! `connectors pause|start` without an id: the batch calls, chosen by
//! filters, shown and confirmed before anything changes.

use super::failure::{Exit, Failure, usage};
use super::filters::SelectArgs;
use super::render::{self, Output};
use crate::proto::v1;
use std::io::{BufRead, IsTerminal, Write};

/// Runs a batch call: with `dry_run` only its dry run; without `yes`, its
/// dry run first, then (on a terminal) a question; then the call. `wait`
/// (one connector's flag) is refused. `call(validate_only)` sends it.
pub async fn run(
    verb: &str,
    select: &SelectArgs,
    wait: bool,
    dry_run: bool,
    output: Output,
    call: impl AsyncFn(bool) -> anyhow::Result<v1::BatchConnectorsResponse>,
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
    if dry_run {
        let response = call(true).await?;
        print!("{}", render::batch(&response, output)?);
        return Ok(());
    }
    if !select.yes {
        if !std::io::stdin().is_terminal() {
            return Err(usage(format!(
                "standard input is not a terminal, so there is nobody to ask: pass --yes to \
                 {verb} the matching connectors, or --dry-run to only see them"
            )));
        }
        let response = call(true).await?;
        print!("{}", render::batch(&response, Output::Table)?);
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
    let response = call(false).await?;
    print!("{}", render::batch(&response, output)?);
    if response.failed > 0 {
        return Err(Failure {
            exit_code: Exit::FailedPrecondition,
            message: format!(
                "error: {} of {} connectors were not {}ed (see above)",
                response.failed,
                response.selected,
                verb.trim_end_matches('e')
            ),
        }
        .into());
    }
    Ok(())
}
