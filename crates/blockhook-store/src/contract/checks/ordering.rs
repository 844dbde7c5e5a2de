//! Ordered delivery per ordering key (docs/ordering.md): only a key's head is claimed, at most
//! one delivery of a key is in flight, a failing key blocks only itself, `continue` and `hold`
//! after a final failure, release, resend to the back, recover in publish order, the explicit
//! key winning over `key_field`, numbering under concurrent ingest, and mode changes.

use std::collections::HashMap;

use blockhook_core::{
    Claim, DeliveryState, Endpoint, EventId, MerchantId, Next, OnFinalFailure, Ordering,
    OrderingKey, OrderingMode, ResendLimits, ResendScope, StoreRef, Timestamp,
};

use crate::contract::fixtures::{
    assert_not_found, assert_same_endpoint, claim_all, endpoint_spec, event_with, finish_one,
    merchant, t,
};

fn per_key(on_final_failure: OnFinalFailure, key_field: Option<&str>) -> Ordering {
    Ordering {
        mode: OrderingMode::PerKey,
        key_field: key_field.map(str::to_owned),
        on_final_failure,
    }
}

/// Creates an endpoint receiving every type with this ordering setting.
async fn ordered_endpoint(store: &StoreRef, m: &MerchantId, ordering: Ordering) -> Endpoint {
    let mut ep = endpoint_spec(m, "https://receiver.example/ordered", &[]);
    ep.ordering = ordering;
    store.create_endpoint(&ep).await.expect("create_endpoint");
    ep
}

/// Publishes one event with this explicit key (if any) and payload; returns its id.
async fn publish(
    store: &StoreRef,
    m: &MerchantId,
    key: Option<&str>,
    payload: &str,
    at: Timestamp,
) -> EventId {
    let mut ev = event_with(m, "Payment", payload.as_bytes(), at);
    ev.ordering_key = key.map(|k| OrderingKey::parse(k).expect("fixture ordering key"));
    let done = store
        .ingest(std::slice::from_ref(&ev))
        .await
        .expect("ingest");
    done[0].event_id.clone()
}

/// Publishes `n` events of key `key`, one second apart from `from`.
async fn publish_n(
    store: &StoreRef,
    m: &MerchantId,
    key: &str,
    n: usize,
    from: i64,
) -> Vec<EventId> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(publish(store, m, Some(key), "{}", t(from + i as i64)).await);
    }
    ids
}

fn events_of(claims: &[Claim]) -> Vec<EventId> {
    let mut ids: Vec<EventId> = claims.iter().map(|c| c.event_id.clone()).collect();
    ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    ids
}

fn sorted(mut ids: Vec<EventId>) -> Vec<EventId> {
    ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    ids
}

/// The setting is stored and read back, and can be switched off again.
pub async fn ordering_setting_round_trips(store: StoreRef) {
    let m = merchant(&store).await;
    let mut ep = ordered_endpoint(&store, &m, per_key(OnFinalFailure::Hold, Some("orderNo"))).await;
    let got = store.get_endpoint(&m, &ep.id).await.unwrap();
    assert_same_endpoint(&got, &ep);
    ep.ordering = Ordering::default();
    store.update_endpoint(&ep).await.unwrap();
    let got = store.get_endpoint(&m, &ep.id).await.unwrap();
    assert_eq!(got.ordering, Ordering::default());
}

/// Three events of one key: each claim gets only the key's head; the next follows its success.
pub async fn only_the_head_of_a_key_is_claimed(store: StoreRef) {
    let m = merchant(&store).await;
    ordered_endpoint(&store, &m, per_key(OnFinalFailure::Continue, None)).await;
    let ids = publish_n(&store, &m, "A", 3, 0).await;
    for (i, id) in ids.iter().enumerate() {
        let now = t(10 + i as i64);
        let claims = claim_all(&store, now).await;
        assert_eq!(events_of(&claims), vec![id.clone()], "head {i} alone");
        finish_one(&store, &claims[0], Next::Succeeded, now).await;
    }
    assert!(claim_all(&store, t(20)).await.is_empty());
    assert_eq!(store.next_due_at().await.unwrap(), None);
}

