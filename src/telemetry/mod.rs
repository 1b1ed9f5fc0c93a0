//! Logs, traces and metrics.
//!
//! - Logs go to stderr, filtered by `RUST_LOG`.
//! - Traces are exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the standard
//!   `OTEL_*` variables configure the exporter, and `OTEL_SERVICE_NAME`
//!   names the service. Without an endpoint no span is built for export.
//! - Metrics are exported over OTLP under the same condition, and as
//!   Prometheus text when a `/metrics` listener is asked for.
//! - W3C trace context (`traceparent`, `tracestate`) is read from incoming
//!   gRPC metadata ([`rpc`]) and carried inside commands to agents
//!   ([`inject_current`], [`extract`]).

pub mod metrics;
pub mod rpc;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::HashMap;
use std::sync::OnceLock;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Whether a meter provider was installed (OTLP or Prometheus).
static METRICS_EXPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether metrics go anywhere; gauges that cost a query are only sampled
/// then.
pub fn metrics_exported() -> bool {
    METRICS_EXPORTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The registry `/metrics` renders, when Prometheus export is on.
static PROMETHEUS: OnceLock<prometheus::Registry> = OnceLock::new();

/// What a process exports.
#[derive(Clone, Copy, Debug)]
pub struct Options<'a> {
    /// The log level when `RUST_LOG` is unset.
    pub default_level: &'a str,
    /// `service.name` when `OTEL_SERVICE_NAME` is unset.
    pub service_name: &'a str,
    /// Whether metrics are rendered for Prometheus (`--metrics-listen`).
    pub prometheus: bool,
}

/// Flushes exported spans and metrics when dropped at the end of `main`.
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("warning: flushing traces failed: {error}");
        }
        if let Some(provider) = self.meter.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("warning: flushing metrics failed: {error}");
        }
    }
}

fn otlp_configured(signal: &str) -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|value| !value.is_empty());
    set("OTEL_EXPORTER_OTLP_ENDPOINT") || set(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"))
}

/// Installs the global subscriber, propagator and meter provider.
pub fn init(options: Options<'_>) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // The OpenTelemetry crates announce their set-up at INFO: not news.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{},opentelemetry=warn,opentelemetry_sdk=warn",
            options.default_level
        ))
    });
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter);

    let mut warnings = Vec::new();
    let resource = resource(options.service_name);
    let tracer = if otlp_configured("TRACES") {
        match otlp_tracer(resource.clone()) {
            Ok(provider) => Some(provider),
            Err(error) => {
                warnings.push(format!("OTLP trace export disabled: {error}"));
                None
            }
        }
    } else {
        None
    };
    // Only this crate's spans: the exporter's own HTTP/2 client must not
    // trace itself.
    let otel = tracer.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("connector-control"))
            .with_filter(EnvFilter::new("connector_control=debug"))
    });
    tracing_subscriber::registry().with(fmt).with(otel).init();

    let meter = match meter_provider(resource, options.prometheus) {
        Ok(provider) => provider,
        Err(error) => {
            warnings.push(format!("metrics export disabled: {error}"));
            None
        }
    };
    if let Some(provider) = &meter {
        opentelemetry::global::set_meter_provider(provider.clone());
        METRICS_EXPORTED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    Telemetry { tracer, meter }
}

fn resource(default_service_name: &str) -> opentelemetry_sdk::Resource {
    // The builder reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
    let builder = opentelemetry_sdk::Resource::builder();
    let named = std::env::var_os("OTEL_SERVICE_NAME").is_some_and(|name| !name.is_empty());
    if named {
        builder.build()
    } else {
        builder
            .with_service_name(default_service_name.to_owned())
            .build()
    }
}

fn otlp_tracer(
    resource: opentelemetry_sdk::Resource,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

fn meter_provider(
    resource: opentelemetry_sdk::Resource,
    prometheus: bool,
) -> anyhow::Result<Option<SdkMeterProvider>> {
    let otlp = otlp_configured("METRICS");
    if !otlp && !prometheus {
        return Ok(None);
    }
    let mut builder = SdkMeterProvider::builder().with_resource(resource);
    if otlp {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build()?;
        builder = builder.with_periodic_exporter(exporter);
    }
    if prometheus {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .build()?;
        builder = builder.with_reader(exporter);
        let _ = PROMETHEUS.set(registry);
    }
    Ok(Some(builder.build()))
}

/// The Prometheus registry, when `init` was asked for one.
pub fn prometheus_registry() -> Option<&'static prometheus::Registry> {
    PROMETHEUS.get()
}

/// The longest `tracestate` carried with a command (W3C allows dropping
/// it): a caller cannot make every command it issues kilobytes larger.
pub const MAX_TRACE_STATE_LEN: usize = 512;

/// The W3C trace context of the current span (`traceparent`, and
/// `tracestate` when there is one and it is at most
/// `MAX_TRACE_STATE_LEN` long); empty when no trace is being exported.
pub fn inject_current() -> HashMap<String, String> {
    let context = tracing::Span::current().context();
    let mut carrier = MapCarrier(HashMap::new());
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    if carrier
        .0
        .get("tracestate")
        .is_some_and(|state| state.len() > MAX_TRACE_STATE_LEN)
    {
        carrier.0.remove("tracestate");
    }
    carrier.0
}

/// The trace context a carrier holds (nothing valid = a new trace).
pub fn extract(carrier: &HashMap<String, String>) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&MapExtractor(carrier))
}

/// Makes `span` continue the trace `carrier` holds, if any.
pub fn continue_trace(span: &tracing::Span, carrier: &HashMap<String, String>) {
    if carrier.is_empty() {
        return;
    }
    // Fails only without an exporting layer, where there is nothing to do.
    let _ = span.set_parent(extract(carrier));
}

struct MapCarrier(HashMap<String, String>);

impl Injector for MapCarrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct MapExtractor<'a>(&'a HashMap<String, String>);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}
