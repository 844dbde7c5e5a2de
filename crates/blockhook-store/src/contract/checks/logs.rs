//! Logs: listing events (newest first, stable cursors, filters) and reading deliveries.

use std::collections::HashSet;

use blockhook_core::{
    Cursor, DeliveryOrigin, DeliveryState, EventId, EventQuery, MerchantId, Next, StoreRef,
};

use crate::contract::fixtures::*;

async fn all_pages(store: &StoreRef, m: &MerchantId, q: EventQuery) -> Vec<EventId> {
    let mut seen = Vec::new();
    let mut q = q;
    loop {
        let page = store.list_events(m, &q).await.unwrap();
        assert!(page.data.len() <= q.limit as usize);
        assert!(page.data.iter().all(|e| &e.merchant_id == m));
        seen.extend(page.data.into_iter().map(|e| e.id));
        match page.next {
            Some(c) => q.after = Some(c),
            None => break seen,
        }
    }
}

/// Events list newest first; following `next` visits each exactly once.
pub async fn list_events_newest_first(store: StoreRef) {
    let m = merchant(&store).await;
    let mut ids = Vec::new();
    for i in 0..23 {
        ids.push(ingest_one(&store, &m, "Payment", t(i)).await);
    }
    ids.reverse();
    let seen = all_pages(
        &store,
        &m,
        EventQuery {
            limit: 5,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seen, ids);
    let one = store
        .list_events(
            &m,
            &EventQuery {
                limit: 23,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(one.data.len(), 23);
    assert!(one.next.is_none(), "an exactly full last page has no next");
    let first = &one.data[0];
    assert_eq!(first.created_at, t(22));
    assert_eq!(
        first.payload.as_ref().unwrap().bytes().as_ref(),
        PAYLOAD.as_bytes()
    );
    // A cursor past the end gives an empty last page.
    let end = store
        .list_events(
            &m,
            &EventQuery {
                limit: 5,
                after: Some(Cursor(ids[22].to_string())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(end.data.is_empty());
    assert!(end.next.is_none());
}

/// Paging while another task keeps inserting neither skips nor repeats the events that were
/// there before.
pub async fn list_events_stable_under_concurrent_inserts(store: StoreRef) {
    let m = merchant(&store).await;
    endpoint(&store, &m, &[]).await;
    let before: Vec<_> = (0..120).map(|i| event(&m, "Payment", t(i))).collect();
    store.ingest(&before).await.unwrap();

    let writer = {
        let (store, m) = (store.clone(), m.clone());
        tokio::spawn(async move {
            for i in 0..60 {
                store
                    .ingest(&[event(&m, "Payment", t(1000 + i))])
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut seen = Vec::new();
    let mut q = EventQuery {
        limit: 7,
        ..Default::default()
    };
    loop {
        let page = store.list_events(&m, &q).await.unwrap();
        seen.extend(page.data.into_iter().map(|e| e.id));
        tokio::task::yield_now().await;
        match page.next {
            Some(c) => q.after = Some(c),
            None => break,
        }
    }
    writer.await.unwrap();

    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no event listed twice");
    for ev in &before {
        assert!(unique.contains(&ev.id), "event {} was skipped", ev.id);
    }
}

/// Filters: type (case-insensitive), time range (`since` inclusive, `until` exclusive) and
/// delivery state, alone and combined.
pub async fn list_events_filters(store: StoreRef) {
    let m = merchant(&store).await;
    endpoint(&store, &m, &[]).await;
    let p0 = ingest_one(&store, &m, "Payment", t(0)).await;
    let o1 = ingest_one(&store, &m, "Payout", t(10)).await;
    let p2 = ingest_one(&store, &m, "payment", t(20)).await;
    let o3 = ingest_one(&store, &m, "Payout", t(30)).await;
    let q = |f: fn(&mut EventQuery)| {
        let mut q = EventQuery {
            limit: 50,
            ..Default::default()
        };
        f(&mut q);
        q
    };

    let payments = all_pages(&store, &m, q(|q| q.event_type = Some(ty("PAYMENT")))).await;
    assert_eq!(payments, vec![p2.clone(), p0.clone()]);
    let ranged = all_pages(
        &store,
        &m,
        q(|q| {
            q.since = Some(t(10));
            q.until = Some(t(30));
        }),
    )
    .await;
    assert_eq!(ranged, vec![p2.clone(), o1.clone()]);
    let both = all_pages(
        &store,
        &m,
        q(|q| {
            q.since = Some(t(10));
            q.event_type = Some(ty("payout"));
        }),
    )
    .await;
    assert_eq!(both, vec![o3.clone(), o1.clone()]);

    // p0 succeeds, o1 fails, p2 is in flight, o3 stays pending.
    let claims = store.claim_due(&claim_req(t(25), 10)).await.unwrap();
    assert_eq!(claims.len(), 3);
    let by_event = |id: &EventId| claims.iter().find(|c| &c.event_id == id).unwrap();
    finish_one(&store, by_event(&p0), Next::Succeeded, t(26)).await;
    finish_one(&store, by_event(&o1), Next::GiveUp, t(26)).await;

    let state = |s| {
        let mut q = EventQuery {
            limit: 50,
            ..Default::default()
        };
        q.state = Some(s);
        q
    };
    assert_eq!(
        all_pages(&store, &m, state(DeliveryState::Succeeded)).await,
        vec![p0.clone()]
    );
    assert_eq!(
        all_pages(&store, &m, state(DeliveryState::Failed)).await,
        vec![o1.clone()]
    );
    assert_eq!(
        all_pages(&store, &m, state(DeliveryState::InFlight)).await,
        vec![p2.clone()]
    );
    let pending = all_pages(&store, &m, state(DeliveryState::Pending)).await;
    assert!(
        pending.contains(&o3),
        "an unleased pending delivery matches Pending"
    );
    assert!(!pending.contains(&p0) && !pending.contains(&o1));
    let mut combined = state(DeliveryState::Failed);
    combined.event_type = Some(ty("Payment"));
    assert!(all_pages(&store, &m, combined).await.is_empty());
}

/// Deliveries of an event, oldest first; `InFlight` while leased, `Pending` once the lease has
/// expired; resends listed after the originals.
pub async fn list_deliveries_reports_in_flight(store: StoreRef) {
    let m = merchant(&store).await;
    let a = endpoint(&store, &m, &[]).await;
    let ev = ingest_one(&store, &m, "Payment", t(0)).await;
    let c = claim_all(&store, t(1)).await.remove(0); // leased until t(31)

    let ds = store.list_deliveries(&m, &ev, t(10)).await.unwrap();
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].state, DeliveryState::InFlight);
    assert_eq!(ds[0].endpoint_id, a.id);
    assert_eq!(
        store
            .get_delivery(&m, &c.delivery_id, t(10))
            .await
            .unwrap()
            .state,
        DeliveryState::InFlight
    );
    assert_eq!(
        store
            .get_delivery(&m, &c.delivery_id, t(31))
            .await
            .unwrap()
            .state,
        DeliveryState::Pending
    );
    let stats = store.queue_stats(t(10)).await.unwrap();
    assert_eq!((stats.in_flight, stats.due, stats.scheduled), (1, 0, 0));

    finish_one(&store, &c, Next::Succeeded, t(11)).await;
    let b = endpoint(&store, &m, &[]).await;
    let new = store
        .resend(
            &m,
            &ev,
            &blockhook_core::ResendScope::Endpoint(b.id.clone()),
            &Default::default(),
            t(12),
        )
        .await
        .unwrap();
    assert_eq!(new.len(), 1);
    let ds = store.list_deliveries(&m, &ev, t(13)).await.unwrap();
    assert_eq!(
        ds.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        vec![c.delivery_id.clone(), new[0].clone()]
    );
    assert_eq!(ds[0].state, DeliveryState::Succeeded);
    assert_eq!(ds[1].state, DeliveryState::Pending);
    assert_eq!(ds[1].origin, DeliveryOrigin::Resend);
    assert_eq!(ds[1].next_attempt_at, Some(t(12)));
    assert_eq!(ds[1].created_at, t(12));
}
