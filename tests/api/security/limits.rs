//! Rate limits and oversized or malformed input.

use super::*;

#[tokio::test]
async fn each_principal_has_its_own_rate_limit_on_changes() {
    use connector_control::api::limits::{RateLimit, RateLimits};
    let dir = TempDir::new();
    let auth = Authenticator::from_file(&auth_file(&dir, "")).unwrap();
    // Admins: a burst of three, then one change a second: the fourth is
    // refused. Operators keep the default allowance.
    let limits = RateLimits {
        admin: RateLimit::new(1, 3),
        ..RateLimits::default()
    };
    let app = spawn_with_auth(auth, Some(limits)).await;
    let mut client = ConnectorServiceClient::new(app.channel().await);
    for i in 0..3 {
        create_as_admin(&client, &format!("c{i}")).await;
    }
    let status = client
        .start_connector(with_token(start_request("c0"), Some(ADMIN)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let info = error_info(&status);
    assert_eq!(info.reason, "RATE_LIMITED");
    // The limit and its purpose are in the answer.
    assert_eq!(info.metadata["role"], "admin");
    assert_eq!(info.metadata["limit_per_second"], "1");
    assert_eq!(info.metadata["burst"], "3");
    assert!(
        status.message().contains("--admin-rate-limit"),
        "{}",
        status.message()
    );
    let retry = tonic_types::StatusExt::get_error_details(&status)
        .retry_info()
        .and_then(|info| info.retry_delay)
        .expect("a RetryInfo with a delay");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(1),
        "{retry:?}"
    );
    assert_eq!(app.count("SELECT count(*) FROM commands").await, 0);
    // Another principal is not slowed by the first one's calls; reads are
    // not limited.
    client
        .start_connector(with_token(start_request("c0"), Some(OPERATOR)))
        .await
        .expect("operator has its own allowance");
    for _ in 0..5 {
        client
            .get_connector(with_token(
                v1::GetConnectorRequest { id: "c0".into() },
                Some(ADMIN),
            ))
            .await
            .expect("reads are not limited");
    }
}

#[tokio::test]
async fn the_default_limits_let_a_registration_job_and_an_incident_script_through() {
    // No auth file: every caller is an admin, as a registration job is.
    let app = spawn_app().await;
    for i in 0..300 {
        app.create(connector(&format!("c{i}"), "bulk")).await;
    }
    // An operator pausing thirty connectors in a row, with an auth file.
    let (secured, _dir) = secured().await;
    let client = ConnectorServiceClient::new(secured.channel().await);
    for i in 0..30 {
        create_as_admin(&client, &format!("c{i}")).await;
    }
    secured
        .sql("UPDATE connectors SET state = 'RUNNING', desired_state = 'RUNNING'")
        .await;
    for i in 0..30 {
        client
            .clone()
            .pause_connector(with_token(pause_request(&format!("c{i}")), Some(OPERATOR)))
            .await
            .unwrap_or_else(|status| panic!("pause {i}: {status:?}"));
    }
}

#[tokio::test]
async fn oversized_and_malformed_input_gets_a_precise_status_and_changes_nothing() {
    let (app, _dir) = secured().await;
    let mut client = ConnectorServiceClient::new(app.channel().await);
    // A request far beyond anything valid is refused before decoding.
    let mut huge = connector("c1", "orders");
    huge.name = "x".repeat(200_000);
    let status = client
        .create_connector(with_token(
            v1::CreateConnectorRequest {
                connector: Some(huge),
            },
            Some(ADMIN),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let info = error_info(&status);
    assert_eq!(info.reason, "MESSAGE_TOO_LARGE");
    assert_eq!(info.metadata["limit_bytes"], "65536");
    // Too long, but small enough to decode: the field is named.
    let mut long = connector("c1", "orders");
    long.name = "x".repeat(201);
    long.source.as_mut().unwrap().address = "a".repeat(513);
    let status = client
        .create_connector(with_token(
            v1::CreateConnectorRequest {
                connector: Some(long),
            },
            Some(ADMIN),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        ["connector.name", "connector.source.address"]
    );
    // Too many repeated entries.
    let status = client
        .list_connectors(with_token(
            v1::ListConnectorsRequest {
                states: vec![1; 5000],
                ..Default::default()
            },
            Some(VIEWER),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["states"]);
    assert_eq!(app.count("SELECT count(*) FROM connectors").await, 0);
    assert_eq!(
        app.count("SELECT count(*) FROM audit_events WHERE outcome = 'OK'")
            .await,
        0
    );
}

#[tokio::test]
async fn dry_runs_cost_no_allowance_and_a_denied_one_is_audited() {
    use connector_control::api::limits::{RateLimit, RateLimits};
    let dir = TempDir::new();
    let auth = Authenticator::from_file(&auth_file(&dir, "")).unwrap();
    // Operators: one change, then one a second.
    let limits = RateLimits {
        operator: RateLimit::new(1, 1),
        ..RateLimits::default()
    };
    let app = spawn_with_auth(auth, Some(limits)).await;
    let mut client = ConnectorServiceClient::new(app.channel().await);
    create_as_admin(&client, "c1").await;
    let dry = || v1::StartConnectorRequest {
        validate_only: true,
        ..start_request("c1")
    };
    for _ in 0..5 {
        let response = client
            .start_connector(with_token(dry(), Some(OPERATOR)))
            .await
            .expect("a dry run is not limited")
            .into_inner();
        assert!(response.validate_only);
    }
    client
        .start_connector(with_token(start_request("c1"), Some(OPERATOR)))
        .await
        .expect("the allowance is whole after five dry runs");
    let limited = client
        .pause_connector(with_token(pause_request("c1"), Some(OPERATOR)))
        .await
        .unwrap_err();
    assert_eq!(error_info(&limited).reason, "RATE_LIMITED");

    let audited = "SELECT count(*) FROM audit_events WHERE principal = 'vera'";
    let denied = client
        .start_connector(with_token(dry(), Some(VIEWER)))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    eventually(Duration::from_secs(10), async || {
        (app.count(audited).await == 1).then_some(())
    })
    .await;
}
