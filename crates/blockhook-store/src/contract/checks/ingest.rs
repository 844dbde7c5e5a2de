//! Ingest: fan-out to matching enabled endpoints, idempotency per merchant, all-or-nothing
//! batches, large batches, exact payload bytes, and tenant isolation of events.

use std::collections::HashSet;

use blockhook_core::{
    DeliveryId, DeliveryOrigin, DeliveryState, EventId, IdempotencyKey, MerchantId, MerchantStatus,
    Next, StoreRef,
};

use crate::contract::fixtures::*;

/// One event goes to every enabled endpoint whose filter matches, case-insensitively; a
/// disabled endpoint gets nothing.
pub async fn ingest_fans_out(store: StoreRef) {
    let m = merchant(&store).await;
    let other = merchant_named(&store, "Other").await;
    let payments = endpoint(&store, &m, &["payment"]).await; // lower case on purpose
    let everything = endpoint(&store, &m, &[]).await;
    let payouts = endpoint(&store, &m, &["Payout", "QR-Payout"]).await;
    let disabled = endpoint(&store, &m, &[]).await;
    set_enabled(&store, &disabled, false).await;
    let foreign = endpoint(&store, &other, &[]).await;

    let pay = event(&m, "Payment", t(0));
    let qr = event(&m, "qr-payout", t(1));
    let custom = event(&m, "Refund", t(2));
    let done = store
        .ingest(&[pay.clone(), qr.clone(), custom.clone()])
        .await
        .unwrap();
    assert_eq!(done.len(), 3, "one answer per event, in order");
    assert_eq!(done[0].event_id, pay.id);
    assert_eq!(
        done.iter().map(|d| d.deliveries).collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
    assert!(done.iter().all(|d| !d.duplicate));

    let targets = |ev: EventId| {
        let store = store.clone();
        let m = m.clone();
        async move {
            let ds = store.list_deliveries(&m, &ev, t(0)).await.unwrap();
            ds.into_iter()
                .map(|d| d.endpoint_id)
                .collect::<HashSet<_>>()
        }
    };
    assert_eq!(
        targets(pay.id.clone()).await,
        HashSet::from([payments.id.clone(), everything.id.clone()])
    );
    assert_eq!(
        targets(qr.id.clone()).await,
        HashSet::from([payouts.id.clone(), everything.id.clone()])
    );
    assert_eq!(
        targets(custom.id.clone()).await,
        HashSet::from([everything.id.clone()])
    );

    // Each delivery is pending, initial, due at the event's time, never attempted.
    let ds = store.list_deliveries(&m, &qr.id, t(0)).await.unwrap();
    for d in &ds {
        assert_eq!(d.event_id, qr.id);
        assert_eq!(d.merchant_id, m);
        assert_eq!(d.state, DeliveryState::Pending);
        assert_eq!(d.origin, DeliveryOrigin::Initial);
        assert_eq!(d.attempts, 0);
        assert_eq!(d.next_attempt_at, Some(t(1)));
        assert_eq!(d.last_status, None);
        assert_eq!(d.created_at, t(1));
    }

    let claims = claim_all(&store, t(10)).await;
    assert_eq!(claims.len(), 5);
    assert!(
        claims
            .iter()
            .all(|c| c.endpoint.id != disabled.id && c.endpoint.id != foreign.id)
    );

    // The stored event reads back as given.
    let got = store.get_event(&m, &qr.id).await.unwrap();
    assert_eq!(got.id, qr.id);
    assert_eq!(got.merchant_id, m);
    assert_eq!(
        got.event_type.as_str(),
        "qr-payout",
        "the type is kept as sent"
    );
    assert_eq!(
        got.payload.as_ref().map(|p| p.bytes().clone()),
        Some(qr.payload.bytes().clone())
    );
    assert_eq!(got.idempotency_key, None);
    assert_eq!(got.created_at, t(1));
    assert_eq!(got.resend_count, 0);
}

/// Every change to a merchant's endpoints after an ingest (added, filter edited, disabled, switched
/// off by a 410, deleted, enabled again) and to the merchant's status is followed by the very next
/// ingest, whatever the store keeps between ingests.
pub async fn fan_out_follows_changes_after_an_ingest(store: StoreRef) {
    let m = merchant(&store).await;
    let other = merchant_named(&store, "Other").await;
    let first = endpoint(&store, &m, &[]).await;
    endpoint(&store, &other, &[]).await;
    let mut at = 0;
    let mut fan_out = |event_type: &'static str| {
        at += 1;
        let (store, m, other) = (store.clone(), m.clone(), other.clone());
        let evs = vec![
            event(&m, event_type, t(at)),
            event(&other, event_type, t(at)),
        ];
        async move {
            let done = store.ingest(&evs).await.unwrap();
            assert_eq!(done[1].deliveries, 1, "the other merchant is untouched");
            done[0].deliveries
        }
    };
    assert_eq!(fan_out("Payment").await, 1);

    let second = endpoint(&store, &m, &["Payout"]).await;
    assert_eq!(fan_out("Payment").await, 1, "added, filtered out");
    assert_eq!(fan_out("Payout").await, 2, "added");

    let mut edited = store.get_endpoint(&m, &second.id).await.unwrap();
    edited.filter = blockhook_core::EventFilter::all();
    store.update_endpoint(&edited).await.unwrap();
    assert_eq!(fan_out("Payment").await, 2, "filter edited");

    set_enabled(&store, &first, false).await;
    assert_eq!(fan_out("Payment").await, 1, "disabled");

    // Switched off by its receiver: a 410 Gone on a claimed delivery.
    let claims = claim_all(&store, t(100)).await;
    let gone = claims.iter().find(|c| c.endpoint.id == second.id).unwrap();
    finish_one(&store, gone, Next::DisableEndpoint, t(100)).await;
    assert_eq!(fan_out("Payment").await, 0, "switched off by a 410");

    set_enabled(&store, &second, true).await;
    assert_eq!(fan_out("Payment").await, 1, "enabled again");
    store.delete_endpoint(&m, &second.id).await.unwrap();
    assert_eq!(fan_out("Payment").await, 0, "deleted");
    set_enabled(&store, &first, true).await;
    assert_eq!(fan_out("Payment").await, 1, "the first enabled again");

    store
        .set_merchant_status(&m, MerchantStatus::Suspended)
        .await
        .unwrap();
    let r = store.ingest(&[event(&m, "Payment", t(50))]).await;
    assert!(
        matches!(r, Err(blockhook_core::Error::Conflict(_))),
        "suspended after an ingest: {r:?}"
    );
    store
        .set_merchant_status(&m, MerchantStatus::Active)
        .await
        .unwrap();
    assert_eq!(fan_out("Payment").await, 1, "active again");
}

