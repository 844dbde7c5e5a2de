//! Operator and merchant actions (resend, recover) and the read-only views built on deliveries
//! and attempts (backlog, queue stats, endpoint health).

use std::time::Duration;

use blockhook_core::{
    DeliveryOrigin, DeliveryState, EndpointId, ErrorClass, Next, ResendLimits, ResendScope,
    StoreRef,
};

use crate::contract::fixtures::*;

/// Resend scopes: `All` targets the endpoints the event had deliveries to (not merely matching
/// ones); `Endpoint` any endpoint of the same merchant; another merchant's is `NotFound`.
pub async fn resend_scopes(store: StoreRef) {
    let m = merchant(&store).await;
    let other = merchant_named(&store, "Other").await;
    let a = endpoint(&store, &m, &[]).await;
    let b = endpoint(&store, &m, &["Payment"]).await;
    let ev = ingest_one(&store, &m, "Payment", t(0)).await;
    let late = endpoint(&store, &m, &[]).await; // created after the event: not in `All`
    let theirs = endpoint(&store, &other, &[]).await;
    let limits = ResendLimits {
        window: Duration::from_secs(3600),
        max_per_event: 10,
    };
    for c in claim_all(&store, t(1)).await {
        finish_one(&store, &c, Next::Succeeded, t(1)).await;
    }

    let all = store
        .resend(&m, &ev, &ResendScope::All, &limits, t(10))
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    let mut targets = Vec::new();
    for id in &all {
        let d = store.get_delivery(&m, id, t(10)).await.unwrap();
        assert_eq!(d.origin, DeliveryOrigin::Resend);
        assert_eq!(d.state, DeliveryState::Pending);
        assert_eq!(d.attempts, 0);
        assert_eq!(d.next_attempt_at, Some(t(10)));
        assert_eq!(d.event_id, ev);
        targets.push(d.endpoint_id);
    }
    targets.sort();
    let mut want = vec![a.id.clone(), b.id.clone()];
    want.sort();
    assert_eq!(targets, want);

    let one = store
        .resend(
            &m,
            &ev,
            &ResendScope::Endpoint(late.id.clone()),
            &limits,
            t(11),
        )
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(
        store
            .get_delivery(&m, &one[0], t(11))
            .await
            .unwrap()
            .endpoint_id,
        late.id
    );

    for id in [theirs.id.clone(), EndpointId::generate()] {
        assert_not_found(
            store
                .resend(&m, &ev, &ResendScope::Endpoint(id), &limits, t(12))
                .await,
            "endpoint",
        );
    }
    assert_eq!(
        store.get_event(&m, &ev).await.unwrap().resend_count,
        2,
        "refused resends are not counted"
    );

    // The resent deliveries are claimed like any other, as attempt 1.
    let claims = claim_all(&store, t(12)).await;
    assert_eq!(claims.len(), 3);
    assert!(claims.iter().all(|c| c.attempt == 1 && c.event_id == ev));
    assert_eq!(
        store.list_deliveries(&m, &ev, t(12)).await.unwrap().len(),
        5
    );
}

