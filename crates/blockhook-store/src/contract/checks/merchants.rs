//! Merchants and their API keys: create, read, list, suspend, delete (with everything owned).

use blockhook_core::{
    ApiKeyId, Cursor, MerchantId, MerchantStatus, NewApiKey, NewMerchant, Next, StoreRef,
};

use crate::contract::fixtures::*;

/// Create, read back, list newest first with a cursor, refuse a duplicate id.
pub async fn merchant_crud(store: StoreRef) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let m = NewMerchant::parse(MerchantId::generate(), &format!("Merchant {i}"), t(i)).unwrap();
        let created = store.create_merchant(&m).await.unwrap();
        assert_eq!(created.id, m.id);
        assert_eq!(created.name, format!("Merchant {i}"));
        assert_eq!(created.status, MerchantStatus::Active);
        assert_eq!(created.created_at, t(i));
        assert_eq!(store.get_merchant(&m.id).await.unwrap(), created);
        ids.push(m.id);
    }

    let again = NewMerchant::parse(ids[0].clone(), "Someone else", t(9)).unwrap();
    assert_conflict(store.create_merchant(&again).await, "");
    assert_eq!(
        store.get_merchant(&ids[0]).await.unwrap().name,
        "Merchant 0"
    );

    assert_not_found(
        store.get_merchant(&MerchantId::generate()).await,
        "merchant",
    );

    // Newest first, two per page, every merchant exactly once.
    let mut seen = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let page = store.list_merchants(after.as_ref(), 2).await.unwrap();
        assert!(page.data.len() <= 2);
        seen.extend(page.data.iter().map(|m| m.id.clone()));
        match page.next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    let mut want = ids.clone();
    want.reverse();
    assert_eq!(seen, want, "newest first, no skips, no repeats");
}

/// Suspending and reactivating; an unknown merchant is `NotFound`.
pub async fn merchant_suspend(store: StoreRef) {
    let m = merchant(&store).await;
    let s = store
        .set_merchant_status(&m, MerchantStatus::Suspended)
        .await
        .unwrap();
    assert_eq!(s.status, MerchantStatus::Suspended);
    assert_eq!(
        store.get_merchant(&m).await.unwrap().status,
        MerchantStatus::Suspended
    );
    let a = store
        .set_merchant_status(&m, MerchantStatus::Active)
        .await
        .unwrap();
    assert_eq!(a.status, MerchantStatus::Active);
    assert_eq!(a.name, "Acme Ltd");
    assert_not_found(
        store
            .set_merchant_status(&MerchantId::generate(), MerchantStatus::Suspended)
            .await,
        "merchant",
    );
}

/// Deleting a merchant removes its keys, endpoints, events, deliveries and attempts, and
/// leaves other merchants alone.
pub async fn merchant_delete_cascades(store: StoreRef) {
    let doomed = merchant(&store).await;
    let other = merchant_named(&store, "Other").await;
    let key = NewApiKey {
        id: ApiKeyId::generate(),
        merchant_id: doomed.clone(),
        prefix: "bhk_doom".into(),
        hash: "aa".repeat(32),
        created_at: T0,
    };
    store.create_api_key(&key).await.unwrap();
    let ep = endpoint(&store, &doomed, &[]).await;
    let other_ep = endpoint(&store, &other, &[]).await;
    let ev = ingest_one(&store, &doomed, "Payment", t(0)).await;
    let other_ev = ingest_one(&store, &other, "Payment", t(0)).await;
    // One attempt logged and one delivery left pending for the doomed merchant.
    let claims = claim_all(&store, t(1)).await;
    assert_eq!(claims.len(), 2);
    for c in &claims {
        finish_one(&store, c, Next::RetryAt(t(100)), t(1)).await;
    }
    let doomed_dlv = store.list_deliveries(&doomed, &ev, t(2)).await.unwrap()[0]
        .id
        .clone();

    store.delete_merchant(&doomed).await.unwrap();

    assert_not_found(store.get_merchant(&doomed).await, "merchant");
    assert_eq!(store.api_key_by_hash(&key.hash).await.unwrap(), None);
    assert_not_found(store.get_endpoint(&doomed, &ep.id).await, "endpoint");
    assert_not_found(store.get_event(&doomed, &ev).await, "event");
    assert_not_found(
        store.get_delivery(&doomed, &doomed_dlv, t(2)).await,
        "delivery",
    );
    assert_not_found(store.list_attempts(&doomed, &doomed_dlv).await, "delivery");
    assert_not_found(store.delete_merchant(&doomed).await, "merchant");

    // Only the other merchant's delivery is left to dispatch, and its data is intact.
    let left = claim_all(&store, t(200)).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].event_id, other_ev);
    assert_eq!(
        store.get_endpoint(&other, &other_ep.id).await.unwrap().id,
        other_ep.id
    );
    let stats = store.queue_stats(t(200)).await.unwrap();
    assert_eq!(
        stats.due + stats.scheduled + stats.in_flight + stats.failed + stats.succeeded,
        1
    );
}

