use crate::helpers::*;
use connector_control::proto::v1;
use tonic::Code;

#[tokio::test]
async fn create_returns_a_stopped_connector_in_its_destination_region() {
    let app = spawn_app().await;
    let created = app
        .create(connector("orders-sync", "orders → warehouse"))
        .await;

    assert_eq!(created.id, "orders-sync");
    assert_eq!(created.state, v1::ConnectorState::Stopped as i32);
    assert_eq!(created.desired_state, v1::ConnectorState::Stopped as i32);
    assert_eq!(created.generation, 0);
    assert_eq!(created.region, "eu-2", "the destination's region");
    assert_eq!(created.server_ip, "");
    assert!(created.create_time.is_some() && created.update_time.is_some());
    assert!(created.store_range.is_none() && created.checkpoint_time.is_none());
    assert_eq!(app.get("orders-sync").await, created);
}

#[tokio::test]
async fn create_without_an_id_assigns_a_unique_one() {
    let app = spawn_app().await;
    let a = app.create(connector("", "a")).await;
    let b = app.create(connector("", "a")).await;
    assert!(!a.id.is_empty() && !b.id.is_empty());
    assert_ne!(a.id, b.id);
    assert_eq!(app.get(&a.id).await.name, "a");
}

#[tokio::test]
async fn create_ignores_output_only_fields() {
    let app = spawn_app().await;
    let mut input = connector("c1", "c1");
    input.state = v1::ConnectorState::Running as i32;
    input.generation = 42;
    input.region = "us-9".to_owned();
    input.server_ip = "10.9.9.9".to_owned();
    let created = app.create(input).await;
    assert_eq!(created.state, v1::ConnectorState::Stopped as i32);
    assert_eq!(created.generation, 0);
    assert_eq!(created.region, "eu-2");
    assert_eq!(created.server_ip, "");
}

#[tokio::test]
async fn create_with_a_taken_id_is_already_exists_and_keeps_the_original() {
    let app = spawn_app().await;
    app.create(connector("dup", "first")).await;
    let status = assert_error(
        app.client
            .clone()
            .create_connector(v1::CreateConnectorRequest {
                connector: Some(connector("dup", "second")),
            })
            .await,
        Code::AlreadyExists,
        "CONNECTOR_ALREADY_EXISTS",
    );
    assert!(status.message().contains("dup"), "{}", status.message());
    assert_eq!(error_info(&status).metadata["connector_id"], "dup");
    assert_eq!(app.get("dup").await.name, "first");
}

#[tokio::test]
async fn create_without_a_connector_names_the_missing_message() {
    let app = spawn_app().await;
    let status = assert_error(
        app.client
            .clone()
            .create_connector(v1::CreateConnectorRequest { connector: None })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["connector"]);
}