/// Resend limits: events older than the window and events resent `max_per_event` times are
/// refused with a `Conflict` naming the limit, and nothing is created.
pub async fn resend_limits(store: StoreRef) {
    let m = merchant(&store).await;
    endpoint(&store, &m, &[]).await;
    let ev = ingest_one(&store, &m, "Payment", t(0)).await;
    let limits = ResendLimits {
        window: Duration::from_secs(100),
        max_per_event: 2,
    };

    // The window: younger than 100 s succeeds, at or past it is refused.
    assert_conflict(
        store
            .resend(&m, &ev, &ResendScope::All, &limits, t(100))
            .await,
        "window",
    );
    assert_conflict(
        store
            .resend(&m, &ev, &ResendScope::All, &limits, t(5000))
            .await,
        "window",
    );
    assert_eq!(store.get_event(&m, &ev).await.unwrap().resend_count, 0);

    assert_eq!(
        store
            .resend(&m, &ev, &ResendScope::All, &limits, t(10))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .resend(&m, &ev, &ResendScope::All, &limits, t(99))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_conflict(
        store
            .resend(&m, &ev, &ResendScope::All, &limits, t(50))
            .await,
        "max_per_event",
    );
    assert_eq!(store.get_event(&m, &ev).await.unwrap().resend_count, 2);
    assert_eq!(
        store.list_deliveries(&m, &ev, t(50)).await.unwrap().len(),
        3
    );
}

/// `recover` re-queues exactly the failed deliveries of one endpoint created since `since`, due
/// now, in a fresh round: `round_attempt` restarts at 1 while `attempt` keeps counting.
pub async fn recover_requeues_failed_since(store: StoreRef) {
    let m = merchant(&store).await;
    let ep = endpoint(&store, &m, &["Payment"]).await;
    let other = endpoint(&store, &m, &["Refund"]).await;
    let old = ingest_one(&store, &m, "Payment", t(0)).await;
    let fresh = ingest_one(&store, &m, "Payment", t(100)).await;
    let ok = ingest_one(&store, &m, "Payment", t(100)).await;
    let pending = ingest_one(&store, &m, "Payment", t(100)).await;
    ingest_one(&store, &m, "Refund", t(100)).await;

    // Two failed attempts for `old` and `fresh`, success for `ok`, `pending` retried later,
    // the other endpoint's delivery failed too (it must not be touched).
    for c in claim_all(&store, t(101)).await {
        let next = if c.event_id == ok {
            Next::Succeeded
        } else {
            Next::RetryAt(t(200))
        };
        finish_one(&store, &c, next, t(101)).await;
    }
    for c in claim_all(&store, t(200)).await {
        let next = if c.event_id == pending {
            Next::RetryAt(t(10_000))
        } else {
            Next::GiveUp
        };
        finish_one(&store, &c, next, t(200)).await;
    }

    // The preview counts what recover would take, and changes nothing.
    assert_eq!(store.recoverable(&m, &ep.id, t(50)).await.unwrap(), 1);
    assert_eq!(store.recoverable(&m, &ep.id, t(0)).await.unwrap(), 2);
    assert_eq!(store.recoverable(&m, &other.id, t(0)).await.unwrap(), 1);
    assert_not_found(
        store
            .recoverable(&merchant(&store).await, &ep.id, t(0))
            .await,
        "endpoint",
    );
    let n = store.recover(&m, &ep.id, t(50), t(300)).await.unwrap();
    assert_eq!(store.recoverable(&m, &ep.id, t(50)).await.unwrap(), 0);
    assert_eq!(
        n, 1,
        "only `fresh`: `old` is before `since`, the rest did not fail"
    );
    let stats = store.queue_stats(t(300)).await.unwrap();
    assert_eq!(
        stats.failed, 2,
        "`old` and the other endpoint's stay failed"
    );

    let claims = claim_all(&store, t(300)).await;
    assert_eq!(claims.len(), 1);
    let c = &claims[0];
    assert_eq!(c.event_id, fresh);
    assert_eq!(c.endpoint.id, ep.id);
    assert_eq!(c.attempt, 3, "attempts keep counting");
    assert_eq!(c.round_attempt, 1, "a fresh round");
    finish_one(&store, c, Next::RetryAt(t(400)), t(301)).await;
    let c = claim_all(&store, t(400)).await.remove(0);
    assert_eq!((c.attempt, c.round_attempt), (4, 2));

    assert_eq!(
        store.recover(&m, &ep.id, t(0), t(500)).await.unwrap(),
        1,
        "now `old`"
    );
    assert_eq!(store.recover(&m, &other.id, t(0), t(500)).await.unwrap(), 1);
    assert_eq!(
        store.recover(&m, &other.id, t(0), t(500)).await.unwrap(),
        0,
        "nothing failed left"
    );
    let d = store
        .list_deliveries(&m, &old, t(500))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(d.state, DeliveryState::Pending);
    assert_eq!(d.next_attempt_at, Some(t(500)));
    assert_eq!(d.attempts, 2);
}

/// Backlog: pending (incl. in flight) and failed per endpoint with the oldest creation time;
/// endpoints with nothing undelivered are omitted.
pub async fn backlog_counts(store: StoreRef) {
    let m = merchant(&store).await;
    let a = endpoint(&store, &m, &["Payment"]).await;
    let b = endpoint(&store, &m, &["Payout"]).await;
    endpoint(&store, &m, &["Refund"]).await; // nothing at all
    let done = endpoint(&store, &m, &["QR-Payment"]).await; // only delivered work
    ingest_one(&store, &m, "Payment", t(5)).await;
    ingest_one(&store, &m, "Payment", t(7)).await;
    ingest_one(&store, &m, "Payment", t(9)).await;
    ingest_one(&store, &m, "Payout", t(3)).await;
    ingest_one(&store, &m, "QR-Payment", t(1)).await;
    let claims = store.claim_due(&claim_req(t(6), 10)).await.unwrap();
    for c in &claims {
        let next = if c.endpoint.id == done.id {
            Next::Succeeded
        } else {
            Next::GiveUp
        };
        finish_one(&store, c, next, t(6)).await;
    }
    // a: t5 failed, t7 pending, t9 pending (in flight); b: t3 failed.
    let _inflight = store.claim_due(&claim_req(t(9), 10)).await.unwrap();

    let mut got = store.backlog(&m).await.unwrap();
    got.sort_by(|x, y| x.endpoint_id.cmp(&y.endpoint_id));
    let mut want = vec![
        blockhook_core::EndpointBacklog {
            endpoint_id: a.id.clone(),
            pending: 2,
            failed: 1,
            oldest: Some(t(5)),
        },
        blockhook_core::EndpointBacklog {
            endpoint_id: b.id.clone(),
            pending: 0,
            failed: 1,
            oldest: Some(t(3)),
        },
    ];
    want.sort_by(|x, y| x.endpoint_id.cmp(&y.endpoint_id));
    assert_eq!(got, want);
}

/// Queue stats split pending work into due, scheduled and in flight, and count finals.
pub async fn queue_stats_counts(store: StoreRef) {
    assert_eq!(store.queue_stats(T0).await.unwrap(), Default::default());
    let m = merchant(&store).await;
    endpoint(&store, &m, &[]).await;
    for i in 0..6 {
        ingest_one(&store, &m, "Payment", t(i)).await;
    }
    ingest_one(&store, &m, "Payment", t(1000)).await; // scheduled
    let claims = store.claim_due(&claim_req(t(10), 4)).await.unwrap(); // t0..t3
    finish_one(&store, &claims[0], Next::Succeeded, t(10)).await;
    finish_one(&store, &claims[1], Next::GiveUp, t(10)).await;
    finish_one(&store, &claims[2], Next::RetryAt(t(500)), t(10)).await; // scheduled
    // claims[3] stays in flight until t(40); t4 and t5 are due.

    let s = store.queue_stats(t(20)).await.unwrap();
    assert_eq!(s.due, 2);
    assert_eq!(s.scheduled, 2);
    assert_eq!(s.in_flight, 1);
    assert_eq!(s.succeeded, 1);
    assert_eq!(s.failed, 1);
    assert_eq!(s.oldest_due_at, Some(t(4)));

    // Once the lease expires the in-flight one is due again (and the oldest).
    let s = store.queue_stats(t(40)).await.unwrap();
    assert_eq!((s.due, s.in_flight), (3, 0));
    assert!(s.oldest_due_at.is_some_and(|o| o <= t(40)));
}

/// Endpoint health: attempts since `since`, how many succeeded, latencies oldest first.
pub async fn endpoint_health_window(store: StoreRef) {
    let m = merchant(&store).await;
    let ep = endpoint(&store, &m, &["Payment"]).await;
    let quiet = endpoint(&store, &m, &["Payout"]).await;
    for i in 0..4 {
        ingest_one(&store, &m, "Payment", t(i)).await;
    }
    let claims = claim_all(&store, t(10)).await;
    assert_eq!(claims.len(), 4);
    let mut done = Vec::new();
    for (i, c) in claims.iter().enumerate() {
        let ok = i % 2 == 0;
        let at = t(10 + i as i64);
        let mut comp = completion(c, if ok { Next::Succeeded } else { Next::GiveUp }, at);
        comp.attempt.latency_ms = 100 + i as u32;
        if !ok {
            comp.attempt.error = Some(ErrorClass::Timeout);
            comp.attempt.status = None;
        }
        done.push(comp);
    }
    assert_eq!(store.finish(done.into(), t(20)).await.unwrap(), 4);

    let h = store.endpoint_health(&m, &ep.id, t(11)).await.unwrap();
    assert_eq!(h.attempts, 3);
    assert_eq!(h.succeeded, 1);
    assert_eq!(h.latencies, vec![(t(11), 101), (t(12), 102), (t(13), 103)]);
    let all = store.endpoint_health(&m, &ep.id, T0).await.unwrap();
    assert_eq!(
        (all.attempts, all.succeeded, all.latencies.len()),
        (4, 2, 4)
    );
    assert_eq!(
        store.endpoint_health(&m, &quiet.id, T0).await.unwrap(),
        Default::default()
    );
}
