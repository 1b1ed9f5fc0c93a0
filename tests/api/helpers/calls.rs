//! Requests tests make, and what they check of the answers.

use connector_control::proto::v1;
use std::future::Future;
use std::time::Duration;
use tonic_types::{ErrorInfo, StatusExt};

/// A valid connector to create; tests override what they care about.
pub fn connector(id: &str, name: &str) -> v1::Connector {
    v1::Connector {
        id: id.to_owned(),
        name: name.to_owned(),
        project_id: "proj-orders".to_owned(),
        project_name: "Orders Replication".to_owned(),
        kind: v1::ConnectorKind::IncrementalSync as i32,
        source: Some(v1::Endpoint {
            r#type: "MYSQL".to_owned(),
            region: "eu-1".to_owned(),
            address: "10.0.1.20:3306".to_owned(),
        }),
        destination: Some(v1::Endpoint {
            r#type: "OCEANBASE".to_owned(),
            region: "eu-2".to_owned(),
            address: "10.0.2.30:2881".to_owned(),
        }),
        ..Default::default()
    }
}

pub fn start_request(id: &str) -> v1::StartConnectorRequest {
    v1::StartConnectorRequest {
        id: id.to_owned(),
        ..Default::default()
    }
}

pub fn pause_request(id: &str) -> v1::PauseConnectorRequest {
    v1::PauseConnectorRequest {
        id: id.to_owned(),
        ..Default::default()
    }
}

/// The ErrorInfo every error must carry, checked for our domain.
pub fn error_info(status: &tonic::Status) -> ErrorInfo {
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "connector.v1", "{status:?}");
    info
}

/// Asserts code and reason; returns the status for further checks.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    reason: &str,
) -> tonic::Status {
    let status = result.expect_err("the call should have failed");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(error_info(&status).reason, reason, "{status:?}");
    status
}

/// The fields named by the BadRequest detail.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("no BadRequest in {status:?}"))
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

pub fn timestamp(time: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// Polls `check` until it yields a value or `within` passes.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the health service reports `wanted` for ConnectorService.
pub async fn health_becomes(
    health: &tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>,
    wanted: tonic_health::pb::health_check_response::ServingStatus,
) {
    eventually(Duration::from_secs(20), || {
        let mut health = health.clone();
        async move {
            let check = tonic_health::pb::HealthCheckRequest {
                service: "connector.v1.ConnectorService".to_owned(),
            };
            let status = health.check(check).await.unwrap().into_inner().status;
            (status == wanted as i32).then_some(())
        }
    })
    .await;
}