/// A repeated idempotency key of the same merchant returns the original id and stores nothing
/// new; the same key from another merchant is a new event.
pub async fn ingest_idempotency(store: StoreRef) {
    let m = merchant(&store).await;
    let other = merchant_named(&store, "Other").await;
    endpoint(&store, &m, &[]).await;
    endpoint(&store, &other, &[]).await;

    let first = keyed_event(&m, "Payment", "order-42", t(0));
    let r1 = store.ingest(std::slice::from_ref(&first)).await.unwrap();
    assert_eq!(r1[0].event_id, first.id);
    assert!(!r1[0].duplicate);
    assert_eq!(r1[0].deliveries, 1);

    let again = keyed_event(&m, "Payment", "order-42", t(5));
    let r2 = store.ingest(std::slice::from_ref(&again)).await.unwrap();
    assert_eq!(r2[0].event_id, first.id, "the original id comes back");
    assert!(r2[0].duplicate);
    assert_eq!(r2[0].deliveries, 0);
    assert_not_found(store.get_event(&m, &again.id).await, "event");
    assert_eq!(
        store
            .list_deliveries(&m, &first.id, t(5))
            .await
            .unwrap()
            .len(),
        1
    );

    // Within one batch: the second use of a key is a duplicate of the first.
    let a = keyed_event(&m, "Payment", "order-43", t(6));
    let b = keyed_event(&m, "Payment", "order-43", t(6));
    let r3 = store.ingest(&[a.clone(), b.clone()]).await.unwrap();
    assert!(!r3[0].duplicate);
    assert!(r3[1].duplicate);
    assert_eq!(r3[1].event_id, a.id);
    assert_eq!(r3[1].deliveries, 0);

    let theirs = keyed_event(&other, "Payment", "order-42", t(7));
    let r4 = store.ingest(std::slice::from_ref(&theirs)).await.unwrap();
    assert_eq!(r4[0].event_id, theirs.id);
    assert!(!r4[0].duplicate);
    assert_eq!(r4[0].deliveries, 1);
    let stored = store.get_event(&other, &theirs.id).await.unwrap();
    assert_eq!(
        stored.idempotency_key,
        Some(IdempotencyKey::parse("order-42").unwrap())
    );

    // Three deliveries in all: first, a, theirs.
    assert_eq!(claim_all(&store, t(10)).await.len(), 3);
}

