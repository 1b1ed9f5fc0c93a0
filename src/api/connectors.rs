//! CreateConnector and UpdateRestartPolicy: a connector's record, made or
//! its restart policy changed (both through the one mutating path).

use super::connector_api::ConnectorApi;
use super::convert;
use super::refusals::Refusal;
use crate::auth::Permission;
use crate::domain::AuditAction;
use crate::proto::v1;
use crate::store::FleetStore;
use tonic::{Request, Response, Status};
use tracing::{Span, info};

impl<S: FleetStore> ConnectorApi<S> {
    pub(super) async fn create_connector_call(
        &self,
        request: Request<v1::CreateConnectorRequest>,
    ) -> Result<Response<v1::Connector>, Status> {
        let id = request
            .get_ref()
            .connector
            .as_ref()
            .map(|c| c.id.clone())
            .unwrap_or_default();
        let audit = Refusal::new(&request, AuditAction::CreateConnector, &id, "");
        self.mutating_call(
            request,
            Permission::ConnectorsCreate,
            audit,
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
        let message = request.get_ref();
        let audit = Refusal::new(
            &request,
            AuditAction::UpdateRestartPolicy,
            &message.id,
            &message.request_id,
        );
        self.mutating_call(
            request,
            Permission::ConnectorsOperate,
            audit,
            |call, message| async move {
                let policy = convert::update_restart_policy(&message)?;
                let request_id = (!message.request_id.is_empty()).then_some(&*message.request_id);
                let connector = self
                    .store
                    .update_restart_policy(&message.id, &policy, &call.actor, request_id)
                    .await?;
                info!(%policy, "restart policy updated");
                Ok(self.view(connector))
            },
        )
        .await
    }
}