/// While the head is leased or waiting for its retry, nothing else of its key is claimed, and
/// `next_due_at` reports the head's time, not its waiting siblings'.
pub async fn in_flight_head_blocks_its_key(store: StoreRef) {
    let m = merchant(&store).await;
    ordered_endpoint(&store, &m, per_key(OnFinalFailure::Continue, None)).await;
    let ids = publish_n(&store, &m, "A", 2, 0).await;
    let first = claim_all(&store, t(10)).await;
    assert_eq!(events_of(&first), vec![ids[0].clone()]);
    assert!(
        claim_all(&store, t(11)).await.is_empty(),
        "the head is in flight: its sibling waits"
    );
    // The lease (30 s) expires: the head is due again, its sibling still waits.
    let again = claim_all(&store, t(41)).await;
    assert_eq!(events_of(&again), vec![ids[0].clone()]);
    finish_one(&store, &again[0], Next::RetryAt(t(100)), t(42)).await;
    assert!(
        claim_all(&store, t(50)).await.is_empty(),
        "the head retries later"
    );
    assert_eq!(store.next_due_at().await.unwrap(), Some(t(100)));
    let retried = claim_all(&store, t(100)).await;
    assert_eq!(events_of(&retried), vec![ids[0].clone()]);
    finish_one(&store, &retried[0], Next::Succeeded, t(101)).await;
    assert_eq!(
        events_of(&claim_all(&store, t(102)).await),
        vec![ids[1].clone()]
    );
}

/// A failing key blocks only itself: other keys' heads, unkeyed events and other endpoints go on.
pub async fn other_keys_and_unkeyed_are_not_blocked(store: StoreRef) {
    let m = merchant(&store).await;
    let ep = ordered_endpoint(&store, &m, per_key(OnFinalFailure::Hold, None)).await;
    let a = publish_n(&store, &m, "A", 2, 0).await;
    let b = publish_n(&store, &m, "B", 2, 10).await;
    let loose1 = publish(&store, &m, None, "{}", t(20)).await;
    let loose2 = publish(&store, &m, None, "{}", t(21)).await;

    let claims = claim_all(&store, t(30)).await;
    assert_eq!(
        events_of(&claims),
        sorted(vec![a[0].clone(), b[0].clone(), loose1, loose2]),
        "each key's head, and every unkeyed delivery at once"
    );
    for c in &claims {
        let next = if c.event_id == a[0] {
            Next::GiveUp
        } else {
            Next::Succeeded
        };
        finish_one(&store, c, next, t(31)).await;
    }
    // A is held; B goes on.
    assert_eq!(
        events_of(&claim_all(&store, t(32)).await),
        vec![b[1].clone()]
    );
    let held = store.held_keys(&m, &ep.id).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].key.as_str(), "A");
}

/// `continue`: after the head's last attempt fails, the next delivery of the key is claimed.
pub async fn continue_releases_the_next_after_final_failure(store: StoreRef) {
    let m = merchant(&store).await;
    let ep = ordered_endpoint(&store, &m, per_key(OnFinalFailure::Continue, None)).await;
    let ids = publish_n(&store, &m, "A", 2, 0).await;
    let head = claim_all(&store, t(10)).await.remove(0);
    finish_one(&store, &head, Next::GiveUp, t(11)).await;
    assert_eq!(
        events_of(&claim_all(&store, t(12)).await),
        vec![ids[1].clone()]
    );
    assert!(store.held_keys(&m, &ep.id).await.unwrap().is_empty());
}

