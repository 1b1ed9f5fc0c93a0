//! `connectors watch`: follow connectors as they change, resuming by
//! itself when the stream is cut.

use super::client::ClientArgs;
use super::failure::Failure;
use super::filters::FilterArgs;
use super::render;
use crate::proto::v1;
use clap::Args;
use tonic_types::StatusExt;

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Continue an earlier watch (same filters) after its last event,
    /// without the snapshot: the token it printed.
    #[arg(long, default_value = "")]
    pub resume_token: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Prints every event as it comes; resumes from the last token when the
/// server drains or ends the stream for reading too slowly.
pub(super) async fn run(args: WatchArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let mut client = args.client.connectors().await?;
    let filter = args.filter.filter();
    let mut token = args.resume_token;
    loop {
        let mut events = client
            .watch_connectors(v1::WatchConnectorsRequest {
                filter: Some(filter.clone()),
                resume_token: token.clone(),
            })
            .await
            .map_err(Failure::from)?
            .into_inner();
        let status = loop {
            match events.message().await {
                Ok(Some(event)) => {
                    if !event.resume_token.is_empty() {
                        token.clone_from(&event.resume_token);
                    }
                    let mut out = std::io::stdout().lock();
                    out.write_all(render::watch_event(&event, args.client.output)?.as_bytes())?;
                    out.flush()?;
                }
                Ok(None) => return Ok(()),
                Err(status) => break status,
            }
        };
        let reason = status
            .get_details_error_info()
            .map(|info| info.reason)
            .unwrap_or_default();
        let resumable = status.code() == tonic::Code::Unavailable || reason == "WATCHER_TOO_SLOW";
        if !resumable || token.is_empty() {
            return Err(Failure::from(status).into());
        }
        eprintln!("watch interrupted ({}); resuming", status.message());
        if let Some(from) = tonic_types::StatusExt::get_details_error_info(&status)
            .and_then(|info| info.metadata.get("resume_token").cloned())
        {
            token = from;
        }
        // The server drains: the next connection reaches another replica
        // (or this one once it is back).
        client = args.client.connectors().await?;
    }
}
