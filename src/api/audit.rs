//! AuditService: reading the audit trail.

use super::convert;
use super::error::ApiError;
use super::pages;
use crate::auth::{self, Permission};
use crate::domain::validate::{self, Violations};
use crate::domain::{AuditEvent, AuditFilter, PageTokenError};
use crate::proto::v1::{self, audit_service_server::AuditService};
use crate::store::Store;
use tonic::{Request, Response, Status};
use tracing::instrument;

/// Page tokens: this prefix and the id of the last event returned.
const TOKEN_PREFIX: &str = "audit:";

#[derive(Clone)]
pub struct AuditApi<S> {
    store: S,
}

impl<S: Store> AuditApi<S> {
    pub fn new(store: S) -> Self {
        Self { store }
    }
}

fn encode_token(last_id: i64) -> String {
    pages::encode_token(TOKEN_PREFIX, &last_id.to_string())
}

fn decode_token(token: &str) -> Result<i64, PageTokenError> {
    pages::decode_token(TOKEN_PREFIX, token)?
        .parse()
        .map_err(|_| PageTokenError::Malformed)
}

/// The validated filter and page size.
fn query(request: &v1::ListAuditEventsRequest) -> Result<(AuditFilter, usize), ApiError> {
    let mut violations = Violations::default();
    if !request.connector_id.is_empty() {
        violations.check("connector_id", validate::id(&request.connector_id));
    }
    if request.principal.chars().count() > validate::MAX_NAME_LEN {
        violations.add(
            "principal",
            format!("is longer than {} characters", validate::MAX_NAME_LEN),
        );
    }
    let mut time = |field: &str, ts: &Option<prost_types::Timestamp>| match ts {
        None => None,
        Some(ts) => match convert::timestamp(ts) {
            Ok(time) => Some(time),
            Err(description) => {
                violations.add(field, description);
                None
            }
        },
    };
    let start_time = time("start_time", &request.start_time);
    let end_time = time("end_time", &request.end_time);
    if let (Some(start), Some(end)) = (start_time, end_time)
        && start >= end
    {
        violations.add("end_time", "must be after start_time");
    }
    let page_size = pages::page_size(&mut violations, request.page_size);
    violations
        .finish()
        .map_err(|violations| ApiError::InvalidArgument {
            rpc: "ListAuditEvents",
            violations,
        })?;
    let before_id = match request.page_token.as_str() {
        "" => None,
        token => Some(decode_token(token)?),
    };
    let filter = AuditFilter {
        connector_id: (!request.connector_id.is_empty()).then(|| request.connector_id.clone()),
        principal: (!request.principal.is_empty()).then(|| request.principal.clone()),
        start_time,
        end_time,
        before_id,
    };
    Ok((filter, page_size))
}

fn event_to_proto(event: AuditEvent) -> v1::AuditEvent {
    v1::AuditEvent {
        id: event.id,
        time: Some(convert::timestamp_to_proto(event.time)),
        principal: event.principal,
        action: event.action,
        connector_id: event.connector_id,
        request_id: event.request_id,
        outcome: event.outcome,
        reason: event.reason,
        peer: event.peer,
        detail: event.detail,
        count: event.count,
    }
}

#[tonic::async_trait]
impl<S: Store> AuditService for AuditApi<S> {
    #[instrument(name = "ListAuditEvents", skip_all)]
    async fn list_audit_events(
        &self,
        request: Request<v1::ListAuditEventsRequest>,
    ) -> Result<Response<v1::ListAuditEventsResponse>, Status> {
        auth::require(&request, Permission::AuditRead)?;
        let (filter, page_size) = query(request.get_ref())?;
        let (events, more) = self.store.list_audit_events(&filter, page_size).await?;
        let next_page_token = match events.last() {
            Some(last) if more => encode_token(last.id),
            _ => String::new(),
        };
        Ok(Response::new(v1::ListAuditEventsResponse {
            events: events.into_iter().map(event_to_proto).collect(),
            next_page_token,
        }))
    }
}
