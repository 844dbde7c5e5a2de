//! Search: events found by a payload value indexed at ingest, by id and by endpoint, with the
//! other filters, paged both ways, counted; never another merchant's.

use blockhook_core::{
    Cursor, DeliveryState, EventId, EventQuery, MerchantId, Next, SearchKey, StoreRef,
};

use crate::contract::fixtures::*;

fn order(no: &str) -> Option<SearchKey> {
    Some(SearchKey {
        field: "orderNo".into(),
        value: no.into(),
    })
}

async fn ingest_order(store: &StoreRef, m: &MerchantId, no: &str, secs: i64) -> EventId {
    let payload = format!(r#"{{"orderNo":"{no}","amount":"1.00"}}"#);
    let ev = event_with(m, "Payment", payload.as_bytes(), t(secs));
    assert_eq!(ev.search_keys.len(), 1, "the fixture indexes orderNo");
    store.ingest(&[ev]).await.unwrap()[0].event_id.clone()
}

async fn ids(store: &StoreRef, m: &MerchantId, q: &EventQuery) -> Vec<EventId> {
    let page = store.list_events(m, q).await.unwrap();
    page.data.into_iter().map(|e| e.id).collect()
}

/// A (field, value) finds exactly the events stored with it, for their merchant only; an id
/// finds its event only for its merchant; counts agree and stop at the cap.
pub async fn search_by_field_and_id(store: StoreRef) {
    let m = merchant(&store).await;
    let other = merchant_named(&store, "other").await;
    let a1 = ingest_order(&store, &m, "A-1", 0).await;
    let b = ingest_order(&store, &m, "B-2", 1).await;
    let a2 = ingest_order(&store, &m, "A-1", 2).await;
    let theirs = ingest_order(&store, &other, "A-1", 3).await;
    // Nothing indexed: a payload without the field.
    let plain = event_with(&m, "Payment", br#"{"amount":"1.00"}"#, t(4));
    assert!(plain.search_keys.is_empty());
    store.ingest(&[plain]).await.unwrap();

    let q = EventQuery {
        key: order("A-1"),
        limit: 50,
        ..Default::default()
    };
    assert_eq!(ids(&store, &m, &q).await, vec![a2.clone(), a1.clone()]);
    assert_eq!(store.count_events(&m, &q, 100).await.unwrap(), 2);
    assert_eq!(
        store.count_events(&m, &q, 1).await.unwrap(),
        2,
        "cap + 1 says more than the cap"
    );
    assert_eq!(ids(&store, &other, &q).await, vec![theirs.clone()]);
    let near = EventQuery {
        key: order("A-"),
        limit: 50,
        ..Default::default()
    };
    assert!(ids(&store, &m, &near).await.is_empty(), "exact values only");
    let other_field = EventQuery {
        key: Some(SearchKey {
            field: "amount".into(),
            value: "1.00".into(),
        }),
        limit: 50,
        ..Default::default()
    };
    assert!(ids(&store, &m, &other_field).await.is_empty());

    let by_id = EventQuery {
        event_id: Some(b.clone()),
        limit: 50,
        ..Default::default()
    };
    assert_eq!(ids(&store, &m, &by_id).await, vec![b.clone()]);
    assert_eq!(store.count_events(&m, &by_id, 100).await.unwrap(), 1);
    let theirs_by_id = EventQuery {
        event_id: Some(theirs),
        limit: 50,
        ..Default::default()
    };
    assert!(ids(&store, &m, &theirs_by_id).await.is_empty());
    let all = EventQuery {
        limit: 50,
        ..Default::default()
    };
    assert_eq!(store.count_events(&m, &all, 100).await.unwrap(), 4);
    let combined = EventQuery {
        key: order("A-1"),
        since: Some(t(1)),
        limit: 50,
        ..Default::default()
    };
    assert_eq!(ids(&store, &m, &combined).await, vec![a2]);
}

/// Endpoint and state filters: one delivery must match both.
pub async fn search_by_endpoint_and_state(store: StoreRef) {
    let m = merchant(&store).await;
    let payments = endpoint_at(&store, &m, "https://pay.example/hook", &["Payment"]).await;
    let everything = endpoint_at(&store, &m, "https://all.example/hook", &[]).await;
    let p = ingest_one(&store, &m, "Payment", t(0)).await;
    let o = ingest_one(&store, &m, "Payout", t(1)).await;

    let to = |ep: &blockhook_core::Endpoint| EventQuery {
        endpoint: Some(ep.id.clone()),
        limit: 50,
        ..Default::default()
    };
    assert_eq!(ids(&store, &m, &to(&payments)).await, vec![p.clone()]);
    assert_eq!(
        ids(&store, &m, &to(&everything)).await,
        vec![o.clone(), p.clone()]
    );

    // The payment's delivery to `payments` succeeds, the one to `everything` fails.
    let claims = store.claim_due(&claim_req(t(5), 10)).await.unwrap();
    for c in &claims {
        let next = if c.event_id == p && c.endpoint.id == payments.id {
            Next::Succeeded
        } else if c.event_id == p {
            Next::GiveUp
        } else {
            Next::Succeeded
        };
        finish_one(&store, c, next, t(6)).await;
    }
    let mut failed_to_payments = to(&payments);
    failed_to_payments.state = Some(DeliveryState::Failed);
    assert!(ids(&store, &m, &failed_to_payments).await.is_empty());
    let mut failed_to_all = to(&everything);
    failed_to_all.state = Some(DeliveryState::Failed);
    assert_eq!(ids(&store, &m, &failed_to_all).await, vec![p.clone()]);
    assert_eq!(
        store.count_events(&m, &failed_to_all, 100).await.unwrap(),
        1
    );

    // Another merchant's endpoint matches none of this merchant's events.
    let other = merchant_named(&store, "other").await;
    let theirs = endpoint(&store, &other, &[]).await;
    assert!(ids(&store, &m, &to(&theirs)).await.is_empty());
}

/// Pages forwards with `after` and backwards with `before`: `next` and `prev` lead through the
/// same pages in both directions, newest first within each.
pub async fn search_pages_both_ways(store: StoreRef) {
    let m = merchant(&store).await;
    let mut all = Vec::new();
    for i in 0..7 {
        all.push(ingest_order(&store, &m, "SAME", i).await);
    }
    ingest_order(&store, &m, "ELSE", 8).await;
    all.reverse();
    let base = EventQuery {
        key: order("SAME"),
        limit: 3,
        ..Default::default()
    };
    assert_eq!(store.count_events(&m, &base, 100).await.unwrap(), 7);

    // Forwards: [6 5 4] [3 2 1] [0].
    let mut pages = Vec::new();
    let mut q = base.clone();
    loop {
        let page = store.list_events(&m, &q).await.unwrap();
        pages.push((
            page.data.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
            page.prev.clone(),
        ));
        match page.next {
            Some(c) => q.after = Some(c),
            None => break,
        }
    }
    assert_eq!(
        pages.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
        vec![all[0..3].to_vec(), all[3..6].to_vec(), all[6..7].to_vec()]
    );
    assert!(pages[0].1.is_none(), "the first page has no prev");

    // Backwards from the last page, following `prev`.
    let mut back = Vec::new();
    let mut prev: Option<Cursor> = pages[2].1.clone();
    while let Some(c) = prev {
        let q = EventQuery {
            before: Some(c),
            after: None,
            ..base.clone()
        };
        let page = store.list_events(&m, &q).await.unwrap();
        assert!(
            page.next.is_some(),
            "a page reached backwards has older matches"
        );
        back.push(page.data.iter().map(|e| e.id.clone()).collect::<Vec<_>>());
        prev = page.prev;
    }
    assert_eq!(back, vec![all[3..6].to_vec(), all[0..3].to_vec()]);
}
