//! Ingest: idempotency, batches, and bad input that stores nothing.

use serde_json::{Value, json};

use blockhook_core::{EventQuery, MerchantId};

use crate::helpers::{ADMIN, TestApp, backends};

async fn event_count(app: &TestApp, merchant: &str) -> usize {
    let q = EventQuery {
        limit: 250,
        ..EventQuery::default()
    };
    let m = MerchantId::parse(merchant).unwrap();
    app.state
        .store
        .list_events(&m, &q)
        .await
        .unwrap()
        .data
        .len()
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_original_event_and_creates_nothing() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let m = app.merchant().await;
        app.endpoint(&m, "https://localhost:9/hook", json!({}))
            .await;
        let body = json!({ "merchant_id": m, "event_type": "Payment", "payload": { "orderNo": "A1" }, "idempotency_key": "order-A1-paid" });
        let first: Value = app
            .post("/v1/events", ADMIN, &body)
            .await
            .json()
            .await
            .unwrap();
        let again = app.post("/v1/events", ADMIN, &body).await;
        assert_eq!(again.status(), 202);
        let again: Value = again.json().await.unwrap();
        assert_eq!(again["event_id"], first["event_id"], "{backend:?}");
        assert_eq!(again["duplicate"], true);
        assert_eq!(again["deliveries"], 0);
        assert_eq!(first["deliveries"], 1);
        assert_eq!(event_count(&app, &m).await, 1);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_batch_is_stored_in_one_go_and_a_bad_member_stores_nothing() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let m = app.merchant().await;
        let events: Vec<Value> = (0..1_000)
            .map(|i| json!({ "merchant_id": m, "event_type": "Payment", "payload": { "orderNo": format!("B{i}"), "amount": "1.00" } }))
            .collect();
        let r = app
            .post("/v1/events/batch", ADMIN, &json!({ "events": events }))
            .await;
        assert_eq!(r.status(), 202, "{backend:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 1_000);
        let too_many: Vec<Value> = (0..1_001)
            .map(|_| json!({ "merchant_id": m, "event_type": "Payment", "payload": {} }))
            .collect();
        let r = app
            .post("/v1/events/batch", ADMIN, &json!({ "events": too_many }))
            .await;
        assert_eq!(r.status(), 422);
        let bad = json!({ "events": [
            { "merchant_id": m, "event_type": "Payment", "payload": {} },
            { "merchant_id": m, "event_type": "Payment", "payload": [1, 2] },
        ]});
        let r = app.post("/v1/events/batch", ADMIN, &bad).await;
        assert_eq!(r.status(), 422);
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["field"], "events[1].payload");
        let q = blockhook_core::EventQuery {
            limit: 250,
            ..Default::default()
        };
        let mid = MerchantId::parse(&m).unwrap();
        let mut total = 0;
        let mut page = app.state.store.list_events(&mid, &q).await.unwrap();
        loop {
            total += page.data.len();
            let Some(next) = page.next.clone() else { break };
            page = app
                .state
                .store
                .list_events(
                    &mid,
                    &blockhook_core::EventQuery {
                        after: Some(next),
                        ..q.clone()
                    },
                )
                .await
                .unwrap();
        }
        assert_eq!(total, 1_000, "only the good batch was stored");
        app.stop().await;
    }
}

