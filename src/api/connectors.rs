//! CreateConnector and UpdateRestartPolicy: a connector's record, made or
//! its restart policy changed (both through the one mutating path).

use super::connector_api::ConnectorApi;
use super::convert;
use super::error::ApiError;
use super::mutation::Call;
use crate::proto::v1;
use crate::store::FleetStore;
use tracing::{Span, info};

impl<S: FleetStore> ConnectorApi<S> {
    /// CreateConnector's work, inside `mutating_call`.
    pub(super) async fn create_connector_work(
        &self,
        call: Call,
        message: v1::CreateConnectorRequest,
    ) -> Result<v1::Connector, ApiError> {
        let mut new = convert::new_connector(message)?;
        new.actor = call.actor;
        Span::current().record("connector_id", new.id.as_str());
        let connector = self.store.create_connector(new).await?;
        info!("connector created");
        Ok(self.view(connector))
    }

    /// UpdateRestartPolicy's work, inside `mutating_call`.
    pub(super) async fn update_restart_policy_work(
        &self,
        call: Call,
        message: v1::UpdateRestartPolicyRequest,
    ) -> Result<v1::Connector, ApiError> {
        let mut update = convert::update_restart_policy(&message)?;
        update.actor = call.actor;
        let connector = self.store.update_restart_policy(&update).await?;
        info!(policy = %update.policy, "restart policy updated");
        Ok(self.view(connector))
    }
}
