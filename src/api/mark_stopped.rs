//! MarkConnectorStopped: the way out for a connector whose agent is gone
//! (the decision is `domain::mark_stopped::decide_mark_stopped`).

use super::connector_api::ConnectorApi;
use super::convert;
use crate::auth::Permission;
use crate::proto::v1;
use crate::store::FleetStore;
use tonic::{Request, Response, Status};
use tracing::info;

impl<S: FleetStore> ConnectorApi<S> {
    /// The RPC's body: `mutating_call` (permission, rate limit, refusal audit),
    /// then the store's mark.
    pub(super) async fn mark_stopped_call(
        &self,
        request: Request<v1::MarkConnectorStoppedRequest>,
    ) -> Result<Response<v1::MarkConnectorStoppedResponse>, Status> {
        self.mutating_call(
            request,
            Permission::ConnectorsOperate,
            |call, message| async move {
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
            },
        )
        .await
    }
}
