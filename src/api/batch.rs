//! BatchPauseConnectors and BatchStartConnectors run: every chosen
//! connector gets the change the single call would make
//! (`Store::issue_commands`, a transaction per chunk), and a retry with the
//! request id returns the first answer (the `batches` record). The request
//! is validated in `batch_request`.

use super::batch_request::{Batch, BatchRequest, Selection, parse};
use super::connector_api::ConnectorApi;
use super::convert;
use super::error::ApiError;
use super::mutation::Call;
use crate::auth::Permission;
use crate::domain::{Actor, Change, Connector, rules};
use crate::proto::v1;
use crate::store::{CommandOutcome, FleetStore, NewBatch, StoreError};
use futures_util::StreamExt;
use prost::Message;
use std::collections::HashMap;
use tonic::{Request, Response, Status};
use tracing::info;

/// Connectors changed per transaction: a batch never holds more row locks
/// than this at once, and one failure rolls back at most this many.
pub const CHUNK: usize = 500;
/// Chunks in flight at once (each a transaction on its own connection).
const CHUNKS_AT_ONCE: usize = 2;

/// A batch call's request id, as recorded: answered, or work to finish.
enum Resumed {
    Answered(v1::BatchConnectorsResponse),
    Work(Vec<String>),
}

/// The google.rpc.Status a single call would have answered with.
fn rpc_status(error: StoreError) -> tonic_types::pb::Status {
    let status = tonic::Status::from(ApiError::from(error));
    tonic_types::pb::Status::decode(status.details()).unwrap_or_else(|_| tonic_types::pb::Status {
        code: status.code() as i32,
        message: status.message().to_owned(),
        details: Vec::new(),
    })
}

impl<S: FleetStore> ConnectorApi<S> {
    /// A batch call: `mutating_call` with the operate permission (one change
    /// against the rate limit, a dry run none), then the batch.
    pub(super) async fn batch_call<M: BatchRequest>(
        &self,
        request: Request<M>,
    ) -> Result<Response<v1::BatchConnectorsResponse>, Status> {
        self.mutating_call(
            request,
            Permission::ConnectorsOperate,
            |call, message| async move {
                let batch = parse(&message, self.latency_alert)?;
                self.run_batch(batch, call).await
            },
        )
        .await
    }

    /// Runs a validated batch: its earlier answer for a used request id,
    /// else each chosen connector's change, a chunk at a time.
    pub(super) async fn run_batch(
        &self,
        batch: Batch,
        call: Call,
    ) -> Result<v1::BatchConnectorsResponse, ApiError> {
        let recorded = match (&batch.request_id, batch.validate_only) {
            (Some(request_id), false) => self.store.find_batch(request_id).await?,
            _ => None,
        };
        let mut known = HashMap::new();
        let ids = match recorded {
            Some(record) => self.resume(&batch, &call, record)?,
            None => {
                let ids = self.select(&batch, &mut known).await?;
                match (&batch.request_id, batch.validate_only) {
                    (Some(request_id), false) => {
                        let new = NewBatch {
                            request_id,
                            fingerprint: &batch.fingerprint,
                            principal: &call.principal.name,
                            connector_ids: &ids,
                        };
                        let record = self.store.begin_batch(new).await?;
                        self.resume(&batch, &call, record)?
                    }
                    _ => Resumed::Work(ids),
                }
            }
        };
        let ids = match ids {
            Resumed::Answered(response) => return Ok(response),
            Resumed::Work(ids) => ids,
        };

        let mut response = v1::BatchConnectorsResponse {
            selected: i32::try_from(ids.len()).unwrap_or(i32::MAX),
            validate_only: batch.validate_only,
            ..Default::default()
        };
        // Chunks touch disjoint connectors, so a few run at once: the
        // database works on one while this replica prepares the next.
        let work: Vec<_> = ids
            .chunks(CHUNK)
            .map(|chunk| self.run_chunk(&batch, &call.actor, chunk))
            .collect();
        let mut chunks = futures_util::stream::iter(work).buffered(CHUNKS_AT_ONCE);
        while let Some(done) = chunks.next().await {
            let (chunk, outcomes) = done?;
            for (id, outcome) in chunk.iter().zip(outcomes) {
                let result = self
                    .batch_result(&batch, id, outcome, known.remove(id))
                    .await;
                match v1::BatchOutcome::try_from(result.outcome) {
                    Ok(v1::BatchOutcome::Changed) => response.changed += 1,
                    Ok(v1::BatchOutcome::Unchanged) => response.unchanged += 1,
                    _ => response.failed += 1,
                }
                response.results.push(result);
            }
        }
        info!(
            selected = response.selected,
            changed = response.changed,
            unchanged = response.unchanged,
            failed = response.failed,
            dry_run = batch.validate_only,
            "batch {} done",
            batch.kind.as_str()
        );
        if let (Some(request_id), false) = (&batch.request_id, batch.validate_only) {
            self.store
                .finish_batch(request_id, &response.encode_to_vec())
                .await?;
        }
        Ok(response)
    }