#[tokio::test]
async fn bad_input_gets_problem_details_and_stores_nothing() {
    for backend in backends() {
        let app = TestApp::spawn_with(backend, |s| s.server.max_body_bytes = 65_536).await;
        let m = app.merchant().await;
        let deep = format!(
            r#"{{"merchant_id":"{m}","event_type":"Payment","payload":{{"a":{}{}}}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let cases: Vec<(&str, String, u16)> = vec![
            ("not json", "{not json".into(), 400),
            (
                "payload not an object",
                format!(r#"{{"merchant_id":"{m}","event_type":"Payment","payload":[1]}}"#),
                422,
            ),
            (
                "duplicate keys",
                format!(
                    r#"{{"merchant_id":"{m}","event_type":"Payment","payload":{{"a":1,"a":2}}}}"#
                ),
                422,
            ),
            (
                "unknown merchant",
                r#"{"merchant_id":"mch_0000","event_type":"Payment","payload":{}}"#.into(),
                422,
            ),
            (
                "malformed merchant id",
                r#"{"merchant_id":"nope","event_type":"Payment","payload":{}}"#.into(),
                422,
            ),
            (
                "bad event type",
                format!(r#"{{"merchant_id":"{m}","event_type":"Pay ment","payload":{{}}}}"#),
                422,
            ),
            (
                "missing payload",
                format!(r#"{{"merchant_id":"{m}","event_type":"Payment"}}"#),
                422,
            ),
            (
                "oversized",
                format!(
                    r#"{{"merchant_id":"{m}","event_type":"Payment","payload":{{"x":"{}"}}}}"#,
                    "y".repeat(70_000)
                ),
                413,
            ),
            ("deep nesting", deep, 422),
        ];
        for (what, body, status) in cases {
            let r = app.post_raw("/v1/events", ADMIN, body).await;
            assert_eq!(r.status().as_u16(), status, "{backend:?} {what}");
            assert_eq!(
                r.headers()["content-type"],
                "application/problem+json",
                "{what}"
            );
            let p: Value = r.json().await.unwrap();
            assert!(
                p["type"]
                    .as_str()
                    .unwrap()
                    .starts_with("urn:blockhook:problem:"),
                "{what}: {p}"
            );
            assert!(!p["detail"].as_str().unwrap().is_empty(), "{what}");
        }
        let r = app
            .http
            .post(format!("{}/v1/events", app.base))
            .bearer_auth(ADMIN)
            .body(vec![0xff, 0xfe, 0x00])
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "invalid UTF-8");
        let huge = "h".repeat(100 * 1024);
        let r = app
            .http
            .post(format!("{}/v1/events", app.base))
            .bearer_auth(ADMIN)
            .header("x-huge", huge)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 431, "100 KiB header");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let r = app.post("/v1/events", "wrong-token", &json!({})).await;
        assert_eq!(r.status(), 401);
        assert_eq!(event_count(&app, &m).await, 0, "nothing stored");
        app.stop().await;
    }
}

#[tokio::test]
async fn the_same_idempotency_key_with_another_event_is_a_409_naming_the_original() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let m = app.merchant().await;
        app.endpoint(&m, "https://localhost:9/hook", json!({}))
            .await;
        let one = |event_type: &str, payload: &str| {
            format!(
                r#"{{"merchant_id":"{m}","event_type":"{event_type}","payload":{payload},"idempotency_key":"order-7"}}"#
            )
        };
        let r = app
            .post_raw("/v1/events", ADMIN, one("Payment", r#"{"a":"1.0"}"#))
            .await;
        assert_eq!(r.status(), 202);
        let original: Value = r.json().await.unwrap();
        let id = original["event_id"].as_str().unwrap().to_owned();
        // Byte-identical: still a duplicate.
        let r = app
            .post_raw("/v1/events", ADMIN, one("Payment", r#"{"a":"1.0"}"#))
            .await;
        assert_eq!(r.status(), 202, "{backend:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (v["event_id"].as_str(), v["duplicate"].as_bool()),
            (Some(id.as_str()), Some(true))
        );
        // Another type, or a payload that is equal as JSON but not byte for byte: 409.
        for body in [
            one("Payout", r#"{"a":"1.0"}"#),
            one("Payment", r#"{"a":"2.0"}"#),
            one("Payment", r#"{ "a":"1.0"}"#),
        ] {
            let r = app.post_raw("/v1/events", ADMIN, body.clone()).await;
            let p =
                crate::manage::assert_problem(r, 409, None, &format!("{backend:?} {body}")).await;
            assert!(p["detail"].as_str().unwrap().contains(&id), "{p}");
        }
        // In a batch: the whole batch is refused, the member is named, nothing is stored.
        let batch = format!(
            r#"{{"events":[{{"merchant_id":"{m}","event_type":"Payment","payload":{{"fresh":1}}}},{}]}}"#,
            one("Payment", r#"{"a":"3.0"}"#)
        );
        let r = app.post_raw("/v1/events/batch", ADMIN, batch).await;
        let p = crate::manage::assert_problem(r, 409, None, &format!("{backend:?} batch")).await;
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains("events[1]") && detail.contains(&id), "{p}");
        // A batch repeating a new key with two different events is refused too.
        let twice = format!(
            r#"{{"events":[{{"merchant_id":"{m}","event_type":"Payment","payload":{{"x":1}},"idempotency_key":"k2"}},{{"merchant_id":"{m}","event_type":"Payment","payload":{{"x":2}},"idempotency_key":"k2"}}]}}"#
        );
        let r = app.post_raw("/v1/events/batch", ADMIN, twice).await;
        crate::manage::assert_problem(r, 409, None, &format!("{backend:?} in-batch")).await;
        assert_eq!(
            event_count(&app, &m).await,
            1,
            "{backend:?}: nothing more stored"
        );
        // The same batch member with the same event stays a duplicate.
        let same = format!(r#"{{"events":[{}]}}"#, one("Payment", r#"{"a":"1.0"}"#));
        let r = app.post_raw("/v1/events/batch", ADMIN, same).await;
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["data"][0]["event_id"], id.as_str());
        assert_eq!(v["data"][0]["duplicate"], true);
        app.stop().await;
    }
}
