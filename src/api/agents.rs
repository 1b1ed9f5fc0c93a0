//! AgentService: agents' sessions (handed to `crate::fleet`) and the agent
//! list for operators.

use super::convert;
use crate::auth::{self, Permission};
use crate::fleet::Fleet;
use crate::proto::v1::{self, agent_service_server::AgentService};
use crate::store::FleetStore;
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::instrument;

#[derive(Clone)]
pub struct AgentApi<S> {
    fleet: Arc<Fleet<S>>,
    store: S,
    /// Sessions are checked again against it at every reload.
    auth: crate::auth::Authenticator,
}

impl<S: FleetStore> AgentApi<S> {
    pub fn new(fleet: Arc<Fleet<S>>, store: S, auth: crate::auth::Authenticator) -> Self {
        Self { fleet, store, auth }
    }
}

#[tonic::async_trait]
impl<S: FleetStore> AgentService for AgentApi<S> {
    type ConnectStream = ReceiverStream<Result<v1::ControlMessage, Status>>;

    #[instrument(name = "Connect", skip_all)]
    async fn connect(
        &self,
        request: Request<Streaming<v1::AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let principal = auth::require(&request, Permission::AgentsConnect)?;
        let actor = super::caller::actor(&request);
        let stream = super::session::connect(
            self.fleet.clone(),
            request.into_inner(),
            principal,
            actor,
            self.auth.clone(),
        )
        .await?;
        Ok(Response::new(stream))
    }

    #[instrument(name = "ListAgents", skip_all)]
    async fn list_agents(
        &self,
        request: Request<v1::ListAgentsRequest>,
    ) -> Result<Response<v1::ListAgentsResponse>, Status> {
        auth::require(&request, Permission::AgentsRead)?;
        let region = convert::region_filter("ListAgents", &request.get_ref().region)?;
        let agents = self
            .store
            .list_agents(region.as_deref(), self.fleet.offline_after())
            .await?;
        Ok(Response::new(v1::ListAgentsResponse {
            agents: agents.into_iter().map(convert::agent_to_proto).collect(),
        }))
    }

    #[instrument(name = "ListReplicas", skip_all)]
    async fn list_replicas(
        &self,
        request: Request<v1::ListReplicasRequest>,
    ) -> Result<Response<v1::ListReplicasResponse>, Status> {
        auth::require(&request, Permission::AgentsRead)?;
        let replicas = self.store.list_replicas(self.fleet.replica_ttl()).await?;
        Ok(Response::new(v1::ListReplicasResponse {
            replicas: replicas
                .into_iter()
                .map(|mut replica| {
                    if replica.address.is_empty() {
                        // The embedded store's one process: this one.
                        replica.address = self.fleet.address().to_owned();
                    }
                    convert::replica_to_proto(replica)
                })
                .collect(),
        }))
    }
}
