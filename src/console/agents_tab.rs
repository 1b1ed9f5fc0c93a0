//! The Agents tab (GET /agents): agents by region, and the control-plane
//! replicas.

use super::access::Viewer;
use super::caller::Caller;
use super::failure::{ShownFailure, failure_box};
use super::format::{shown, time_cell};
use super::layout::{Tab, layout};
use super::params::query;
use super::state::Shared;
use crate::proto::{short_name, v1, v1::agent_service_server::AgentService};
use crate::store::FleetStore;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

/// GET /agents: agents by region, and the control-plane replicas.
pub async fn page<S: FleetStore>(State(c): Shared<S>, Viewer(caller): Viewer) -> Response {
    let agents =
        AgentService::list_agents(&c.agents, caller.request(v1::ListAgentsRequest::default()))
            .await
            .map(|r| r.into_inner().agents)
            .map_err(ShownFailure::from);
    let replicas =
        AgentService::list_replicas(&c.agents, caller.request(v1::ListReplicasRequest {}))
            .await
            .map(|r| r.into_inner().replicas)
            .map_err(ShownFailure::from);
    caller.page(StatusCode::OK, markup(&caller, agents, replicas))
}

fn markup(
    caller: &Caller,
    agents: Result<Vec<v1::Agent>, ShownFailure>,
    replicas: Result<Vec<v1::Replica>, ShownFailure>,
) -> Markup {
    let body = html! {
        h1 { "Agents" }
        @match &agents {
            Err(failure) => { (failure_box(failure)) }
            Ok(agents) if agents.is_empty() => { p.muted { "No agent has connected yet." } }
            Ok(agents) => {
                @let regions = {
                    let mut regions: Vec<&str> = agents.iter().map(|a| a.region.as_str()).collect();
                    regions.dedup();
                    regions
                };
                @for region in &regions {
                    @let members: Vec<&v1::Agent> = agents.iter().filter(|a| a.region == *region).collect();
                    @let online = members.iter().filter(|a| a.state == v1::AgentState::Online as i32).count();
                    section.region {
                        h2 { "Region " (region) " " span.muted { (online) " of " (members.len()) " online" } }
                        div.table-wrap { table {
                            thead { tr { th scope="col" { "Agent" } th scope="col" { "State" } th scope="col" { "Server IP" } th scope="col" { "Connectors" } th scope="col" { "Last heartbeat" } th scope="col" { "Version" } th scope="col" { "Replica" } } }
                            tbody {
                                @for agent in members {
                                    @let state = short_name::<v1::AgentState>(agent.state);
                                    tr data-agent=(agent.id) {
                                        td.mono { (agent.id) }
                                        td { span class={ "state state-" (state.to_ascii_lowercase()) } { (state) } }
                                        td.mono { (agent.server_ip) }
                                        td { a href={ "/?" (query(&[("q", agent.server_ip.as_str())])) } { (agent.connectors) } }
                                        td { (time_cell(agent.last_heartbeat_time.as_ref())) }
                                        td { (shown(&agent.version)) }
                                        td.mono { (agent.replica_id) }
                                    }
                                }
                            }
                        } }
                    }
                }
            }
        }
        h2 { "Control-plane replicas" }
        @match &replicas {
            Err(failure) => { (failure_box(failure)) }
            Ok(replicas) => {
                div.table-wrap { table {
                    thead { tr { th scope="col" { "Replica" } th scope="col" { "Address" } th scope="col" { "State" } th scope="col" { "Leader" } th scope="col" { "Agents" } th scope="col" { "Started" } th scope="col" { "Heartbeat" } } }
                    tbody {
                        @for replica in replicas {
                            tr {
                                td.mono { (replica.id) }
                                td.mono { (replica.address) }
                                td { (short_name::<v1::ReplicaState>(replica.state)) }
                                td { @if replica.leader { "leader (term " (replica.leader_term) ")" } }
                                td { (replica.agents) }
                                td { (time_cell(replica.start_time.as_ref())) }
                                td { (time_cell(replica.heartbeat_time.as_ref())) }
                            }
                        }
                    }
                } }
            }
        }
    };
    layout(caller, "Agents", Tab::Agents, body)
}
