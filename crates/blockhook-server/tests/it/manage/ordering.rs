//! Ordered delivery over the API (docs/ordering.md): the endpoint's `ordering` object is shown,
//! validated (422 naming `ordering.<field>`) and patched; `ordering_key` is validated on both
//! publish routes.

use reqwest::Method;
use serde_json::{Value, json};

use super::{assert_problem, call, json_of};
use crate::helpers::{ADMIN, TestApp, backends};

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
