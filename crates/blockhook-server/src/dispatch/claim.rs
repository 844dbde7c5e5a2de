//! The claim step: which due deliveries this process takes next. The store commits the leases
//! before answering, so no transaction stays open while the requests run.
//!
//! Fairness lives here too: [`EndpointLoad`] counts this process's requests per endpoint, and an
//! endpoint at its cap is left out of the next claim, so one slow endpoint cannot fill the worker
//! with deliveries it cannot send.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use blockhook_core::{Claim, ClaimRequest, EndpointId};

use super::DispatchCx;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;

/// Per-endpoint load of this process: requests in flight, rate limit, failure streak.
#[derive(Debug, Default)]
pub(super) struct EndpointLoad {
    in_flight: Mutex<HashMap<EndpointId, usize>>,
    streaks: Mutex<HashMap<EndpointId, u32>>,
    /// Spaces the requests of endpoints that set a rate limit.
    pub(super) limiter: RateLimiter<EndpointId>,
}

impl EndpointLoad {
    /// Endpoints with `cap` requests in flight.
    fn saturated(&self, cap: usize) -> Vec<EndpointId> {
        let map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .filter(|(_, n)| **n >= cap)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// A request to `id` starts.
    pub(super) fn enter(&self, id: &EndpointId) {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(id.clone()).or_default() += 1;
    }

    /// A request to `id` ended, acknowledged (`ok`) or not; updates the failing-endpoints gauge.
    pub(super) fn leave(&self, id: &EndpointId, ok: bool, metrics: &Metrics) {
        {
            let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = map.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    map.remove(id);
                }
            }
        }
        let mut map = self.streaks.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            map.remove(id);
        } else {
            *map.entry(id.clone()).or_default() += 1;
        }
        if map.len() > 100_000 {
            map.clear();
        }
        metrics.set_failing(map.values().copied());
    }
}

/// A claim of up to `free` due deliveries (at most `claim_batch`) now, leaving this process's
/// saturated endpoints out.
pub(super) fn request(cx: &DispatchCx, load: &EndpointLoad, free: usize) -> ClaimRequest {
    let now = cx.clock.now();
    ClaimRequest {
        now,
        max: u32::try_from(free)
            .unwrap_or(u32::MAX)
            .min(cx.settings.claim_batch),
        lease_until: now + cx.settings.lease,
        per_endpoint_max: u32::try_from(cx.settings.per_endpoint_concurrency).unwrap_or(u32::MAX),
        exclude: load.saturated(cx.settings.per_endpoint_concurrency),
        new_first: false,
    }
}

/// What one claim brought.
pub(super) struct Claimed {
    /// The leased deliveries, to be sent now.
    pub(super) claims: Vec<Claim>,
    /// Whether the claim was cut by its size: more may be due right away.
    pub(super) full: bool,
    /// Whether saturated endpoints were left out: a finishing request makes work claimable.
    pub(super) waiting_on_slots: bool,
}

/// Claims with a back-off while the store fails.
pub(super) struct Claimer {
    backoff: Duration,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);

impl Claimer {
    pub(super) fn new() -> Self {
        Self {
            backoff: FIRST_BACKOFF,
        }
    }

    /// Leases up to `free` due deliveries (at most `claim_batch`), leaving saturated endpoints
    /// out. `None` when the store failed: the call has already waited its back-off (or `stop`).
    pub(super) async fn claim(
        &mut self,
        cx: &DispatchCx,
        load: &EndpointLoad,
        free: usize,
        stop: &CancellationToken,
    ) -> Option<Claimed> {
        let req = request(cx, load, free);
        let want = req.max;
        match cx.store.claim_due(&req).await {
            Ok(claims) => {
                self.backoff = FIRST_BACKOFF;
                Some(Claimed {
                    full: claims.len() as u32 >= want,
                    claims,
                    // Only then does a finishing request make new work claimable; waking per
                    // completion otherwise would cost one claim per event.
                    waiting_on_slots: !req.exclude.is_empty(),
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?self.backoff, "claiming failed");
                tokio::select! {
                    () = tokio::time::sleep(self.backoff) => {}
                    () = stop.cancelled() => {}
                }
                self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
                None
            }
        }
    }
}

/// How long to sleep with nothing claimable: until the next due time, at most `idle_poll`.
/// With saturated endpoints left out, their due deliveries would make `next_due_at` say "now"
/// and the loop spin, so then it is `idle_poll` (a finishing request wakes the loop sooner).
pub(super) async fn idle_wait(cx: &DispatchCx, claimed: &Claimed) -> Duration {
    let cap = cx.settings.idle_poll;
    if claimed.waiting_on_slots {
        return cap;
    }
    match cx.store.next_due_at().await {
        Ok(Some(at)) => at
            .since(cx.clock.now())
            .clamp(Duration::from_millis(1), cap),
        _ => cap,
    }
}
