//! Failure alerts: operational events reach only the endpoints that name them, the attempt log
//! is summarised per endpoint for the endpoint watch, exhausted deliveries are found, the
//! watch's rows and cursor round-trip, and auto-disabling is a compare-and-set.

use blockhook_core::{AlertState, EndpointAlert, EndpointId, Error, MerchantId, Next, StoreRef};

use crate::contract::fixtures::*;

/// An `endpoint.failing` event goes to the endpoint that lists it, not to the one whose empty
/// filter means "every type"; an ordinary event goes to both.
pub async fn operational_events_only_reach_endpoints_naming_them(store: StoreRef) {
    let m = merchant(&store).await;
    let all = endpoint(&store, &m, &[]).await;
    let alerts = endpoint(&store, &m, &["endpoint.failing", "Endpoint.Disabled"]).await;

    let failing = ingest_one(&store, &m, "endpoint.failing", T0).await;
    let ds = store.list_deliveries(&m, &failing, T0).await.unwrap();
    assert_eq!(
        ds.len(),
        1,
        "only the alert endpoint gets an operational event"
    );
    assert_eq!(ds[0].endpoint_id, alerts.id);

    let disabled = ingest_one(&store, &m, "endpoint.disabled", T0).await;
    let ds = store.list_deliveries(&m, &disabled, T0).await.unwrap();
    assert_eq!(ds.len(), 1, "filter names compare case-insensitively");
    assert_eq!(ds[0].endpoint_id, alerts.id);

    let recovered = ingest_one(&store, &m, "endpoint.recovered", T0).await;
    assert!(
        store
            .list_deliveries(&m, &recovered, T0)
            .await
            .unwrap()
            .is_empty()
    );

    let payment = ingest_one(&store, &m, "Payment", T0).await;
    let ds = store.list_deliveries(&m, &payment, T0).await.unwrap();
    assert_eq!(ds.len(), 1, "the alert endpoint does not want payments");
    assert_eq!(ds[0].endpoint_id, all.id);
}

fn row(ep: &EndpointId, m: &MerchantId, state: AlertState, streak: u32) -> EndpointAlert {
    EndpointAlert {
        endpoint_id: ep.clone(),
        merchant_id: m.clone(),
        state,
        streak,
        failing_since: Some(t(1)),
        last_failure_at: Some(t(3)),
        last_error: Some("failed: bad_status".into()),
        updated_at: t(10),
    }
}

/// The window summary: latest success, the failures after it, the first and last failure and
/// its error; healthy endpoints are left out; an endpoint with an alert row is listed even
/// without failures. Exhausted deliveries are those `failed` whose last attempt is in the window.
pub async fn failure_windows_and_exhausted_deliveries(store: StoreRef) {
    let m = merchant(&store).await;
    let ep = endpoint(&store, &m, &["Payment"]).await;
    let healthy = endpoint(&store, &m, &["Payout"]).await;
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(ingest_one(&store, &m, "Payment", T0).await);
    }
    ingest_one(&store, &m, "Payout", T0).await;
    let claims = claim_all(&store, T0).await;
    assert_eq!(claims.len(), 4);
    for c in &claims {
        let (next, at) = if c.endpoint.id == healthy.id {
            (Next::Succeeded, t(1))
        } else if c.event_id == events[0] {
            (Next::RetryAt(t(100)), t(1))
        } else if c.event_id == events[1] {
            (Next::Succeeded, t(2))
        } else {
            (Next::GiveUp, t(3))
        };
        finish_one(&store, c, next, at).await;
    }

    let w = store.failure_windows(T0, t(10)).await.unwrap();
    assert_eq!(w.len(), 1, "the healthy endpoint is not listed: {w:?}");
    assert_eq!(w[0].endpoint_id, ep.id);
    assert_eq!(w[0].merchant_id, m);
    assert_eq!(w[0].last_ok, Some(t(2)));
    assert_eq!(
        w[0].failures, 1,
        "only the failure after the success counts"
    );
    assert_eq!(w[0].first_failure, Some(t(3)));
    assert_eq!(w[0].last_failure_at, Some(t(3)));
    assert_eq!(w[0].last_error.as_deref(), Some("failed: bad_status"));

    // The window's lower bound is exclusive: the success at t(2) is outside (t(2), t(10)].
    let w = store.failure_windows(t(2), t(10)).await.unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!((w[0].last_ok, w[0].failures), (None, 1));
    let w = store.failure_windows(T0, t(1)).await.unwrap();
    assert_eq!((w[0].last_ok, w[0].failures), (None, 1));
    assert_eq!(w[0].first_failure, Some(t(1)));
    assert!(store.failure_windows(t(3), t(10)).await.unwrap().is_empty());

    // Exhausted: only the delivery that gave up (the retried one is still pending).
    let ex = store.exhausted_deliveries(T0, t(10)).await.unwrap();
    assert_eq!(ex.len(), 1, "{ex:?}");
    assert_eq!(ex[0].event_id, events[2]);
    assert_eq!(ex[0].endpoint_id, ep.id);
    assert_eq!(ex[0].merchant_id, m);
    assert_eq!(ex[0].event_type.as_str(), "Payment");
    assert_eq!(ex[0].attempts, 1);
    assert_eq!(ex[0].last_status, Some(500));
    assert_eq!(ex[0].failed_at, t(3));
    assert!(
        store
            .exhausted_deliveries(t(3), t(10))
            .await
            .unwrap()
            .is_empty()
    );

    // With an alert row, the endpoint is listed even when its window holds only successes.
    store
        .save_watch(&[row(&healthy.id, &m, AlertState::Failing, 12)], &[], t(10))
        .await
        .unwrap();
    let w = store.failure_windows(T0, t(10)).await.unwrap();
    let h = w.iter().find(|w| w.endpoint_id == healthy.id).unwrap();
    assert_eq!(
        (h.last_ok, h.failures, h.first_failure),
        (Some(t(1)), 0, None)
    );
}