/// `hold`: the key waits after its head's final failure (and a 410 alike) until released; the
/// failed head stays failed; releasing a key that is not held is `NotFound("held key")`, and
/// another merchant's endpoint is `NotFound("endpoint")`.
pub async fn hold_keeps_the_key_until_released(store: StoreRef) {
    let m = merchant(&store).await;
    let ep = ordered_endpoint(&store, &m, per_key(OnFinalFailure::Hold, None)).await;
    let ids = publish_n(&store, &m, "A", 3, 0).await;
    let head = claim_all(&store, t(10)).await.remove(0);
    finish_one(&store, &head, Next::GiveUp, t(11)).await;
    assert!(claim_all(&store, t(12)).await.is_empty(), "the key is held");
    assert_eq!(
        store.next_due_at().await.unwrap(),
        None,
        "nothing claimable"
    );

    let held = store.held_keys(&m, &ep.id).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].key.as_str(), "A");
    assert_eq!(held[0].delivery_id, head.delivery_id);
    assert_eq!(held[0].since, t(11));
    assert_eq!(held[0].waiting, 2);

    let key = OrderingKey::parse("A").unwrap();
    let stranger = merchant(&store).await;
    assert_not_found(store.held_keys(&stranger, &ep.id).await, "endpoint");
    assert_not_found(store.release_key(&stranger, &ep.id, &key).await, "endpoint");
    assert_not_found(
        store
            .release_key(&m, &ep.id, &OrderingKey::parse("B").unwrap())
            .await,
        "held key",
    );

    store.release_key(&m, &ep.id, &key).await.unwrap();
    assert!(store.held_keys(&m, &ep.id).await.unwrap().is_empty());
    let failed = store
        .get_delivery(&m, &head.delivery_id, t(13))
        .await
        .unwrap();
    assert_eq!(failed.state, DeliveryState::Failed, "the head stays failed");
    let next = claim_all(&store, t(13)).await;
    assert_eq!(events_of(&next), vec![ids[1].clone()]);
    assert_not_found(store.release_key(&m, &ep.id, &key).await, "held key");

    // A 410 is a final failure too: it holds the key (and disables the endpoint).
    finish_one(&store, &next[0], Next::DisableEndpoint, t(14)).await;
    let held = store.held_keys(&m, &ep.id).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].delivery_id, next[0].delivery_id);
    assert_eq!(held[0].waiting, 1);
}

/// A resend takes a fresh number (the back of its key's queue) and releases the hold its event's
/// failed delivery had on the key.
pub async fn resend_goes_to_the_back_and_releases_a_hold(store: StoreRef) {
    let m = merchant(&store).await;
    let ep = ordered_endpoint(&store, &m, per_key(OnFinalFailure::Hold, None)).await;
    let ids = publish_n(&store, &m, "A", 3, 0).await;
    let head = claim_all(&store, t(10)).await.remove(0);
    finish_one(&store, &head, Next::GiveUp, t(11)).await;
    assert_eq!(store.held_keys(&m, &ep.id).await.unwrap().len(), 1);

    let resent = store
        .resend(
            &m,
            &ids[0],
            &ResendScope::Endpoint(ep.id.clone()),
            &ResendLimits::default(),
            t(20),
        )
        .await
        .unwrap();
    assert_eq!(resent.len(), 1);
    assert!(
        store.held_keys(&m, &ep.id).await.unwrap().is_empty(),
        "the resend released the key"
    );
    // The key goes on in publish order; the resent event comes last.
    let mut order = Vec::new();
    for i in 0..3 {
        let now = t(30 + i);
        let claims = claim_all(&store, now).await;
        assert_eq!(claims.len(), 1, "one delivery of the key at a time");
        order.push((claims[0].event_id.clone(), claims[0].delivery_id.clone()));
        finish_one(&store, &claims[0], Next::Succeeded, now).await;
    }
    let events: Vec<EventId> = order.iter().map(|(e, _)| e.clone()).collect();
    assert_eq!(events, vec![ids[1].clone(), ids[2].clone(), ids[0].clone()]);
    assert_eq!(order[2].1, resent[0], "the resent delivery, last");
    assert!(claim_all(&store, t(40)).await.is_empty());
}

