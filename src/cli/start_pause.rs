//! `connectors start` and `connectors pause`: one connector (optionally
//! waiting for its agent to confirm) or, without an id, a batch chosen by
//! filters.

use super::client::{Authed, ClientArgs};
use super::failure::{Failure, exit, usage};
use super::filters::SelectArgs;
use super::render::{self, Output};
use crate::proto::v1::{self, connector_service_client::ConnectorServiceClient};
use chrono::{DateTime, Utc};
use clap::Args;
use std::time::Duration;

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

pub(super) async fn start(args: StartArgs) -> anyhow::Result<()> {
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

pub(super) async fn pause(args: PauseArgs) -> anyhow::Result<()> {
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