/// Rows and cursor round-trip per merchant; cleared rows go; a row of an endpoint that no
/// longer exists is dropped, and deleting an endpoint removes its row.
pub async fn watch_rows_and_cursor_round_trip(store: StoreRef) {
    let m = merchant(&store).await;
    let other = merchant_named(&store, "Other Ltd").await;
    let a = endpoint(&store, &m, &[]).await;
    let b = endpoint(&store, &m, &[]).await;
    let c = endpoint(&store, &other, &[]).await;
    assert_eq!(store.watch_cursor().await.unwrap(), None);
    assert!(store.endpoint_alerts(None).await.unwrap().is_empty());

    let gone = EndpointId::generate();
    let rows = [
        row(&a.id, &m, AlertState::Failing, 10),
        row(&b.id, &m, AlertState::Ok, 3),
        row(&c.id, &other, AlertState::Disabled, 40),
        row(&gone, &m, AlertState::Failing, 10),
    ];
    store.save_watch(&rows, &[], t(10)).await.unwrap();
    assert_eq!(store.watch_cursor().await.unwrap(), Some(t(10)));
    let mut mine = store.endpoint_alerts(Some(&m)).await.unwrap();
    mine.sort_by(|x, y| x.endpoint_id.as_str().cmp(y.endpoint_id.as_str()));
    let mut want = vec![rows[0].clone(), rows[1].clone()];
    want.sort_by(|x, y| x.endpoint_id.as_str().cmp(y.endpoint_id.as_str()));
    assert_eq!(
        mine, want,
        "a merchant sees its rows only, the unknown endpoint's was dropped"
    );
    assert_eq!(
        store.endpoint_alerts(Some(&other)).await.unwrap(),
        vec![rows[2].clone()]
    );
    assert_eq!(store.endpoint_alerts(None).await.unwrap().len(), 3);

    // Replace one, clear another, move the cursor: one transaction.
    let mut a2 = row(&a.id, &m, AlertState::Disabled, 11);
    a2.last_error = None;
    a2.failing_since = None;
    store
        .save_watch(
            std::slice::from_ref(&a2),
            std::slice::from_ref(&b.id),
            t(20),
        )
        .await
        .unwrap();
    assert_eq!(store.watch_cursor().await.unwrap(), Some(t(20)));
    assert_eq!(store.endpoint_alerts(Some(&m)).await.unwrap(), vec![a2]);

    store.delete_endpoint(&m, &a.id).await.unwrap();
    assert!(store.endpoint_alerts(Some(&m)).await.unwrap().is_empty());
    store.delete_merchant(&other).await.unwrap();
    assert!(store.endpoint_alerts(None).await.unwrap().is_empty());
}

/// `auto_disable` disables an enabled endpoint of the merchant with the reason, once; a
/// disabled endpoint or another merchant's id is left alone; claims then skip the endpoint.
pub async fn auto_disable_is_compare_and_set(store: StoreRef) {
    let m = merchant(&store).await;
    let other = merchant_named(&store, "Other Ltd").await;
    let ep = endpoint(&store, &m, &[]).await;
    assert!(!store.auto_disable(&other, &ep.id, "x", t(5)).await.unwrap());
    let reason = "no success for 3d since 2023-11-14T22:13:21Z";
    assert!(store.auto_disable(&m, &ep.id, reason, t(5)).await.unwrap());
    let got = store.get_endpoint(&m, &ep.id).await.unwrap();
    assert!(!got.enabled);
    assert_eq!(got.disabled_reason.as_deref(), Some(reason));
    assert_eq!(got.updated_at, t(5));
    assert!(!store.auto_disable(&m, &ep.id, "again", t(6)).await.unwrap());
    let got = store.get_endpoint(&m, &ep.id).await.unwrap();
    assert_eq!(
        got.disabled_reason.as_deref(),
        Some(reason),
        "kept the first reason"
    );
    ingest_one(&store, &m, "Payment", t(6)).await;
    assert!(
        claim_all(&store, t(7)).await.is_empty(),
        "a disabled endpoint is not claimed"
    );
    assert!(matches!(
        store
            .auto_disable(&m, &EndpointId::generate(), "x", t(5))
            .await,
        Ok(false) | Err(Error::NotFound(_))
    ));
}
