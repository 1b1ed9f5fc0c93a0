//! The people's CLI: `connectors list|get|start|pause`, `agents list`,
//! `regions list`, talking to a running control plane. Tables for people,
//! `-o json` (the proto JSON mapping) for scripts. A failed call prints its
//! reason and message and exits with a code that says what kind of failure
//! it was.

use super::client::{Authed, ClientArgs};
use super::failure::{Failure, exit, usage};
use super::filters::{FilterArgs, SelectArgs};
use super::render::{self, Output};
use crate::proto::v1::{self, connector_service_client::ConnectorServiceClient};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use std::time::Duration;
use tonic_types::StatusExt;

#[derive(Debug, Subcommand)]
pub enum ConnectorsCommand {
    /// Search connectors: QUERY matches names and project names (any case,
    /// any part), connector and project ids and server IPs (exact or prefix).
    List(ListArgs),
    /// Show one connector.
    Get(GetArgs),
    /// Start a stopped or failed connector, optionally pulling it back; or,
    /// without an id, every connector the filters choose (shown first).
    Start(StartArgs),
    /// Pause a running, starting or failed connector; or, without an id,
    /// every connector the filters choose (shown first).
    Pause(PauseArgs),
    /// The way out for a connector whose agent is gone (UNKNOWN, or a start
    /// or pause no agent answers): record it STOPPED so that it can be
    /// started again; what the lost agent says later changes nothing.
    /// Refused while its agent is online (pause it instead). Audited.
    MarkStopped(MarkStoppedArgs),
    /// Change when a failed connector is started again automatically:
    /// what you give changes, the rest of its policy stays (audited).
    RestartPolicy(RestartPolicyArgs),
    /// A connector's commands, newest first: who asked what, and what the
    /// agent answered.
    History(HistoryArgs),
    /// Follow connectors as they change: first those matching, then one
    /// line per change (entering, changing within or leaving the filters),
    /// until interrupted. Reconnects by itself when the server drains or
    /// the output was read too slowly.
    Watch(WatchArgs),
}

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

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The connector id.
    pub id: String,
    /// Commands per page (the server caps it at 500).
    #[arg(long, default_value_t = 50)]
    pub page_size: i32,
    /// Continue: the token printed after the previous page.
    #[arg(long, default_value = "")]
    pub page_token: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Connectors per page (the server caps it at 1000).
    #[arg(long, default_value_t = 50)]
    pub page_size: i32,
    /// Continue a listing: the token printed after the previous page.
    #[arg(long, default_value = "")]
    pub page_token: String,
    /// Fetch every page.
    #[arg(long, conflicts_with = "page_token")]
    pub all: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The connector id.
    pub id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The connector id; without it, the batch filters choose connectors.
    pub id: Option<String>,
    /// Replay incremental data from this time: RFC 3339
    /// (2026-11-24T09:30:00Z) or relative to now (-30m, -2h).
    #[arg(long, allow_hyphen_values = true)]
    pub pull_back: Option<String>,
    /// Run in this region instead of the destination's.
    #[arg(long)]
    pub region: Option<String>,
    /// When the store no longer holds the connector's checkpoint (a start
    /// is then refused with CHECKPOINT_OUT_OF_RANGE), resume from the
    /// earliest data it holds and skip the changes in between, on
    /// purpose; audited.
    #[arg(long, conflicts_with = "pull_back")]
    pub skip_to_earliest: bool,
    /// Idempotency key: repeating the command with it is safe.
    #[arg(long)]
    pub request_id: Option<String>,
    /// Wait until the agent confirms (a spinner shows meanwhile).
    #[arg(long, conflicts_with = "dry_run")]
    pub wait: bool,
    /// Check everything the call would check and show what it would do;
    /// change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How long --wait waits, for example 30s or 2m.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub client: ClientArgs,
}

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

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// The connector id; without it, the batch filters choose connectors.
    pub id: Option<String>,
    /// Why, for the record (an incident id, say).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Idempotency key: repeating the command with it is safe.
    #[arg(long)]
    pub request_id: Option<String>,
    /// Wait until the agent confirms (a spinner shows meanwhile).
    #[arg(long, conflicts_with = "dry_run")]
    pub wait: bool,
    /// Check everything the call would check and show what it would do;
    /// change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How long --wait waits, for example 30s or 2m.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// List agents, ONLINE or OFFLINE.
    List {
        /// Only agents of this region.
        #[arg(long, default_value = "")]
        region: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReplicasCommand {
    /// List the control-plane replicas: alive, draining or dead, the
    /// leader, and how many agents each holds.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum RegionsCommand {
    /// List regions with their online agents and connectors.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// A pull-back time: RFC 3339, or `-DURATION` before now (`-30m`, `-2h`).
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Some(ago) = text.strip_prefix('-') {
        let ago = humantime::parse_duration(ago)
            .map_err(|e| format!("'{text}' is not a relative time like -30m or -2h: {e}"))?;
        return chrono::Duration::from_std(ago)
            .ok()
            .and_then(|ago| now.checked_sub_signed(ago))
            .ok_or_else(|| format!("'{text}' reaches back further than a timestamp can"));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|e| {
            format!("'{text}' is neither RFC 3339 (2026-11-24T09:30:00Z) nor relative (-30m): {e}")
        })
}

/// Runs `call`, showing a spinner on a terminal while it waits.
async fn with_spinner<T>(
    show: bool,
    message: String,
    call: impl std::future::Future<Output = T>,
) -> T {
    if !show {
        return call.await;
    }
    let spinner = indicatif::ProgressBar::new_spinner().with_message(message);
    spinner.enable_steady_tick(Duration::from_millis(100));
    let result = call.await;
    spinner.finish_and_clear();
    result
}

impl ConnectorsCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            ConnectorsCommand::List(args) => list(args).await,
            ConnectorsCommand::Get(args) => {
                let connector = args
                    .client
                    .connectors()
                    .await?
                    .get_connector(v1::GetConnectorRequest { id: args.id })
                    .await
                    .map_err(Failure::from)?
                    .into_inner();
                print!("{}", render::connector(&connector, args.client.output)?);
                Ok(())
            }
            ConnectorsCommand::Start(args) => start(args).await,
            ConnectorsCommand::Pause(args) => pause(args).await,
            ConnectorsCommand::Watch(args) => watch(args).await,
            ConnectorsCommand::RestartPolicy(args) => restart_policy(args).await,
            ConnectorsCommand::MarkStopped(args) => {
                let response = args
                    .client
                    .connectors()
                    .await?
                    .mark_connector_stopped(v1::MarkConnectorStoppedRequest {
                        id: args.id,
                        reason: args.reason,
                        request_id: args.request_id.unwrap_or_default(),
                        validate_only: args.dry_run,
                    })
                    .await
                    .map_err(Failure::from)?
                    .into_inner();
                print!("{}", render::marked_stopped(&response, args.client.output)?);
                Ok(())
            }
            ConnectorsCommand::History(args) => {
                let response = args
                    .client
                    .connectors()
                    .await?
                    .list_commands(v1::ListCommandsRequest {
                        connector_id: args.id,
                        page_size: args.page_size,
                        page_token: args.page_token,
                    })
                    .await
                    .map_err(Failure::from)?
                    .into_inner();
                print!("{}", render::commands(&response, args.client.output)?);
                Ok(())
            }
        }
    }
}

