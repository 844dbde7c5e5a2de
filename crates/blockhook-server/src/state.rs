//! `AppState`: what every handler and background task shares.

use std::sync::Arc;

use tokio::sync::Notify;

use blockhook_core::{ApiKeyId, Clock, StoreRef};

use crate::config::Settings;
use crate::ingest::Ingestor;
use crate::keys::{AdminToken, MasterKey};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;

/// Shared state: one `Arc`, so the copy axum takes for every request and middleware is one
/// reference count, not a copy of every field (the admin token's `String` was an allocation per
/// request, and the fields' own reference counts a dozen atomic operations).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Shares `shared`.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Shared {
    /// The store.
    pub store: StoreRef,
    /// Settings in force.
    pub settings: Arc<Settings>,
    /// Seals and opens endpoint secrets.
    pub keys: MasterKey,
    /// The operator's token.
    pub admin: AdminToken,
    /// Outbound HTTP (test sends use it too).
    pub egress: blockhook_egress::Client,
    /// Wakes the local dispatcher when work was stored.
    pub wake: Arc<Notify>,
    /// Where ingest hands deliveries it leased to this process's dispatcher.
    pub handoff: Arc<crate::dispatch::Handoff>,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Group-committing ingest.
    pub ingest: Ingestor,
    /// Per-key API rate limit (the operator is keyed as `None`).
    pub api_limiter: Arc<RateLimiter<Option<ApiKeyId>>>,
}
