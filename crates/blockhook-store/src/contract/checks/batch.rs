//! Batch reads: what views listing many things read in one query instead of one per thing. Each
//! must answer exactly what the single read answers for every id it covers, stay inside the
//! merchant (another merchant's ids and unknown ids contribute nothing), and keep its order.

use blockhook_core::{
    ApiKeyId, EndpointHealth, ErrorClass, EventId, MerchantId, NewApiKey, Next, StoreRef,
};

use crate::contract::fixtures::*;

/// Keys of several merchants, newest first, exactly those the per-merchant listing shows.
pub async fn api_keys_of_several_merchants(store: StoreRef) {
    let a = merchant(&store).await;
    let b = merchant_named(&store, "B").await;
    let c = merchant_named(&store, "C").await;
    for (i, m) in [&a, &b, &a, &c, &b].into_iter().enumerate() {
        let key = NewApiKey {
            id: ApiKeyId::generate(),
            merchant_id: m.clone(),
            prefix: format!("bhk_{i}"),
            hash: format!("{i:064x}"),
            created_at: t(i as i64),
        };
        store.create_api_key(&key).await.unwrap();
    }
    let unknown = MerchantId::parse("mch_nobody").unwrap();

    let got = store
        .list_api_keys_of(&[b.clone(), a.clone(), unknown])
        .await
        .unwrap();
    let mut want = store.list_api_keys(&a).await.unwrap();
    want.extend(store.list_api_keys(&b).await.unwrap());
    want.sort_by(|x, y| y.id.as_str().cmp(x.id.as_str()));
    assert_eq!(got.len(), 4);
    assert_eq!(got, want, "newest first across merchants");
    assert!(store.list_api_keys_of(&[]).await.unwrap().is_empty());
}

/// Deliveries of several events: by event id, then as `list_deliveries` orders and reports them
/// (in-flight state included).
pub async fn deliveries_of_several_events(store: StoreRef) {
    let m = merchant(&store).await;
    let other = merchant_named(&store, "Other").await;
    endpoint(&store, &m, &[]).await;
    endpoint(&store, &m, &["Payment"]).await;
    endpoint(&store, &other, &[]).await;
    let first = ingest_one(&store, &m, "Payment", t(0)).await;
    let second = ingest_one(&store, &m, "Refund", t(1)).await;
    let third = ingest_one(&store, &m, "Payout", t(2)).await;
    let foreign = ingest_one(&store, &other, "Payment", t(3)).await;
    // Lease some, so in-flight deliveries are among them.
    let claims = store.claim_due(&claim_req(t(5), 2)).await.unwrap();
    assert_eq!(claims.len(), 2);

    let asked = [second.clone(), foreign, first.clone(), third.clone()];
    let got = store
        .list_deliveries_of_events(&m, &asked, t(10))
        .await
        .unwrap();
    let mut ordered: Vec<&EventId> = vec![&first, &second, &third];
    ordered.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    let mut want = Vec::new();
    for ev in ordered {
        want.extend(store.list_deliveries(&m, ev, t(10)).await.unwrap());
    }
    assert_eq!(
        got.len(),
        4,
        "two for `first`, one each for `second` and `third`"
    );
    assert_eq!(got, want);
    assert!(
        store
            .list_deliveries_of_events(&m, &[], t(10))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Every attempt of an event: by delivery id, then attempt number, as `list_attempts` reports
/// them; nothing for another merchant.
pub async fn attempts_of_an_event(store: StoreRef) {
    let m = merchant(&store).await;
    let other = merchant_named(&store, "Other").await;
    let a = endpoint(&store, &m, &[]).await;
    endpoint(&store, &m, &[]).await;
    let ev = ingest_one(&store, &m, "Payment", t(0)).await;

    // One delivery is tried twice (a timeout, then success), the other once.
    let claims = claim_all(&store, t(1)).await;
    assert_eq!(claims.len(), 2);
    let mut done = Vec::new();
    for c in &claims {
        let retry = c.endpoint.id == a.id;
        let next = if retry {
            Next::RetryAt(t(5))
        } else {
            Next::Succeeded
        };
        let mut comp = completion(c, next, t(2));
        if retry {
            comp.attempt.error = Some(ErrorClass::Timeout);
            comp.attempt.status = None;
        }
        done.push(comp);
    }
    assert_eq!(store.finish(done.into(), t(2)).await.unwrap(), 2);
    let again = claim_all(&store, t(6)).await;
    assert_eq!(again.len(), 1);
    finish_one(&store, &again[0], Next::Succeeded, t(7)).await;

    let got = store.list_attempts_of_event(&m, &ev).await.unwrap();
    let mut deliveries = store.list_deliveries(&m, &ev, t(8)).await.unwrap();
    deliveries.sort_by(|x, y| x.id.as_str().cmp(y.id.as_str()));
    let mut want = Vec::new();
    for d in &deliveries {
        want.extend(store.list_attempts(&m, &d.id).await.unwrap());
    }
    assert_eq!(got.len(), 3);
    assert_eq!(got, want);
    assert!(
        store
            .list_attempts_of_event(&other, &ev)
            .await
            .unwrap()
            .is_empty(),
        "another merchant's event reads like an unknown one"
    );
}

/// Health of several endpoints in one call: the figures `endpoint_health` gives each, in the
/// order asked, a default for an endpoint without attempts, nothing for another merchant's.
pub async fn health_of_several_endpoints(store: StoreRef) {
    let m = merchant(&store).await;
    let other = merchant_named(&store, "Other").await;
    let busy = endpoint(&store, &m, &["Payment"]).await;
    let quiet = endpoint(&store, &m, &["Payout"]).await;
    let foreign = endpoint(&store, &other, &[]).await;
    for i in 0..4 {
        ingest_one(&store, &m, "Payment", t(i)).await;
    }
    ingest_one(&store, &other, "Payment", t(0)).await;
    let claims = claim_all(&store, t(10)).await;
    assert_eq!(claims.len(), 5);
    let mut done = Vec::new();
    for (i, c) in claims.iter().enumerate() {
        let ok = i % 2 == 0;
        let mut comp = completion(
            c,
            if ok { Next::Succeeded } else { Next::GiveUp },
            t(10 + i as i64),
        );
        comp.attempt.latency_ms = 100 + i as u32;
        if !ok {
            comp.attempt.error = Some(ErrorClass::Timeout);
            comp.attempt.status = None;
        }
        done.push(comp);
    }
    assert_eq!(store.finish(done.into(), t(20)).await.unwrap(), 5);

    for since in [T0, t(11), t(30)] {
        let got = store
            .endpoints_health(
                &m,
                &[quiet.id.clone(), foreign.id.clone(), busy.id.clone()],
                since,
            )
            .await
            .unwrap();
        let want = vec![
            (quiet.id.clone(), EndpointHealth::default()),
            (
                busy.id.clone(),
                store.endpoint_health(&m, &busy.id, since).await.unwrap(),
            ),
        ];
        assert_eq!(got, want, "since {since:?}");
    }
    assert!(
        store
            .endpoints_health(&m, &[], T0)
            .await
            .unwrap()
            .is_empty()
    );
}
