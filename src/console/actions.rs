//! The console's changes to connectors, one function each, so that a check
//! added here holds for every way the console reaches it: a start and a
//! pause (each a dry run first, then the change: a refusal of either
//! changes nothing and is shown the same way), and their batch forms (the
//! bulk form's review is the batch's dry run, its commit the change).

use super::caller::Caller;
use super::failure::ShownFailure;
use super::forms::{BulkForm, ReasonForm, StartChoice};
use super::state::Console;
use crate::proto::v1::{self, connector_service_server::ConnectorService};
use crate::store::FleetStore;
use std::future::Future;
use tonic::Status;

/// The connector a change is for, and who asks for it.
pub struct Target<'a, S> {
    pub console: &'a Console<S>,
    pub caller: &'a Caller,
    pub id: &'a str,
}

/// Starts the connector as `choice` says.
pub async fn start<S: FleetStore>(
    to: &Target<'_, S>,
    choice: &StartChoice,
    request_id: &str,
) -> Result<v1::StartConnectorResponse, ShownFailure> {
    dry_run_first(|validate_only| {
        ConnectorService::start_connector(
            &to.console.connectors,
            to.caller.request(v1::StartConnectorRequest {
                id: to.id.to_owned(),
                pull_back_time: choice.pull_back_time,
                region: choice.region.clone(),
                request_id: request_id.to_owned(),
                wait: false,
                validate_only,
                skip_to_earliest: choice.skip_to_earliest,
            }),
        )
    })
    .await
}

/// Pauses the connector, for the form's reason.
pub async fn pause<S: FleetStore>(
    to: &Target<'_, S>,
    form: &ReasonForm,
) -> Result<v1::PauseConnectorResponse, ShownFailure> {
    dry_run_first(|validate_only| {
        ConnectorService::pause_connector(
            &to.console.connectors,
            to.caller.request(v1::PauseConnectorRequest {
                id: to.id.to_owned(),
                reason: form.reason.clone(),
                request_id: form.request_id.clone(),
                wait: false,
                validate_only,
            }),
        )
    })
    .await
}

/// Starts the bulk form's selection as `choice` says (a dry run unless the
/// form commits).
pub async fn start_many<S: FleetStore>(
    c: &Console<S>,
    caller: &Caller,
    form: &BulkForm,
    choice: &StartChoice,
) -> Result<v1::BatchConnectorsResponse, ShownFailure> {
    let (filter, ids) = form.selection();
    let response = ConnectorService::batch_start_connectors(
        &c.connectors,
        caller.request(v1::BatchStartConnectorsRequest {
            filter,
            ids,
            skip_to_earliest: choice.skip_to_earliest,
            pull_back_time: choice.pull_back_time,
            region: choice.region.clone(),
            request_id: form.request_id.clone(),
            validate_only: !form.commit,
            max_connectors: form.max_connectors,
        }),
    )
    .await?;
    Ok(response.into_inner())
}

/// Pauses the bulk form's selection (a dry run unless the form commits).
pub async fn pause_many<S: FleetStore>(
    c: &Console<S>,
    caller: &Caller,
    form: &BulkForm,
) -> Result<v1::BatchConnectorsResponse, ShownFailure> {
    let (filter, ids) = form.selection();
    let response = ConnectorService::batch_pause_connectors(
        &c.connectors,
        caller.request(v1::BatchPauseConnectorsRequest {
            filter,
            ids,
            reason: form.reason.clone(),
            request_id: form.request_id.clone(),
            validate_only: !form.commit,
            max_connectors: form.max_connectors,
        }),
    )
    .await?;
    Ok(response.into_inner())
}

/// `call` as a dry run (`validate_only`), then, if the API accepts it, for
/// real: what the change answered, or the first refusal.
async fn dry_run_first<R, Fut>(call: impl Fn(bool) -> Fut) -> Result<R, ShownFailure>
where
    Fut: Future<Output = Result<tonic::Response<R>, Status>>,
{
    call(true).await?;
    Ok(call(false).await?.into_inner())
}
