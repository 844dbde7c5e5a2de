//! Ordered delivery over the API (docs/ordering.md): the endpoint's `ordering` object is shown,
//! validated (422 naming `ordering.<field>`) and patched; `ordering_key` is validated on both
//! publish routes; a held key is listed and released over HTTP, in publish order, while other
//! keys go on.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::{assert_problem, call, json_of, key_for};
use crate::helpers::{ADMIN, TestApp, backends};
use crate::receiver::Receiver;

#[tokio::test]
async fn ordering_is_shown_validated_and_patched() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let m = app.merchant().await;
        let base = "https://merchant.example/hook";
        let plain = app.endpoint(&m, base, json!({})).await;
        assert_eq!(
            plain["ordering"],
            json!({ "mode": "none", "key_field": null, "on_final_failure": "continue" }),
            "{backend:?}: the default"
        );
        let path = format!("/v1/merchants/{m}/endpoints");
        for (field, ordering) in [
            ("ordering.mode", json!({ "mode": "fifo" })),
            (
                "ordering.on_final_failure",
                json!({ "mode": "per_key", "on_final_failure": "skip" }),
            ),
            (
                "ordering.key_field",
                json!({ "mode": "per_key", "key_field": "" }),
            ),
            (
                "ordering.key_field",
                json!({ "mode": "per_key", "key_field": "k".repeat(129) }),
            ),
        ] {
            let r = app
                .post(&path, ADMIN, &json!({ "url": base, "ordering": ordering }))
                .await;
            assert_problem(r, 422, Some(field), &format!("{backend:?} {ordering}")).await;
        }
        let r = app
            .post(
                &path,
                ADMIN,
                &json!({ "url": base, "ordering": { "order": "yes" } }),
            )
            .await;
        assert_problem(r, 422, None, "unknown ordering field").await;

        let ep = app
            .endpoint(
                &m,
                base,
                json!({ "ordering": { "mode": "per_key", "key_field": "orderNo", "on_final_failure": "hold" } }),
            )
            .await;
        let want = json!({ "mode": "per_key", "key_field": "orderNo", "on_final_failure": "hold" });
        assert_eq!(ep["ordering"], want);
        let ep_path = format!("{path}/{}", ep["id"].as_str().unwrap());
        let (_, read) = json_of(app.get(&ep_path, ADMIN).await).await;
        assert_eq!(read["ordering"], want, "read back");

        // PATCH: the fields given replace, the others stay; null clears the key field.
        let (status, v) = json_of(
            call(
                &app,
                Method::PATCH,
                &ep_path,
                Some(ADMIN),
                Some(&json!({ "ordering": { "on_final_failure": "continue" } })),
            )
            .await,
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            v["ordering"],
            json!({ "mode": "per_key", "key_field": "orderNo", "on_final_failure": "continue" })
        );
        let r = call(
            &app,
            Method::PATCH,
            &ep_path,
            Some(ADMIN),
            Some(&json!({ "ordering": { "mode": "sometimes" } })),
        )
        .await;
        assert_problem(r, 422, Some("ordering.mode"), "patch mode").await;
        let (_, v) = json_of(
            call(
                &app,
                Method::PATCH,
                &ep_path,
                Some(ADMIN),
                Some(&json!({ "ordering": { "mode": "none", "key_field": null } })),
            )
            .await,
        )
        .await;
        assert_eq!(
            v["ordering"],
            json!({ "mode": "none", "key_field": null, "on_final_failure": "continue" })
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn ordering_keys_are_1_to_256_bytes_on_both_publish_routes() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let m = app.merchant().await;
        let event = |key: Value| json!({ "merchant_id": m, "event_type": "Payment", "payload": {"a": 1}, "ordering_key": key });
        for bad in [json!(""), json!("k".repeat(257))] {
            let r = app.post("/v1/events", ADMIN, &event(bad.clone())).await;
            assert_problem(r, 422, Some("ordering_key"), &format!("{backend:?} {bad}")).await;
            let batch = json!({ "events": [event(json!("ok")), event(bad)] });
            let r = app.post("/v1/events/batch", ADMIN, &batch).await;
            assert_problem(r, 422, Some("events[1].ordering_key"), "batch item").await;
        }
        let r = app
            .post("/v1/events", ADMIN, &event(json!("k".repeat(256))))
            .await;
        assert_eq!(r.status(), 202);
        let r = app.post("/v1/events", ADMIN, &event(json!("订单 7"))).await;
        assert_eq!(r.status(), 202, "any text");
        app.stop().await;
    }
}

