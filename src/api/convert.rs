//! proto -> domain for requests. Incoming messages are validated here,
//! field by field, so that a caller learns about every bad field in one
//! round trip. (domain -> proto, which the fleet needs too, is
//! `crate::proto::convert`.)

use super::error::ApiError;
use super::pages;
use crate::domain::validate::{self, Violations};
use crate::domain::{
    ConnectorKind, ConnectorState, Endpoint, NewConnector, PauseRequest, RestartMode,
    RestartPolicy, SearchFilter, StartRequest,
};
pub(crate) use crate::proto::convert::timestamp;
pub use crate::proto::convert::{
    agent_to_proto, command_to_proto, connector_to_proto, region_to_proto, replica_to_proto,
    timestamp_to_proto,
};
use crate::proto::v1;
use chrono::SubsecRound;

pub(crate) fn invalid_request(rpc: &'static str, violations: Violations) -> Result<(), ApiError> {
    violations
        .finish()
        .map_err(|violations| ApiError::InvalidArgument { rpc, violations })
}

fn optional(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// Entries of `ListConnectorsRequest.states`: each of the six states once.
const MAX_STATES: usize = 6;

fn kind_from_proto(value: i32) -> Result<ConnectorKind, String> {
    match v1::ConnectorKind::try_from(value) {
        Ok(v1::ConnectorKind::IncrementalSync) => Ok(ConnectorKind::IncrementalSync),
        Ok(v1::ConnectorKind::FullMigration) => Ok(ConnectorKind::FullMigration),
        Ok(v1::ConnectorKind::Unspecified) => Err(
            "is required: CONNECTOR_KIND_INCREMENTAL_SYNC or CONNECTOR_KIND_FULL_MIGRATION"
                .to_owned(),
        ),
        Err(_) => Err(format!(
            "has unknown value {value}; use CONNECTOR_KIND_INCREMENTAL_SYNC or \
             CONNECTOR_KIND_FULL_MIGRATION"
        )),
    }
}

fn state_from_proto(value: i32) -> Result<ConnectorState, String> {
    let names = || {
        v1::ConnectorState::STATES
            .iter()
            .map(|s| s.as_str_name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match v1::ConnectorState::try_from(value) {
        Ok(v1::ConnectorState::Unspecified) => Err(format!(
            "contains CONNECTOR_STATE_UNSPECIFIED; use one of {}",
            names()
        )),
        Ok(v1::ConnectorState::Stopped) => Ok(ConnectorState::Stopped),
        Ok(v1::ConnectorState::Starting) => Ok(ConnectorState::Starting),
        Ok(v1::ConnectorState::Running) => Ok(ConnectorState::Running),
        Ok(v1::ConnectorState::Pausing) => Ok(ConnectorState::Pausing),
        Ok(v1::ConnectorState::Failed) => Ok(ConnectorState::Failed),
        Ok(v1::ConnectorState::Unknown) => Ok(ConnectorState::Unknown),
        Err(_) => Err(format!(
            "contains unknown value {value}; use one of {}",
            names()
        )),
    }
}

impl v1::ConnectorState {
    const STATES: [v1::ConnectorState; 6] = [
        v1::ConnectorState::Stopped,
        v1::ConnectorState::Starting,
        v1::ConnectorState::Running,
        v1::ConnectorState::Pausing,
        v1::ConnectorState::Failed,
        v1::ConnectorState::Unknown,
    ];
}

fn endpoint(
    violations: &mut Violations,
    field: &str,
    endpoint: Option<&v1::Endpoint>,
) -> Option<Endpoint> {
    let Some(endpoint) = endpoint else {
        violations.add(field, "is required (type, region and address)");
        return None;
    };
    violations.check(
        &format!("{field}.type"),
        validate::endpoint_type(&endpoint.r#type),
    );
    violations.check(
        &format!("{field}.region"),
        validate::region(&endpoint.region),
    );
    violations.check(
        &format!("{field}.address"),
        validate::address(&endpoint.address),
    );
    Some(Endpoint {
        kind: endpoint.r#type.clone(),
        region: endpoint.region.clone(),
        address: endpoint.address.clone(),
    })
}

/// Validates a CreateConnector request. Output-only fields are ignored; an
/// empty id is replaced by a fresh UUID.
pub fn new_connector(request: v1::CreateConnectorRequest) -> Result<NewConnector, ApiError> {
    let mut violations = Violations::default();
    let Some(c) = request.connector else {
        violations.add(
            "connector",
            "is required (name, project_id, project_name, kind, source, destination)",
        );
        invalid_request("CreateConnector", violations)?;
        unreachable!("a violation was added");
    };
    if !c.id.is_empty() {
        violations.check("connector.id", validate::id(&c.id));
    }
    violations.check("connector.name", validate::name(&c.name));
    violations.check("connector.project_id", validate::id(&c.project_id));
    violations.check("connector.project_name", validate::name(&c.project_name));
    let kind = kind_from_proto(c.kind);
    if let Err(description) = &kind {
        violations.add("connector.kind", description.clone());
    }
    let source = endpoint(&mut violations, "connector.source", c.source.as_ref());
    let destination = endpoint(
        &mut violations,
        "connector.destination",
        c.destination.as_ref(),
    );
    let restart_policy = restart_policy(
        &mut violations,
        "connector.restart_policy",
        c.restart_policy.as_ref(),
    );
    invalid_request("CreateConnector", violations)?;
    let id = if c.id.is_empty() {
        uuid::Uuid::now_v7().to_string()
    } else {
        c.id
    };
    Ok(NewConnector {
        id,
        name: c.name,
        project_id: c.project_id,
        project_name: c.project_name,
        kind: kind.expect("checked above"),
        source: source.expect("checked above"),
        destination: destination.expect("checked above"),
        restart_policy,
        actor: Default::default(),
    })
}

/// Validates an UpdateRestartPolicy request: the id and the policy (the
/// caller sets the actor).
pub fn update_restart_policy(
    request: &v1::UpdateRestartPolicyRequest,
) -> Result<crate::domain::RestartPolicyRequest, ApiError> {
    let mut violations = Violations::default();
    violations.check("id", validate::id(&request.id));
    violations.check("request_id", validate::request_id(&request.request_id));
    if request.restart_policy.is_none() {
        violations.add("restart_policy", "is required");
    }
    let policy = restart_policy(
        &mut violations,
        "restart_policy",
        request.restart_policy.as_ref(),
    );
    invalid_request("UpdateRestartPolicy", violations)?;
    Ok(crate::domain::RestartPolicyRequest {
        connector_id: request.id.clone(),
        policy,
        request_id: optional(&request.request_id),
        actor: Default::default(),
    })
}

/// Validates a restart policy (`field` names it in violations); unset
/// fields, and an unset policy, take the defaults.
pub fn restart_policy(
    violations: &mut Violations,
    field: &str,
    policy: Option<&v1::RestartPolicy>,
) -> RestartPolicy {
    use std::time::Duration;
    let defaults = RestartPolicy::default();
    let Some(policy) = policy else {
        return defaults;
    };
    let mode = match v1::RestartMode::try_from(policy.mode) {
        Ok(v1::RestartMode::Unspecified | v1::RestartMode::OnFailure) => RestartMode::OnFailure,
        Ok(v1::RestartMode::Never) => RestartMode::Never,
        Err(_) => {
            violations.add(
                &format!("{field}.mode"),
                format!("{} is not a RestartMode", policy.mode),
            );
            RestartMode::OnFailure
        }
    };
    if !(0..=1_000_000).contains(&policy.max_restarts) {
        violations.add(
            &format!("{field}.max_restarts"),
            format!(
                "is {}; must be 0 (unlimited) to 1000000",
                policy.max_restarts
            ),
        );
    }
    let mut duration = |name: &str,
                        value: &Option<prost_types::Duration>,
                        default: Duration,
                        range: (Duration, Duration)|
     -> Duration {
        let Some(value) = value else {
            return default;
        };
        match Duration::try_from(*value) {
            Ok(d) if d >= range.0 && d <= range.1 => d,
            _ => {
                violations.add(
                    &format!("{field}.{name}"),
                    format!(
                        "must be from {} to {}",
                        humantime::format_duration(range.0),
                        humantime::format_duration(range.1)
                    ),
                );
                default
            }
        }
    };
    let (second, day) = (Duration::from_secs(1), Duration::from_secs(86_400));
    let initial_backoff = duration(
        "initial_backoff",
        &policy.initial_backoff,
        defaults.initial_backoff,
        (second, day),
    );
    let max_backoff = duration(
        "max_backoff",
        &policy.max_backoff,
        defaults.max_backoff.max(initial_backoff),
        (second, day),
    );
    let reset_after = duration(
        "reset_after",
        &policy.reset_after,
        defaults.reset_after,
        (second, 7 * day),
    );
    if max_backoff < initial_backoff {
        violations.add(
            &format!("{field}.max_backoff"),
            "must be at least initial_backoff",
        );
    }
    RestartPolicy {
        mode,
        max_restarts: u32::try_from(policy.max_restarts.max(0)).unwrap_or(0),
        initial_backoff,
        max_backoff,
        reset_after,
    }
}

pub fn connector_id(rpc: &'static str, id: &str) -> Result<(), ApiError> {
    let mut violations = Violations::default();
    violations.check("id", validate::id(id));
    invalid_request(rpc, violations)
}

/// A validated search: normalised filters and the page size to use.
pub struct ListQuery {
    pub filter: SearchFilter,
    pub page_size: usize,
    pub page_token: String,
}

/// `latency_alert` is the threshold a `lagging` search applies.
pub fn list_query(
    request: v1::ListConnectorsRequest,
    latency_alert: std::time::Duration,
) -> Result<ListQuery, ApiError> {
    let mut violations = Violations::default();
    let filter = search_filter(
        &mut violations,
        "",
        &v1::ConnectorFilter {
            query: request.query,
            region: request.region,
            states: request.states,
            lagging: request.lagging,
            awaiting_restart: request.awaiting_restart,
            server_ip: request.server_ip,
        },
        latency_alert,
    );
    let page_size = pages::page_size(&mut violations, request.page_size);
    invalid_request("ListConnectors", violations)?;
    Ok(ListQuery {
        filter,
        page_size,
        page_token: request.page_token,
    })
}

/// The search a filter asks for (ListConnectors' fields, or a batch call's
/// `filter`; `prefix` names its fields in violations: "" or "filter.").
pub fn search_filter(
    violations: &mut Violations,
    prefix: &str,
    filter: &v1::ConnectorFilter,
    latency_alert: std::time::Duration,
) -> SearchFilter {
    let field = |name: &str| format!("{prefix}{name}");
    let query = filter.query.trim().to_owned();
    violations.check(&field("query"), validate::query(&query));
    if !filter.region.is_empty() {
        violations.check(&field("region"), validate::region(&filter.region));
    }
    let mut states = Vec::new();
    if filter.states.len() > MAX_STATES {
        violations.add(
            &field("states"),
            format!(
                "has {} entries; at most {MAX_STATES} (each state once)",
                filter.states.len()
            ),
        );
    }
    for (i, value) in filter.states.iter().take(MAX_STATES).enumerate() {
        match state_from_proto(*value) {
            Ok(state) => states.push(state),
            Err(description) => violations.add(&field(&format!("states[{i}]")), description),
        }
    }
    states.sort();
    states.dedup();
    let server = match filter.server_ip.trim() {
        "" => None,
        text => crate::domain::ServerNet::parse(text)
            .map_err(|description| violations.add(&field("server_ip"), description))
            .ok(),
    };
    SearchFilter {
        query,
        region: filter.region.clone(),
        server,
        states,
        lagging_over: filter.lagging.then_some(latency_alert),
        awaiting_restart: filter.awaiting_restart,
    }
}

/// Validates a StartConnector request.
pub fn start_request(request: &v1::StartConnectorRequest) -> Result<StartRequest, ApiError> {
    let mut violations = Violations::default();
    violations.check("id", validate::id(&request.id));
    if !request.region.is_empty() {
        violations.check("region", validate::region(&request.region));
    }
    violations.check("request_id", validate::request_id(&request.request_id));
    check_dry_run(&mut violations, request.validate_only, request.wait);
    let mut pull_back_time = None;
    if let Some(ts) = &request.pull_back_time {
        // A time in the future is refused by the rules, like any time the
        // store does not hold (PULL_BACK_OUT_OF_RANGE).
        match timestamp(ts) {
            // The store keeps microseconds; comparing retries needs the same.
            Ok(time) => pull_back_time = Some(time.trunc_subsecs(6)),
            Err(description) => violations.add("pull_back_time", description),
        }
    }
    check_skip_to_earliest(&mut violations, request.skip_to_earliest, &pull_back_time);
    invalid_request("StartConnector", violations)?;
    Ok(StartRequest {
        connector_id: request.id.clone(),
        pull_back_time,
        region: optional(&request.region),
        skip_to_earliest: request.skip_to_earliest,
        request_id: optional(&request.request_id),
        actor: Default::default(),
        trace_context: Default::default(),
        automatic: None,
    })
}

pub fn pause_request(request: &v1::PauseConnectorRequest) -> Result<PauseRequest, ApiError> {
    let mut violations = Violations::default();
    violations.check("id", validate::id(&request.id));
    violations.check("reason", validate::reason(&request.reason));
    violations.check("request_id", validate::request_id(&request.request_id));
    check_dry_run(&mut violations, request.validate_only, request.wait);
    invalid_request("PauseConnector", violations)?;
    Ok(PauseRequest {
        connector_id: request.id.clone(),
        reason: request.reason.clone(),
        request_id: optional(&request.request_id),
        actor: Default::default(),
        trace_context: Default::default(),
    })
}

/// Validates a MarkConnectorStopped request; `offline_after` is the
/// agents' liveness bound.
pub fn mark_stopped_request(
    request: &v1::MarkConnectorStoppedRequest,
    offline_after: std::time::Duration,
) -> Result<crate::domain::MarkStoppedRequest, ApiError> {
    let mut violations = Violations::default();
    violations.check("id", validate::id(&request.id));
    if request.reason.trim().is_empty() {
        violations.add(
            "reason",
            "is required: say why the connector is marked stopped (an incident id, say); it is \
             audited and shown on the connector",
        );
    } else {
        violations.check("reason", validate::reason(&request.reason));
    }
    violations.check("request_id", validate::request_id(&request.request_id));
    invalid_request("MarkConnectorStopped", violations)?;
    Ok(crate::domain::MarkStoppedRequest {
        connector_id: request.id.clone(),
        reason: request.reason.clone(),
        request_id: optional(&request.request_id),
        actor: Default::default(),
        offline_after,
    })
}

/// A start either replays from a time or resumes from its checkpoint
/// (skipping what the store lost, if allowed): not both.
pub(super) fn check_skip_to_earliest(
    violations: &mut Violations,
    skip_to_earliest: bool,
    pull_back_time: &Option<chrono::DateTime<chrono::Utc>>,
) {
    if skip_to_earliest && pull_back_time.is_some() {
        violations.add(
            "skip_to_earliest",
            "is set together with pull_back_time: a pull-back replays from its own time and \
             skips nothing; choose one",
        );
    }
}

/// A dry run issues nothing an agent could confirm: it cannot `wait`.
fn check_dry_run(violations: &mut Violations, validate_only: bool, wait: bool) {
    if validate_only && wait {
        violations.add(
            "wait",
            "cannot be set with validate_only: a dry run issues no command to wait for",
        );
    }
}

/// Validates an optional region filter.
pub fn region_filter(rpc: &'static str, region: &str) -> Result<Option<String>, ApiError> {
    if region.is_empty() {
        return Ok(None);
    }
    let mut violations = Violations::default();
    violations.check("region", validate::region(region));
    invalid_request(rpc, violations)?;
    Ok(Some(region.to_owned()))
}
