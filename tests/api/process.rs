//! The server as a whole: restarts, the binary's start-up errors and
//! signals, health and reflection.

use crate::helpers::*;
use connector_control::proto::v1;
use std::process::Command;
use std::time::Duration;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client};

const BIN: &str = env!("CARGO_BIN_EXE_connector-control");

#[tokio::test]
async fn data_and_page_tokens_survive_a_server_restart() {
    let app = spawn_app().await;
    app.create(connector("a", "a")).await;
    app.create(connector("b", "b")).await;
    let started = app.start(start_request("a")).await.unwrap();
    let page = app
        .list(v1::ListConnectorsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap();

    let app = app.restart().await;

    assert_eq!(app.get("a").await, started.connector.unwrap());
    let next = app
        .list(v1::ListConnectorsRequest {
            page_size: 1,
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(next.connectors[0].id, "b");
    // The pending command is still there for agents to receive.
    assert_eq!(
        app.count("SELECT count(*) FROM commands WHERE status = 'PENDING'")
            .await,
        1
    );
}

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_api() {
    let app = spawn_app().await;
    let mut health = health_client::HealthClient::new(app.channel().await);
    for service in ["", "connector.v1.ConnectorService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }
}

#[tokio::test]
async fn a_draining_replica_reports_not_serving_to_health_watchers() {
    let app = spawn_app().await;
    let mut health = health_client::HealthClient::new(app.channel().await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "connector.v1.ConnectorService".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);

    app.begin_shutdown();
    let next = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("a health update within 10 s")
        .unwrap()
        .expect("the watch stays open while draining");
    assert_eq!(next.status, ServingStatus::NotServing as i32);
}

#[tokio::test]
async fn reflection_lists_the_api_in_both_protocol_versions() {
    use tonic_reflection::pb::{v1 as r1, v1alpha as r1a};
    let app = spawn_app().await;

    let request = r1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(r1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut client = r1::server_reflection_client::ServerReflectionClient::new(app.channel().await);
    let mut responses = client
        .server_reflection_info(tokio_stream_once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(r1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"connector.v1.ConnectorService"),
        "{names:?}"
    );
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    // grpcurl 1.8 speaks v1alpha only; it must also resolve error details.
    let request = r1a::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            r1a::server_reflection_request::MessageRequest::FileContainingSymbol(
                "google.rpc.ErrorInfo".to_owned(),
            ),
        ),
    };
    let mut client =
        r1a::server_reflection_client::ServerReflectionClient::new(app.channel().await);
    let mut responses = client
        .server_reflection_info(tokio_stream_once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    assert!(
        matches!(
            response.message_response,
            Some(r1a::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
        ),
        "{response:?}"
    );
}

/// A request stream of one message that stays open, as grpcurl's does.
fn tokio_stream_once<T: Send + 'static>(item: T) -> impl futures::Stream<Item = T> + Send {
    futures::stream::once(async { item }).chain(futures::stream::pending())
}

use futures::StreamExt as _;

fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env("CONNECTOR_CONTROL_CONSOLE_LISTEN", "127.0.0.1:0");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("running the binary")
}

#[test]
fn serve_with_an_unreachable_database_fails_with_one_line_naming_the_url() {
    // Port 1 on loopback: nothing listens there.
    let output = run(
        &["serve", "--listen", "127.0.0.1:0"],
        &[("DATABASE_URL", "postgres://app:s3cret@127.0.0.1:1/cc")],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let error_lines: Vec<_> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 1, "{stderr}");
    assert!(
        error_lines[0].contains("cannot connect to database postgres://app:***@127.0.0.1:1/cc"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_unparsable_database_url_is_not_echoed() {
    let output = run(
        &["migrate"],
        &[("DATABASE_URL", "postgres://app:pa ss@host:notaport/cc")],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid database URL"), "{stderr}");
    assert!(!stderr.contains("pa ss"), "{stderr}");
}

#[test]
fn serve_without_a_database_url_uses_the_embedded_store_and_refuses_a_second_server() {
    let dir = std::env::temp_dir().join(format!("cc-embedded-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut first = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("DATABASE_URL")
        .env("CONNECTOR_CONTROL_CONSOLE_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .current_dir(&dir)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = first.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let store_line = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.contains("using the embedded store"))
        .expect("the store in use is logged");
    assert!(store_line.contains("connector-control.db"), "{store_line}");
    assert!(
        lines
            .map_while(Result::ok)
            .any(|line| line.contains("serving gRPC")),
        "the first server serves"
    );

    let second = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("DATABASE_URL")
        .env("CONNECTOR_CONTROL_CONSOLE_LISTEN", "127.0.0.1:0")
        .current_dir(&dir)
        .output()
        .unwrap();
    let _ = first.kill();
    let _ = first.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("connector-control.db is in use by another connector-control process"),
        "{stderr}"
    );
}

#[test]
fn a_second_server_reaching_the_embedded_file_through_a_link_is_refused() {
    let dir = TempDir::new();
    let first = ServerProcess::spawn_embedded(&dir.0, &["--data-file", "store.db"]);
    std::fs::hard_link(dir.0.join("store.db"), dir.0.join("hard.db")).unwrap();
    std::os::unix::fs::symlink(dir.0.join("store.db"), dir.0.join("soft.db")).unwrap();
    std::fs::create_dir(dir.0.join("elsewhere")).unwrap();
    std::fs::hard_link(dir.0.join("store.db"), dir.0.join("elsewhere/store.db")).unwrap();
    for link in ["hard.db", "soft.db", "elsewhere/store.db"] {
        let second = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-file", link])
            .env_remove("DATABASE_URL")
            .env("CONNECTOR_CONTROL_CONSOLE_LISTEN", "127.0.0.1:0")
            .current_dir(&dir.0)
            .output()
            .unwrap();
        assert_eq!(second.status.code(), Some(1), "{link}: {second:?}");
        let stderr = String::from_utf8_lossy(&second.stderr);
        assert!(
            stderr.contains("is in use by another connector-control process"),
            "{link}: {stderr}"
        );
    }
    // Nothing was opened beside the original: no second WAL.
    assert!(!dir.0.join("hard.db-wal").exists());
    assert!(!dir.0.join("elsewhere/store.db-wal").exists());
    drop(first);
}

#[tokio::test]
async fn serve_with_a_missing_database_names_it() {
    let url = with_database(&base_url(), "cc_test_does_not_exist");
    let output = run(&["migrate"], &[("DATABASE_URL", &url)]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("database \"cc_test_does_not_exist\" does not exist"),
        "{stderr}"
    );
}

#[tokio::test]
async fn migrate_applies_the_migrations_and_exits() {
    let db = TestDatabase::create().await;
    let output = run(&["migrate"], &[("DATABASE_URL", &db.url)]);
    assert!(output.status.success(), "{output:?}");
    let client = db.client().await;
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables
             WHERE table_name IN ('connectors', 'commands', 'server_keys')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 3);
    // Running it again is a no-op.
    assert!(
        run(&["migrate"], &[("DATABASE_URL", &db.url)])
            .status
            .success()
    );
}

#[tokio::test]
async fn serve_finishes_calls_and_exits_cleanly_on_sigterm() {
    serve_exits_cleanly_on("TERM", "received SIGTERM").await;
}

#[tokio::test]
async fn serve_exits_cleanly_on_sigint() {
    serve_exits_cleanly_on("INT", "received SIGINT").await;
}

async fn serve_exits_cleanly_on(signal: &str, logged: &str) {
    let db = TestDatabase::create().await;
    let mut server = ServerProcess::spawn(&db.url);
    let mut client =
        v1::connector_service_client::ConnectorServiceClient::new(channel_to(&server.addr).await);
    client
        .create_connector(v1::CreateConnectorRequest {
            connector: Some(connector("c1", "c1")),
        })
        .await
        .unwrap();

    let kill = Command::new("kill")
        .args([&format!("-{signal}"), &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    server.wait_for_log(logged);
    let status = eventually(Duration::from_secs(30), || {
        let status = server.child.try_wait().unwrap();
        async move { status }
    })
    .await;
    assert!(status.success(), "exit status {status:?}");
    server.wait_for_log("stopped");
}

#[tokio::test]
async fn a_database_outage_is_unavailable_and_turns_health_to_not_serving() {
    let app = spawn_app().await;
    app.create(connector("c1", "c1")).await;
    let name = &app.db.name;
    app.db.refuse_connections().await;

    let status = assert_error(
        app.start(start_request("c1")).await,
        tonic::Code::Unavailable,
        "STORE_UNAVAILABLE",
    );
    assert!(status.message().contains("retry"), "{}", status.message());
    assert!(
        !status.message().contains(name.as_str()),
        "no internals leak"
    );

    let health = health_client::HealthClient::new(app.channel().await);
    health_becomes(&health, ServingStatus::NotServing).await;
    // A liveness probe (Kubernetes') still passes: restarting the replica
    // would not bring the database back.
    let liveness = health
        .clone()
        .check(HealthCheckRequest {
            service: "liveness".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(liveness, ServingStatus::Serving as i32);

    app.db.allow_connections().await;
    health_becomes(&health, ServingStatus::Serving).await;
    // Nothing was half-written by the failed start.
    assert_eq!(app.get("c1").await.generation, 0);
}

#[tokio::test]
async fn a_command_survives_a_killed_server_and_reaches_the_agent_after_restart() {
    let db = TestDatabase::create().await;
    let mut first = ServerProcess::spawn(&db.url);
    let mut client =
        v1::connector_service_client::ConnectorServiceClient::new(channel_to(&first.addr).await);
    client
        .create_connector(v1::CreateConnectorRequest {
            connector: Some(connector("c1", "c1")),
        })
        .await
        .unwrap();
    let accepted = client
        .start_connector(start_request("c1"))
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap();
    // SIGKILL: no graceful anything.
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let second = ServerProcess::spawn(&db.url);
    let mut agent = TestAgent::connect_to(
        channel_to(&second.addr).await,
        hello("a1", "eu-2", "10.0.2.7"),
    )
    .await;
    let delivered = agent.next_command().await;
    assert_eq!(delivered.id, accepted.id);
}

#[tokio::test]
async fn the_embedded_store_keeps_its_data_through_a_kill_9() {
    let dir = TempDir::new();
    let mut first = ServerProcess::spawn_embedded(&dir.0, &[]);
    let mut client =
        v1::connector_service_client::ConnectorServiceClient::new(channel_to(&first.addr).await);
    client
        .create_connector(v1::CreateConnectorRequest {
            connector: Some(connector("c1", "c1")),
        })
        .await
        .unwrap();
    let accepted = client
        .start_connector(start_request("c1"))
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap();
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();

    let second = ServerProcess::spawn_embedded(&dir.0, &[]);
    let connector =
        v1::connector_service_client::ConnectorServiceClient::new(channel_to(&second.addr).await)
            .get_connector(v1::GetConnectorRequest {
                id: "c1".to_owned(),
            })
            .await
            .unwrap()
            .into_inner();
    assert_eq!(connector.state, v1::ConnectorState::Starting as i32);
    let mut agent = TestAgent::connect_to(
        channel_to(&second.addr).await,
        hello("a1", "eu-2", "10.0.2.7"),
    )
    .await;
    assert_eq!(agent.next_command().await.id, accepted.id);
}

#[tokio::test]
async fn a_kill_9_during_a_burst_of_starts_loses_no_accepted_command() {
    let dir = TempDir::new();
    let mut first = ServerProcess::spawn_embedded(&dir.0, &[]);
    let client =
        v1::connector_service_client::ConnectorServiceClient::new(channel_to(&first.addr).await);
    const CONNECTORS: usize = 200;
    for i in 0..CONNECTORS {
        client
            .clone()
            .create_connector(v1::CreateConnectorRequest {
                connector: Some(connector(&format!("c{i}"), "burst")),
            })
            .await
            .unwrap();
    }
    // Eight callers start connectors as fast as they are answered; the
    // process is killed while they do.
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut callers = Vec::new();
    for caller in 0..8 {
        let (client, accepted) = (client.clone(), accepted.clone());
        callers.push(tokio::spawn(async move {
            for i in (caller..CONNECTORS).step_by(8) {
                let mut client = client.clone();
                match client
                    .start_connector(start_request(&format!("c{i}")))
                    .await
                {
                    Ok(response) => accepted
                        .lock()
                        .unwrap()
                        .push(response.into_inner().command.unwrap().id),
                    Err(_) => return,
                }
            }
        }));
    }
    eventually(Duration::from_secs(30), || {
        let count = accepted.lock().unwrap().len();
        async move { (count >= 40).then_some(()) }
    })
    .await;
    first.child.kill().unwrap(); // SIGKILL, mid-burst
    first.child.wait().unwrap();
    for caller in callers {
        caller.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() < CONNECTORS,
        "the kill landed after the burst ({} accepted)",
        accepted.len()
    );

    // The file reopens cleanly, and every accepted command is there.
    let second = ServerProcess::spawn_embedded(&dir.0, &[]);
    let integrity: String = rusqlite::Connection::open(dir.0.join("connector-control.db"))
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let db = rusqlite::Connection::open(dir.0.join("connector-control.db")).unwrap();
    for id in &accepted {
        let status: String = db
            .query_row("SELECT status FROM commands WHERE id = ?1", [id], |row| {
                row.get(0)
            })
            .unwrap_or_else(|e| panic!("accepted command {id} is lost: {e}"));
        assert_eq!(status, "PENDING");
    }
    let mut client =
        v1::connector_service_client::ConnectorServiceClient::new(channel_to(&second.addr).await);
    let starting = client
        .list_connectors(v1::ListConnectorsRequest {
            states: vec![v1::ConnectorState::Starting as i32],
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(starting.connectors.len() >= accepted.len());
}
