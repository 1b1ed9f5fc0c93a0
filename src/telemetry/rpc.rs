//! A tower layer around every gRPC service: one span per call, continuing
//! the caller's W3C trace context (`traceparent` metadata), and the
//! `rpc.server.call.duration` metric by method and status code.

use opentelemetry::KeyValue;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::Code;
use tonic::codegen::http;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Wraps the server's routes; see the module documentation.
#[derive(Clone, Debug)]
pub struct RpcLayer {
    known: Arc<HashSet<String>>,
}

impl RpcLayer {
    /// `descriptor_sets`: the encoded descriptor sets of every service
    /// served. Calls to any other path are counted as service and method
    /// `unknown`, so that made-up paths cannot grow the metrics without
    /// bound.
    pub fn new(descriptor_sets: &[&[u8]]) -> Self {
        let mut known = HashSet::new();
        for set in descriptor_sets {
            let Ok(pool) = prost_reflect::DescriptorPool::decode(*set) else {
                continue;
            };
            for service in pool.services() {
                for method in service.methods() {
                    known.insert(format!("{}/{}", service.full_name(), method.name()));
                }
            }
        }
        Self {
            known: Arc::new(known),
        }
    }
}

impl<S> tower::Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> RpcService<S> {
        RpcService {
            inner,
            known: self.known.clone(),
        }
    }
}

/// The service `RpcLayer` builds.
#[derive(Clone, Debug)]
pub struct RpcService<S> {
    inner: S,
    known: Arc<HashSet<String>>,
}

/// `NOT_FOUND`, `OK`, ...: the name a status code has in the gRPC spec.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Probes and tooling are measured but not traced: a load balancer's
/// health check every few seconds would bury the traces that matter.
fn traced(service: &str) -> bool {
    !(service.starts_with("grpc.health.") || service.starts_with("grpc.reflection."))
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().trim_start_matches('/');
        let path = if self.known.contains(path) {
            path
        } else {
            "unknown/unknown"
        };
        let (service, method) = path.split_once('/').unwrap_or((path, ""));
        let (service, method) = (service.to_owned(), method.to_owned());
        let span = if traced(&service) {
            // DEBUG: exported as a trace, but not repeated on every log line
            // (the handler's span names the call there).
            let span = tracing::debug_span!(
                "rpc",
                otel.name = %format_args!("{service}/{method}"),
                otel.kind = "server",
                otel.status_code = Empty,
                rpc.system = "grpc",
                rpc.service = %service,
                rpc.method = %method,
                rpc.grpc.status_code = Empty,
            );
            if !span.is_disabled() {
                let parent =
                    TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
                // Fails only when no trace is exported.
                let _ = span.set_parent(parent);
            }
            span
        } else {
            tracing::Span::none()
        };
        let started = Instant::now();
        let call = self.inner.call(request).instrument(span.clone());
        Box::pin(async move {
            let result = call.await;
            let code = match &result {
                // An error status is sent in the headers (a trailers-only
                // response); a success, in the trailers after the body.
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<i32>().ok())
                    .map_or(Code::Ok, Code::from_i32),
                Err(_) => Code::Internal,
            };
            let name = code_name(code);
            span.record("rpc.grpc.status_code", name);
            // The server-side errors of the OpenTelemetry gRPC conventions:
            // the others are the caller's mistakes, answered as designed.
            if matches!(
                code,
                Code::Unknown
                    | Code::DeadlineExceeded
                    | Code::Unimplemented
                    | Code::Internal
                    | Code::Unavailable
                    | Code::DataLoss
            ) {
                span.record("otel.status_code", "ERROR");
            }
            super::metrics::instruments().rpc_duration.record(
                started.elapsed().as_secs_f64(),
                &[
                    KeyValue::new("rpc.service", service),
                    KeyValue::new("rpc.method", method),
                    KeyValue::new("rpc.grpc.status_code", name),
                ],
            );
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_are_named_in_metrics() {
        let layer = RpcLayer::new(&[
            crate::proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ]);
        for method in [
            "connector.v1.ConnectorService/StartConnector",
            "connector.v1.AgentService/Connect",
            "connector.v1.AuditService/ListAuditEvents",
            "grpc.health.v1.Health/Check",
        ] {
            assert!(layer.known.contains(method), "{method}");
        }
        assert!(
            !layer
                .known
                .contains("connector.v1.ConnectorService/DropEverything")
        );
    }

    #[test]
    fn code_names_are_the_specs() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
        assert_eq!(code_name(Code::Unauthenticated), "UNAUTHENTICATED");
    }
}
