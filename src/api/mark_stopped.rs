//! MarkConnectorStopped: the way out for a connector whose agent is gone
//! (the decision is `domain::mark_stopped::decide_mark_stopped`).

use super::connector_api::ConnectorApi;
use super::convert;
use super::error::ApiError;
use super::mutation::Call;
use crate::proto::v1;
use crate::store::FleetStore;
use tracing::info;

impl<S: FleetStore> ConnectorApi<S> {
    /// MarkConnectorStopped's work, inside `mutating_call`: the store's mark.
    pub(super) async fn mark_stopped_work(
        &self,
        call: Call,
        message: v1::MarkConnectorStoppedRequest,
    ) -> Result<v1::MarkConnectorStoppedResponse, ApiError> {
        let mut mark = convert::mark_stopped_request(&message, self.offline_after)?;
        mark.actor = call.actor;
        let (connector, replayed) = self
            .store
            .mark_stopped(&mark, message.validate_only)
            .await?;
        if message.validate_only {
            info!("mark stopped validated (dry run; nothing written)");
        } else if replayed {
            info!("mark stopped retried with the same request_id; nothing changed");
        } else {
            info!(
                generation = connector.generation,
                "connector marked stopped"
            );
        }
        Ok(v1::MarkConnectorStoppedResponse {
            connector: Some(self.view(connector)),
            validate_only: message.validate_only,
        })
    }
}
