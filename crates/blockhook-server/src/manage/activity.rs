//! One endpoint at a glance, for its console page and `GET …/endpoints/{id}/activity`:
//! deliveries per hour (last 24 h) and per UTC day (last 7 days) by state, p50/p99 latency over
//! 24 h, the queue (due now, scheduled, in flight, age of the oldest due), the failure streak,
//! and the newest deliveries.

use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

use blockhook_core::{
    EndpointHealth, EndpointId, FailureStreak, HourCounts, MerchantId, Timestamp,
};

use super::events::DeliveryView;
use crate::error::ApiResult;
use crate::state::AppState;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Hours in the hourly chart, days in the daily one.
pub const HOURS: usize = 24;
/// Days in the daily chart.
pub const DAYS: usize = 7;
/// Deliveries listed.
pub const RECENT: u32 = 50;

/// Deliveries created in one hour or day, by where they stand now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Bar {
    /// Start of the hour or UTC day, Unix ms.
    pub start: i64,
    /// Acknowledged.
    pub succeeded: u64,
    /// Failed for good (every retry used).
    pub failed: u64,
    /// Not settled yet: waiting for an attempt or a retry, or in flight.
    pub retrying: u64,
}

impl Bar {
    fn add(&mut self, h: &HourCounts) {
        self.succeeded += h.succeeded;
        self.failed += h.failed;
        self.retrying += h.pending;
    }
}

/// Attempt latency over the last 24 hours.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Latency {
    /// Attempts in the window.
    pub attempts: u64,
    /// Of which acknowledged.
    pub succeeded: u64,
    /// Median, ms.
    pub p50_ms: Option<u32>,
    /// 99th percentile, ms.
    pub p99_ms: Option<u32>,
}

/// The endpoint's queue now.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct QueueView {
    /// Due now and not in flight (with ordered delivery, incl. those waiting behind their key).
    pub due: u64,
    /// Waiting for a later retry time.
    pub scheduled: u64,
    /// Being sent right now.
    pub in_flight: u64,
    /// How long the oldest due delivery has been due, ms.
    pub oldest_due_age_ms: Option<i64>,
}

/// Failed attempts since the endpoint last acknowledged one.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct StreakView {
    /// Failed attempts in a row (counting stops at 10,000: see `capped`).
    pub failed_attempts: u64,
    /// Whether the count reached its cap.
    pub capped: bool,
    /// The first of them, Unix ms.
    pub since: Option<i64>,
    /// The last acknowledged attempt, Unix ms (none still logged: `null`).
    pub last_success: Option<i64>,
}

/// One endpoint at a glance.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ActivityView {
    /// The last 24 hours, oldest first, the current hour last.
    pub hourly: Vec<Bar>,
    /// The last 7 UTC days, oldest first, today last.
    pub daily: Vec<Bar>,
    /// Latency over the last 24 hours.
    pub latency: Latency,
    /// The queue now.
    pub queue: QueueView,
    /// The current failure streak.
    pub streak: StreakView,
    /// The 50 newest deliveries, newest first.
    pub recent: Vec<DeliveryView>,
}