/// API keys: create, look up by hash (revoked or not), list newest first, revoke idempotently,
/// and tenant isolation on revoke.
pub async fn api_key_lifecycle(store: StoreRef) {
    let m = merchant(&store).await;
    let other = merchant_named(&store, "Other").await;
    let mut keys = Vec::new();
    for i in 0..3 {
        let k = NewApiKey {
            id: ApiKeyId::generate(),
            merchant_id: m.clone(),
            prefix: format!("bhk_{i}"),
            hash: format!("{i:064x}"),
            created_at: t(i),
        };
        let stored = store.create_api_key(&k).await.unwrap();
        assert_eq!(stored.id, k.id);
        assert_eq!(stored.merchant_id, m);
        assert_eq!(stored.prefix, k.prefix);
        assert_eq!(stored.created_at, t(i));
        assert_eq!(stored.revoked_at, None);
        keys.push(k);
    }

    let found = store
        .api_key_by_hash(&keys[1].hash)
        .await
        .unwrap()
        .expect("key by hash");
    assert_eq!(found.id, keys[1].id);
    assert_eq!(found.merchant_id, m);
    assert_eq!(store.api_key_by_hash(&"f".repeat(64)).await.unwrap(), None);

    let listed: Vec<_> = store
        .list_api_keys(&m)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(
        listed,
        vec![keys[2].id.clone(), keys[1].id.clone(), keys[0].id.clone()]
    );
    assert!(store.list_api_keys(&other).await.unwrap().is_empty());

    // Another merchant cannot revoke it; an unknown key is NotFound alike.
    assert_not_found(
        store.revoke_api_key(&other, &keys[1].id, t(10)).await,
        "api_key",
    );
    assert_not_found(
        store.revoke_api_key(&m, &ApiKeyId::generate(), t(10)).await,
        "api_key",
    );
    assert_eq!(
        store
            .api_key_by_hash(&keys[1].hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        None
    );

    store.revoke_api_key(&m, &keys[1].id, t(10)).await.unwrap();
    store.revoke_api_key(&m, &keys[1].id, t(20)).await.unwrap(); // idempotent
    let revoked = store.api_key_by_hash(&keys[1].hash).await.unwrap().unwrap();
    assert_eq!(
        revoked.revoked_at,
        Some(t(10)),
        "the first revocation time stays"
    );
    assert_eq!(
        store
            .api_key_by_hash(&keys[0].hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        None
    );

    // A key for an unknown merchant, or with a hash already stored, is refused.
    let orphan = NewApiKey {
        id: ApiKeyId::generate(),
        merchant_id: MerchantId::generate(),
        prefix: "bhk_x".into(),
        hash: "b".repeat(64),
        created_at: T0,
    };
    assert_not_found(store.create_api_key(&orphan).await, "merchant");
    let dup = NewApiKey {
        id: ApiKeyId::generate(),
        ..keys[0].clone()
    };
    assert_conflict(store.create_api_key(&dup).await, "");
}