/// The event ids the receiver got, in arrival order.
fn arrivals(rx: &Receiver) -> Vec<String> {
    rx.received()
        .iter()
        .filter_map(|r| r.header("blockhook-event-id").map(str::to_owned))
        .collect()
}

async fn publish_keyed(app: &TestApp, m: &str, key: &str, n: u32) -> String {
    let body = json!({ "merchant_id": m, "event_type": "Payment", "payload": {"n": n}, "ordering_key": key });
    let (status, v) = json_of(app.post("/v1/events", ADMIN, &body).await).await;
    assert_eq!(status, 202, "{v}");
    v["event_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_held_key_is_listed_and_released_while_other_keys_go_on() {
    for backend in backends() {
        // No retries: the first failure is final.
        let app = TestApp::spawn_with(backend, |s| s.delivery.retry_schedule = vec![]).await;
        // The first request fails; every later one succeeds.
        let rx = Receiver::scripted(
            Some(&app.ca),
            Arc::new(|n| if n == 0 { 500 } else { 200 }),
            Duration::ZERO,
        )
        .await;
        let m = app.merchant().await;
        let ep = app
            .endpoint(
                &m,
                &rx.url(),
                json!({ "ordering": { "mode": "per_key", "on_final_failure": "hold" } }),
            )
            .await;
        let ep_id = ep["id"].as_str().unwrap();
        let a0 = publish_keyed(&app, &m, "A/1", 0).await;
        rx.wait_for(1, Duration::from_secs(10)).await;
        let a1 = publish_keyed(&app, &m, "A/1", 1).await;
        let a2 = publish_keyed(&app, &m, "A/1", 2).await;
        let b0 = publish_keyed(&app, &m, "B", 0).await;
        // B is not held up by A.
        rx.wait_for(2, Duration::from_secs(10)).await;

        let held_path = format!("/v1/merchants/{m}/endpoints/{ep_id}/ordering/held");
        let held: Value = loop {
            let (status, v) = json_of(app.get(&held_path, ADMIN).await).await;
            assert_eq!(status, 200, "{v}");
            if v.as_array().is_some_and(|a| !a.is_empty()) {
                break v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(held[0]["key"], "A/1", "{backend:?} {held}");
        assert_eq!(held[0]["waiting"], 2);
        assert!(held[0]["delivery_id"].as_str().unwrap().starts_with("dlv_"));
        assert_eq!(
            arrivals(&rx),
            vec![a0.clone(), b0.clone()],
            "A waits while held"
        );

        // Another merchant sees nothing of it; an unknown key is not held.
        let other = app.merchant().await;
        let other_key = key_for(&app, &other).await;
        let r = app
            .get(
                &format!("/v1/merchants/me/endpoints/{ep_id}/ordering/held"),
                &other_key,
            )
            .await;
        assert_problem(r, 404, None, "another merchant's endpoint").await;
        let release = format!("{held_path}/A%2F1/release");
        let r = app
            .post(&format!("{held_path}/C/release"), ADMIN, &json!({}))
            .await;
        assert_problem(r, 404, None, "a key that is not held").await;

        let r = app.post(&release, ADMIN, &json!({})).await;
        assert_eq!(r.status(), 204, "{backend:?} release");
        let got = rx.wait_for(4, Duration::from_secs(10)).await;
        assert_eq!(got.len(), 4);
        assert_eq!(
            arrivals(&rx),
            vec![a0, b0, a1, a2],
            "the rest of A, in order"
        );
        let (_, v) = json_of(app.get(&held_path, ADMIN).await).await;
        assert_eq!(v, json!([]));
        let r = app.post(&release, ADMIN, &json!({})).await;
        assert_problem(r, 404, None, "released already").await;
        app.stop().await;
    }
}
