//! Traces, metrics and lag flags: the server and the reference agent as
//! processes exporting OTLP to an in-process collector (a tonic server
//! implementing the collector's TraceService and MetricsService), and
//! `/metrics` scraped over HTTP after real traffic.

use crate::helpers::*;
use connector_control::proto::v1::connector_service_client::ConnectorServiceClient;
use connector_control::proto::v1::{self, ConnectorState as S};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    metrics_service_server::{MetricsService, MetricsServiceServer},
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

/// A span as the collector received it.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: Vec<(String, String)>,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
    metric_names: Arc<Mutex<Vec<(String, String)>>>,
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

fn service_name(resource: Option<&opentelemetry_proto::tonic::resource::v1::Resource>) -> String {
    resource
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
        .map(|kv| text(kv.value.as_ref()))
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let service = service_name(resource.resource.as_ref());
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push(Received {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        attributes: span
                            .attributes
                            .iter()
                            .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                            .collect(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut names = self.metric_names.lock().unwrap();
        for resource in request.into_inner().resource_metrics {
            let service = service_name(resource.resource.as_ref());
            for scope in resource.scope_metrics {
                for metric in scope.metrics {
                    names.push((service.clone(), metric.name));
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// Starts the collector on a free port; its OTLP endpoint URL.
async fn start_collector() -> (Collector, String) {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(collector.clone()))
        .add_service(MetricsServiceServer::new(collector.clone()))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);
    (collector, format!("http://{addr}"))
}

/// What makes a process export quickly to `endpoint`.
fn otlp_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "300".to_owned()),
    ]
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn client_of(process: &ServerProcess) -> ConnectorServiceClient<Channel> {
    ConnectorServiceClient::new(channel_to(&process.addr).await)
}

#[tokio::test]
async fn a_start_is_one_trace_from_the_callers_traceparent_to_the_agents_result() {
    let (collector, endpoint) = start_collector().await;
    let env = otlp_env(&endpoint);
    let db = TestDatabase::create().await;
    let server =
        ServerProcess::spawn_with_env(&db.url, &["--heartbeat-interval", "500ms"], &borrowed(&env));
    let _agent = ServerProcess::spawn_agent_with_env(
        &[
            "--control-plane",
            &format!("http://{}", server.addr),
            "--agent-id",
            "agent-eu-2",
            "--region",
            "eu-2",
            "--server-ip",
            "10.0.2.9",
        ],
        &borrowed(&env),
    );
    let mut client = client_of(&server).await;
    client
        .create_connector(v1::CreateConnectorRequest {
            connector: Some(connector("c1", "orders")),
        })
        .await
        .unwrap();

    // The caller's trace: W3C traceparent in the gRPC metadata.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let mut request = tonic::Request::new(v1::StartConnectorRequest {
        wait: true,
        ..start_request("c1")
    });
    request.set_timeout(Duration::from_secs(20));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span}-01").parse().unwrap(),
    );
    // A valid but long tracestate is not carried with the command.
    let long_state = ["a", "b", "c"]
        .map(|key| format!("{key}={}", "x".repeat(250)))
        .join(",");
    request
        .metadata_mut()
        .insert("tracestate", long_state.parse().unwrap());
    let started = client.start_connector(request).await.unwrap().into_inner();
    let command = started.command.unwrap();
    assert_eq!(command.status, v1::CommandStatus::Succeeded as i32);
    // The command carried the trace to the agent.
    let carried = db
        .client()
        .await
        .query_one(
            "SELECT trace_context FROM commands WHERE id = $1",
            &[&command.id],
        )
        .await
        .unwrap()
        .get::<_, String>(0);
    assert!(carried.contains(trace_id), "{carried}");
    assert!(!carried.contains("tracestate"), "{carried}");
    assert_eq!(
        command.trace_context.len(),
        1,
        "{:?}",
        command.trace_context
    );

    let wanted = [
        (
            "connector-control",
            "connector.v1.ConnectorService/StartConnector",
        ),
        ("connector-control", "StartConnector"),
        ("connector-control", "issue_command"),
        ("connector-control", "deliver command"),
        ("connector-control-agent", "apply command"),
        ("connector-control", "record command result"),
        ("connector-control", "complete_command"),
    ];
    let spans = eventually(Duration::from_secs(30), || {
        let collector = collector.clone();
        async move {
            let spans: Vec<Received> = collector
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|span| span.trace_id == trace_id)
                .cloned()
                .collect();
            wanted
                .iter()
                .all(|(service, name)| {
                    spans
                        .iter()
                        .any(|span| span.service == *service && span.name == *name)
                })
                .then_some(spans)
        }
    })
    .await;
    let find = |name: &str| spans.iter().find(|span| span.name == name).unwrap();

    // The RPC span continues the caller's span, and names the outcome.
    let rpc = find("connector.v1.ConnectorService/StartConnector");
    assert_eq!(rpc.parent_span_id, caller_span);
    assert_eq!(rpc.attribute("rpc.grpc.status_code"), Some("OK"));
    assert_eq!(rpc.attribute("rpc.method"), Some("StartConnector"));
    // The handler's span under it carries the connector and the outcome;
    // the store's under the handler.
    let handler = find("StartConnector");
    assert_eq!(handler.parent_span_id, rpc.span_id);
    assert_eq!(handler.attribute("connector_id"), Some("c1"));
    assert_eq!(handler.attribute("command_id"), Some(command.id.as_str()));
    assert_eq!(handler.attribute("outcome"), Some("OK"));
    assert_eq!(find("issue_command").parent_span_id, handler.span_id);
    // The agent's handling is a child of the span that issued the command,
    // and the recording of its result a child of the agent's span.
    let applied = find("apply command");
    assert_eq!(applied.attribute("command_id"), Some(command.id.as_str()));
    assert_eq!(applied.parent_span_id, handler.span_id);
    assert_eq!(find("deliver command").parent_span_id, handler.span_id);
    let recorded = find("record command result");
    assert_eq!(recorded.parent_span_id, applied.span_id);
    assert_eq!(find("complete_command").parent_span_id, recorded.span_id);

    // Metrics go over OTLP too.
    eventually(Duration::from_secs(30), || {
        let collector = collector.clone();
        async move {
            let names = collector.metric_names.lock().unwrap();
            names
                .iter()
                .any(|(service, name)| {
                    service == "connector-control" && name == "rpc.server.call.duration"
                })
                .then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn a_call_without_traceparent_starts_its_own_trace() {
    let (collector, endpoint) = start_collector().await;
    let mut env = otlp_env(&endpoint);
    env.push(("OTEL_SERVICE_NAME", "control-plane-test".to_owned()));
    let db = TestDatabase::create().await;
    let server = ServerProcess::spawn_with_env(&db.url, &[], &borrowed(&env));
    let mut client = client_of(&server).await;
    let missing = client
        .get_connector(v1::GetConnectorRequest {
            id: "nope".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let rpc = eventually(Duration::from_secs(30), || {
        let collector = collector.clone();
        async move {
            collector
                .spans
                .lock()
                .unwrap()
                .iter()
                .find(|span| span.name == "connector.v1.ConnectorService/GetConnector")
                .cloned()
        }
    })
    .await;
    assert_eq!(rpc.parent_span_id, "", "a root span");
    assert_eq!(rpc.attribute("rpc.grpc.status_code"), Some("NOT_FOUND"));
    assert_eq!(rpc.service, "control-plane-test", "OTEL_SERVICE_NAME wins");
}

#[tokio::test]
async fn without_an_otlp_endpoint_commands_carry_no_trace_context() {
    let db = TestDatabase::create().await;
    let server =
        ServerProcess::spawn_with_env(&db.url, &[], &[("OTEL_EXPORTER_OTLP_ENDPOINT", "")]);
    let mut client = client_of(&server).await;
    client
        .create_connector(v1::CreateConnectorRequest {
            connector: Some(connector("c1", "orders")),
        })
        .await
        .unwrap();
    let mut request = tonic::Request::new(start_request("c1"));
    request.metadata_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let command = client
        .start_connector(request)
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap();
    assert!(
        command.trace_context.is_empty(),
        "{:?}",
        command.trace_context
    );
}

/// `GET /metrics` over plain HTTP/1.1; the body.
pub(crate) async fn scrape(addr: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_owned()
}

/// The value of the first sample of `series` whose labels include all of
/// `labels`.
pub(crate) fn sample(body: &str, series: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn metrics_are_served_for_prometheus_after_real_traffic() {
    let db = TestDatabase::create().await;
    let mut server = ServerProcess::spawn_with(
        &db.url,
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--metrics-interval",
            "200ms",
            "--heartbeat-interval",
            "200ms",
            "--latency-alert",
            "60s",
        ],
    );
    let metrics_addr = server.metrics_addr();
    let channel = channel_to(&server.addr).await;
    let mut client = ConnectorServiceClient::new(channel.clone());
    for id in ["c1", "c2"] {
        client
            .create_connector(v1::CreateConnectorRequest {
                connector: Some(connector(id, id)),
            })
            .await
            .unwrap();
    }
    let missing = client
        .get_connector(v1::GetConnectorRequest { id: "x".to_owned() })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // An agent takes c1, reports it lagging 90 s; c2 stays stopped.
    let mut agent = TestAgent::connect_to(channel.clone(), hello("a1", "eu-2", "10.0.2.9")).await;
    client.start_connector(start_request("c1")).await.unwrap();
    let command = agent.next_command().await;
    agent.succeed(&command, S::Running).await;
    let lagging = v1::ConnectorStatus {
        latency: Some(prost_types::Duration {
            seconds: 90,
            nanos: 0,
        }),
        ..status("c1", S::Running, command.generation)
    };
    agent.heartbeat(1, vec![lagging]).await;

    let body = eventually(Duration::from_secs(30), || {
        let addr = metrics_addr.clone();
        async move {
            let body = scrape(&addr).await;
            let ready = sample(
                &body,
                "connector_control_connectors_lagging",
                &["region=\"eu-2\"", "cause=\"latency\""],
            ) == Some(1.0)
                && sample(
                    &body,
                    "connector_control_connector_latency_seconds_count",
                    &["region=\"eu-2\""],
                )
                .is_some()
                && sample(&body, "connector_control_heartbeat_flush_size_count", &[])
                    .is_some_and(|flushes| flushes >= 1.0)
                && sample(
                    &body,
                    "connector_control_command_completion_delay_seconds_count",
                    &["status=\"SUCCEEDED\""],
                )
                .is_some();
            ready.then_some(body)
        }
    })
    .await;

    // Calls by method and code.
    let calls = |method: &str, code: &str| {
        sample(
            &body,
            "rpc_server_call_duration_seconds_count",
            &[
                &format!("rpc_method=\"{method}\""),
                &format!("rpc_grpc_status_code=\"{code}\""),
            ],
        )
    };
    assert_eq!(calls("CreateConnector", "OK"), Some(2.0), "{body}");
    assert_eq!(calls("GetConnector", "NOT_FOUND"), Some(1.0), "{body}");
    assert_eq!(calls("StartConnector", "OK"), Some(1.0), "{body}");
    // Agents, connectors, commands, delivery, pool.
    assert_eq!(
        sample(
            &body,
            "connector_control_agents_connected",
            &["region=\"eu-2\""]
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "connector_control_connectors",
            &["region=\"eu-2\"", "state=\"STOPPED\""]
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "connector_control_connectors",
            &["region=\"eu-2\"", "state=\"RUNNING\""]
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "connector_control_command_delivery_delay_seconds_count",
            &["region=\"eu-2\"", "kind=\"START\""]
        ),
        Some(1.0),
        "{body}"
    );
    let latency_90s = sample(
        &body,
        "connector_control_connector_latency_seconds_bucket",
        &["region=\"eu-2\"", "le=\"120\""],
    )
    .unwrap();
    let latency_60s = sample(
        &body,
        "connector_control_connector_latency_seconds_bucket",
        &["region=\"eu-2\"", "le=\"60\""],
    )
    .unwrap();
    assert!(latency_90s >= 1.0 && latency_60s == 0.0, "{body}");
    assert!(
        sample(&body, "connector_control_db_pool_max", &[]).is_some_and(|max| max >= 1.0),
        "{body}"
    );
    assert!(
        sample(
            &body,
            "connector_control_db_pool_connections",
            &["state=\"idle\""]
        )
        .is_some(),
        "{body}"
    );
    assert!(
        body.contains("connector_control_heartbeat_flush_duration_seconds_bucket"),
        "{body}"
    );

    // A pause sent and not answered: one open command, delivered.
    client.pause_connector(pause_request("c1")).await.unwrap();
    let _pause = agent.next_command().await;
    eventually(Duration::from_secs(30), || {
        let addr = metrics_addr.clone();
        async move {
            let body = scrape(&addr).await;
            (sample(
                &body,
                "connector_control_commands_open",
                &["region=\"eu-2\"", "status=\"DELIVERED\""],
            ) == Some(1.0)
                && sample(
                    &body,
                    "connector_control_commands_oldest_age_seconds",
                    &["region=\"eu-2\"", "status=\"DELIVERED\""],
                )
                .is_some())
            .then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn lagging_connectors_are_flagged_and_listed_with_the_lagging_filter() {
    let app = spawn_app().await;
    for (id, name) in [
        ("c1", "alpha"),
        ("c2", "bravo"),
        ("c3", "charlie"),
        ("c4", "delta"),
    ] {
        app.create(connector(id, name)).await;
    }
    // Agent b runs c3, then goes silent: c3 becomes UNKNOWN.
    let mut b = TestAgent::connect(&app, hello("b1", "eu-2", "10.0.2.8")).await;
    app.start(start_request("c3")).await.unwrap();
    let command = b.next_command().await;
    b.succeed(&command, S::Running).await;
    app.connector_becomes("c3", |c| c.state == S::Running as i32)
        .await;
    drop(b);
    app.connector_becomes("c3", |c| c.state == S::Unknown as i32)
        .await;

    // Agent a runs c1 (90 s behind) and c2 (5 s behind); c4 stays stopped.
    let mut a = TestAgent::connect(&app, hello("a1", "eu-2", "10.0.2.9")).await;
    let mut generations = Vec::new();
    for id in ["c1", "c2"] {
        app.start(start_request(id)).await.unwrap();
        let command = a.next_command().await;
        a.succeed(&command, S::Running).await;
        generations.push((command.connector_id.clone(), command.generation));
    }
    let behind = |id: &str, seconds: i64| v1::ConnectorStatus {
        latency: Some(prost_types::Duration { seconds, nanos: 0 }),
        message: "applying binlog".to_owned(),
        ..status(
            id,
            S::Running,
            generations.iter().find(|(c, _)| c == id).unwrap().1,
        )
    };
    a.heartbeat(1, vec![behind("c1", 90), behind("c2", 5)])
        .await;
    let c1 = app
        .connector_becomes("c1", |c| c.latency.is_some_and(|l| l.seconds == 90))
        .await;
    assert_eq!(
        c1.status_message,
        "LAGGING: latency 1m 30s is over the 1m alert threshold; agent: applying binlog"
    );
    assert_eq!(c1.lag_cause, v1::LagCause::Latency as i32);
    let c2 = app
        .connector_becomes("c2", |c| c.latency.is_some_and(|l| l.seconds == 5))
        .await;
    assert_eq!(c2.status_message, "applying binlog");
    assert_eq!(c2.lag_cause, v1::LagCause::Unspecified as i32);
    let c3 = app.get("c3").await;
    assert_eq!(c3.lag_cause, v1::LagCause::AgentOffline as i32);
    assert!(
        c3.status_message
            .starts_with("AGENT OFFLINE: agent b1 has not reported since "),
        "{}",
        c3.status_message
    );

    let lagging = |page_size: i32, page_token: String| v1::ListConnectorsRequest {
        lagging: true,
        page_size,
        page_token,
        ..Default::default()
    };
    let page = app.list(lagging(0, String::new())).await.unwrap();
    let ids: Vec<&str> = page.connectors.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["c1", "c3"]);
    assert_eq!(page.total_size, 2);
    // Pages of one, with the filter bound into the page token.
    let first = app.list(lagging(1, String::new())).await.unwrap();
    assert_eq!(first.connectors[0].id, "c1");
    let second = app
        .list(lagging(1, first.next_page_token.clone()))
        .await
        .unwrap();
    assert_eq!(second.connectors[0].id, "c3");
    assert!(second.next_page_token.is_empty());
    let mixed = app
        .list(v1::ListConnectorsRequest {
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(mixed.code(), tonic::Code::InvalidArgument);
    // Combined with other filters.
    let running = app
        .list(v1::ListConnectorsRequest {
            lagging: true,
            states: vec![S::Running as i32],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(running.connectors.len(), 1);
    assert_eq!(running.connectors[0].id, "c1");

    // Caught up: no longer lagging.
    a.heartbeat(2, vec![behind("c1", 2), behind("c2", 5)]).await;
    app.connector_becomes("c1", |c| c.status_message == "applying binlog")
        .await;
    let page = app.list(lagging(0, String::new())).await.unwrap();
    let ids: Vec<&str> = page.connectors.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["c3"]);
}
