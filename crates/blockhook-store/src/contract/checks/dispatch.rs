//! Dispatch: claiming due work under leases, finishing attempts, renewing leases, and what
//! `next_due_at` reports.

use std::collections::HashSet;
use std::sync::Arc;

use blockhook_core::{
    AttemptId, AttemptRecord, ClaimRequest, Completion, DeliveryId, DeliveryState, EndpointId,
    ErrorClass, LeaseToken, Next, StoreRef,
};
use bytes::Bytes;

use crate::contract::fixtures::*;

/// Only deliveries due at `now` are claimed, oldest due first, and a claim carries everything a
/// worker needs.
pub async fn claim_only_due(store: StoreRef) {
    let m = merchant(&store).await;
    let ep = endpoint(&store, &m, &[]).await;
    let late = ingest_one(&store, &m, "Payout", t(20)).await;
    let early = ingest_one(&store, &m, "Payment", t(0)).await;
    let mid = ingest_one(&store, &m, "Payment", t(10)).await;

    assert!(
        store
            .claim_due(&claim_req(t(-1), 10))
            .await
            .unwrap()
            .is_empty()
    );
    let first = store.claim_due(&claim_req(t(15), 10)).await.unwrap();
    let got: Vec<_> = first.iter().map(|c| c.event_id.clone()).collect();
    assert_eq!(
        got,
        vec![early.clone(), mid.clone()],
        "due ones only, oldest due first"
    );

    let c = &first[0];
    assert_eq!(c.attempt, 1);
    assert_eq!(c.round_attempt, 1);
    assert_eq!(c.event_type.as_str(), "Payment");
    assert_eq!(c.payload.bytes().as_ref(), PAYLOAD.as_bytes());
    assert_eq!(c.event_created_at, t(0));
    assert_same_endpoint(&c.endpoint, &ep);
    assert_ne!(first[0].delivery_id, first[1].delivery_id);

    // `max` is honoured.
    let second = store.claim_due(&claim_req(t(30), 0)).await.unwrap();
    assert!(second.is_empty(), "max 0 claims nothing");
    let third = store.claim_due(&claim_req(t(30), 10)).await.unwrap();
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].event_id, late);
}

/// A live lease keeps a delivery from being claimed again; once it expires the delivery is
/// claimed afresh, with a new token and the same attempt number (nothing was logged).
pub async fn lease_excludes_reclaim_until_expired(store: StoreRef) {
    let m = merchant(&store).await;
    endpoint(&store, &m, &[]).await;
    ingest_one(&store, &m, "Payment", t(0)).await;
    let first = store.claim_due(&claim_req(t(1), 10)).await.unwrap();
    assert_eq!(first.len(), 1);
    // Lease runs to t(31).
    assert!(
        store
            .claim_due(&claim_req(t(2), 10))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .claim_due(&claim_req(t(30), 10))
            .await
            .unwrap()
            .is_empty()
    );
    let again = store.claim_due(&claim_req(t(31), 10)).await.unwrap();
    assert_eq!(again.len(), 1, "an expired lease is due again");
    assert_eq!(again[0].delivery_id, first[0].delivery_id);
    assert_ne!(again[0].lease, first[0].lease, "a new lease token");
    assert_eq!(again[0].attempt, 1);

    // The old holder can no longer finish; the new one can.
    let stale = store
        .finish(
            Arc::from([completion(&first[0], Next::Succeeded, t(32))]),
            t(32),
        )
        .await
        .unwrap();
    assert_eq!(stale, 0);
    finish_one(&store, &again[0], Next::Succeeded, t(33)).await;
}

