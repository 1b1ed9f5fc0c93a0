//! The control plane past one database server: a server that stops taking
//! writes under it, and multi-host URLs that find the writable one. The
//! failover of a real Patroni cluster is in `patroni.rs`.

use crate::helpers::*;
use connector_control::proto::v1;
use std::time::Duration;
use tonic_health::pb::{health_check_response::ServingStatus, health_client};
use tonic_types::StatusExt;

#[tokio::test]
async fn a_server_that_stops_taking_writes_is_unavailable_and_its_connections_are_replaced() {
    let app = spawn_app().await;
    app.create(connector("c1", "c1")).await;
    let admin = TestDatabase::admin().await;
    let name = &app.db.name;
    // What a demoted primary looks like to the connections it keeps: every
    // transaction read-only. New sessions of this database start so; the
    // pool's connections are ended so that they come back so.
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} SET default_transaction_read_only = on"
        ))
        .await
        .unwrap();
    app.db.end_sessions().await;

    let status = eventually(Duration::from_secs(20), || async {
        app.start(start_request("c1")).await.err()
    })
    .await;
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(
        error_info(&status).reason,
        "STORE_UNAVAILABLE",
        "{status:?}"
    );
    assert!(
        status.get_details_retry_info().is_some(),
        "a retry delay: {status:?}"
    );
    let health = health_client::HealthClient::new(app.channel().await);
    health_becomes(&health, ServingStatus::NotServing).await;
    assert_eq!(app.get("c1").await.generation, 0, "nothing was written");

    // The server takes writes again, but the sessions already open keep
    // their read-only default: only new connections see the change, so the
    // control plane recovers only if it replaced the ones that failed.
    admin
        .execute(
            &format!("ALTER DATABASE {name} RESET default_transaction_read_only"),
            &[],
        )
        .await
        .unwrap();
    health_becomes(&health, ServingStatus::Serving).await;
    let started = eventually(Duration::from_secs(20), || async {
        app.start(start_request("c1")).await.ok()
    })
    .await;
    assert_eq!(started.connector.unwrap().generation, 1);
}

#[tokio::test]
async fn a_multi_host_url_reaches_the_writable_server_past_one_that_is_down() {
    let db = TestDatabase::create().await;
    // A port nothing listens on: the first host is down.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down_port = down.local_addr().unwrap().port();
    drop(down);
    let url = multi_host(&db.url, &format!("127.0.0.1:{down_port}"));
    let mut server = ServerProcess::spawn(&url);
    let logged = server.wait_for_log("database ready");
    assert!(
        logged.contains(&format!("127.0.0.1:{down_port},127.0.0.1:")),
        "the log names every host: {logged}"
    );
    let mut client =
        v1::connector_service_client::ConnectorServiceClient::new(channel_to(&server.addr).await);
    client
        .create_connector(v1::CreateConnectorRequest {
            connector: Some(connector("c1", "c1")),
        })
        .await
        .unwrap();
    let started = client
        .start_connector(start_request("c1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.connector.unwrap().generation, 1);
}

#[tokio::test]
async fn a_multi_host_url_with_no_writable_server_fails_start_up_naming_the_hosts() {
    let db = TestDatabase::create().await;
    let admin = TestDatabase::admin().await;
    admin
        .execute(
            &format!(
                "ALTER DATABASE {} SET default_transaction_read_only = on",
                db.name
            ),
            &[],
        )
        .await
        .unwrap();
    let url = multi_host(&db.url, "localhost:5432");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_connector-control"))
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("localhost:5432,127.0.0.1:5432"),
        "names the hosts: {stderr}"
    );
    assert!(
        stderr.contains("does not allow writes"),
        "says why: {stderr}"
    );
}

/// `url` (one host) with `first` before its host and
/// `target_session_attrs=read-write`.
fn multi_host(url: &str, first: &str) -> String {
    let authority = url
        .find('@')
        .map_or(url.find("://").unwrap() + 3, |at| at + 1);
    let separator = if url.contains('?') { '&' } else { '?' };
    format!(
        "{}{first},{}{separator}target_session_attrs=read-write",
        &url[..authority],
        &url[authority..]
    )
}
