//! `connectors start` and `connectors pause`: one connector (optionally
//! waiting for its agent to confirm) or, without an id, a batch chosen by
//! filters. Both verbs take one path; what differs is a `Change`.

use super::batch;
use super::client::{Authed, ClientArgs};
use super::failure::{Exit, Failure, usage};
use super::filters::SelectArgs;
use super::render::{self, Output};
use crate::api::timestamp_to_proto;
use crate::proto::v1::{self, connector_service_client::ConnectorServiceClient};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct StartArgs {
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
    #[command(flatten)]
    pub change: ChangeArgs,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// Why, for the record (an incident id, say).
    #[arg(long, default_value = "")]
    pub reason: String,
    #[command(flatten)]
    pub change: ChangeArgs,
}

/// What `start` and `pause` share: which connectors, and how to call.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// The connector id; without it, the batch filters choose connectors.
    pub id: Option<String>,
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
    // The batch's flags stand under their own heading; these do not.
    #[command(flatten, next_help_heading = None::<&str>)]
    pub client: ClientArgs,
}

/// What a start or a pause asks beyond `ChangeArgs`: the one difference
/// between the two verbs.
enum Change {
    Start {
        pull_back: Option<DateTime<Utc>>,
        region: String,
        skip_to_earliest: bool,
    },
    Pause {
        reason: String,
    },
}

pub(super) async fn start(args: StartArgs) -> anyhow::Result<()> {
    let pull_back = args
        .pull_back
        .as_deref()
        .map(|text| parse_time(text, Utc::now()))
        .transpose()
        .map_err(usage)?;
    if let (Some(text), Some(time), Some(_)) = (&args.pull_back, pull_back, &args.change.request_id)
        && text.starts_with('-')
    {
        return Err(usage(format!(
            "--pull-back {text} means a different time on every run, so a retry with the same \
             --request-id would not repeat the call; give the time itself: --pull-back {}",
            time.to_rfc3339_opts(SecondsFormat::Secs, true)
        )));
    }
    let change = Change::Start {
        pull_back,
        region: args.region.unwrap_or_default(),
        skip_to_earliest: args.skip_to_earliest,
    };
    run(change, args.change).await
}

pub(super) async fn pause(args: PauseArgs) -> anyhow::Result<()> {
    run(
        Change::Pause {
            reason: args.reason,
        },
        args.change,
    )
    .await
}

/// The one path of a start and a pause: without an id, a batch (shown and
/// confirmed first); else one connector's call, with --wait held under a
/// spinner until the agent confirms. Prints the outcome.
async fn run(change: Change, args: ChangeArgs) -> anyhow::Result<()> {
    let Some(id) = args.id else {
        let request_id = batch_request_id(args.request_id);
        return batch::run(
            change.verb(),
            &args.select,
            args.wait,
            args.dry_run,
            args.client.output,
            async |validate_only| {
                change
                    .batch(&args.client, &args.select, &request_id, validate_only)
                    .await
            },
        )
        .await;
    };
    if args.select.given() {
        return Err(usage(format!(
            "give connector {id} or filters choosing connectors, not both"
        )));
    }
    let call = Call {
        request_id: request_id(args.request_id, args.wait),
        wait: args.wait.then_some(args.timeout),
        validate_only: args.dry_run,
        id,
    };
    let retry = format!(
        "connector-control connectors {} {} --request-id {}{}",
        change.verb(),
        call.id,
        call.request_id,
        change.retry_flags()
    );
    let waiting = format!(
        "{} {}: waiting for the agent to confirm",
        change.doing(),
        call.id
    );
    let show_spinner = call.wait.is_some() && args.client.output == Output::Table;
    let client = args.client.connectors().await?;
    let answer = with_spinner(show_spinner, waiting, change.one(client, call))
        .await
        .map_err(|status| {
            let mut failure = Failure::from(status);
            if failure.exit_code == Exit::NotConfirmed {
                failure
                    .message
                    .push_str(&format!("\n  to wait again: {retry} --wait"));
            }
            failure
        })?;
    print!("{}", answer.render(args.client.output)?);
    Ok(())
}

/// One connector's call, as both verbs make it.
struct Call {
    id: String,
    request_id: String,
    /// With --wait: how long.
    wait: Option<Duration>,
    validate_only: bool,
}

