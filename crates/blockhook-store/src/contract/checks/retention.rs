//! Retention: `purge_before` drops old payloads (keeping those still needed by pending
//! deliveries) and old attempts, in bounded batches.

use blockhook_core::{DeliveryState, Next, StoreRef};

use crate::contract::fixtures::*;

/// Payloads of events older than the limit go (the event row stays), unless a delivery is still
/// pending; attempts older than the limit go; everything newer stays. Batches are bounded and
/// the caller loops until 0.
pub async fn purge_before_removes_exactly_the_old(store: StoreRef) {
    let m = merchant(&store).await;
    endpoint(&store, &m, &[]).await;
    let mut old = Vec::new();
    for i in 0..5 {
        old.push(ingest_one(&store, &m, "Payment", t(i)).await);
    }
    let waiting = ingest_one(&store, &m, "Payment", t(5)).await; // old, still pending
    let recent = ingest_one(&store, &m, "Payment", t(1000)).await;

    // Old events: one attempt each at t(10); `waiting` retries much later.
    for c in claim_all(&store, t(10)).await {
        let next = if c.event_id == waiting {
            Next::RetryAt(t(5000))
        } else {
            Next::Succeeded
        };
        finish_one(&store, &c, next, t(10)).await;
    }
    // The recent event: an attempt at t(1000).
    let c = claim_all(&store, t(1000)).await.remove(0);
    assert_eq!(c.event_id, recent);
    finish_one(&store, &c, Next::Succeeded, t(1000)).await;

    // Limit t(500): 5 payloads + 6 attempts are old. Batches of 2 until nothing is left.
    let mut total = 0;
    let mut rounds = 0;
    loop {
        let n = store.purge_before(t(500), 2).await.unwrap();
        assert!(
            n <= 4,
            "at most `batch` payloads and `batch` attempts per call, got {n}"
        );
        total += n;
        rounds += 1;
        assert!(rounds < 20, "purge_before must reach 0");
        if n == 0 {
            break;
        }
    }
    assert_eq!(total, 11);

    for id in &old {
        let ev = store.get_event(&m, id).await.unwrap();
        assert!(ev.payload.is_none(), "old payload removed");
        assert!(ev.created_at < t(500));
        let d = store
            .list_deliveries(&m, id, t(2000))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(d.state, DeliveryState::Succeeded, "the delivery row stays");
        assert!(
            store.list_attempts(&m, &d.id).await.unwrap().is_empty(),
            "old attempts removed"
        );
    }
    let w = store.get_event(&m, &waiting).await.unwrap();
    assert_eq!(
        w.payload.unwrap().bytes().as_ref(),
        PAYLOAD.as_bytes(),
        "pending keeps its payload"
    );
    let wd = store
        .list_deliveries(&m, &waiting, t(2000))
        .await
        .unwrap()
        .remove(0);
    assert!(
        store.list_attempts(&m, &wd.id).await.unwrap().is_empty(),
        "its old attempt went"
    );
    let r = store.get_event(&m, &recent).await.unwrap();
    assert!(r.payload.is_some());
    let rd = store
        .list_deliveries(&m, &recent, t(2000))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(store.list_attempts(&m, &rd.id).await.unwrap().len(), 1);

    // The pending one is still deliverable with its payload.
    let c = claim_all(&store, t(5000)).await.remove(0);
    assert_eq!(c.event_id, waiting);
    assert_eq!(c.payload.bytes().as_ref(), PAYLOAD.as_bytes());
}