/// `per_endpoint_max` caps one endpoint's share of a claim and `exclude` skips endpoints.
pub async fn claim_honours_per_endpoint_max_and_exclude(store: StoreRef) {
    let m = merchant(&store).await;
    let a = endpoint(&store, &m, &["Payment"]).await;
    let b = endpoint(&store, &m, &["Payout"]).await;
    let c = endpoint(&store, &m, &["Refund"]).await;
    let mut batch = Vec::new();
    for i in 0..10 {
        batch.push(event(&m, "Payment", t(i)));
        batch.push(event(&m, "Payout", t(i)));
        batch.push(event(&m, "Refund", t(i)));
    }
    store.ingest(&batch).await.unwrap();

    let req = ClaimRequest {
        now: t(100),
        max: 100,
        lease_until: t(200),
        per_endpoint_max: 3,
        exclude: vec![c.id.clone()],
        new_first: false,
    };
    let got = store.claim_due(&req).await.unwrap();
    let count = |id| got.iter().filter(|cl| &cl.endpoint.id == id).count();
    assert_eq!(count(&a.id), 3);
    assert_eq!(count(&b.id), 3);
    assert_eq!(count(&c.id), 0);
    // Each endpoint's share is its oldest due deliveries.
    let a_times: Vec<_> = got
        .iter()
        .filter(|cl| cl.endpoint.id == a.id)
        .map(|cl| cl.event_created_at)
        .collect();
    assert_eq!(a_times, vec![t(0), t(1), t(2)]);

    let rest = store
        .claim_due(&ClaimRequest {
            exclude: vec![a.id.clone(), b.id.clone()],
            new_first: false,
            ..req.clone()
        })
        .await
        .unwrap();
    assert_eq!(rest.len(), 3);
    assert!(rest.iter().all(|cl| cl.endpoint.id == c.id));
}

/// One endpoint's backlog at the head of the queue (an endpoint recovered after an outage) does
/// not cut a claim to that endpoint's share: the rest comes from the other endpoints with due
/// deliveries, each its oldest, and successive claims walk on so that no endpoint waits for the
/// backlog to drain.
pub async fn claim_spreads_over_endpoints_behind_one_backlog(store: StoreRef) {
    let head = merchant(&store).await;
    let backlog = endpoint(&store, &head, &[]).await;
    let batch: Vec<_> = (0..200).map(|i| event(&head, "Payment", t(i))).collect();
    store.ingest(&batch).await.unwrap();
    // Twelve more endpoints (more than one claim's walk), each with a few later deliveries.
    let mut others = Vec::new();
    for _ in 0..12 {
        let m = merchant(&store).await;
        others.push(endpoint(&store, &m, &[]).await.id);
        let batch: Vec<_> = (0..4).map(|i| event(&m, "Payment", t(300 + i))).collect();
        store.ingest(&batch).await.unwrap();
    }

    let req = ClaimRequest {
        now: t(1000),
        max: 20,
        lease_until: t(2000),
        per_endpoint_max: 4,
        exclude: vec![],
        new_first: false,
    };
    let first = store.claim_due(&req).await.unwrap();
    assert_eq!(first.len(), 20, "the claim is filled from other endpoints");
    let count =
        |got: &[blockhook_core::Claim], id| got.iter().filter(|c| &c.endpoint.id == id).count();
    assert_eq!(
        count(&first, &backlog.id),
        4,
        "the backlog gets its share, no more"
    );
    let backlog_times: Vec<_> = first
        .iter()
        .filter(|c| c.endpoint.id == backlog.id)
        .map(|c| c.event_created_at)
        .collect();
    assert_eq!(backlog_times, vec![t(0), t(1), t(2), t(3)], "oldest first");
    for other in &others {
        let times: Vec<_> = first
            .iter()
            .filter(|c| &c.endpoint.id == other)
            .map(|c| c.event_created_at)
            .collect();
        let oldest: Vec<_> = (0..times.len() as i64).map(|i| t(300 + i)).collect();
        assert!(times.len() <= 4, "an endpoint's share at most: {times:?}");
        assert_eq!(times, oldest, "each endpoint's oldest first");
    }

    // Claim on: every endpoint is reached long before the backlog drains.
    let mut served: HashSet<_> = first.iter().map(|c| c.endpoint.id.clone()).collect();
    let mut claims = 1;
    while !others.iter().all(|o| served.contains(o)) {
        claims += 1;
        assert!(
            claims <= 6,
            "endpoints still waiting behind the backlog: {served:?}"
        );
        let got = store.claim_due(&req).await.unwrap();
        assert!(count(&got, &backlog.id) <= 4);
        served.extend(got.iter().map(|c| c.endpoint.id.clone()));
    }
}

