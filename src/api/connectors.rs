//! CreateConnector and UpdateRestartPolicy: a connector's record, made or
//! its restart policy changed (both through the one mutating path).

use super::connector_api::ConnectorApi;
use super::convert;
use crate::auth::Permission;
use crate::proto::v1;
use crate::store::FleetStore;
use tonic::{Request, Response, Status};
use tracing::{Span, info};

impl<S: FleetStore> ConnectorApi<S> {
    pub(super) async fn create_connector_call(
        &self,
        request: Request<v1::CreateConnectorRequest>,
    ) -> Result<Response<v1::Connector>, Status> {
        self.mutating_call(
            request,
            Permission::ConnectorsCreate,
            |call, message| async move {
                let mut new = convert::new_connector(message)?;
                new.actor = call.actor;
                Span::current().record("connector_id", new.id.as_str());
                let connector = self.store.create_connector(new).await?;
                info!("connector created");
                Ok(self.view(connector))
            },
        )
        .await
    }

    pub(super) async fn update_restart_policy_call(
        &self,
        request: Request<v1::UpdateRestartPolicyRequest>,
    ) -> Result<Response<v1::Connector>, Status> {
        self.mutating_call(
            request,
            Permission::ConnectorsOperate,
            |call, message| async move {
                let mut update = convert::update_restart_policy(&message)?;
                update.actor = call.actor;
                let connector = self.store.update_restart_policy(&update).await?;
                info!(policy = %update.policy, "restart policy updated");
                Ok(self.view(connector))
            },
        )
        .await
    }
}