/// Recovered deliveries keep their places: they go again in publish order, ahead of the later
/// deliveries of their key.
pub async fn recover_keeps_publish_order(store: StoreRef) {
    let m = merchant(&store).await;
    let ep = ordered_endpoint(&store, &m, per_key(OnFinalFailure::Continue, None)).await;
    let ids = publish_n(&store, &m, "A", 3, 0).await;
    // The first two fail for good; the third is retrying (due at t(1000)).
    for (i, next) in [Next::GiveUp, Next::GiveUp, Next::RetryAt(t(1000))]
        .into_iter()
        .enumerate()
    {
        let now = t(10 + i as i64);
        let claims = claim_all(&store, now).await;
        assert_eq!(events_of(&claims), vec![ids[i].clone()]);
        finish_one(&store, &claims[0], next, now).await;
    }
    assert_eq!(store.recover(&m, &ep.id, t(0), t(500)).await.unwrap(), 2);
    let mut seen = Vec::new();
    for now in [t(500), t(501)] {
        let claims = claim_all(&store, now).await;
        assert_eq!(claims.len(), 1, "one at a time");
        seen.push(claims[0].event_id.clone());
        finish_one(&store, &claims[0], Next::Succeeded, now).await;
    }
    assert_eq!(seen, vec![ids[0].clone(), ids[1].clone()]);
    assert!(
        claim_all(&store, t(502)).await.is_empty(),
        "the third waits for its retry"
    );
    assert_eq!(
        events_of(&claim_all(&store, t(1000)).await),
        vec![ids[2].clone()]
    );
}

