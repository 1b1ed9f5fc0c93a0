//! What the audit trail records of a refused mutating call, and when it
//! records nothing (an outage, a rate limit, a dry run's ordinary refusal).

use super::caller::actor;
use super::connector_api::ConnectorApi;
use crate::domain::{Actor, AuditAction, NewAuditEvent};
use crate::proto::v1;
use crate::store::FleetStore;
use tonic::{Code, Request, Status};

/// A mutating request, as the audit trail names it if it is refused.
pub(super) trait Audited {
    fn audited(&self) -> Audit<'_>;
}

/// What a mutating request says of itself for the audit trail.
pub(super) struct Audit<'a> {
    pub(super) action: AuditAction,
    /// Empty for a batch: its results name its connectors.
    pub(super) connector_id: &'a str,
    pub(super) request_id: &'a str,
    /// What the caller wrote about the change (a pause's reason).
    pub(super) reason: &'a str,
    /// `validate_only`: the call decides and writes nothing.
    pub(super) dry_run: bool,
}

/// `Audited` for requests whose fields say it: `|m| (connector id,
/// request id, reason given, dry run)` of a request `m`.
macro_rules! audited {
    ($($request:ty => $action:ident, |$m:ident| ($id:expr, $request_id:expr, $reason:expr, $dry_run:expr $(,)?)),* $(,)?) => {
        $(impl Audited for $request {
            fn audited(&self) -> Audit<'_> {
                let $m = self;
                Audit {
                    action: AuditAction::$action,
                    connector_id: $id,
                    request_id: $request_id,
                    reason: $reason,
                    dry_run: $dry_run,
                }
            }
        })*
    };
}

// Every mutating request of ConnectorService.
audited! {
    v1::CreateConnectorRequest => CreateConnector,
        |m| (m.connector.as_ref().map_or("", |c| c.id.as_str()), "", "", false),
    v1::UpdateRestartPolicyRequest => UpdateRestartPolicy,
        |m| (&m.id, &m.request_id, "", false),
    v1::StartConnectorRequest => StartConnector,
        |m| (&m.id, &m.request_id, "", m.validate_only),
    v1::PauseConnectorRequest => PauseConnector,
        |m| (&m.id, &m.request_id, &m.reason, m.validate_only),
    v1::BatchStartConnectorsRequest => StartConnector,
        |m| ("", &m.request_id, "", m.validate_only),
    v1::BatchPauseConnectorsRequest => PauseConnector,
        |m| ("", &m.request_id, &m.reason, m.validate_only),
    v1::MarkConnectorStoppedRequest => MarkConnectorStopped,
        |m| (&m.id, &m.request_id, &m.reason, m.validate_only),
}

/// What the audit trail records of a mutating call that is refused.
pub(super) struct Refusal {
    pub(super) actor: Actor,
    action: AuditAction,
    connector_id: String,
    request_id: String,
    reason: String,
    /// A dry run: it consumes no rate limit, and only a denied permission
    /// is recorded (it changes nothing, so nothing else is worth a row).
    pub(super) dry_run: bool,
}

impl Refusal {
    /// What would be recorded of `request` if it is refused.
    pub(super) fn of<M: Audited>(request: &Request<M>) -> Self {
        let audit = request.get_ref().audited();
        Refusal {
            actor: actor(request),
            action: audit.action,
            connector_id: audit.connector_id.to_owned(),
            request_id: audit.request_id.to_owned(),
            reason: audit.reason.to_owned(),
            dry_run: audit.dry_run,
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