    /// What a recorded batch call with this request id means for this
    /// call: its first answer, or (it stopped half-way: the database went
    /// away, or its replica died) the connectors it chose, to finish. Only
    /// the same principal's same call may repeat it, and the guard is
    /// checked again: a retry with a smaller `max_connectors` does not
    /// finish a larger selection.
    fn resume(
        &self,
        batch: &Batch,
        call: &Call,
        record: crate::store::BatchRecord,
    ) -> Result<Resumed, ApiError> {
        let request_id = batch.request_id.clone().unwrap_or_default();
        if !record.principal.is_empty() && record.principal != call.principal.name {
            return Err(ApiError::RequestIdOfAnother { request_id });
        }
        if record.fingerprint != batch.fingerprint {
            return Err(ApiError::BatchRequestIdReused { request_id });
        }
        if let Some(response) = record.response {
            info!("batch retried with the same request_id; returning its first answer");
            return decode(&response).map(Resumed::Answered);
        }
        if record.connector_ids.len() > batch.max {
            return Err(ApiError::TooManyConnectors {
                selected: record.connector_ids.len() as i64,
                max: batch.max,
            });
        }
        Ok(Resumed::Work(record.connector_ids))
    }

    /// One chunk's changes, in one transaction.
    async fn run_chunk<'a>(
        &self,
        batch: &Batch,
        actor: &Actor,
        chunk: &'a [String],
    ) -> Result<(&'a [String], Vec<Result<CommandOutcome, StoreError>>), StoreError> {
        let changes: Vec<Change> = chunk
            .iter()
            .map(|id| {
                batch
                    .template
                    .change_for(id, batch.request_id.as_deref(), actor)
            })
            .collect();
        let outcomes = if batch.validate_only {
            self.store.preview_commands(&changes).await?
        } else {
            self.store.issue_commands(&changes).await?
        };
        Ok((chunk, outcomes))
    }

    /// The chosen connectors' ids, in id order; refused when more than the
    /// batch's `max` match. `known` gets the connectors a filter read.
    async fn select(
        &self,
        batch: &Batch,
        known: &mut HashMap<String, Connector>,
    ) -> Result<Vec<String>, ApiError> {
        let too_many = |selected: i64| ApiError::TooManyConnectors {
            selected,
            max: batch.max,
        };
        match &batch.selection {
            Selection::Ids(ids) => {
                if ids.len() > batch.max {
                    return Err(too_many(ids.len() as i64));
                }
                Ok(ids.clone())
            }
            Selection::Filter(filter) => {
                let page = self
                    .store
                    .list_connectors(filter, None, batch.max + 1)
                    .await?;
                if page.connectors.len() > batch.max {
                    return Err(too_many(page.total.max(page.connectors.len() as i64)));
                }
                let mut ids: Vec<String> = page.connectors.iter().map(|c| c.id.clone()).collect();
                ids.sort();
                known.extend(page.connectors.into_iter().map(|c| (c.id.clone(), c)));
                Ok(ids)
            }
        }
    }

    async fn batch_result(
        &self,
        batch: &Batch,
        id: &str,
        outcome: Result<CommandOutcome, StoreError>,
        known: Option<Connector>,
    ) -> v1::BatchResult {
        let mut result = v1::BatchResult {
            connector_id: id.to_owned(),
            ..Default::default()
        };
        let connector = match outcome {
            Ok(outcome) => {
                if !outcome.replayed && !batch.validate_only {
                    self.signals
                        .command_added(&outcome.command.region, &outcome.connector.agent_id);
                }
                result.outcome = v1::BatchOutcome::Changed as i32;
                result.command = Some(convert::command_to_proto(outcome.command));
                Some(outcome.connector)
            }
            Err(StoreError::Rejected(rejection))
                if rules::already_there(batch.kind, &rejection) =>
            {
                result.outcome = v1::BatchOutcome::Unchanged as i32;
                self.current(id, known).await
            }
            Err(error) => {
                let missing = matches!(error, StoreError::ConnectorNotFound(_));
                result.outcome = v1::BatchOutcome::Failed as i32;
                result.error = Some(rpc_status(error));
                if missing {
                    None
                } else {
                    self.current(id, known).await
                }
            }
        };
        result.connector = connector.map(|c| self.view(c));
        result
    }

    /// The connector as it is now: as the selection read it, else read.
    async fn current(&self, id: &str, known: Option<Connector>) -> Option<Connector> {
        match known {
            Some(connector) => Some(connector),
            None => self.store.get_connector(id).await.ok(),
        }
    }
}

fn decode(response: &[u8]) -> Result<v1::BatchConnectorsResponse, ApiError> {
    v1::BatchConnectorsResponse::decode(response)
        .map_err(|e| ApiError::Store(StoreError::Internal(e.into())))
}
