//! BatchPauseConnectors and BatchStartConnectors: every chosen connector
//! gets the change the single call would make (`Store::issue_commands`, a
//! transaction per chunk), and a retry with the request id returns the
//! first answer (the `batches` record).

use super::connector_api::ConnectorApi;
use super::convert;
use super::error::ApiError;
use super::mutation::Call;
use super::refusals::Audited;
use crate::auth::Permission;
use crate::domain::validate::{self, Violations};
use crate::domain::{
    Actor, Change, CommandKind, Connector, PauseRequest, SearchFilter, StartRequest, rules,
};
use crate::proto::v1;
use crate::store::{CommandOutcome, FleetStore, StoreError};
use chrono::{DateTime, SubsecRound, Utc};
use futures_util::StreamExt;
use prost::Message;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use tonic::{Request, Response, Status};
use tracing::info;

/// Connectors changed per transaction: a batch never holds more row locks
/// than this at once, and one failure rolls back at most this many.
pub const CHUNK: usize = 500;
/// Chunks in flight at once (each a transaction on its own connection).
const CHUNKS_AT_ONCE: usize = 2;
/// `max_connectors` when the request leaves it 0.
pub const DEFAULT_MAX_CONNECTORS: usize = 100;
/// The largest `max_connectors` a request may give.
pub const MAX_MAX_CONNECTORS: usize = 10_000;

/// BatchPauseConnectorsRequest and BatchStartConnectorsRequest.
pub trait BatchRequest: Audited + Message + Clone + Default {
    const RPC: &'static str;
    const KIND: CommandKind;
    fn filter(&self) -> Option<&v1::ConnectorFilter>;
    fn ids(&self) -> &[String];
    fn max_connectors(&self) -> i32;
    /// Checks what the request asks of every connector.
    fn template(&self, violations: &mut Violations) -> Template;
    /// The request as a retry must repeat it: without its request id, dry
    /// run flag and guard, the ids in order.
    fn canonical(&self) -> Self;
}

/// The `BatchRequest` methods both batch requests answer alike, from their
/// fields of the same names.
macro_rules! shared_batch_fields {
    () => {
        fn filter(&self) -> Option<&v1::ConnectorFilter> {
            self.filter.as_ref()
        }
        fn ids(&self) -> &[String] {
            &self.ids
        }
        fn max_connectors(&self) -> i32 {
            self.max_connectors
        }
        fn canonical(&self) -> Self {
            let mut ids = self.ids.clone();
            ids.sort();
            ids.dedup();
            Self {
                ids,
                request_id: String::new(),
                validate_only: false,
                max_connectors: 0,
                ..self.clone()
            }
        }
    };
}

/// What a batch asks of each connector.
#[derive(Clone, Debug)]
pub enum Template {
    Pause {
        reason: String,
    },
    Start {
        pull_back_time: Option<DateTime<Utc>>,
        region: Option<String>,
        skip_to_earliest: bool,
    },
}

impl Template {
    /// The change this batch asks of one connector, as `actor` asks it.
    fn change_for(&self, connector_id: &str, request_id: Option<&str>, actor: &Actor) -> Change {
        let (connector_id, request_id) = (connector_id.to_owned(), request_id.map(str::to_owned));
        let trace_context = crate::telemetry::inject_current();
        match self {
            Template::Pause { reason } => Change::Pause(PauseRequest {
                connector_id,
                reason: reason.clone(),
                request_id,
                actor: actor.clone(),
                trace_context,
            }),
            Template::Start {
                pull_back_time,
                region,
                skip_to_earliest,
            } => Change::Start(StartRequest {
                connector_id,
                pull_back_time: *pull_back_time,
                region: region.clone(),
                skip_to_earliest: *skip_to_earliest,
                request_id,
                actor: actor.clone(),
                trace_context,
                automatic: None,
            }),
        }
    }
}

impl BatchRequest for v1::BatchPauseConnectorsRequest {
    const RPC: &'static str = "BatchPauseConnectors";
    const KIND: CommandKind = CommandKind::Pause;
    shared_batch_fields!();
    fn template(&self, violations: &mut Violations) -> Template {
        violations.check("reason", validate::reason(&self.reason));
        Template::Pause {
            reason: self.reason.clone(),
        }
    }
}

