//! `connectors restart-policy`: change when a failed connector is started
//! again automatically, keeping what is not given.

use super::client::ClientArgs;
use super::failure::Failure;
use super::render::{self, Output};
use crate::proto::v1;
use clap::Args;
use std::time::Duration;

/// A restart policy's mode, as typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RestartModeArg {
    /// Started again after a failure that a retry may fix.
    OnFailure,
    /// Never started again automatically.
    Never,
}

#[derive(Debug, Args)]
pub struct RestartPolicyArgs {
    /// The connector id.
    pub id: String,
    /// When it is started again.
    #[arg(long, value_enum)]
    pub mode: Option<RestartModeArg>,
    /// Automatic starts in a row before giving up; 0 = unlimited.
    #[arg(long)]
    pub max_restarts: Option<i32>,
    /// The first delay, for example 10s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub initial_backoff: Option<Duration>,
    /// The longest delay (the delay doubles up to it), for example 5m.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_backoff: Option<Duration>,
    /// Running this long after an automatic start resets the count.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub reset_after: Option<Duration>,
    /// Idempotency key: repeating the command with it is safe.
    #[arg(long)]
    pub request_id: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Reads the connector's policy, changes what was given, and writes it
/// back (the API takes a whole policy).
pub(super) async fn run(args: RestartPolicyArgs) -> anyhow::Result<()> {
    let mut client = args.client.connectors().await?;
    let current = client
        .get_connector(v1::GetConnectorRequest {
            id: args.id.clone(),
        })
        .await
        .map_err(Failure::from)?
        .into_inner();
    let mut policy = current.restart_policy.unwrap_or_default();
    let duration = |d: Duration| prost_types::Duration::try_from(d).ok();
    if let Some(mode) = args.mode {
        policy.mode = match mode {
            RestartModeArg::OnFailure => v1::RestartMode::OnFailure,
            RestartModeArg::Never => v1::RestartMode::Never,
        } as i32;
    }
    if let Some(max) = args.max_restarts {
        policy.max_restarts = max;
    }
    if let Some(d) = args.initial_backoff {
        policy.initial_backoff = duration(d);
    }
    if let Some(d) = args.max_backoff {
        policy.max_backoff = duration(d);
    }
    if let Some(d) = args.reset_after {
        policy.reset_after = duration(d);
    }
    let updated = client
        .update_restart_policy(v1::UpdateRestartPolicyRequest {
            id: args.id,
            restart_policy: Some(policy),
            request_id: args.request_id.unwrap_or_default(),
        })
        .await
        .map_err(Failure::from)?
        .into_inner();
    if args.client.output == Output::Json {
        print!("{}", render::connector(&updated, Output::Json)?);
    } else {
        println!(
            "connector {}: restart policy {}",
            updated.id,
            crate::proto::convert::restart_policy_text(&updated.restart_policy.unwrap_or_default())
        );
    }
    Ok(())
}
