//! Endpoints: every field round-trips, listing pages newest first, updates replace every mutable
//! field, deletes take deliveries and attempts along, and another merchant's endpoint is
//! indistinguishable from one that does not exist.

use blockhook_core::{
    Cursor, EndpointId, EndpointUrl, EventFilter, ExtraHeaders, Label, MerchantId, Next,
    PreviousSecret, SealedSecret, SigningMode, StoreRef, SuccessPolicy,
};

use crate::contract::fixtures::*;

/// Create with every optional field set, read back, list with a cursor, update, delete.
pub async fn endpoint_crud(store: StoreRef) {
    let m = merchant(&store).await;
    let mut full = endpoint_spec(
        &m,
        "https://shop.example/hooks/blockatm?x=1",
        &["Payment", "QR-Payout"],
    );
    full.description = Some("cashier 91 — 收款".to_owned());
    full.signing_mode = SigningMode::Standard;
    full.success_policy = SuccessPolicy::Any2xx;
    full.headers = ExtraHeaders::parse(vec![
        ("X-Shop".into(), "a b\tc".into()),
        ("X-Other".into(), "2".into()),
    ])
    .unwrap();
    full.rate_limit = Some(25);
    full.label = Some(Label::parse("cashier:91").unwrap());
    full.secret = SealedSecret::from_stored((0u8..=255).collect());
    full.previous_secret = Some(PreviousSecret {
        secret: SealedSecret::from_stored(vec![3; 48]),
        until: t(86_400_000),
    });
    full.created_at = t(5);
    full.updated_at = t(6);
    store.create_endpoint(&full).await.unwrap();
    assert_same_endpoint(&store.get_endpoint(&m, &full.id).await.unwrap(), &full);

    // Ten more; list two at a time, newest first, each exactly once.
    let mut ids = vec![full.id.clone()];
    for _ in 0..10 {
        ids.push(endpoint(&store, &m, &[]).await.id);
    }
    let mut seen = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let page = store.list_endpoints(&m, after.as_ref(), 3).await.unwrap();
        assert!(page.data.len() <= 3);
        seen.extend(page.data.iter().map(|e| e.id.clone()));
        match page.next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids);

    // Update replaces every mutable field.
    let mut changed = full.clone();
    changed.url = EndpointUrl::parse("https://new.example/h", false).unwrap();
    changed.description = None;
    changed.filter = EventFilter::all();
    changed.signing_mode = SigningMode::Raw;
    changed.success_policy = SuccessPolicy::Exactly200;
    changed.headers = ExtraHeaders::default();
    changed.rate_limit = None;
    changed.label = None;
    changed.enabled = false;
    changed.disabled_reason = Some("paused by merchant".to_owned());
    changed.secret = SealedSecret::from_stored(vec![7; 12]);
    changed.previous_secret = None;
    changed.updated_at = t(60);
    store.update_endpoint(&changed).await.unwrap();
    assert_same_endpoint(&store.get_endpoint(&m, &full.id).await.unwrap(), &changed);

    store.delete_endpoint(&m, &full.id).await.unwrap();
    assert_not_found(store.get_endpoint(&m, &full.id).await, "endpoint");
    assert_not_found(store.delete_endpoint(&m, &full.id).await, "endpoint");
    assert_not_found(store.update_endpoint(&changed).await, "endpoint");

    // An endpoint for a merchant that does not exist.
    let orphan = endpoint_spec(&MerchantId::generate(), "https://x.example/", &[]);
    assert_not_found(store.create_endpoint(&orphan).await, "merchant");
    // A second endpoint with an existing id.
    let mut dup = endpoint_spec(&m, "https://x.example/", &[]);
    dup.id = ids[0].clone();
    assert_conflict(store.create_endpoint(&dup).await, "");
}

/// Another merchant's endpoint answers `NotFound` to every verb, exactly like an unknown id,
/// and is never listed.
pub async fn endpoint_tenant_isolation(store: StoreRef) {
    let owner = merchant(&store).await;
    let intruder = merchant_named(&store, "Intruder").await;
    let ep = endpoint(&store, &owner, &[]).await;
    endpoint(&store, &intruder, &[]).await;

    for id in [ep.id.clone(), EndpointId::generate()] {
        assert_not_found(store.get_endpoint(&intruder, &id).await, "endpoint");
        assert_not_found(store.delete_endpoint(&intruder, &id).await, "endpoint");
        assert_not_found(store.endpoint_health(&intruder, &id, T0).await, "endpoint");
        assert_not_found(store.recover(&intruder, &id, T0, t(1)).await, "endpoint");
    }
    // Updating it under the intruder's name (or moving it there) is NotFound too.
    let mut hijack = ep.clone();
    hijack.merchant_id = intruder.clone();
    hijack.url = EndpointUrl::parse("https://evil.example/", false).unwrap();
    assert_not_found(store.update_endpoint(&hijack).await, "endpoint");

    let listed = store.list_endpoints(&intruder, None, 100).await.unwrap();
    assert_eq!(listed.data.len(), 1);
    assert!(listed.data.iter().all(|e| e.merchant_id == intruder));
    assert_same_endpoint(&store.get_endpoint(&owner, &ep.id).await.unwrap(), &ep);
}

/// Deleting an endpoint deletes its deliveries and their attempts; the event stays.
pub async fn endpoint_delete_removes_deliveries(store: StoreRef) {
    let m = merchant(&store).await;
    let doomed = endpoint(&store, &m, &[]).await;
    let kept = endpoint(&store, &m, &[]).await;
    let ev = ingest_one(&store, &m, "Payment", t(0)).await;
    for c in claim_all(&store, t(1)).await {
        finish_one(&store, &c, Next::RetryAt(t(100)), t(1)).await;
    }
    let before = store.list_deliveries(&m, &ev, t(2)).await.unwrap();
    assert_eq!(before.len(), 2);
    let gone = before
        .iter()
        .find(|d| d.endpoint_id == doomed.id)
        .unwrap()
        .id
        .clone();

    store.delete_endpoint(&m, &doomed.id).await.unwrap();

    let after = store.list_deliveries(&m, &ev, t(2)).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].endpoint_id, kept.id);
    assert_not_found(store.get_delivery(&m, &gone, t(2)).await, "delivery");
    assert_not_found(store.list_attempts(&m, &gone).await, "delivery");
    assert!(store.get_event(&m, &ev).await.is_ok());
    let due = claim_all(&store, t(200)).await;
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].endpoint.id, kept.id);
}
