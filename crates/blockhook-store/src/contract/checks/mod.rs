//! The checks, grouped by topic. Each is `pub async fn name(store: StoreRef)` and panics when the
//! store misbehaves; `tests/contract.rs` lists them all.

pub mod actions;
pub mod activity;
pub mod alerts;
pub mod batch;
pub mod dispatch;
pub mod endpoints;
pub mod ingest;
pub mod logs;
pub mod merchants;
pub mod ordering;
pub mod retention;
pub mod scale;
pub mod search;
pub mod sources;
