//! Transport safety: addresses outside the allowlist are never connected to.

use std::time::Duration;

use serde_json::json;

use blockhook_core::{DeliveryState, ErrorClass, EventId, MerchantId, Timestamp};

use crate::helpers::{PAYMENT, TestApp, backends};
use crate::receiver::{Receiver, now_ms};

#[tokio::test]
async fn a_hostname_resolving_to_a_refused_address_is_never_connected_to() {
    for backend in backends() {
        // No allowlist: loopback is refused like any private address.
        let app = TestApp::spawn_with(backend, |s| {
            s.delivery.allow_nets = vec![];
            s.delivery.retry_schedule = vec![];
        })
        .await;
        let rx = Receiver::ok(Some(&app.ca)).await;
        let m = app.merchant().await;
        app.endpoint(&m, &rx.url(), json!({})).await; // https://localhost:port
        app.endpoint(
            &m,
            &format!("https://127.0.0.1:{}/hook", rx.addr.port()),
            json!({}),
        )
        .await;
        let published = app.publish(&m, "Payment", PAYMENT).await;
        let (mid, eid) = (
            MerchantId::parse(&m).unwrap(),
            EventId::parse(published["event_id"].as_str().unwrap()).unwrap(),
        );
        let mut failed = Vec::new();
        for _ in 0..200 {
            let now = Timestamp::from_ms(now_ms() as i64);
            failed = app
                .state
                .store
                .list_deliveries(&mid, &eid, now)
                .await
                .unwrap();
            if failed.iter().all(|d| d.state == DeliveryState::Failed) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(failed.len(), 2);
        for d in &failed {
            assert_eq!(d.state, DeliveryState::Failed, "{backend:?}");
            let attempts = app.state.store.list_attempts(&mid, &d.id).await.unwrap();
            assert_eq!(attempts[0].error, Some(ErrorClass::Blocked));
        }
        assert_eq!(
            rx.connections.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "no connection was opened"
        );
        app.stop().await;
    }
}
