//! `connectors mark-stopped`: the way out for a connector whose agent is
//! gone.

use super::client::{ClientArgs, print_answer};
use super::render;
use crate::proto::v1;
use clap::Args;

#[derive(Debug, Args)]
pub struct MarkStoppedArgs {
    /// The connector id.
    pub id: String,
    /// Why (required; an incident id, say): audited and shown on the
    /// connector.
    #[arg(long)]
    pub reason: String,
    /// Idempotency key: repeating the command with it is safe.
    #[arg(long)]
    pub request_id: Option<String>,
    /// Check everything and show what it would do; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub(super) async fn run(args: MarkStoppedArgs) -> anyhow::Result<()> {
    let request = v1::MarkConnectorStoppedRequest {
        id: args.id,
        reason: args.reason,
        request_id: args.request_id.unwrap_or_default(),
        validate_only: args.dry_run,
    };
    let answer = args
        .client
        .connectors()
        .await?
        .mark_connector_stopped(request)
        .await;
    print_answer(answer, render::marked_stopped, args.client.output)
}
