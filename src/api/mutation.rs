//! The one path of every call that changes something: its permission,
//! its principal's rate limit, its work, the outcome on its span and the
//! audit of a refusal.

use super::connector_api::ConnectorApi;
use super::error::ApiError;
use super::refusals::{Audited, Refusal};
use crate::auth::{self, Permission};
use crate::domain::Actor;
use crate::store::FleetStore;
use tokio::time::Instant;
use tonic::{Code, Request, Response, Status};
use tracing::Span;

/// What a mutating call's work gets: who calls, from where, and when a
/// `wait` must answer.
pub(super) struct Call {
    pub(super) principal: auth::Principal,
    pub(super) actor: Actor,
    pub(super) deadline: Instant,
}

impl<S: FleetStore> ConnectorApi<S> {
    /// Every call that changes something goes through here: its
    /// permission, its principal's rate limit, then `work`; the outcome is
    /// named on the call's span and a refusal is recorded in the audit trail
    /// (a change that was made recorded its own event). A new mutating RPC
    /// cannot forget any of these.
    pub(super) async fn mutating_call<M: Audited, R, Fut>(
        &self,
        request: Request<M>,
        permission: Permission,
        work: impl FnOnce(Call, M) -> Fut,
    ) -> Result<Response<R>, Status>
    where
        Fut: std::future::Future<Output = Result<R, ApiError>>,
    {
        let audit = Refusal::of(&request);
        let result = async {
            let principal = auth::require(&request, permission)?;
            if !audit.dry_run {
                self.limiter.check(&principal)?;
            }
            let call = Call {
                principal,
                actor: audit.actor.clone(),
                deadline: self.deadline(&request),
            };
            let response = work(call, request.into_inner()).await?;
            if !audit.dry_run {
                // What it changed is in the watch feed when it answers.
                self.feed.sequenced().await;
            }
            Ok::<_, ApiError>(Response::new(response))
        }
        .await
        .map_err(Status::from);
        record_outcome(&result);
        self.audit_refusal(audit, &result).await;
        result
    }
}

/// Names the call's outcome on its span: `OK` or the status code.
fn record_outcome<T>(result: &Result<T, Status>) {
    let code = match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    };
    Span::current().record("outcome", crate::telemetry::rpc::code_name(code));
}