impl Call {
    /// `message` as a request, held for the --wait timeout.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(timeout) = self.wait {
            request.set_timeout(timeout);
        }
        request
    }
}

/// A Start's or a Pause's answer (the same fields under two names).
enum Answer {
    Start(v1::StartConnectorResponse),
    Pause(v1::PauseConnectorResponse),
}

impl Answer {
    fn render(&self, output: Output) -> anyhow::Result<String> {
        let (connector, command, validate_only) = match self {
            Answer::Start(r) => (&r.connector, &r.command, r.validate_only),
            Answer::Pause(r) => (&r.connector, &r.command, r.validate_only),
        };
        match (output, self) {
            (Output::Json, Answer::Start(r)) => {
                render::json(r, "connector.v1.StartConnectorResponse")
            }
            (Output::Json, Answer::Pause(r)) => {
                render::json(r, "connector.v1.PauseConnectorResponse")
            }
            (Output::Table, _) => Ok(render::command_outcome(
                connector.as_ref(),
                command.as_ref(),
                validate_only,
            )),
        }
    }
}

impl Change {
    fn verb(&self) -> &'static str {
        match self {
            Change::Start { .. } => "start",
            Change::Pause { .. } => "pause",
        }
    }

    fn doing(&self) -> &'static str {
        match self {
            Change::Start { .. } => "starting",
            Change::Pause { .. } => "pausing",
        }
    }

    /// The flags after `--request-id` that repeat this call exactly.
    fn retry_flags(&self) -> String {
        match self {
            Change::Start {
                pull_back,
                skip_to_earliest,
                ..
            } => {
                let mut flags = pull_back
                    .map(|t| {
                        format!(
                            " --pull-back {}",
                            t.to_rfc3339_opts(SecondsFormat::Micros, true)
                        )
                    })
                    .unwrap_or_default();
                if *skip_to_earliest {
                    flags.push_str(" --skip-to-earliest");
                }
                flags
            }
            Change::Pause { .. } => String::new(),
        }
    }

    /// Sends one connector's Start or Pause.
    async fn one(
        &self,
        mut client: ConnectorServiceClient<Authed>,
        call: Call,
    ) -> Result<Answer, tonic::Status> {
        Ok(match self {
            Change::Start {
                pull_back,
                region,
                skip_to_earliest,
            } => {
                let request = call.request(v1::StartConnectorRequest {
                    id: call.id.clone(),
                    pull_back_time: pull_back.map(timestamp_to_proto),
                    region: region.clone(),
                    request_id: call.request_id.clone(),
                    wait: call.wait.is_some(),
                    validate_only: call.validate_only,
                    skip_to_earliest: *skip_to_earliest,
                });
                Answer::Start(client.start_connector(request).await?.into_inner())
            }
            Change::Pause { reason } => {
                let request = call.request(v1::PauseConnectorRequest {
                    id: call.id.clone(),
                    reason: reason.clone(),
                    request_id: call.request_id.clone(),
                    wait: call.wait.is_some(),
                    validate_only: call.validate_only,
                });
                Answer::Pause(client.pause_connector(request).await?.into_inner())
            }
        })
    }

    /// Sends the batch form over the connectors `select` chooses.
    async fn batch(
        &self,
        client: &ClientArgs,
        select: &SelectArgs,
        request_id: &str,
        validate_only: bool,
    ) -> anyhow::Result<v1::BatchConnectorsResponse> {
        let mut connectors = client.connectors().await?;
        let filter = Some(select.filter());
        let request_id = request_id.to_owned();
        let response = match self {
            Change::Start {
                pull_back,
                region,
                skip_to_earliest,
            } => {
                let request = v1::BatchStartConnectorsRequest {
                    filter,
                    pull_back_time: pull_back.map(timestamp_to_proto),
                    region: region.clone(),
                    request_id,
                    max_connectors: select.max,
                    skip_to_earliest: *skip_to_earliest,
                    validate_only,
                    ..Default::default()
                };
                connectors.batch_start_connectors(request).await
            }
            Change::Pause { reason } => {
                let request = v1::BatchPauseConnectorsRequest {
                    filter,
                    reason: reason.clone(),
                    request_id,
                    max_connectors: select.max,
                    validate_only,
                    ..Default::default()
                };
                connectors.batch_pause_connectors(request).await
            }
        };
        Ok(response.map_err(Failure::from)?.into_inner())
    }
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