/// `key_field` derives the key from the payload; an explicit `ordering_key` wins over it; an event
/// with neither is unordered.
pub async fn explicit_key_beats_key_field(store: StoreRef) {
    let m = merchant(&store).await;
    ordered_endpoint(
        &store,
        &m,
        per_key(OnFinalFailure::Continue, Some("orderNo")),
    )
    .await;
    let x1 = publish(&store, &m, None, r#"{"orderNo":"X"}"#, t(0)).await;
    let y = publish(&store, &m, Some("Y"), r#"{"orderNo":"X"}"#, t(1)).await;
    let x2 = publish(&store, &m, None, r#"{"orderNo":"X"}"#, t(2)).await;
    let n1 = publish(&store, &m, None, r#"{"orderNo":7}"#, t(3)).await;
    let n2 = publish(&store, &m, None, r#"{"orderNo":7}"#, t(4)).await;
    let loose = publish(&store, &m, None, r#"{"amount":"1"}"#, t(5)).await;

    let claims = claim_all(&store, t(10)).await;
    assert_eq!(
        events_of(&claims),
        sorted(vec![x1, y, n1, loose]),
        "X's head, Y (its own key), 7's head, and the unkeyed event"
    );
    for c in &claims {
        finish_one(&store, c, Next::Succeeded, t(11)).await;
    }
    assert_eq!(
        events_of(&claim_all(&store, t(12)).await),
        sorted(vec![x2, n2])
    );
}

/// Many concurrent ingests of one key: the key's deliveries are claimed one at a time, and each
/// publisher's events in the order it published them (a later publish commits after an earlier
/// one, so it must be numbered after it).
pub async fn concurrent_ingest_numbers_in_commit_order(store: StoreRef) {
    const PUBLISHERS: usize = 6;
    const EACH: usize = 8;
    let m = merchant(&store).await;
    ordered_endpoint(&store, &m, per_key(OnFinalFailure::Continue, None)).await;
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let (store, m) = (store.clone(), m.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..EACH {
                let body = format!(r#"{{"p":{p},"i":{i}}}"#);
                ids.push(publish(&store, &m, Some("K"), &body, t(i as i64)).await);
            }
            ids
        }));
    }
    let mut publisher_of: HashMap<EventId, (usize, usize)> = HashMap::new();
    for (p, task) in tasks.into_iter().enumerate() {
        for (i, id) in task.await.unwrap().into_iter().enumerate() {
            publisher_of.insert(id, (p, i));
        }
    }
    let mut next_of = [0usize; PUBLISHERS];
    for step in 0..PUBLISHERS * EACH {
        let now = t(100 + step as i64);
        let claims = claim_all(&store, now).await;
        assert_eq!(claims.len(), 1, "one delivery of the key at a time");
        let (p, i) = publisher_of[&claims[0].event_id];
        assert_eq!(i, next_of[p], "publisher {p}'s events in its order");
        next_of[p] += 1;
        finish_one(&store, &claims[0], Next::Succeeded, now).await;
    }
    assert!(claim_all(&store, t(1000)).await.is_empty());
}

/// A mode change applies to deliveries created afterwards: queued ordered deliveries keep their
/// order after `per_key` → `none`, new ones are unordered and do not wait for them; after
/// `none` → `per_key`, queued unordered ones stay unordered.
pub async fn mode_change_applies_to_new_deliveries(store: StoreRef) {
    let m = merchant(&store).await;
    let mut ep = ordered_endpoint(&store, &m, per_key(OnFinalFailure::Continue, None)).await;
    let a = publish_n(&store, &m, "A", 2, 0).await;
    ep.ordering = Ordering::default();
    store.update_endpoint(&ep).await.unwrap();
    let loose = publish(&store, &m, Some("A"), "{}", t(5)).await;
    let claims = claim_all(&store, t(10)).await;
    assert_eq!(
        events_of(&claims),
        sorted(vec![a[0].clone(), loose.clone()]),
        "A's queue keeps its order; the new event is unordered"
    );
    for c in &claims {
        finish_one(&store, c, Next::Succeeded, t(11)).await;
    }
    assert_eq!(
        events_of(&claim_all(&store, t(12)).await),
        vec![a[1].clone()]
    );

    // Back to per_key: an unordered delivery still queued stays unordered.
    let queued = publish(&store, &m, Some("B"), "{}", t(20)).await;
    ep.ordering = per_key(OnFinalFailure::Continue, None);
    store.update_endpoint(&ep).await.unwrap();
    let b = publish_n(&store, &m, "B", 2, 21).await;
    assert_eq!(
        events_of(&claim_all(&store, t(30)).await),
        sorted(vec![queued, b[0].clone()]),
        "the unordered one does not hold up B, nor wait for it"
    );
}

/// A hand-off at ingest leases like a claim: of a key's deliveries stored together, only the
/// head goes, and the next is claimable once the head is done.
pub async fn ingest_and_claim_hands_only_a_keys_head(store: StoreRef) {
    hands_only_a_keys_head(store, false).await;
}

/// The same with `new_first`: ordered deliveries are never leased at insert, only claimed.
pub async fn ingest_and_claim_new_first_hands_only_a_keys_head(store: StoreRef) {
    hands_only_a_keys_head(store, true).await;
}

async fn hands_only_a_keys_head(store: StoreRef, new_first: bool) {
    let m = merchant(&store).await;
    ordered_endpoint(&store, &m, per_key(OnFinalFailure::Continue, None)).await;
    let batch: Vec<_> = (0..3)
        .map(|i| {
            let mut ev = event_with(&m, "Payment", b"{}", t(i));
            ev.ordering_key = Some(OrderingKey::parse("order-1").expect("fixture key"));
            ev
        })
        .collect();
    let req = blockhook_core::ClaimRequest {
        now: t(10),
        max: 10,
        lease_until: t(40),
        per_endpoint_max: 10,
        exclude: Vec::new(),
        new_first,
    };
    let (ingested, handed) = store.ingest_and_claim(&batch, &req).await.expect("ingest");
    assert_eq!(ingested.len(), 3);
    assert!(handed.len() <= 1, "only the head of the key");
    let head = match handed.first() {
        Some(head) => head.clone(),
        None => {
            let claimed = claim_all(&store, t(10)).await;
            assert_eq!(claimed.len(), 1);
            claimed[0].clone()
        }
    };
    assert_eq!(head.event_id, ingested[0].event_id, "the key's first event");
    assert!(claim_all(&store, t(11)).await.is_empty(), "the key waits");
    finish_one(&store, &head, Next::Succeeded, t(12)).await;
    let next = claim_all(&store, t(13)).await;
    assert_eq!(events_of(&next), vec![ingested[1].event_id.clone()]);
}