/// A disabled endpoint's pending deliveries wait; they are claimed again once it is re-enabled.
pub async fn disabled_endpoint_not_claimed(store: StoreRef) {
    let m = merchant(&store).await;
    let ep = endpoint(&store, &m, &[]).await;
    ingest_one(&store, &m, "Payment", t(0)).await;
    set_enabled(&store, &ep, false).await;
    assert!(claim_all(&store, t(10)).await.is_empty());
    let stats = store.queue_stats(t(10)).await.unwrap();
    assert_eq!(stats.due + stats.scheduled, 1, "still pending: {stats:?}");
    set_enabled(&store, &ep, true).await;
    assert_eq!(claim_all(&store, t(10)).await.len(), 1);
}

/// Two workers claiming at once never get the same delivery.
pub async fn concurrent_claimers_never_share(store: StoreRef) {
    let m = merchant(&store).await;
    endpoint(&store, &m, &[]).await;
    endpoint(&store, &m, &[]).await;
    let batch: Vec<_> = (0..150).map(|i| event(&m, "Payment", t(i % 7))).collect();
    store.ingest(&batch).await.unwrap();

    let worker = |store: StoreRef| async move {
        let mut mine = Vec::new();
        loop {
            let got = store.claim_due(&claim_req(t(10), 7)).await.unwrap();
            if got.is_empty() {
                break mine;
            }
            mine.extend(got.into_iter().map(|c| c.delivery_id));
            tokio::task::yield_now().await;
        }
    };
    let (x, y) = tokio::join!(
        tokio::spawn(worker(store.clone())),
        tokio::spawn(worker(store.clone()))
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    let all: HashSet<DeliveryId> = x.iter().chain(&y).cloned().collect();
    assert_eq!(x.len() + y.len(), 300, "every delivery claimed");
    assert_eq!(all.len(), 300, "no delivery claimed twice");
}

/// `Succeeded` is final: logged, lease released, never claimed again.
pub async fn finish_succeeded(store: StoreRef) {
    let m = merchant(&store).await;
    endpoint(&store, &m, &[]).await;
    let ev = ingest_one(&store, &m, "Payment", t(0)).await;
    let c = claim_all(&store, t(1)).await.remove(0);
    finish_one(&store, &c, Next::Succeeded, t(2)).await;
    let d = store.get_delivery(&m, &c.delivery_id, t(3)).await.unwrap();
    assert_eq!(d.state, DeliveryState::Succeeded);
    assert_eq!(d.attempts, 1);
    assert_eq!(d.last_status, Some(200));
    assert_eq!(d.next_attempt_at, None);
    assert_eq!(d.updated_at, t(2));
    assert_eq!(d.event_id, ev);
    assert!(claim_all(&store, t(1000)).await.is_empty());
    assert_eq!(store.next_due_at().await.unwrap(), None);
    // Finishing twice changes nothing: the lease was released.
    let again = store
        .finish(Arc::from([completion(&c, Next::Succeeded, t(4))]), t(4))
        .await
        .unwrap();
    assert_eq!(again, 0);
    assert_eq!(
        store.list_attempts(&m, &c.delivery_id).await.unwrap().len(),
        1
    );
}

/// `RetryAt` keeps the delivery pending until the given time; the next claim is attempt 2.
pub async fn finish_retry_reschedules(store: StoreRef) {
    let m = merchant(&store).await;
    endpoint(&store, &m, &[]).await;
    ingest_one(&store, &m, "Payment", t(0)).await;
    let c = claim_all(&store, t(1)).await.remove(0);
    finish_one(&store, &c, Next::RetryAt(t(61)), t(2)).await;
    let d = store.get_delivery(&m, &c.delivery_id, t(3)).await.unwrap();
    assert_eq!(d.state, DeliveryState::Pending);
    assert_eq!(d.attempts, 1);
    assert_eq!(d.last_status, Some(500));
    assert_eq!(d.next_attempt_at, Some(t(61)));
    assert_eq!(store.next_due_at().await.unwrap(), Some(t(61)));
    assert!(
        claim_all(&store, t(60)).await.is_empty(),
        "not before its time"
    );
    let c2 = claim_all(&store, t(61)).await.remove(0);
    assert_eq!(c2.delivery_id, c.delivery_id);
    assert_eq!(c2.attempt, 2);
    assert_eq!(c2.round_attempt, 2);
    assert_ne!(c2.lease, c.lease);
}

/// A claim carries the endpoint as it is when claimed: an update between two claims of the same
/// delivery (new URL, secret, headers) shows in the second, however the store keeps endpoints
/// in memory; and an endpoint disabled by a 410 and enabled again is claimable again.
pub async fn claim_sees_endpoint_updates(store: StoreRef) {
    let m = merchant(&store).await;
    let ep = endpoint(&store, &m, &[]).await;
    ingest_one(&store, &m, "Payment", t(0)).await;
    let c = claim_all(&store, t(1)).await.remove(0);
    assert_same_endpoint(&c.endpoint, &ep);
    finish_one(&store, &c, Next::RetryAt(t(61)), t(2)).await;

    let mut changed = store.get_endpoint(&m, &ep.id).await.unwrap();
    changed.url = blockhook_core::EndpointUrl::parse("https://moved.example/hook", false).unwrap();
    changed.secret = blockhook_core::SealedSecret::from_stored(vec![0x5A; 40]);
    changed.updated_at = t(3);
    store.update_endpoint(&changed).await.unwrap();
    let c2 = claim_all(&store, t(61)).await.remove(0);
    assert_eq!(c2.delivery_id, c.delivery_id);
    assert_eq!(c2.endpoint.url.as_str(), "https://moved.example/hook");
    assert_eq!(c2.endpoint.secret.as_stored(), vec![0x5A; 40]);

    // Two updates within the same millisecond are still told apart.
    finish_one(&store, &c2, Next::RetryAt(t(121)), t(62)).await;
    let mut again = store.get_endpoint(&m, &ep.id).await.unwrap();
    again.url = blockhook_core::EndpointUrl::parse("https://again.example/hook", false).unwrap();
    store.update_endpoint(&again).await.unwrap();
    let c3 = claim_all(&store, t(121)).await.remove(0);
    assert_eq!(c3.endpoint.url.as_str(), "https://again.example/hook");

    // Disabled by a 410 (inside `finish`), enabled again by the merchant: claimed again, and
    // the claim says enabled.
    ingest_one(&store, &m, "Payment", t(130)).await;
    let mut claims = claim_all(&store, t(131)).await;
    assert_eq!(claims.len(), 1);
    finish_one(&store, &claims.remove(0), Next::DisableEndpoint, t(132)).await;
    finish_one(&store, &c3, Next::RetryAt(t(200)), t(133)).await;
    assert!(claim_all(&store, t(200)).await.is_empty(), "disabled");
    set_enabled(&store, &ep, true).await;
    let c4 = claim_all(&store, t(200)).await.remove(0);
    assert!(c4.endpoint.enabled);
    assert_eq!(c4.endpoint.disabled_reason, None);
}

/// `GiveUp` fails the delivery for good.
pub async fn finish_give_up_fails(store: StoreRef) {
    let m = merchant(&store).await;
    endpoint(&store, &m, &[]).await;
    ingest_one(&store, &m, "Payment", t(0)).await;
    let c = claim_all(&store, t(1)).await.remove(0);
    finish_one(&store, &c, Next::GiveUp, t(2)).await;
    let d = store.get_delivery(&m, &c.delivery_id, t(3)).await.unwrap();
    assert_eq!(d.state, DeliveryState::Failed);
    assert_eq!(d.attempts, 1);
    assert_eq!(d.next_attempt_at, None);
    assert!(claim_all(&store, t(100_000)).await.is_empty());
    assert_eq!(store.queue_stats(t(3)).await.unwrap().failed, 1);
}

/// `DisableEndpoint` fails the delivery and disables its endpoint with the reason given; the
/// endpoint's other deliveries wait.
pub async fn finish_disable_endpoint(store: StoreRef) {
    let m = merchant(&store).await;
    let ep = endpoint(&store, &m, &[]).await;
    let other = endpoint(&store, &m, &[]).await;
    ingest_one(&store, &m, "Payment", t(0)).await;
    ingest_one(&store, &m, "Payment", t(5)).await;
    let claims = store.claim_due(&claim_req(t(1), 10)).await.unwrap();
    assert_eq!(claims.len(), 2);
    let gone = claims.iter().find(|c| c.endpoint.id == ep.id).unwrap();
    let fine = claims.iter().find(|c| c.endpoint.id == other.id).unwrap();
    let applied = store
        .finish(
            Arc::from([
                completion(gone, Next::DisableEndpoint, t(2)),
                completion(fine, Next::Succeeded, t(2)),
            ]),
            t(2),
        )
        .await
        .unwrap();
    assert_eq!(applied, 2);
    let d = store
        .get_delivery(&m, &gone.delivery_id, t(3))
        .await
        .unwrap();
    assert_eq!(d.state, DeliveryState::Failed);
    assert_eq!(d.last_status, Some(410));
    let e = store.get_endpoint(&m, &ep.id).await.unwrap();
    assert!(!e.enabled);
    assert_eq!(e.disabled_reason.as_deref(), Some("410 Gone"));
    assert!(store.get_endpoint(&m, &other.id).await.unwrap().enabled);
    let later = claim_all(&store, t(10)).await;
    assert_eq!(later.len(), 1, "only the other endpoint's second delivery");
    assert_eq!(later[0].endpoint.id, other.id);
}

/// A completion with a stale token changes nothing and logs nothing, even inside a batch with
/// valid ones.
pub async fn finish_with_stale_token_changes_nothing(store: StoreRef) {
    let m = merchant(&store).await;
    endpoint(&store, &m, &[]).await;
    ingest_one(&store, &m, "Payment", t(0)).await;
    ingest_one(&store, &m, "Payment", t(0)).await;
    let claims = claim_all(&store, t(1)).await;
    assert_eq!(claims.len(), 2);
    let mut forged = completion(&claims[0], Next::GiveUp, t(2));
    forged.lease = LeaseToken(claims[0].lease.0.wrapping_add(1));
    let good = completion(&claims[1], Next::Succeeded, t(2));
    let applied = store.finish(Arc::from([forged, good]), t(2)).await.unwrap();
    assert_eq!(applied, 1);

    let d = store
        .get_delivery(&m, &claims[0].delivery_id, t(3))
        .await
        .unwrap();
    assert_eq!(
        d.state,
        DeliveryState::InFlight,
        "still leased by the real holder"
    );
    assert_eq!(d.attempts, 0);
    assert_eq!(d.last_status, None);
    assert!(
        store
            .list_attempts(&m, &claims[0].delivery_id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .get_delivery(&m, &claims[1].delivery_id, t(3))
            .await
            .unwrap()
            .state,
        DeliveryState::Succeeded
    );
    // Unknown deliveries are skipped the same way.
    let mut ghost = completion(&claims[0], Next::Succeeded, t(2));
    ghost.delivery_id = DeliveryId::generate();
    ghost.attempt.delivery_id = ghost.delivery_id.clone();
    assert_eq!(store.finish(Arc::from([ghost]), t(2)).await.unwrap(), 0);
    assert_eq!(store.finish(Arc::from([]), t(2)).await.unwrap(), 0);
}

/// Every field of an attempt record round-trips, oldest attempt first.
pub async fn attempt_record_round_trips(store: StoreRef) {
    let m = merchant(&store).await;
    endpoint(&store, &m, &[]).await;
    ingest_one(&store, &m, "Payment", t(0)).await;
    let c1 = claim_all(&store, t(1)).await.remove(0);
    let failed = AttemptRecord {
        id: AttemptId::generate(),
        delivery_id: c1.delivery_id.clone(),
        number: c1.attempt,
        started_at: t(1),
        url: "https://receiver.example/hook?q=ü".to_owned(),
        request_headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("BlockATM-Signature-V2".into(), "ab".repeat(32)),
            ("X-Dup".into(), "1".into()),
            ("X-Dup".into(), "2".into()),
        ],
        status: None,
        response_headers: vec![],
        response_body: Bytes::new(),
        response_truncated: false,
        latency_ms: 10_000,
        error: Some(ErrorClass::Timeout),
        error_detail: Some("no answer within 10s \"quoted\" ✗".into()),
    };
    let done = Completion {
        delivery_id: c1.delivery_id.clone(),
        lease: c1.lease,
        attempt: failed.clone(),
        next: Next::RetryAt(t(61)),
        disable_reason: None,
        releases_key: false,
    };
    assert_eq!(store.finish(Arc::from([done]), t(11)).await.unwrap(), 1);

    let c2 = claim_all(&store, t(61)).await.remove(0);
    // A capped binary body, not valid UTF-8.
    let body: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();
    let ok = AttemptRecord {
        id: AttemptId::generate(),
        delivery_id: c2.delivery_id.clone(),
        number: c2.attempt,
        started_at: t(61),
        url: c2.endpoint.url.as_str().to_owned(),
        request_headers: vec![("BlockATM-Event".into(), "Payment".into())],
        status: Some(200),
        response_headers: vec![("content-type".into(), "application/octet-stream".into())],
        response_body: Bytes::from(body),
        response_truncated: true,
        latency_ms: 0,
        error: None,
        error_detail: None,
    };
    store
        .finish(
            Arc::from([Completion {
                delivery_id: c2.delivery_id.clone(),
                lease: c2.lease,
                attempt: ok.clone(),
                next: Next::Succeeded,
                disable_reason: None,
                releases_key: false,
            }]),
            t(62),
        )
        .await
        .unwrap();

    let logged = store.list_attempts(&m, &c1.delivery_id).await.unwrap();
    assert_eq!(logged, vec![failed, ok]);
}

/// `renew_leases` extends only leases held with the given token.
pub async fn renew_leases_needs_the_right_token(store: StoreRef) {
    let m = merchant(&store).await;
    endpoint(&store, &m, &[]).await;
    ingest_one(&store, &m, "Payment", t(0)).await;
    ingest_one(&store, &m, "Payment", t(0)).await;
    let claims = claim_all(&store, t(1)).await; // leased until t(31)
    assert_eq!(claims.len(), 2);
    let (a, b) = (&claims[0], &claims[1]);
    store
        .renew_leases(
            &[
                (a.delivery_id.clone(), a.lease),
                (b.delivery_id.clone(), LeaseToken(b.lease.0 ^ 1)),
            ],
            t(120),
        )
        .await
        .unwrap();
    let reclaimed = claim_all(&store, t(31)).await;
    assert_eq!(
        reclaimed.len(),
        1,
        "b's lease was not renewed: {reclaimed:?}"
    );
    assert_eq!(reclaimed[0].delivery_id, b.delivery_id);
    let before = claim_all(&store, t(119)).await; // b again (its new lease lapsed at t(61))
    assert!(
        before.iter().all(|x| x.delivery_id != a.delivery_id),
        "a is held until t(120)"
    );
    assert_eq!(
        store
            .get_delivery(&m, &a.delivery_id, t(100))
            .await
            .unwrap()
            .state,
        DeliveryState::InFlight
    );
    let c = claim_all(&store, t(120)).await;
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].delivery_id, a.delivery_id);
    // The old token of `a` can neither renew nor finish now.
    store
        .renew_leases(&[(a.delivery_id.clone(), a.lease)], t(1000))
        .await
        .unwrap();
    assert!(
        claim_all(&store, t(151))
            .await
            .iter()
            .any(|x| x.delivery_id == a.delivery_id)
    );
    store.renew_leases(&[], t(1000)).await.unwrap();
}

