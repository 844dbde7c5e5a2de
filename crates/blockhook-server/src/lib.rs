//! Everything `blockhook serve` runs, as a library: configuration, the HTTP API, group-committed
//! ingest, the dispatcher, keys, metrics and retention. The binary only parses flags and calls
//! [`Application`].
//!
//! Layout: `api/` and `ui/` are the HTTP-facing code (thin handlers and pages), `manage/` the
//! service layer both call (neither reaches the store itself), `auth` the one check of a
//! credential, `dispatch/` the only code that delivers, `keys` the only code that touches
//! secrets in clear.
#![forbid(unsafe_code)]

pub(crate) mod alerts;
pub mod api;
pub mod auth;
pub mod config;
pub(crate) mod dispatch;
pub(crate) mod edge;
mod error;
pub(crate) mod ingest;
pub(crate) mod jetstream;
pub mod keyring;
pub mod keys;
pub(crate) mod manage;
pub(crate) mod metrics;
pub(crate) mod outbox;
pub(crate) mod ratelimit;
mod retention;
pub mod startup;
pub(crate) mod state;
pub mod telemetry;
pub(crate) mod ui;

pub use config::Settings;
pub use error::{ApiError, ApiResult, Error, PROBLEM_TYPE_PREFIX, Problem};
pub use startup::{Application, cancel_on_signal};
pub use state::AppState;