#[tokio::test]
async fn create_with_missing_fields_lists_every_violation_and_writes_nothing() {
    let app = spawn_app().await;
    let status = assert_error(
        app.client
            .clone()
            .create_connector(v1::CreateConnectorRequest {
                connector: Some(v1::Connector::default()),
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        violated_fields(&status),
        [
            "connector.name",
            "connector.project_id",
            "connector.project_name",
            "connector.kind",
            "connector.source",
            "connector.destination",
        ]
    );
    assert!(status.message().contains("connector.name is required"));
    assert_eq!(app.count("SELECT count(*) FROM connectors").await, 0);
}

#[tokio::test]
async fn create_rejects_oversized_malformed_and_unknown_values() {
    let app = spawn_app().await;
    let mut bad = connector("has space", &"n".repeat(201));
    bad.project_id = "-starts-with-dash".to_owned();
    bad.project_name = "tab\there".to_owned();
    bad.kind = 99;
    bad.source = Some(v1::Endpoint {
        r#type: "MY SQL".to_owned(),
        region: "EU-1".to_owned(),
        address: "10.0.1.20 3306".to_owned(),
    });
    bad.destination = Some(v1::Endpoint {
        r#type: "OCEANBASE".to_owned(),
        region: "eu-2".to_owned(),
        address: "a".repeat(513),
    });
    let status = assert_error(
        app.client
            .clone()
            .create_connector(v1::CreateConnectorRequest {
                connector: Some(bad),
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        violated_fields(&status),
        [
            "connector.id",
            "connector.name",
            "connector.project_id",
            "connector.project_name",
            "connector.kind",
            "connector.source.type",
            "connector.source.region",
            "connector.source.address",
            "connector.destination.address",
        ]
    );
    let message = status.message();
    assert!(message.contains("at most 200"), "{message}");
    assert!(message.contains("unknown value 99"), "{message}");
    assert!(message.contains("try 'eu-1'"), "{message}");
    assert_eq!(app.count("SELECT count(*) FROM connectors").await, 0);
}

#[tokio::test]
async fn get_of_an_unknown_connector_is_not_found() {
    let app = spawn_app().await;
    let status = assert_error(
        app.client
            .clone()
            .get_connector(v1::GetConnectorRequest {
                id: "ghost".to_owned(),
            })
            .await,
        Code::NotFound,
        "CONNECTOR_NOT_FOUND",
    );
    assert_eq!(error_info(&status).metadata["connector_id"], "ghost");
    assert!(status.message().contains("ListConnectors"));
}

#[tokio::test]
async fn get_with_an_empty_or_malformed_id_is_invalid_argument() {
    let app = spawn_app().await;
    for id in ["", "bad id", &"x".repeat(65)] {
        let status = assert_error(
            app.client
                .clone()
                .get_connector(v1::GetConnectorRequest { id: id.to_owned() })
                .await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(violated_fields(&status), ["id"]);
    }
}

#[tokio::test]
async fn of_concurrent_creates_with_one_id_exactly_one_succeeds() {
    let app = spawn_app().await;
    let calls = (0..10).map(|i| {
        let mut client = app.client.clone();
        async move {
            client
                .create_connector(v1::CreateConnectorRequest {
                    connector: Some(connector("same", &format!("attempt {i}"))),
                })
                .await
        }
    });
    let results = futures::future::join_all(calls).await;
    let (created, refused): (Vec<_>, Vec<_>) = results.into_iter().partition(|r| r.is_ok());
    assert_eq!(created.len(), 1);
    for result in refused {
        assert_error(result, Code::AlreadyExists, "CONNECTOR_ALREADY_EXISTS");
    }
}

#[tokio::test]
async fn names_that_print_misleadingly_and_addresses_with_credentials_are_rejected() {
    let app = spawn_app().await;
    let create = |connector: v1::Connector| {
        let mut client = app.client.clone();
        async move {
            client
                .create_connector(v1::CreateConnectorRequest {
                    connector: Some(connector),
                })
                .await
        }
    };
    for (name, project_name) in [
        // Prints as "invoice-exe.txt" in a terminal.
        ("invoice-\u{202E}txt.exe", "Orders"),
        ("\u{200B}\u{200D}", "Orders"),
        ("orders", "first line\u{2028}second line"),
    ] {
        let mut c = connector("", name);
        c.project_name = project_name.to_owned();
        let status = assert_error(create(c).await, Code::InvalidArgument, "INVALID_ARGUMENT");
        let field = if project_name == "Orders" {
            "connector.name"
        } else {
            "connector.project_name"
        };
        assert_eq!(violated_fields(&status), [field], "{name:?}");
    }
    let mut c = connector("", "orders");
    c.source.as_mut().unwrap().address = "mysql://root:secret@10.0.1.20:3306".to_owned();
    c.destination.as_mut().unwrap().address = "10.0.2.30:2881/dw?password=secret".to_owned();
    let status = assert_error(create(c).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(
        violated_fields(&status),
        ["connector.source.address", "connector.destination.address"]
    );
    assert!(
        !status.message().contains("root:secret") && !status.message().contains("=secret"),
        "the refusal does not repeat the secret: {}",
        status.message()
    );
    assert_eq!(app.count("SELECT count(*) FROM connectors").await, 0);
}