/// `next_due_at` is the earliest due time of any pending delivery, counting expired leases.
pub async fn next_due_at_reports_earliest(store: StoreRef) {
    assert_eq!(store.next_due_at().await.unwrap(), None);
    let m = merchant(&store).await;
    endpoint(&store, &m, &[]).await;
    ingest_one(&store, &m, "Payment", t(50)).await;
    ingest_one(&store, &m, "Payment", t(20)).await;
    assert_eq!(store.next_due_at().await.unwrap(), Some(t(20)));
    // The t(20) one claimed with a lease to t(40): its expiry is now the earliest due work.
    let req = ClaimRequest {
        lease_until: t(40),
        ..claim_req(t(25), 1)
    };
    let c = store.claim_due(&req).await.unwrap().remove(0);
    assert_eq!(
        store.next_due_at().await.unwrap(),
        Some(t(40)),
        "an expiring lease is due work"
    );
    finish_one(&store, &c, Next::Succeeded, t(26)).await;
    assert_eq!(store.next_due_at().await.unwrap(), Some(t(50)));
    let c = claim_all(&store, t(50)).await.remove(0);
    finish_one(&store, &c, Next::GiveUp, t(51)).await;
    assert_eq!(store.next_due_at().await.unwrap(), None);
}

/// `ingest_and_claim` keeps a claim's other limits: at most `per_endpoint_max` of one endpoint,
/// nothing due after the request's time, and a lease that renews and finishes like a claim's.
pub async fn ingest_and_claim_keeps_a_claims_limits(store: StoreRef) {
    keeps_a_claims_limits(store, false).await;
}

