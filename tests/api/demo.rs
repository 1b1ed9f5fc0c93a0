//! `serve --demo`: a seeded fleet and in-process agents, as a new user sees it.

use crate::helpers::*;
use connector_control::proto::v1::{
    self, agent_service_client::AgentServiceClient,
    connector_service_client::ConnectorServiceClient,
};
use std::time::Duration;

#[tokio::test]
async fn the_demo_on_the_embedded_store_needs_nothing_else() {
    let dir = TempDir::new();
    let mut server =
        ServerProcess::spawn_embedded(&dir.0, &["--demo", "--heartbeat-interval", "1s"]);
    server.wait_for_log("using the embedded store");
    demo_tour(&server).await;
}

#[tokio::test]
async fn the_demo_seeds_a_fleet_runs_agents_and_confirms_a_start_through_wait() {
    let db = TestDatabase::create().await;
    let mut server = ServerProcess::spawn_with(&db.url, &["--demo", "--heartbeat-interval", "1s"]);
    demo_tour(&server).await;

    // A restart does not seed again.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    server.wait_for_log("demo fleet seeded");
    let mut again = ServerProcess::spawn_with(&db.url, &["--demo"]);
    again.wait_for_log("store not empty; demo fleet not seeded");
    let page = ConnectorServiceClient::new(channel_to(&again.addr).await)
        .list_connectors(v1::ListConnectorsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.total_size, 12);
}

/// Seeded, agents online, a start confirmed through `wait`.
async fn demo_tour(server: &ServerProcess) {
    let channel = channel_to(&server.addr).await;
    let mut connectors = ConnectorServiceClient::new(channel.clone());
    let agents = AgentServiceClient::new(channel);

    let page = connectors
        .list_connectors(v1::ListConnectorsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.total_size, 12);
    let regions: std::collections::BTreeSet<_> =
        page.connectors.iter().map(|c| c.region.as_str()).collect();
    assert_eq!(
        regions.into_iter().collect::<Vec<_>>(),
        ["ap-1", "eu-1", "us-1"]
    );

    // Four agents come online; the started connectors run.
    eventually(Duration::from_secs(20), || {
        let mut agents = agents.clone();
        async move {
            let list = agents
                .list_agents(v1::ListAgentsRequest::default())
                .await
                .unwrap()
                .into_inner();
            let online = list
                .agents
                .iter()
                .filter(|a| a.state == v1::AgentState::Online as i32)
                .count();
            (online == 4).then_some(())
        }
    })
    .await;

    let mut request = tonic::Request::new(v1::StartConnectorRequest {
        id: "inventory-eu".to_owned(),
        wait: true,
        ..Default::default()
    });
    request.set_timeout(Duration::from_secs(20));
    let started = connectors
        .start_connector(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        started.connector.unwrap().state,
        v1::ConnectorState::Running as i32
    );
}
