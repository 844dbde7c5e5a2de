//! The dispatcher: claims due deliveries under committed leases, sends each as a signed POST,
//! decides what follows, and hands the result back to the store.
//!
//! The path of one delivery: `claim_due` (leases committed, no transaction stays open) →
//! `prepare::request` (fresh time, fresh signature) → egress → `outcome::judge` →
//! `RetryPolicy::decide` → `record` (batched `Store::finish`). While a request runs, `lease`
//! renews its lease; if this process dies, the lease expires and another worker takes over.
//!
//! Fairness: a global semaphore caps requests in flight, a per-endpoint count caps each
//! endpoint, and saturated endpoints are excluded from claims, so one slow endpoint cannot
//! fill the worker with deliveries it cannot send.

mod lease;
pub mod outcome;
pub mod prepare;
mod record;
mod signers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use blockhook_core::{
    AttemptId, Claim, ClaimRequest, Clock, Completion, EndpointId, Next, Outcome, RetryPolicy,
    StoreRef,
};

use crate::config::DeliverySettings;
use crate::keys::MasterKey;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;

pub use lease::LeaseBook;

/// What the dispatcher needs.
#[derive(Clone)]
pub struct DispatchCx {
    /// The store.
    pub store: StoreRef,
    /// Opens endpoint secrets.
    pub keys: MasterKey,
    /// Outbound HTTP.
    pub egress: blockhook_egress::Client,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Retry schedule.
    pub policy: RetryPolicy,
    /// Delivery settings.
    pub settings: DeliverySettings,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Wakes the loop when new work may be due.
    pub wake: Arc<Notify>,
}

/// Per-endpoint bookkeeping of this process: requests in flight, rate limit, failure streak.
#[derive(Debug, Default)]
struct Endpoints {
    in_flight: Mutex<HashMap<EndpointId, usize>>,
    streaks: Mutex<HashMap<EndpointId, u32>>,
    limiter: RateLimiter<EndpointId>,
}