/// The same with `new_first`, when a store may lease the batch's deliveries as it inserts them.
pub async fn ingest_and_claim_new_first_keeps_a_claims_limits(store: StoreRef) {
    keeps_a_claims_limits(store, true).await;
}

async fn keeps_a_claims_limits(store: StoreRef, new_first: bool) {
    let m = merchant(&store).await;
    let a = endpoint(&store, &m, &[]).await;
    let b = endpoint(&store, &m, &[]).await;
    // Three events at t(0)..t(2) and one at t(30), after the request's time.
    let mut batch: Vec<_> = (0..3).map(|i| event(&m, "Payment", t(i))).collect();
    batch.push(event(&m, "Payment", t(30)));
    let req = ClaimRequest {
        now: t(10),
        max: 100,
        lease_until: t(40),
        per_endpoint_max: 2,
        exclude: vec![],
        new_first,
    };
    let (ingested, handed) = store.ingest_and_claim(&batch, &req).await.unwrap();
    assert!(ingested.iter().all(|i| i.deliveries == 2));
    let of = |id: &EndpointId| handed.iter().filter(|c| &c.endpoint.id == id).count();
    assert_eq!(
        (of(&a.id), of(&b.id)),
        (2, 2),
        "per_endpoint_max of each endpoint"
    );
    assert!(
        handed.iter().all(|c| c.event_created_at <= t(10)),
        "nothing due after the request's time"
    );

    // Handed leases renew like claimed ones: still leased past the first expiry.
    let leases: Vec<_> = handed
        .iter()
        .map(|c| (c.delivery_id.clone(), c.lease))
        .collect();
    store.renew_leases(&leases, t(100)).await.unwrap();
    let rest = store.claim_due(&claim_req(t(50), 100)).await.unwrap();
    let handed_ids: HashSet<_> = handed.iter().map(|c| c.delivery_id.clone()).collect();
    assert_eq!(rest.len(), 8 - handed.len(), "the others, once due");
    assert!(rest.iter().all(|c| !handed_ids.contains(&c.delivery_id)));
    for c in handed.iter().chain(&rest) {
        finish_one(&store, c, Next::Succeeded, t(60)).await;
    }
    assert_eq!(
        store.next_due_at().await.unwrap(),
        None,
        "every lease finished"
    );
}

