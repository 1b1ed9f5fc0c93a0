//! Recognising the retry of a call that keeps no command (marking a
//! connector stopped, a restart policy), once for both backends: by the
//! OK audit event its first call wrote under the same request id. Each
//! backend looks that event up (`is_retry`) and asks `AuditedCall::repeats`.

use crate::domain::{Actor, AuditAction, rules};
use crate::store::StoreError;

/// A call as its audit event records it: the event a retry looks for.
pub(crate) struct AuditedCall<'a> {
    pub connector_id: &'a str,
    pub action: AuditAction,
    pub request_id: &'a str,
    pub principal: &'a str,
}

impl<'a> AuditedCall<'a> {
    /// `action` on `connector_id` by `actor`; None without a request id:
    /// such a call is never a retry.
    pub fn new(
        action: AuditAction,
        connector_id: &'a str,
        request_id: Option<&'a str>,
        actor: &'a Actor,
    ) -> Option<Self> {
        Some(AuditedCall {
            connector_id,
            action,
            request_id: request_id?,
            principal: &actor.principal,
        })
    }

    /// Whether this call retries the first one made with its request id,
    /// whose principal is `first` (None: there was none): nothing more to
    /// do. `rules::replay_of` refuses anyone else's.
    pub fn repeats(&self, first: Option<&str>) -> Result<bool, StoreError> {
        Ok(rules::replay_of(
            self.connector_id,
            self.request_id,
            first,
            self.principal,
        )?)
    }
}