impl Endpoints {
    fn saturated(&self, cap: usize) -> Vec<EndpointId> {
        let map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .filter(|(_, n)| **n >= cap)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn enter(&self, id: &EndpointId) {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(id.clone()).or_default() += 1;
    }

    fn leave(&self, id: &EndpointId) {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(id) {
            *n -= 1;
            if *n == 0 {
                map.remove(id);
            }
        }
    }

    fn result(&self, id: &EndpointId, ok: bool, metrics: &Metrics) {
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

/// Runs until `stop` is cancelled, then stops claiming and lets in-flight attempts finish up
/// to `drain_deadline`. Attempts still running then are abandoned: their leases expire and
/// another worker (or this one after a restart) sends them again.
pub async fn run(cx: DispatchCx, stop: CancellationToken) {
    let cx = Arc::new(cx);
    let (done_tx, done_rx) = mpsc::channel::<Completion>(8_192);
    let book = Arc::new(LeaseBook::default());
    let recorder = tokio::spawn(record::run(cx.clone(), done_rx));
    let renewer_stop = CancellationToken::new();
    let renewer = tokio::spawn(lease::renew(cx.clone(), book.clone(), renewer_stop.clone()));
    let global = Arc::new(Semaphore::new(cx.settings.concurrency));
    let endpoints = Arc::new(Endpoints::default());
    let signers = Arc::new(signers::Signers::default());
    let mut tasks = JoinSet::new();
    let mut backoff = Duration::from_millis(100);

    tracing::info!(concurrency = cx.settings.concurrency, "dispatcher started");
    loop {
        while tasks.try_join_next().is_some() {}
        if stop.is_cancelled() {
            break;
        }
        let free = global.available_permits();
        if free == 0 {
            tokio::select! {
                _ = tasks.join_next() => {}
                () = stop.cancelled() => {}
            }
            continue;
        }
        let want = u32::try_from(free)
            .unwrap_or(u32::MAX)
            .min(cx.settings.claim_batch);
        let now = cx.clock.now();
        let req = ClaimRequest {
            now,
            max: want,
            lease_until: now + cx.settings.lease,
            per_endpoint_max: u32::try_from(cx.settings.per_endpoint_concurrency)
                .unwrap_or(u32::MAX),
            exclude: endpoints.saturated(cx.settings.per_endpoint_concurrency),
        };
        // Only when endpoints were left out for being saturated does a finishing request make
        // new work claimable; otherwise waking per completion would cost one claim per event.
        let waiting_on_slots = !req.exclude.is_empty();
        // Register interest before claiming, so a wake between the claim and the wait is kept.
        let woken = cx.wake.notified();
        let claims = match cx.store.claim_due(&req).await {
            Ok(claims) => {
                backoff = Duration::from_millis(100);
                claims
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "claiming failed");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let got = claims.len();
        for claim in claims {
            let Ok(permit) = global.clone().try_acquire_owned() else {
                // Cannot happen (we asked for at most `free`); the lease expires if it does.
                break;
            };
            book.hold(&claim.delivery_id, claim.lease);
            endpoints.enter(&claim.endpoint.id);
            let span = tracing::info_span!(
                "attempt",
                event = %claim.event_id,
                endpoint = %claim.endpoint.id,
                delivery = %claim.delivery_id,
                attempt = claim.attempt,
            );
            let (cx, done, endpoints, book, signers) = (
                cx.clone(),
                done_tx.clone(),
                endpoints.clone(),
                book.clone(),
                signers.clone(),
            );
            tasks.spawn(
                async move {
                    let endpoint_id = claim.endpoint.id.clone();
                    let delivery_id = claim.delivery_id.clone();
                    let ok = deliver(&cx, &endpoints, &signers, claim, &done, permit).await;
                    endpoints.leave(&endpoint_id);
                    endpoints.result(&endpoint_id, ok, &cx.metrics);
                    book.release(&delivery_id);
                }
                .instrument(span),
            );
        }
        if got as u32 >= want {
            continue;
        }
        // With saturated endpoints left out, their due deliveries would make `next_due_at`
        // say "now" and this loop spin; a finishing request wakes it instead.
        let idle = if waiting_on_slots {
            cx.settings.idle_poll
        } else {
            idle_wait(&cx).await
        };
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep(idle) => {}
            () = cx.store.wait_for_work(idle) => {}
            Some(_) = tasks.join_next(), if waiting_on_slots && !tasks.is_empty() => {}
            () = stop.cancelled() => {}
        }
    }

    let pending = tasks.len();
    if pending > 0 {
        tracing::info!(pending, deadline = ?cx.settings.drain_deadline, "draining in-flight attempts");
        let drained = tokio::time::timeout(cx.settings.drain_deadline, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                abandoned = tasks.len(),
                "drain deadline passed; leases will expire"
            );
            tasks.abort_all();
        }
    }
    drop(done_tx);
    let _ = recorder.await;
    renewer_stop.cancel();
    let _ = renewer.await;
    tracing::info!("dispatcher stopped");
}

/// How long to sleep with nothing claimable: until the next due time, at most `idle_poll`.
async fn idle_wait(cx: &DispatchCx) -> Duration {
    let cap = cx.settings.idle_poll;
    match cx.store.next_due_at().await {
        Ok(Some(at)) => at
            .since(cx.clock.now())
            .clamp(Duration::from_millis(1), cap),
        _ => cap,
    }
}

/// Makes one attempt and queues its completion. Returns whether it was acknowledged.
async fn deliver(
    cx: &DispatchCx,
    endpoints: &Endpoints,
    signers: &signers::Signers,
    claim: Claim,
    done: &mpsc::Sender<Completion>,
    _permit: OwnedSemaphorePermit,
) -> bool {
    let endpoint = &claim.endpoint;
    if let Some(rate) = endpoint.rate_limit {
        let wait = endpoints.limiter.reserve(&endpoint.id, rate);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
    let started = cx.clock.now();
    let attempt_id = AttemptId::generate();
    let resp = match signers.get(&cx.keys, endpoint) {
        Ok(signer) => match prepare::request(
            endpoint,
            &signer,
            &claim.event_id,
            &claim.event_type,
            claim.payload.bytes(),
            prepare::AttemptTag {
                number: claim.attempt,
                id: &attempt_id,
            },
            started,
        ) {
            Ok(prepared) => {
                cx.metrics.in_flight_requests.inc();
                let resp = cx.egress.send(prepared.request).await;
                cx.metrics.in_flight_requests.dec();
                Ok((resp, prepared.logged_headers))
            }
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    let (resp, headers) = match resp {
        Ok(pair) => pair,
        Err(detail) => {
            // A secret that will not open or a payload that will not sign: log it as a
            // failed attempt (no request was sent) and let the schedule retry, so fixing the
            // master key or the endpoint recovers the delivery.
            tracing::error!(%detail, "could not prepare the request");
            (outcome::not_sent(detail), Vec::new())
        }
    };
    let outcome = outcome::judge(&resp, endpoint.success_policy);
    let next = cx.policy.decide(
        claim.round_attempt,
        &outcome,
        cx.clock.now(),
        rand::random(),
    );
    let ok = matches!(outcome, Outcome::Delivered { .. });
    let seconds = resp.latency.as_secs_f64();
    cx.metrics.attempt(
        match &outcome {
            Outcome::Delivered { .. } => "success",
            Outcome::Failed { class, .. } => class.as_str(),
        },
        seconds,
    );
    if ok && claim.attempt == 1 {
        let lag = cx.clock.now().since(claim.event_created_at).as_secs_f64();
        cx.metrics.delivery_lag_seconds.observe(lag);
    }
    cx.metrics.delivery(match next {
        Next::Succeeded => "succeeded",
        Next::RetryAt(_) => "retry_scheduled",
        Next::GiveUp => "failed",
        Next::DisableEndpoint => "endpoint_disabled",
    });
    let disable_reason = matches!(next, Next::DisableEndpoint).then(|| {
        format!(
            "410 Gone on attempt {} of {}",
            claim.attempt, claim.delivery_id
        )
    });
    match next {
        Next::Succeeded => tracing::debug!(status = ?resp.status, "delivered"),
        Next::RetryAt(at) => {
            tracing::info!(status = ?resp.status, error = ?resp.failure, retry_at = %at, "attempt failed; retry scheduled")
        }
        Next::GiveUp => {
            tracing::warn!(status = ?resp.status, error = ?resp.failure, "attempt failed; delivery failed for good")
        }
        Next::DisableEndpoint => tracing::warn!("endpoint answered 410 Gone; disabling it"),
    }
    let attempt = outcome::record(
        prepare::AttemptTag {
            number: claim.attempt,
            id: &attempt_id,
        },
        &claim.delivery_id,
        started,
        endpoint.url.as_str(),
        headers,
        resp,
        &outcome,
    );
    let completion = Completion {
        delivery_id: claim.delivery_id,
        lease: claim.lease,
        attempt,
        next,
        disable_reason,
    };
    if done.send(completion).await.is_err() {
        tracing::error!("recorder stopped; the lease will expire and the delivery be retried");
    }
    ok
}