/// `ingest_and_claim` stores like `ingest` and leases at most what the same claim would, under
/// one lease: the handed deliveries are not claimed again while it lives, the rest stay due,
/// excluded endpoints are left out, and a handed claim finishes like any other. (The trait allows
/// a store to hand nothing; both of ours hand off.)
pub async fn ingest_and_claim_leases_like_a_claim(store: StoreRef) {
    leases_like_a_claim(store, false).await;
}

/// The same with `new_first`, when a store may lease the batch's deliveries as it inserts them.
pub async fn ingest_and_claim_new_first_leases_like_a_claim(store: StoreRef) {
    leases_like_a_claim(store, true).await;
}

async fn leases_like_a_claim(store: StoreRef, new_first: bool) {
    let m = merchant(&store).await;
    let a = endpoint(&store, &m, &["Payment"]).await;
    let skipped = endpoint(&store, &m, &["Payout"]).await;
    let batch: Vec<_> = (0..3)
        .flat_map(|i| [event(&m, "Payment", t(i)), event(&m, "Payout", t(i))])
        .collect();
    let req = ClaimRequest {
        now: t(10),
        max: 2,
        lease_until: t(40),
        per_endpoint_max: 10,
        exclude: vec![skipped.id.clone()],
        new_first,
    };
    let (ingested, handed) = store.ingest_and_claim(&batch, &req).await.unwrap();
    assert_eq!(ingested.len(), 6, "every event stored");
    assert!(ingested.iter().all(|i| !i.duplicate && i.deliveries == 1));
    assert_eq!(handed.len(), 2, "at most `max`, and both stores hand off");
    let times: Vec<_> = handed.iter().map(|c| c.event_created_at).collect();
    assert_eq!(times, [t(0), t(1)][..handed.len()], "oldest due first");
    for c in &handed {
        assert_same_endpoint(&c.endpoint, &a);
        assert_eq!(c.attempt, 1);
        assert_eq!(c.payload.bytes().as_ref(), PAYLOAD.as_bytes());
    }

    // The rest is due: exactly what was not handed, under a live lease for the handed ones.
    let rest = store.claim_due(&claim_req(t(11), 100)).await.unwrap();
    assert_eq!(rest.len(), 6 - handed.len());
    let handed_ids: HashSet<_> = handed.iter().map(|c| c.delivery_id.clone()).collect();
    assert!(rest.iter().all(|c| !handed_ids.contains(&c.delivery_id)));
    for c in &handed {
        finish_one(&store, c, Next::Succeeded, t(12)).await;
    }
    if let Some(first) = handed.first() {
        let states: HashSet<_> = store
            .list_deliveries(&m, &first.event_id, t(13))
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.state)
            .collect();
        assert_eq!(states, HashSet::from([DeliveryState::Succeeded]));
    }
    // A duplicate ingest hands nothing and stores nothing.
    let mut keyed = keyed_event(&m, "Payment", "k-1", t(20));
    store
        .ingest_and_claim(std::slice::from_ref(&keyed), &claim_req(t(21), 10))
        .await
        .unwrap();
    keyed.id = blockhook_core::EventId::generate();
    let (again, none) = store
        .ingest_and_claim(std::slice::from_ref(&keyed), &claim_req(t(22), 10))
        .await
        .unwrap();
    assert!(again[0].duplicate);
    assert!(none.is_empty(), "nothing new to hand");
}

