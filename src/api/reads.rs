//! The reading RPCs of ConnectorService: GetConnector, ListConnectors (a
//! page of a search), ListCommands (a connector's history) and ListRegions.

use super::connector_api::ConnectorApi;
use super::{convert, history};
use crate::auth::{self, Permission};
use crate::domain::Cursor;
use crate::proto::v1;
use crate::store::FleetStore;
use tonic::{Request, Response, Status};

impl<S: FleetStore> ConnectorApi<S> {
    pub(super) async fn get_connector_call(
        &self,
        request: Request<v1::GetConnectorRequest>,
    ) -> Result<Response<v1::Connector>, Status> {
        auth::require(&request, Permission::ConnectorsRead)?;
        let id = &request.get_ref().id;
        convert::connector_id("GetConnector", id)?;
        let connector = self.store.get_connector(id).await?;
        Ok(Response::new(self.view(connector)))
    }

    pub(super) async fn list_connectors_call(
        &self,
        request: Request<v1::ListConnectorsRequest>,
    ) -> Result<Response<v1::ListConnectorsResponse>, Status> {
        auth::require(&request, Permission::ConnectorsRead)?;
        let query = convert::list_query(request.into_inner(), self.latency_alert)?;
        let after = match query.page_token.as_str() {
            "" => None,
            token => Some(self.tokens.decode(token, &query.filter)?),
        };
        let page = self
            .store
            .list_connectors(&query.filter, after.as_ref(), query.page_size)
            .await?;
        let next_page_token = match page.connectors.last() {
            Some(last) if page.more => self.tokens.encode(
                &query.filter,
                &Cursor {
                    name: last.name.clone(),
                    id: last.id.clone(),
                },
            ),
            _ => String::new(),
        };
        Ok(Response::new(v1::ListConnectorsResponse {
            connectors: page
                .connectors
                .into_iter()
                .map(|connector| self.view(connector))
                .collect(),
            next_page_token,
            total_size: i32::try_from(page.total).unwrap_or(i32::MAX),
        }))
    }

    pub(super) async fn list_commands_call(
        &self,
        request: Request<v1::ListCommandsRequest>,
    ) -> Result<Response<v1::ListCommandsResponse>, Status> {
        auth::require(&request, Permission::ConnectorsRead)?;
        let query = history::query(request.get_ref())?;
        let (commands, more) = self.store.list_commands(&query).await?;
        let next_page_token = match commands.last() {
            Some(last) if more => history::encode_token(&query.connector_id, last.generation),
            _ => String::new(),
        };
        Ok(Response::new(v1::ListCommandsResponse {
            commands: commands
                .into_iter()
                .map(convert::command_to_proto)
                .collect(),
            next_page_token,
        }))
    }

    pub(super) async fn list_regions_call(
        &self,
        request: Request<v1::ListRegionsRequest>,
    ) -> Result<Response<v1::ListRegionsResponse>, Status> {
        auth::require(&request, Permission::ConnectorsRead)?;
        let regions = self.store.list_regions(self.offline_after).await?;
        Ok(Response::new(v1::ListRegionsResponse {
            regions: regions.into_iter().map(convert::region_to_proto).collect(),
        }))
    }
}