/// A key that already names a different event (another type, or payload bytes that differ) fails
/// the whole batch with `IdempotencyConflict` naming the original and the member; nothing of
/// the batch is stored. The same happens for two different events under one new key in a batch.
pub async fn ingest_idempotency_conflict(store: StoreRef) {
    let m = merchant(&store).await;
    endpoint(&store, &m, &[]).await;
    let first = keyed_event(&m, "Payment", "order-9", t(0));
    store.ingest(std::slice::from_ref(&first)).await.unwrap();

    let fresh = event(&m, "Payment", t(1));
    let mut other_type = keyed_event(&m, "Payout", "order-9", t(1));
    let mut other_bytes = keyed_event(&m, "Payment", "order-9", t(1));
    other_bytes.payload = event_with(&m, "Payment", b"{\"orderNo\": 1}", t(1)).payload;
    for clash in [&mut other_type, &mut other_bytes] {
        let r = store.ingest(&[fresh.clone(), clash.clone()]).await;
        match r {
            Err(blockhook_core::Error::IdempotencyConflict {
                original, index, ..
            }) => {
                assert_eq!((original, index), (first.id.clone(), 1));
            }
            other => panic!("expected an idempotency conflict, got {other:?}"),
        }
        assert_not_found(store.get_event(&m, &fresh.id).await, "event");
    }

    let mut a = keyed_event(&m, "Payment", "order-10", t(2));
    let mut b = keyed_event(&m, "Payment", "order-10", t(2));
    a.payload = event_with(&m, "Payment", b"{\"n\":1}", t(2)).payload;
    b.payload = event_with(&m, "Payment", b"{\"n\":2}", t(2)).payload;
    let r = store.ingest(&[a.clone(), b]).await;
    assert!(
        matches!(&r, Err(blockhook_core::Error::IdempotencyConflict { index: 1, original, .. }) if *original == a.id),
        "{r:?}"
    );
    assert_not_found(store.get_event(&m, &a.id).await, "event");
    assert_eq!(claim_all(&store, t(10)).await.len(), 1, "only the first");
}

/// An unknown merchant fails the batch with `NotFound("merchant")`, a suspended one with
/// `Conflict`; in both cases nothing of the batch is stored.
pub async fn ingest_refuses_unknown_and_suspended_merchants(store: StoreRef) {
    let good = merchant(&store).await;
    endpoint(&store, &good, &[]).await;
    let ok = event(&good, "Payment", t(0));
    let ghost = event(&MerchantId::generate(), "Payment", t(0));
    assert_not_found(store.ingest(&[ok.clone(), ghost]).await, "merchant");
    assert_not_found(store.get_event(&good, &ok.id).await, "event");

    let sleepy = merchant_named(&store, "Sleepy").await;
    endpoint(&store, &sleepy, &[]).await;
    store
        .set_merchant_status(&sleepy, MerchantStatus::Suspended)
        .await
        .unwrap();
    let r = store
        .ingest(&[ok.clone(), event(&sleepy, "Payment", t(0))])
        .await;
    assert!(
        matches!(r, Err(blockhook_core::Error::Conflict(_))),
        "suspended: {r:?}"
    );
    assert_not_found(store.get_event(&good, &ok.id).await, "event");

    assert!(
        claim_all(&store, t(10)).await.is_empty(),
        "no delivery was stored"
    );
    assert_eq!(store.next_due_at().await.unwrap(), None);
}

/// A batch whose last event cannot be stored (its id already exists) stores nothing at all.
pub async fn ingest_batch_is_atomic(store: StoreRef) {
    let m = merchant(&store).await;
    endpoint(&store, &m, &[]).await;
    let existing = ingest_one(&store, &m, "Payment", t(0)).await;
    let fresh: Vec<_> = (0..5).map(|i| event(&m, "Payment", t(i))).collect();
    let mut clash = event(&m, "Payout", t(9));
    clash.id = existing.clone();
    let mut batch = fresh.clone();
    batch.push(clash);
    let r = store.ingest(&batch).await;
    assert!(r.is_err(), "a batch with a clashing event id fails: {r:?}");
    for ev in &fresh {
        assert_not_found(store.get_event(&m, &ev.id).await, "event");
    }
    let page = store
        .list_events(
            &m,
            &blockhook_core::EventQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.data.len(), 1);
    assert_eq!(
        claim_all(&store, t(10)).await.len(),
        1,
        "only the first event's delivery"
    );
}

