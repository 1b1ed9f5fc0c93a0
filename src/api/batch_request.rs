//! A batch request validated: which connectors it chooses (ids or a
//! filter, never everything), what it asks of each (`Template`), its guard
//! (`max_connectors`) and the fingerprint a retry must match.

use super::convert;
use super::error::ApiError;
use super::refusals::Audited;
use crate::domain::validate::{self, Violations};
use crate::domain::{Actor, Change, CommandKind, PauseRequest, SearchFilter, StartRequest};
use crate::proto::v1;
use chrono::{DateTime, SubsecRound, Utc};
use prost::Message;
use sha2::{Digest, Sha256};

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
    pub(super) fn change_for(
        &self,
        connector_id: &str,
        request_id: Option<&str>,
        actor: &Actor,
    ) -> Change {
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
pub(super) enum Selection {
    Ids(Vec<String>),
    Filter(SearchFilter),
}

/// A validated batch request.
pub struct Batch {
    pub(super) kind: CommandKind,
    pub(super) selection: Selection,
    pub(super) template: Template,
    pub(super) request_id: Option<String>,
    pub(super) validate_only: bool,
    pub(super) max: usize,
    pub(super) fingerprint: String,
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