/// With `new_first` (the dispatcher has room for any backlog) a hand-off leases the batch's own
/// deliveries, even while an older one is due: that one stays for the dispatcher's claim. Both
/// stores insert them already leased.
pub async fn ingest_and_claim_new_first_hands_the_batchs_own(store: StoreRef) {
    let m = merchant(&store).await;
    endpoint(&store, &m, &[]).await;
    let older = store.ingest(&[event(&m, "Payment", t(0))]).await.unwrap();
    let batch = [event(&m, "Payment", t(5))];
    let req = ClaimRequest {
        now: t(10),
        max: 1,
        lease_until: t(40),
        per_endpoint_max: 10,
        exclude: vec![],
        new_first: true,
    };
    let (ingested, handed) = store.ingest_and_claim(&batch, &req).await.unwrap();
    let handed: Vec<_> = handed.iter().map(|c| c.event_id.clone()).collect();
    assert_eq!(
        handed,
        [ingested[0].event_id.clone()],
        "the batch's own delivery"
    );
    let claimed = store.claim_due(&claim_req(t(11), 10)).await.unwrap();
    let claimed: Vec<_> = claimed.iter().map(|c| c.event_id.clone()).collect();
    assert_eq!(
        claimed,
        [older[0].event_id.clone()],
        "the older one, still due"
    );
}