/// 1,000 events in one call: all stored, one delivery each, all claimable exactly once.
pub async fn ingest_large_batch(store: StoreRef) {
    let m = merchant(&store).await;
    let ep = endpoint(&store, &m, &[]).await;
    let batch: Vec<_> = (0..1000)
        .map(|i| {
            let body = format!(r#"{{"orderNo":"O{i}","amount":"{i}.00"}}"#);
            let mut ev = event_with(&m, "Payment", body.as_bytes(), t(i / 100));
            if i % 3 == 0 {
                ev.idempotency_key = Some(IdempotencyKey::parse(&format!("k-{i}")).unwrap());
            }
            ev
        })
        .collect();
    let done = store.ingest(&batch).await.unwrap();
    assert_eq!(done.len(), 1000);
    assert!(
        done.iter()
            .zip(&batch)
            .all(|(d, e)| d.event_id == e.id && !d.duplicate && d.deliveries == 1)
    );

    let backlog = store.backlog(&m).await.unwrap();
    assert_eq!(backlog.len(), 1);
    assert_eq!(backlog[0].endpoint_id, ep.id);
    assert_eq!(backlog[0].pending, 1000);

    let claims = claim_all(&store, t(100)).await;
    assert_eq!(claims.len(), 1000);
    let ids: HashSet<DeliveryId> = claims.iter().map(|c| c.delivery_id.clone()).collect();
    assert_eq!(ids.len(), 1000);
    let sample = claims.iter().find(|c| c.event_id == batch[777].id).unwrap();
    assert_eq!(sample.payload.bytes(), batch[777].payload.bytes());
}

/// Payload bytes come back exactly as sent: odd whitespace, escapes, unicode, number literals.
pub async fn payload_round_trips_exactly(store: StoreRef) {
    let m = merchant(&store).await;
    endpoint(&store, &m, &[]).await;
    let bodies: [&[u8]; 4] = [
        b"{ \"amount\" :\t\"2000.00\" ,\n  \"fee\": 1.00000000 }\r\n",
        "{\"memo\":\"收款 ✓ \\u00e9\\n\",\"emoji\":\"🚀\"}".as_bytes(),
        b"{\"big\":123456789012345678901234567890,\"e\":1E+2,\"neg\":-0.0}",
        b"  {}  ",
    ];
    let events: Vec<_> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| event_with(&m, "Payment", b, t(i as i64)))
        .collect();
    store.ingest(&events).await.unwrap();
    for (ev, body) in events.iter().zip(bodies) {
        let got = store.get_event(&m, &ev.id).await.unwrap();
        assert_eq!(got.payload.unwrap().bytes().as_ref(), body);
    }
    let claims = claim_all(&store, t(10)).await;
    assert_eq!(claims.len(), 4);
    for c in claims {
        let i = events.iter().position(|e| e.id == c.event_id).unwrap();
        assert_eq!(c.payload.bytes().as_ref(), bodies[i]);
    }
}

/// Another merchant's event, its deliveries and their attempts are `NotFound`, like unknown ids.
pub async fn event_tenant_isolation(store: StoreRef) {
    let owner = merchant(&store).await;
    let intruder = merchant_named(&store, "Intruder").await;
    let ep = endpoint(&store, &owner, &[]).await;
    endpoint(&store, &intruder, &[]).await;
    let ev = ingest_one(&store, &owner, "Payment", t(0)).await;
    let claims = claim_all(&store, t(1)).await;
    finish_one(&store, &claims[0], blockhook_core::Next::Succeeded, t(1)).await;
    let dlv = claims[0].delivery_id.clone();

    for id in [ev.clone(), EventId::generate()] {
        assert_not_found(store.get_event(&intruder, &id).await, "event");
        assert_not_found(store.list_deliveries(&intruder, &id, t(2)).await, "event");
        let all = blockhook_core::ResendScope::All;
        let limits = blockhook_core::ResendLimits::default();
        assert_not_found(
            store.resend(&intruder, &id, &all, &limits, t(2)).await,
            "event",
        );
    }
    for id in [dlv.clone(), DeliveryId::generate()] {
        assert_not_found(store.get_delivery(&intruder, &id, t(2)).await, "delivery");
        assert_not_found(store.list_attempts(&intruder, &id).await, "delivery");
    }
    let listed = store
        .list_events(
            &intruder,
            &blockhook_core::EventQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(listed.data.is_empty());
    assert!(store.backlog(&intruder).await.unwrap().is_empty());

    // The owner still sees everything.
    assert_eq!(store.get_event(&owner, &ev).await.unwrap().id, ev);
    assert_eq!(
        store
            .get_delivery(&owner, &dlv, t(2))
            .await
            .unwrap()
            .endpoint_id,
        ep.id
    );
    assert_eq!(store.list_attempts(&owner, &dlv).await.unwrap().len(), 1);
}
