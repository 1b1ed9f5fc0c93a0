//! What the audit trail records of a refused mutating call, and when it
//! records nothing (an outage, a rate limit, a dry run's ordinary refusal).

use super::caller::actor;
use super::connector_api::ConnectorApi;
use crate::domain::{Actor, AuditAction, NewAuditEvent};
use crate::store::FleetStore;
use tonic::{Code, Request, Status};

/// What the audit trail records of a mutating call that is refused.
pub(super) struct Refusal {
    pub(super) actor: Actor,
    pub(super) action: AuditAction,
    pub(super) connector_id: String,
    pub(super) request_id: String,
    pub(super) reason: String,
    /// A dry run: it consumes no rate limit, and only a denied permission
    /// is recorded (it changes nothing, so nothing else is worth a row).
    pub(super) dry_run: bool,
}

impl Refusal {
    pub(super) fn new<T>(
        request: &Request<T>,
        action: AuditAction,
        connector_id: &str,
        request_id: &str,
    ) -> Self {
        Refusal {
            actor: actor(request),
            action,
            connector_id: connector_id.to_owned(),
            request_id: request_id.to_owned(),
            reason: String::new(),
            dry_run: false,
        }
    }
}

impl<S: FleetStore> ConnectorApi<S> {
    /// Records a refused mutating call (a change that was made recorded its
    /// own event in its transaction). Not for an unreachable database, nor
    /// for a `wait` that ran out after the change was made.
    pub(super) async fn audit_refusal<T>(&self, refusal: Refusal, result: &Result<T, Status>) {
        let Err(status) = result else { return };
        if refusal.dry_run
            && !matches!(
                status.code(),
                Code::PermissionDenied | Code::Unauthenticated
            )
        {
            return;
        }
        // Not an outage, nor a wait that ran out after the change was made;
        // nor a rate-limited call, whose purpose is to cost nothing.
        if matches!(
            status.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted
        ) {
            return;
        }
        let reason = tonic_types::StatusExt::get_error_details(status)
            .error_info()
            .map(|info| info.reason.clone())
            .unwrap_or_default();
        let event = NewAuditEvent::refused(
            &refusal.actor,
            refusal.action,
            &refusal.connector_id,
            &refusal.request_id,
            crate::domain::Refused {
                code: crate::telemetry::rpc::code_name(status.code()),
                reason: &reason,
                message: status.message(),
                reason_given: &refusal.reason,
            },
        );
        self.refusals.record(&self.store, event).await;
    }
}
