//! The ConnectorService as tonic serves it: each RPC's trace span, the
//! permission of each call that changes something, and the body it runs (in the file of its topic: `reads`, `commands`, `batch`,
//! `connectors`, `mark_stopped`, `watch_connectors`).

use super::connector_api::ConnectorApi;
use super::watch_connectors::WatchConnectorsStream;
use crate::auth::Permission;
use crate::proto::v1::{self, connector_service_server::ConnectorService};
use crate::store::FleetStore;
use tonic::{Request, Response, Status};
use tracing::instrument;

#[tonic::async_trait]
impl<S: FleetStore> ConnectorService for ConnectorApi<S> {
    type WatchConnectorsStream = WatchConnectorsStream;

    #[instrument(name = "WatchConnectors", skip_all)]
    async fn watch_connectors(
        &self,
        request: Request<v1::WatchConnectorsRequest>,
    ) -> Result<Response<Self::WatchConnectorsStream>, Status> {
        self.watch_call(request).await
    }

    #[instrument(name = "ListRegions", skip_all)]
    async fn list_regions(
        &self,
        request: Request<v1::ListRegionsRequest>,
    ) -> Result<Response<v1::ListRegionsResponse>, Status> {
        self.list_regions_call(request).await
    }

    #[instrument(name = "CreateConnector", skip_all, fields(connector_id, outcome))]
    async fn create_connector(
        &self,
        request: Request<v1::CreateConnectorRequest>,
    ) -> Result<Response<v1::Connector>, Status> {
        self.mutating_call(request, Permission::ConnectorsCreate, |call, message| {
            self.create_connector_work(call, message)
        })
        .await
    }

    #[instrument(
        name = "UpdateRestartPolicy",
        skip_all,
        fields(connector_id = %request.get_ref().id, outcome)
    )]
    async fn update_restart_policy(
        &self,
        request: Request<v1::UpdateRestartPolicyRequest>,
    ) -> Result<Response<v1::Connector>, Status> {
        self.mutating_call(request, Permission::ConnectorsOperate, |call, message| {
            self.update_restart_policy_work(call, message)
        })
        .await
    }

    #[instrument(
        name = "MarkConnectorStopped",
        skip_all,
        fields(connector_id = %request.get_ref().id, outcome)
    )]
    async fn mark_connector_stopped(
        &self,
        request: Request<v1::MarkConnectorStoppedRequest>,
    ) -> Result<Response<v1::MarkConnectorStoppedResponse>, Status> {
        self.mutating_call(request, Permission::ConnectorsOperate, |call, message| {
            self.mark_stopped_work(call, message)
        })
        .await
    }

    #[instrument(name = "GetConnector", skip_all, fields(connector_id = %request.get_ref().id))]
    async fn get_connector(
        &self,
        request: Request<v1::GetConnectorRequest>,
    ) -> Result<Response<v1::Connector>, Status> {
        self.get_connector_call(request).await
    }

    #[instrument(
        name = "BatchPauseConnectors",
        skip_all,
        fields(request_id = %request.get_ref().request_id, outcome)
    )]
    async fn batch_pause_connectors(
        &self,
        request: Request<v1::BatchPauseConnectorsRequest>,
    ) -> Result<Response<v1::BatchConnectorsResponse>, Status> {
        self.batch_call(request).await
    }

    #[instrument(
        name = "BatchStartConnectors",
        skip_all,
        fields(request_id = %request.get_ref().request_id, outcome)
    )]
    async fn batch_start_connectors(
        &self,
        request: Request<v1::BatchStartConnectorsRequest>,
    ) -> Result<Response<v1::BatchConnectorsResponse>, Status> {
        self.batch_call(request).await
    }

    #[instrument(name = "ListCommands", skip_all, fields(connector_id = %request.get_ref().connector_id))]
    async fn list_commands(
        &self,
        request: Request<v1::ListCommandsRequest>,
    ) -> Result<Response<v1::ListCommandsResponse>, Status> {
        self.list_commands_call(request).await
    }

    #[instrument(name = "ListConnectors", skip_all)]
    async fn list_connectors(
        &self,
        request: Request<v1::ListConnectorsRequest>,
    ) -> Result<Response<v1::ListConnectorsResponse>, Status> {
        self.list_connectors_call(request).await
    }

    #[instrument(
        name = "StartConnector",
        skip_all,
        fields(connector_id = %request.get_ref().id, request_id = %request.get_ref().request_id, command_id, outcome)
    )]
    async fn start_connector(
        &self,
        request: Request<v1::StartConnectorRequest>,
    ) -> Result<Response<v1::StartConnectorResponse>, Status> {
        self.command_call(request, |connector, command, validate_only| {
            v1::StartConnectorResponse {
                connector,
                command,
                validate_only,
            }
        })
        .await
    }

    #[instrument(
        name = "PauseConnector",
        skip_all,
        fields(connector_id = %request.get_ref().id, request_id = %request.get_ref().request_id, command_id, outcome)
    )]
    async fn pause_connector(
        &self,
        request: Request<v1::PauseConnectorRequest>,
    ) -> Result<Response<v1::PauseConnectorResponse>, Status> {
        self.command_call(request, |connector, command, validate_only| {
            v1::PauseConnectorResponse {
                connector,
                command,
                validate_only,
            }
        })
        .await
    }
}