/// The `q` quantile (0..=1) of sorted values (nearest rank).
pub fn quantile(sorted: &[u32], q: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

/// `n` consecutive bars of `width` ms starting at `first`, filled from hourly counts.
fn bars(first: i64, width: i64, n: usize, hours: &[HourCounts]) -> Vec<Bar> {
    let mut out: Vec<Bar> = (0..n)
        .map(|i| Bar {
            start: first + i64::try_from(i).unwrap_or(0) * width,
            ..Bar::default()
        })
        .collect();
    for h in hours {
        let offset = h.hour.ms() - first;
        if offset < 0 {
            continue;
        }
        if let Some(bar) = usize::try_from(offset / width)
            .ok()
            .and_then(|i| out.get_mut(i))
        {
            bar.add(h);
        }
    }
    out
}

/// One endpoint at a glance; `NotFound` when it is not the merchant's.
pub async fn activity(
    state: &AppState,
    merchant: &MerchantId,
    id: &EndpointId,
) -> ApiResult<ActivityView> {
    Ok(activity_with_health(state, merchant, id).await?.0)
}

/// [`activity`], with the 24 h health it was computed from (the dashboard also charts its
/// latencies per hour), so a page reads the store once.
pub async fn activity_with_health(
    state: &AppState,
    merchant: &MerchantId,
    id: &EndpointId,
) -> ApiResult<(ActivityView, EndpointHealth)> {
    let now = state.clock.now();
    let this_hour = now.ms() - now.ms().rem_euclid(HOUR_MS);
    let today = now.ms() - now.ms().rem_euclid(DAY_MS);
    let first_day = today - (DAYS as i64 - 1) * DAY_MS;
    let first_hour = this_hour - (HOURS as i64 - 1) * HOUR_MS;
    let (a, health) = futures::try_join!(
        state.store.endpoint_activity(
            merchant,
            id,
            Timestamp::from_ms(first_day.min(first_hour)),
            now,
            RECENT
        ),
        state
            .store
            .endpoint_health(merchant, id, now - Duration::from_secs(24 * 3600)),
    )?;
    let mut latencies: Vec<u32> = health.latencies.iter().map(|(_, ms)| *ms).collect();
    latencies.sort_unstable();
    let view = ActivityView {
        hourly: bars(first_hour, HOUR_MS, HOURS, &a.hours),
        daily: bars(first_day, DAY_MS, DAYS, &a.hours),
        latency: Latency {
            attempts: health.attempts,
            succeeded: health.succeeded,
            p50_ms: quantile(&latencies, 0.5),
            p99_ms: quantile(&latencies, 0.99),
        },
        queue: QueueView {
            due: a.queue.due,
            scheduled: a.queue.scheduled,
            in_flight: a.queue.in_flight,
            oldest_due_age_ms: a.queue.oldest_due_at.map(|t| (now.ms() - t.ms()).max(0)),
        },
        streak: StreakView {
            failed_attempts: a.streak.failed_attempts,
            capped: a.streak.failed_attempts >= FailureStreak::CAP,
            since: a.streak.since.map(Timestamp::ms),
            last_success: a.streak.last_success.map(Timestamp::ms),
        },
        recent: a.recent.into_iter().map(DeliveryView::from).collect(),
    };
    Ok((view, health))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn hour(ms: i64, succeeded: u64, failed: u64, pending: u64) -> HourCounts {
        HourCounts {
            hour: Timestamp::from_ms(ms),
            succeeded,
            failed,
            pending,
        }
    }

    fn total(b: &Bar) -> u64 {
        b.succeeded + b.failed + b.retrying
    }

    #[test]
    fn bars_sum_hours_into_their_slot_and_skip_the_rest() {
        let hours = [
            hour(-HOUR_MS, 9, 9, 9),
            hour(0, 1, 0, 0),
            hour(HOUR_MS, 0, 2, 0),
            hour(DAY_MS + HOUR_MS, 0, 0, 3),
            hour(3 * DAY_MS, 7, 7, 7),
        ];
        let days = bars(0, DAY_MS, 2, &hours);
        assert_eq!(days.len(), 2);
        assert_eq!(
            (days[0].start, days[0].succeeded, days[0].failed),
            (0, 1, 2)
        );
        assert_eq!(
            (days[1].start, days[1].retrying, total(&days[1])),
            (DAY_MS, 3, 3)
        );
        let h = bars(0, HOUR_MS, 3, &hours);
        assert_eq!(
            h.iter().map(total).collect::<Vec<_>>(),
            vec![1, 2, 0],
            "hours outside the range are left out"
        );
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(50));
        assert_eq!(quantile(&v, 0.99), Some(99));
        assert_eq!(quantile(&[7], 0.99), Some(7));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
