//! `--driver postgres` on real PostgreSQL logical replication: a cluster of
//! the test's own (`wal_level = logical`), a source and a destination
//! database, a publication and a subscription per connector, the control
//! plane and the agent with this driver. Rows really stop and flow again.

use crate::helpers::*;
use connector_control::agent::postgres::{Subscriptions, spec};
use connector_control::agent::{self, Driver};
use connector_control::proto::v1::{self, ConnectorState as S};
use std::time::Duration;

/// The agent with the postgres driver (in eu-2), in this process, until
/// dropped.
async fn run_agent(app: &TestApp, file: &str) -> tokio::sync::oneshot::Sender<()> {
    run_agent_at(app.addr, file).await
}

async fn run_agent_at(addr: std::net::SocketAddr, file: &str) -> tokio::sync::oneshot::Sender<()> {
    let driver = Subscriptions::new(spec::parse(file).unwrap(), Duration::from_millis(200)).await;
    assert_eq!(driver.name(), "postgres");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(agent::run(agent_config(addr, "pg-1"), driver, async {
        let _ = stopped.await;
    }));
    stop
}

async fn call_and_wait(app: &TestApp, start: bool, id: &str) -> v1::Connector {
    let mut client = app.client.clone();
    let connector = if start {
        let mut request = tonic::Request::new(v1::StartConnectorRequest {
            wait: true,
            ..start_request(id)
        });
        request.set_timeout(Duration::from_secs(30));
        client
            .start_connector(request)
            .await
            .unwrap()
            .into_inner()
            .connector
    } else {
        let mut request = tonic::Request::new(v1::PauseConnectorRequest {
            wait: true,
            ..pause_request(id)
        });
        request.set_timeout(Duration::from_secs(30));
        client
            .pause_connector(request)
            .await
            .unwrap()
            .into_inner()
            .connector
    };
    connector.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_stop_at_a_pause_and_all_arrive_once_after_the_start() {
    let replication = Replication::new().await;
    replication.subscribe("c1_sub").await;
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    let _agent = run_agent(&app, &replication.connectors_file(&[("c1", "c1_sub")])).await;

    let running = call_and_wait(&app, true, "c1").await;
    assert_eq!(
        running.state,
        S::Running as i32,
        "{}",
        running.status_message
    );
    replication.insert("c1_sub", 1..=10).await;
    replication.arrives("c1_sub", 1..=10).await;

    let paused = call_and_wait(&app, false, "c1").await;
    assert_eq!(paused.state, S::Stopped as i32);
    replication.insert("c1_sub", 11..=20).await;
    // Paused, it falls behind: its latency grows while no new row arrives.
    let behind = app
        .connector_becomes("c1", |c| c.latency.is_some_and(|l| l.seconds >= 1))
        .await;
    assert_eq!(behind.state, S::Stopped as i32);
    assert_eq!(
        replication.arrived("c1_sub").await,
        (1..=10).collect::<Vec<_>>()
    );

    let again = call_and_wait(&app, true, "c1").await;
    assert_eq!(again.state, S::Running as i32);
    // Every row, exactly once (the primary key would refuse a second).
    replication.arrives("c1_sub", 1..=20).await;
    // Caught up: the latency falls back.
    app.connector_becomes("c1", |c| c.latency.is_some_and(|l| l.seconds == 0))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_row_fails_the_connector_and_once_removed_the_automatic_start_heals_it() {
    let replication = Replication::new().await;
    replication.subscribe("c1_sub").await;
    let app = spawn_app().await;
    app.create(v1::Connector {
        restart_policy: Some(v1::RestartPolicy {
            initial_backoff: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            max_backoff: Some(prost_types::Duration {
                seconds: 2,
                nanos: 0,
            }),
            ..Default::default()
        }),
        ..connector("c1", "orders")
    })
    .await;
    let _agent = run_agent(&app, &replication.connectors_file(&[("c1", "c1_sub")])).await;
    call_and_wait(&app, true, "c1").await;
    replication.insert("c1_sub", 1..=3).await;
    replication.arrives("c1_sub", 1..=3).await;

    // Row 5 is already at the destination: applying the source's fails.
    replication
        .at_destination("INSERT INTO c1_sub_t VALUES (5, 'in the way')")
        .await;
    replication.insert("c1_sub", 4..=6).await;
    let failed = app
        .connector_becomes("c1", |c| {
            c.state == S::Failed as i32 && c.status_message.contains("disabled")
        })
        .await;
    assert!(
        failed.status_message.contains("c1_sub"),
        "{}",
        failed.status_message
    );

    // Fixed at the destination: the restart policy's next start holds.
    replication
        .at_destination("DELETE FROM c1_sub_t WHERE id = 5")
        .await;
    let healed = app
        .connector_becomes("c1", |c| {
            c.state == S::Running as i32 && c.restart_count > 0
        })
        .await;
    assert_eq!(healed.desired_state, S::Running as i32);
    replication.arrives("c1_sub", 1..=6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_back_is_refused_at_the_call_and_a_missing_subscription_fails_for_good() {
    let replication = Replication::new().await;
    replication.subscribe("c1_sub").await;
    let app = spawn_app().await;
    app.create(connector("c1", "orders")).await;
    app.create(connector("c2", "payments")).await;
    let file = replication.connectors_file(&[("c1", "c1_sub"), ("c2", "no_such_sub")]);
    let _agent = run_agent(&app, &file).await;

    // The agent serves its other connectors when one fails for good.
    let c2 = call_and_wait(&app, true, "c2").await;
    assert_eq!(c2.state, S::Stopped as i32, "failed for good");
    assert!(
        c2.status_message.contains("no_such_sub") && c2.status_message.contains("does not exist"),
        "{}",
        c2.status_message
    );

    // Its hello said it cannot pull back: refused at the call.
    let status = assert_error(
        app.start(v1::StartConnectorRequest {
            pull_back_time: Some(timestamp(chrono::Utc::now() - chrono::Duration::minutes(5))),
            ..start_request("c1")
        })
        .await,
        tonic::Code::FailedPrecondition,
        "PULL_BACK_NOT_SUPPORTED",
    );
    assert!(
        status.message().contains("driver (postgres)"),
        "{}",
        status.message()
    );

    let c1 = call_and_wait(&app, true, "c1").await;
    assert_eq!(c1.state, S::Running as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_9_the_agent_comes_back_to_what_postgresql_runs_and_nothing_is_lost() {
    let replication = Replication::new().await;
    replication.subscribe("c1_sub").await;
    replication.subscribe("c2_sub").await;
    let app = spawn_app().await;
    // c1 is not restarted automatically: its failure stays to be seen.
    app.create(v1::Connector {
        restart_policy: Some(v1::RestartPolicy {
            mode: v1::RestartMode::Never as i32,
            ..Default::default()
        }),
        ..connector("c1", "orders")
    })
    .await;
    app.create(connector("c2", "payments")).await;
    let dir = TempDir::new();
    let file = dir.0.join("connectors.toml");
    std::fs::write(
        &file,
        replication.connectors_file(&[("c1", "c1_sub"), ("c2", "c2_sub")]),
    )
    .unwrap();
    let mut agent = ServerProcess::spawn_driver_agent(app.addr, "pg-1", "postgres", &file);
    for id in ["c1", "c2"] {
        assert_eq!(call_and_wait(&app, true, id).await.state, S::Running as i32);
    }
    replication.insert("c1_sub", 1..=5).await;
    replication.insert("c2_sub", 1..=5).await;
    replication.arrives("c1_sub", 1..=5).await;

    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    // Replication is PostgreSQL's: it goes on without the agent...
    replication.insert("c2_sub", 6..=10).await;
    replication.arrives("c2_sub", 1..=10).await;
    // ... and c1's subscription fails on a conflicting row meanwhile.
    replication
        .at_destination("INSERT INTO c1_sub_t VALUES (7, 'in the way')")
        .await;
    replication.insert("c1_sub", 6..=8).await;

    let _agent = ServerProcess::spawn_driver_agent(app.addr, "pg-1", "postgres", &file);
    let failed = app
        .connector_becomes("c1", |c| c.state == S::Failed as i32)
        .await;
    assert!(
        failed.status_message.contains("disabled"),
        "{}",
        failed.status_message
    );
    assert_eq!(app.get("c2").await.state, S::Running as i32);

    // Fixed, and started again: every row once.
    replication
        .at_destination("DELETE FROM c1_sub_t WHERE id = 7")
        .await;
    assert_eq!(
        call_and_wait(&app, true, "c1").await.state,
        S::Running as i32
    );
    replication.arrives("c1_sub", 1..=8).await;
    replication.insert("c2_sub", 11..=12).await;
    replication.arrives("c2_sub", 1..=12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_pauses_real_replication_from_the_console_in_a_browser() {
    use crate::console::{Backend, Browser, ConsoleApp};
    let replication = Replication::new().await;
    replication.subscribe("pg_sub").await;
    // The demo fleet, and beside it (in eu-2, where no demo agent runs) a
    // connector that is a real subscription.
    let app = ConsoleApp::start(Backend::Postgres).await;
    app.client
        .clone()
        .create_connector(v1::CreateConnectorRequest {
            connector: Some(connector("pg-orders", "orders into PostgreSQL")),
        })
        .await
        .unwrap();
    let _agent = run_agent_at(
        app.grpc,
        &replication.connectors_file(&[("pg-orders", "pg_sub")]),
    )
    .await;
    let mut start = tonic::Request::new(v1::StartConnectorRequest {
        wait: true,
        ..start_request("pg-orders")
    });
    start.set_timeout(Duration::from_secs(30));
    app.client.clone().start_connector(start).await.unwrap();
    replication.insert("pg_sub", 1..=3).await;
    replication.arrives("pg_sub", 1..=3).await;

    let browser = Browser::open().await;
    browser.goto(&app.url("/")).await;
    browser.until_row("pg-orders", "RUNNING").await;
    browser.until_live().await;
    browser
        .click("#row-pg-orders a[href='/connectors/pg-orders/pause']")
        .await;
    let reason = browser.find("#pause-reason").await;
    reason.send_keys("INC-5120 destination slow").await.unwrap();
    browser.click("#dialog button.primary").await;
    browser.until_row("pg-orders", "STOPPED").await;

    // PostgreSQL stopped applying: new rows wait at the source while the
    // connector falls behind.
    replication.insert("pg_sub", 4..=6).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while app
        .get("pg-orders")
        .await
        .latency
        .is_none_or(|latency| latency.seconds < 1)
    {
        assert!(tokio::time::Instant::now() < deadline, "no latency grew");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        replication.arrived("pg_sub").await,
        (1..=3).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setup_script_makes_replication_the_agent_controls_and_removes_it() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres-replication.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "PostgreSQL 15.x runs in DIR on port PORT:"
    let words: Vec<&str> = printed.lines().next().unwrap().split_whitespace().collect();
    let (dir, port) = (
        words[4].to_owned(),
        words[7].trim_end_matches(':').to_owned(),
    );
    // Stopped and removed even if an assertion fails first.
    struct Cleanup<F: Fn() -> std::process::Output>(F);
    impl<F: Fn() -> std::process::Output> Drop for Cleanup<F> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    let cleanup = Cleanup(|| {
        std::process::Command::new("bash")
            .arg(&script)
            .args(["--stop", &dir])
            .output()
            .unwrap()
    });
    for step in [
        "connector-control serve",
        "--driver postgres",
        "connectors start orders-pg",
    ] {
        assert!(printed.contains(step), "{step} not in:\n{printed}");
    }

    // What it made is replication the agent controls.
    let file = std::fs::read_to_string(format!("{dir}/connectors.toml")).unwrap();
    let app = spawn_app().await;
    app.create(connector("orders-pg", "orders")).await;
    let agent = run_agent(&app, &file).await;
    assert_eq!(
        call_and_wait(&app, true, "orders-pg").await.state,
        S::Running as i32
    );
    let source = connect(&format!("postgres://postgres@127.0.0.1:{port}/source")).await;
    source
        .execute(
            "INSERT INTO orders (id, item) SELECT g, 'item' FROM generate_series(1, 3) g",
            &[],
        )
        .await
        .unwrap();
    let destination = connect(&format!("postgres://postgres@127.0.0.1:{port}/destination")).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let row = destination
            .query_one("SELECT count(*) FROM orders", &[])
            .await
            .unwrap();
        if row.get::<_, i64>(0) == 3 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no rows arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((agent, source, destination));

    let stopped = (cleanup.0)();
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    assert!(!std::path::Path::new(&dir).exists(), "{dir} is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_destination_and_a_missing_permission_say_what_to_do_and_others_run() {
    let replication = Replication::new().await;
    replication.subscribe("c1_sub").await;
    replication.subscribe("c3_sub").await;
    // A user who may read the catalogs but owns no subscription.
    replication.at_destination("CREATE ROLE app LOGIN").await;
    let app = spawn_app().await;
    for id in ["c1", "c2", "c3"] {
        app.create(connector(id, id)).await;
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = format!(
        "{}[connectors.c2]\ndestination = \"postgres://postgres@127.0.0.1:{closed}/destination\"\n\
         subscription = \"c2_sub\"\n\
         [connectors.c3]\ndestination = \"postgres://app@127.0.0.1:{}/destination\"\n\
         subscription = \"c3_sub\"\n",
        replication.connectors_file(&[("c1", "c1_sub")]),
        replication.cluster.port
    );
    let _agent = run_agent(&app, &file).await;

    let unreachable = call_and_wait(&app, true, "c2").await;
    assert_ne!(unreachable.state, S::Running as i32);
    assert!(
        unreachable
            .status_message
            .contains("DESTINATION_UNREACHABLE")
            && unreachable
                .status_message
                .contains(&format!("127.0.0.1:{closed}/destination")),
        "{}",
        unreachable.status_message
    );

    let denied = call_and_wait(&app, true, "c3").await;
    assert_eq!(denied.state, S::Stopped as i32);
    assert!(
        denied.status_message.contains("PERMISSION_DENIED")
            && denied.status_message.contains("must own the subscription"),
        "{}",
        denied.status_message
    );

    // Refused again for the same reason: the failed write left the
    // connection usable (no transaction left aborted on it).
    let again = call_and_wait(&app, true, "c3").await;
    assert!(
        again.status_message.contains("PERMISSION_DENIED"),
        "{}",
        again.status_message
    );

    // The agent serves its other connector all the same.
    assert_eq!(
        call_and_wait(&app, true, "c1").await.state,
        S::Running as i32
    );
    replication.insert("c1_sub", 1..=2).await;
    replication.arrives("c1_sub", 1..=2).await;
}