/// Reads the connector's policy, changes what was given, and writes it
/// back (the API takes a whole policy).
async fn restart_policy(args: RestartPolicyArgs) -> anyhow::Result<()> {
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

/// Prints every event as it comes; resumes from the last token when the
/// server drains or ends the stream for reading too slowly.
async fn watch(args: WatchArgs) -> anyhow::Result<()> {
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

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let mut client = args.client.connectors().await?;
    let filter = args.filter.filter();
    let mut request = v1::ListConnectorsRequest {
        query: filter.query,
        region: filter.region,
        states: filter.states,
        page_size: args.page_size,
        page_token: args.page_token,
        lagging: filter.lagging,
        awaiting_restart: filter.awaiting_restart,
        server_ip: filter.server_ip,
    };
    let mut page = client
        .list_connectors(request.clone())
        .await
        .map_err(Failure::from)?
        .into_inner();
    if args.all {
        let mut all = std::mem::take(&mut page.connectors);
        while !page.next_page_token.is_empty() {
            request.page_token = std::mem::take(&mut page.next_page_token);
            page = client
                .list_connectors(request.clone())
                .await
                .map_err(Failure::from)?
                .into_inner();
            all.append(&mut page.connectors);
        }
        page.connectors = all;
    }
    print!("{}", render::connectors(&page, args.client.output)?);
    Ok(())
}

/// A batch's request id: the one given, else a new one, so that a batch
/// that failed half-way (the database went away) can be retried to finish.
fn batch_request_id(given: Option<String>) -> String {
    given.unwrap_or_else(|| format!("cli-{}", uuid::Uuid::new_v4()))
}

/// The request id to send: the one given, else (with --wait) a new one, so
/// that a call that was not confirmed in time can be retried safely.
fn request_id(given: Option<String>, wait: bool) -> String {
    given
        .or_else(|| wait.then(|| format!("cli-{}", uuid::Uuid::new_v4())))
        .unwrap_or_default()
}

async fn start(args: StartArgs) -> anyhow::Result<()> {
    let pull_back = args
        .pull_back
        .as_deref()
        .map(|text| parse_time(text, Utc::now()))
        .transpose()
        .map_err(usage)?;
    if let (Some(text), Some(time), Some(_)) = (&args.pull_back, pull_back, &args.request_id)
        && text.starts_with('-')
    {
        return Err(usage(format!(
            "--pull-back {text} means a different time on every run, so a retry with the same \
             --request-id would not repeat the call; give the time itself: --pull-back {}",
            time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )));
    }
    let pull_back_time = pull_back.map(crate::api::timestamp_to_proto);
    let Some(id) = args.id else {
        let request = v1::BatchStartConnectorsRequest {
            filter: Some(args.select.filter()),
            pull_back_time,
            region: args.region.unwrap_or_default(),
            request_id: batch_request_id(args.request_id),
            max_connectors: args.select.max,
            skip_to_earliest: args.skip_to_earliest,
            ..Default::default()
        };
        return super::batch::run(
            &args.client,
            "start",
            &args.select,
            args.wait,
            args.dry_run,
            request,
            |request, validate_only| request.validate_only = validate_only,
            async |client, request| {
                Ok(client
                    .connectors()
                    .await?
                    .batch_start_connectors(request)
                    .await
                    .map_err(Failure::from)?
                    .into_inner())
            },
        )
        .await;
    };
    if args.select.given() {
        return Err(usage(format!(
            "give connector {id} or filters choosing connectors, not both"
        )));
    }
    let message = v1::StartConnectorRequest {
        id: id.clone(),
        pull_back_time,
        region: args.region.unwrap_or_default(),
        request_id: request_id(args.request_id, args.wait),
        wait: args.wait,
        validate_only: args.dry_run,
        skip_to_earliest: args.skip_to_earliest,
    };
    let retry = format!(
        "connector-control connectors start {} --request-id {}{}{}",
        id,
        message.request_id,
        pull_back
            .map(|t| format!(
                " --pull-back {}",
                t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            ))
            .unwrap_or_default(),
        if args.skip_to_earliest {
            " --skip-to-earliest"
        } else {
            ""
        }
    );
    let wait = args.wait.then_some(args.timeout);
    command_call(
        &args.client,
        format!("starting {}", id),
        retry,
        "connector.v1.StartConnectorResponse",
        message,
        wait,
        async |mut client, request| client.start_connector(request).await,
        |response: &v1::StartConnectorResponse| {
            (
                response.connector.as_ref(),
                response.command.as_ref(),
                response.validate_only,
            )
        },
    )
    .await
}

async fn pause(args: PauseArgs) -> anyhow::Result<()> {
    let Some(id) = args.id else {
        let request = v1::BatchPauseConnectorsRequest {
            filter: Some(args.select.filter()),
            reason: args.reason,
            request_id: batch_request_id(args.request_id),
            max_connectors: args.select.max,
            ..Default::default()
        };
        return super::batch::run(
            &args.client,
            "pause",
            &args.select,
            args.wait,
            args.dry_run,
            request,
            |request, validate_only| request.validate_only = validate_only,
            async |client, request| {
                Ok(client
                    .connectors()
                    .await?
                    .batch_pause_connectors(request)
                    .await
                    .map_err(Failure::from)?
                    .into_inner())
            },
        )
        .await;
    };
    if args.select.given() {
        return Err(usage(format!(
            "give connector {id} or filters choosing connectors, not both"
        )));
    }
    let message = v1::PauseConnectorRequest {
        id: id.clone(),
        reason: args.reason,
        request_id: request_id(args.request_id, args.wait),
        wait: args.wait,
        validate_only: args.dry_run,
    };
    let retry = format!(
        "connector-control connectors pause {} --request-id {}",
        id, message.request_id
    );
    let wait = args.wait.then_some(args.timeout);
    command_call(
        &args.client,
        format!("pausing {}", id),
        retry,
        "connector.v1.PauseConnectorResponse",
        message,
        wait,
        async |mut client, request| client.pause_connector(request).await,
        |response: &v1::PauseConnectorResponse| {
            (
                response.connector.as_ref(),
                response.command.as_ref(),
                response.validate_only,
            )
        },
    )
    .await
}

/// Sends a Start or Pause; with `wait` (the timeout), holds it under a
/// spinner until the agent confirms. Prints the outcome.
#[allow(clippy::too_many_arguments)]
async fn command_call<Req, Resp: prost::Message>(
    client_args: &ClientArgs,
    doing: String,
    retry: String,
    json_name: &str,
    message: Req,
    wait: Option<Duration>,
    call: impl AsyncFnOnce(
        ConnectorServiceClient<Authed>,
        tonic::Request<Req>,
    ) -> Result<tonic::Response<Resp>, tonic::Status>,
    parts: impl Fn(&Resp) -> (Option<&v1::Connector>, Option<&v1::Command>, bool),
) -> anyhow::Result<()> {
    let mut request = tonic::Request::new(message);
    if let Some(timeout) = wait {
        request.set_timeout(timeout);
    }
    let client = client_args.connectors().await?;
    let response = with_spinner(
        wait.is_some() && client_args.output == Output::Table,
        format!("{doing}: waiting for the agent to confirm"),
        call(client, request),
    )
    .await
    .map_err(|status| {
        let mut failure = Failure::from(status);
        if failure.exit_code == exit::NOT_CONFIRMED {
            failure
                .message
                .push_str(&format!("\n  to wait again: {retry} --wait"));
        }
        failure
    })?
    .into_inner();
    let (connector, command, dry_run) = parts(&response);
    print!(
        "{}",
        render::command_outcome(
            connector,
            command,
            dry_run,
            &response,
            json_name,
            client_args.output
        )?
    );
    Ok(())
}

impl AgentsCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let AgentsCommand::List { region, client } = self;
        let response = client
            .agents()
            .await?
            .list_agents(v1::ListAgentsRequest { region })
            .await
            .map_err(Failure::from)?
            .into_inner();
        print!("{}", render::agents(&response, client.output)?);
        Ok(())
    }
}

impl ReplicasCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let ReplicasCommand::List { client } = self;
        let response = client
            .agents()
            .await?
            .list_replicas(v1::ListReplicasRequest {})
            .await
            .map_err(Failure::from)?
            .into_inner();
        print!("{}", render::replicas(&response, client.output)?);
        Ok(())
    }
}

impl RegionsCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let RegionsCommand::List { client } = self;
        let response = client
            .connectors()
            .await?
            .list_regions(v1::ListRegionsRequest {})
            .await
            .map_err(Failure::from)?
            .into_inner();
        print!("{}", render::regions(&response, client.output)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_back_times_are_rfc3339_or_relative() {
        let now: DateTime<Utc> = "2026-11-24T12:00:00Z".parse().unwrap();
        assert_eq!(
            parse_time("-30m", now).unwrap(),
            "2026-11-24T11:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            parse_time("-2h", now).unwrap(),
            "2026-11-24T10:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            parse_time("2026-11-24T09:30:00+01:00", now).unwrap(),
            "2026-11-24T08:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(
            parse_time("yesterday", now)
                .unwrap_err()
                .contains("RFC 3339")
        );
        assert!(parse_time("-soon", now).unwrap_err().contains("-30m"));
    }
}
