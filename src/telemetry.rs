//! Logs with `RUST_LOG`-style filtering, and traces exported over OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the standard OpenTelemetry
//! variables configure the exporter).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Flushes exported spans when dropped at the end of `main`.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("warning: flushing traces failed: {error}");
        }
    }
}

/// Installs the global subscriber. Logs go to stderr; `RUST_LOG` (default
/// `default_level`) filters them.
pub fn init(default_level: &str) -> Telemetry {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter);

    let mut warning = None;
    let provider = match std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT") {
        None => None,
        Some(_) => match otlp_provider() {
            Ok(provider) => Some(provider),
            Err(error) => {
                warning = Some(format!("OTLP trace export disabled: {error}"));
                None
            }
        },
    };
    let otel = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("connector-control"))
            .with_filter(EnvFilter::new("connector_control=debug,info"))
    });
    tracing_subscriber::registry().with(fmt).with(otel).init();
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    Telemetry { provider }
}

fn otlp_provider() -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("connector-control")
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}
