//! Logging: one `tracing` subscriber, human-readable or JSON, installed once per process.
//!
//! Spans and events never carry secrets or payloads: secrets live in redacting types, and the
//! dispatcher's spans record only ids and attempt numbers.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber (a no-op if one is already installed, e.g. in tests).
/// `RUST_LOG` overrides the configured filter.
pub fn init(log: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Ignoring the error is deliberate: a second init (tests, embedding) keeps the first one.
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
