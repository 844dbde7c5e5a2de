//! One endpoint's page: deliveries per hour by state, its queue, its failure streak and its
//! newest deliveries.

use blockhook_core::{DeliveryState, FailureStreak, Next, StoreRef, Timestamp};

use crate::contract::fixtures::*;

const HOUR_MS: i64 = 3_600_000;

/// Per-hour counts follow each delivery's state now; the queue splits due, scheduled and in
/// flight; the streak counts failed attempts since the last success; `recent` is newest first
/// and bounded; another merchant's endpoint is not found.
pub async fn endpoint_activity_views(store: StoreRef) {
    let m = merchant(&store).await;
    let ep = endpoint(&store, &m, &["Payment"]).await;
    let other = endpoint(&store, &m, &["Refund"]).await;
    let since = Timestamp::from_ms(T0.ms() - T0.ms().rem_euclid(HOUR_MS));
    let hour = |n: i64| Timestamp::from_ms(since.ms() + n * HOUR_MS);

    // Hour 0: one delivered, one failed for good. Hour 2: one to retry later, one due now, one
    // left in flight.
    let ok = ingest_one(&store, &m, "Payment", hour(0)).await;
    ingest_one(&store, &m, "Payment", hour(0)).await;
    ingest_one(&store, &m, "Refund", hour(0)).await;
    for c in claim_all(&store, hour(0)).await {
        if c.endpoint.id != ep.id {
            continue;
        }
        let next = if c.event_id == ok {
            Next::Succeeded
        } else {
            Next::GiveUp
        };
        finish_one(&store, &c, next, hour(0)).await;
    }
    let later = ingest_one(&store, &m, "Payment", hour(2)).await;
    let in_flight = ingest_one(&store, &m, "Payment", hour(2)).await;
    let claims = claim_all(&store, hour(2)).await;
    for c in &claims {
        if c.event_id == later {
            finish_one(&store, c, Next::RetryAt(hour(5)), hour(2)).await;
        }
    }
    assert!(claims.iter().any(|c| c.event_id == in_flight));
    let due = ingest_one(&store, &m, "Payment", hour(2)).await;

    let now = Timestamp::from_ms(hour(2).ms() + 1000);
    let a = store
        .endpoint_activity(&m, &ep.id, since, now, 50)
        .await
        .unwrap();
    let hours: Vec<_> = a
        .hours
        .iter()
        .map(|h| (h.hour, h.succeeded, h.failed, h.pending))
        .collect();
    assert_eq!(hours, vec![(hour(0), 1, 1, 0), (hour(2), 0, 0, 3)]);
    assert_eq!(
        (a.queue.due, a.queue.scheduled, a.queue.in_flight),
        (1, 1, 1)
    );
    assert_eq!(a.queue.oldest_due_at, Some(hour(2)));
    // Attempts: the success and the give-up at hour 0 (at the same instant: only later failures
    // count), then the failed try at hour 2.
    assert_eq!(a.streak.last_success, Some(hour(0)));
    assert_eq!(a.streak.failed_attempts, 1, "{:?}", a.streak);
    assert_eq!(a.streak.since, Some(hour(2)));
    let recent: Vec<_> = a.recent.iter().map(|d| d.event_id.clone()).collect();
    assert_eq!(recent.len(), 5);
    assert_eq!(recent[0], due, "newest first");
    assert!(a.recent.iter().all(|d| d.endpoint_id == ep.id));
    assert_eq!(
        a.recent
            .iter()
            .filter(|d| d.state == DeliveryState::InFlight)
            .count(),
        1
    );
    let two = store
        .endpoint_activity(&m, &ep.id, since, now, 2)
        .await
        .unwrap();
    assert_eq!(two.recent.len(), 2);
    // Only hours at or after `since`.
    let late = store
        .endpoint_activity(&m, &ep.id, hour(1), now, 0)
        .await
        .unwrap();
    assert_eq!(late.hours.len(), 1);
    assert_eq!(late.hours[0].hour, hour(2));

    // The other endpoint: one delivery, never attempted; no streak.
    let o = store
        .endpoint_activity(&m, &other.id, since, now, 50)
        .await
        .unwrap();
    assert_eq!(o.streak, FailureStreak::default());
    assert_eq!(o.recent.len(), 1);

    assert_not_found(
        store
            .endpoint_activity(&merchant(&store).await, &ep.id, since, now, 50)
            .await,
        "endpoint",
    );
}
