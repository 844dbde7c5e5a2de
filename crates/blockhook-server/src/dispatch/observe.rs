//! The observe step: what one attempt tells the operator, as metrics (attempts by result,
//! latency, first-attempt lag, delivery outcomes) and one log line in the attempt's span.

use blockhook_core::{Claim, Next, Outcome, Timestamp};

use super::attempt::Attempted;
use crate::metrics::Metrics;

/// Records `attempted` (of `claim`, followed by `next`) at time `now`.
pub(super) fn observe(
    metrics: &Metrics,
    claim: &Claim,
    attempted: &Attempted,
    next: &Next,
    now: Timestamp,
) {
    let resp = &attempted.response;
    metrics.attempt(
        match &attempted.outcome {
            Outcome::Delivered { .. } => "success",
            Outcome::Failed { class, .. } => class.as_str(),
        },
        resp.latency.as_secs_f64(),
    );
    if attempted.delivered() && claim.attempt == 1 {
        let lag = now.since(claim.event_created_at).as_secs_f64();
        metrics.delivery_lag_seconds.observe(lag);
    }
    metrics.delivery(match next {
        Next::Succeeded => "succeeded",
        Next::RetryAt(_) => "retry_scheduled",
        Next::GiveUp => "failed",
        Next::DisableEndpoint => "endpoint_disabled",
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
}
