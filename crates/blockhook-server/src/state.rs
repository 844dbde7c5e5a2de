//! `AppState`: what every handler and background task shares.

use std::sync::Arc;

use tokio::sync::Notify;

use blockhook_core::{ApiKeyId, Clock, StoreRef};

use crate::config::Settings;
use crate::ingest::Ingestor;
use crate::keys::{AdminToken, MasterKey};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;

/// Shared state, cheap to clone.
#[derive(Clone)]
pub struct AppState {
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
