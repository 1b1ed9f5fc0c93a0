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

#[tokio::test]
async fn the_demo_with_an_auth_file_runs_agents_that_connect_and_carry_out_commands() {
    let db = TestDatabase::create().await;
    let dir = TempDir::new();
    let auth = dir.0.join("auth.toml");
    std::fs::write(
        &auth,
        format!(
            "[[principal]]\nname = \"ada\"\nrole = \"admin\"\ntoken_sha256 = \"{}\"\n",
            connector_control::auth::token_sha256("ada-token")
        ),
    )
    .unwrap();
    let server = ServerProcess::spawn_with(
        &db.url,
        &[
            "--demo",
            "--heartbeat-interval",
            "1s",
            "--auth-file",
            auth.to_str().unwrap(),
        ],
    );
    let channel = channel_to(&server.addr).await;
    fn as_ada<T>(message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", "Bearer ada-token".parse().unwrap());
        request
    }
    // The demo's own agents are let in: four come online.
    let agents = AgentServiceClient::new(channel.clone());
    eventually(Duration::from_secs(20), || {
        let mut agents = agents.clone();
        async move {
            let list = agents
                .list_agents(as_ada(v1::ListAgentsRequest::default()))
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
    // And they carry out a pause.
    let mut request = as_ada(v1::PauseConnectorRequest {
        id: "payments-ap".to_owned(),
        reason: "demo with an auth file".to_owned(),
        wait: true,
        ..Default::default()
    });
    request.set_timeout(Duration::from_secs(20));
    let paused = ConnectorServiceClient::new(channel)
        .pause_connector(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        paused.connector.unwrap().state,
        v1::ConnectorState::Stopped as i32
    );
}

#[test]
fn the_demo_refuses_tls_its_agents_could_not_speak() {
    let dir = TempDir::new();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_connector-control"))
        .args([
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--console-listen",
            "off",
        ])
        .args(["--tls-cert", "cert.pem", "--tls-key", "key.pem"])
        .arg("--data-file")
        .arg(dir.0.join("demo.db"))
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--demo") && stderr.contains("--tls-cert"),
        "{stderr}"
    );
}