impl BatchRequest for v1::BatchStartConnectorsRequest {
    const RPC: &'static str = "BatchStartConnectors";
    const KIND: CommandKind = CommandKind::Start;
    shared_batch_fields!();
    fn template(&self, violations: &mut Violations) -> Template {
        if !self.region.is_empty() {
            violations.check("region", validate::region(&self.region));
        }
        let pull_back_time = match &self.pull_back_time {
            None => None,
            Some(ts) => match convert::timestamp(ts) {
                Ok(time) => Some(time.trunc_subsecs(6)),
                Err(description) => {
                    violations.add("pull_back_time", description);
                    None
                }
            },
        };
        convert::check_skip_to_earliest(violations, self.skip_to_earliest, &pull_back_time);
        Template::Start {
            pull_back_time,
            region: (!self.region.is_empty()).then(|| self.region.clone()),
            skip_to_earliest: self.skip_to_earliest,
        }
    }
}

/// Which connectors a batch chose.
enum Selection {
    Ids(Vec<String>),
    Filter(SearchFilter),
}

/// A validated batch request.
pub struct Batch {
    kind: CommandKind,
    selection: Selection,
    template: Template,
    request_id: Option<String>,
    validate_only: bool,
    max: usize,
    fingerprint: String,
}

fn filter_is_empty(filter: &v1::ConnectorFilter) -> bool {
    filter.query.trim().is_empty()
        && filter.region.is_empty()
        && filter.states.is_empty()
        && !filter.lagging
        && !filter.awaiting_restart
        && filter.server_ip.trim().is_empty()
}

/// Validates a batch request; `latency_alert` is what `lagging` applies.
pub fn parse<R: BatchRequest>(
    request: &R,
    latency_alert: std::time::Duration,
) -> Result<Batch, ApiError> {
    let mut violations = Violations::default();
    let filter = request.filter().filter(|filter| !filter_is_empty(filter));
    let selection = match (request.ids(), filter) {
        ([], None) => {
            violations.add(
                "filter",
                "choose the connectors: give ids, or set at least one filter field (query, \
                 region, server_ip, states, lagging, awaiting_restart); a batch call never means \
                 every connector",
            );
            Selection::Ids(Vec::new())
        }
        ([], Some(filter)) => Selection::Filter(convert::search_filter(
            &mut violations,
            "filter.",
            filter,
            latency_alert,
        )),
        (ids, None) => {
            for (i, id) in ids.iter().enumerate() {
                violations.check(&format!("ids[{i}]"), validate::id(id));
            }
            let mut ids = ids.to_vec();
            ids.sort();
            ids.dedup();
            Selection::Ids(ids)
        }
        (_, Some(_)) => {
            violations.add("ids", "give ids or filter, not both");
            Selection::Ids(Vec::new())
        }
    };
    let max = match request.max_connectors() {
        0 => DEFAULT_MAX_CONNECTORS,
        n if n < 0 || n as usize > MAX_MAX_CONNECTORS => {
            violations.add(
                "max_connectors",
                format!(
                    "is {n}; must be between 1 and {MAX_MAX_CONNECTORS} (0 means \
                     {DEFAULT_MAX_CONNECTORS})"
                ),
            );
            DEFAULT_MAX_CONNECTORS
        }
        n => n as usize,
    };
    let audit = request.audited();
    violations.check("request_id", validate::request_id(audit.request_id));
    let template = request.template(&mut violations);
    convert::invalid_request(R::RPC, violations)?;
    let fingerprint = format!(
        "{}:{:x}",
        R::KIND.as_str(),
        Sha256::digest(request.canonical().encode_to_vec())
    );
    Ok(Batch {
        kind: R::KIND,
        selection,
        template,
        request_id: (!audit.request_id.is_empty()).then(|| audit.request_id.to_owned()),
        validate_only: audit.dry_run,
        max,
        fingerprint,
    })
}

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
                        let record = self
                            .store
                            .begin_batch(request_id, &batch.fingerprint, &call.principal.name, &ids)
                            .await?;
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
