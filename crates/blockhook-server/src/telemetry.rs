//! Logging and tracing: one `tracing` subscriber, human-readable or JSON, installed once per
//! process, with an optional OpenTelemetry layer exporting spans over OTLP/HTTP.
//!
//! Spans and events never carry secrets or payloads: secrets live in redacting types, and the
//! dispatcher's spans record only ids and attempt numbers. The OTLP layer sees exactly what the
//! log sees (the same filter), so it cannot leak more.

use std::io::IsTerminal as _;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::{LogFormat, LogSettings};

/// What [`init`] installed; [`Telemetry::shutdown`] flushes the spans not yet exported.
#[derive(Debug, Default)]
#[must_use = "dropping it without `shutdown` may lose the last batch of spans"]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exports(&self) -> bool {
        self.tracer.is_some()
    }

    /// Exports what is buffered and stops the exporter (a no-op when export is off).
    pub async fn shutdown(self) {
        let Some(tracer) = self.tracer else { return };
        // The batch processor runs as a task on this runtime; shutting it down blocks until
        // that task has flushed, so wait on a blocking thread, not on one of the runtime's.
        let done = match tokio::task::spawn_blocking(move || tracer.shutdown()).await {
            Ok(flushed) => flushed.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = done {
            eprintln!("blockhook: flushing OpenTelemetry spans failed: {e}");
        }
    }
}

/// Colour codes only for a person at a terminal: never into a file, a pipe or a journal, and
/// not when `NO_COLOR` is set to anything (<https://no-color.org>).
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber (a no-op if one is already installed, e.g. in tests).
/// `RUST_LOG` overrides the configured filter.
///
/// With `log.otlp_endpoint` set, this must run inside a tokio runtime: the span exporter is a
/// task of that runtime, batching spans and POSTing them to `<otlp_endpoint>/v1/traces`.
pub fn init(log: &LogSettings) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour());
    let fmt = match log.format {
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
        LogFormat::Pretty => fmt.compact().boxed(),
    };
    let tracer = match otlp_tracer(log) {
        Ok(tracer) => tracer,
        Err(e) => {
            eprintln!("blockhook: OpenTelemetry export is off: {e}");
            None
        }
    };
    let otel = tracer.as_ref().map(|provider| {
        tracing_opentelemetry::layer().with_tracer(provider.tracer(log.service_name.clone()))
    });
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    match installed {
        Ok(()) => Telemetry { tracer },
        // A second init (tests, embedding) keeps the first subscriber; nothing to export then.
        Err(_) => Telemetry::default(),
    }
}

/// The tracer provider exporting to `log.otlp_endpoint`, or `None` when it is empty.
fn otlp_tracer(log: &LogSettings) -> Result<Option<SdkTracerProvider>, String> {
    if log.otlp_endpoint.is_empty() {
        return Ok(None);
    }
    let base = log.otlp_endpoint.trim_end_matches('/');
    let url = if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url)
        .build()
        .map_err(|e| e.to_string())?;
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(log.service_name.clone())
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .build(),
    ))
}
