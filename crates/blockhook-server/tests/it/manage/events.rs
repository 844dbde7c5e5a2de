//! Event logs: filters, pagination, one event with its payload, deliveries, attempts, resends
//! and their limits.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{assert_problem, json_of, key_for};
use crate::helpers::{ADMIN, PAYMENT, TestApp, backends};
use crate::receiver::{Receiver, now_ms};

async fn wait_attempts(app: &TestApp, m: &str, delivery: &str, n: usize) -> Value {
    for _ in 0..200 {
        let (_, v) = json_of(
            app.get(
                &format!("/v1/merchants/{m}/deliveries/{delivery}/attempts"),
                ADMIN,
            )
            .await,
        )
        .await;
        if v.as_array().is_some_and(|a| a.len() >= n) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{delivery} never had {n} attempts");
}

#[tokio::test]
async fn events_deliveries_and_attempts_are_readable_with_filters() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let rx = Receiver::scripted(Some(&app.ca), Arc::new(|_| 503), Duration::ZERO).await;
        let m = app.merchant().await;
        let key = key_for(&app, &m).await;
        app.endpoint(&m, &rx.url(), json!({ "event_types": ["Payment"] }))
            .await;
        let t0 = now_ms() as i64;
        let pay = app.publish(&m, "Payment", PAYMENT).await["event_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let payout = app
            .publish(&m, "Payout", r#"{"bizOrderNo":"B1","amount":"1.50"}"#)
            .await["event_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, list) = json_of(app.get("/v1/merchants/me/events", &key).await).await;
        assert_eq!(status, 200, "{list}");
        let ids: Vec<&str> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            vec![payout.as_str(), pay.as_str()],
            "{backend:?}: newest first"
        );
        let (_, only) = json_of(
            app.get("/v1/merchants/me/events?event_type=payout", &key)
                .await,
        )
        .await;
        assert_eq!(only["data"].as_array().unwrap().len(), 1);
        assert_eq!(only["data"][0]["id"], payout.as_str());
        let (_, none) = json_of(
            app.get(&format!("/v1/merchants/me/events?until={t0}"), &key)
                .await,
        )
        .await;
        assert_eq!(none["data"], json!([]));
        let (_, both) = json_of(
            app.get(&format!("/v1/merchants/me/events?since={t0}"), &key)
                .await,
        )
        .await;
        assert_eq!(both["data"].as_array().unwrap().len(), 2);
        for q in [
            "state=weird",
            "event_type=a%20b",
            "limit=0",
            "after=ep_1",
            &format!("since={t0}&until={}", t0 - 1),
        ] {
            let r = app.get(&format!("/v1/merchants/me/events?{q}"), &key).await;
            assert_problem(r, 422, None, q).await;
        }
        // One event: the payload as JSON, exactly what was published.
        let (status, ev) = json_of(
            app.get(&format!("/v1/merchants/me/events/{pay}"), &key)
                .await,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            ev["payload"],
            serde_json::from_str::<Value>(PAYMENT).unwrap()
        );
        assert_eq!(ev["event_type"], "Payment");
        // Its delivery and the attempts, with what was sent and what came back.
        let (_, deliveries) = json_of(
            app.get(&format!("/v1/merchants/me/events/{pay}/deliveries"), &key)
                .await,
        )
        .await;
        assert_eq!(deliveries.as_array().unwrap().len(), 1);
        let delivery = deliveries[0]["id"].as_str().unwrap().to_owned();
        let attempts = wait_attempts(&app, &m, &delivery, 1).await;
        let a = &attempts[0];
        assert_eq!(a["number"], 1);
        assert_eq!(a["status"], 503);
        assert_eq!(a["error"], "bad_status");
        assert_eq!(a["url"], rx.url());
        assert_eq!(a["response_body"], "answer 0: 503");
        assert!(a["latency_ms"].is_u64());
        let sent: Vec<&str> = a["request_headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h[0].as_str().unwrap())
            .collect();
        assert!(
            sent.contains(&"BlockATM-Signature-V2") && sent.contains(&"BlockATM-Request-Time"),
            "{sent:?}"
        );
        assert!(
            a["response_headers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h[0] == "content-length")
        );
        // The failed delivery shows up under state=failed once retries are exhausted.
        for _ in 0..200 {
            let (_, failed) =
                json_of(app.get("/v1/merchants/me/events?state=failed", &key).await).await;
            if failed["data"].as_array().unwrap().len() == 1 {
                assert_eq!(failed["data"][0]["id"], pay.as_str());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (_, failed) =
            json_of(app.get("/v1/merchants/me/events?state=failed", &key).await).await;
        assert_eq!(failed["data"].as_array().unwrap().len(), 1, "{backend:?}");
        app.stop().await;
    }
}

#[tokio::test]
async fn event_pages_neither_skip_nor_repeat_while_events_arrive() {
    for backend in backends() {
        let app = Arc::new(TestApp::spawn(backend).await);
        let m = app.merchant().await;
        let mut before = HashSet::new();
        for i in 0..30 {
            let v = app
                .publish(&m, "Payment", &format!(r#"{{"orderNo":"P{i}"}}"#))
                .await;
            before.insert(v["event_id"].as_str().unwrap().to_owned());
        }
        let (publisher, merchant) = (app.clone(), m.clone());
        let writer = tokio::spawn(async move {
            for i in 0..30 {
                publisher
                    .publish(&merchant, "Payment", &format!(r#"{{"orderNo":"L{i}"}}"#))
                    .await;
            }
        });
        let mut seen = Vec::new();
        let mut next = String::new();
        loop {
            let (status, page) = json_of(
                app.get(
                    &format!("/v1/merchants/{m}/events?limit=7&after={next}"),
                    ADMIN,
                )
                .await,
            )
            .await;
            assert_eq!(status, 200, "{page}");
            seen.extend(
                page["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["id"].as_str().unwrap().to_owned()),
            );
            match page["next"].as_str() {
                Some(n) => next = n.to_owned(),
                None => break,
            }
            tokio::task::yield_now().await;
        }
        writer.await.unwrap();
        let unique: HashSet<_> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "{backend:?}: no event repeated");
        assert!(before.is_subset(&unique), "{backend:?}: no event skipped");
        Arc::try_unwrap(app).ok().unwrap().stop().await;
    }
}

#[tokio::test]
async fn resends_are_limited_per_event_and_by_age() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let rx = Receiver::ok(Some(&app.ca)).await;
        let m = app.merchant().await;
        let key = key_for(&app, &m).await;
        let ep = app.endpoint(&m, &rx.url(), json!({})).await;
        let other = app
            .endpoint(&m, &rx.url(), json!({ "event_types": ["Payout"] }))
            .await;
        let e = app.publish(&m, "Payment", PAYMENT).await["event_id"]
            .as_str()
            .unwrap()
            .to_owned();
        rx.wait_for(1, Duration::from_secs(10)).await;
        let path = format!("/v1/merchants/me/events/{e}/resend");
        // An unknown endpoint is a 404 and does not count as a resend.
        let r = app
            .post(
                &format!("/v1/merchants/me/events/{e}/resend"),
                &key,
                &json!({ "endpoint_id": "ep_0000" }),
            )
            .await;
        assert_problem(r, 404, None, "unknown endpoint").await;
        let (status, v) = json_of(app.post(&path, &key, &json!({})).await).await;
        assert_eq!(status, 202, "{backend:?} {v}");
        assert_eq!(
            v["delivery_ids"].as_array().unwrap().len(),
            1,
            "to the endpoints it went to"
        );
        let (status, v) = json_of(
            app.post(&path, &key, &json!({ "endpoint_id": other["id"] }))
                .await,
        )
        .await;
        assert_eq!(
            status, 202,
            "to one endpoint, even one it never went to: {v}"
        );
        let (status, _) = json_of(
            app.post(&path, &key, &json!({ "endpoint_id": ep["id"] }))
                .await,
        )
        .await;
        assert_eq!(status, 202);
        let r = app.post(&path, &key, &json!({})).await;
        let p = assert_problem(r, 409, None, "4th resend").await;
        assert!(
            p["detail"].as_str().unwrap().contains("max_per_event"),
            "{p}"
        );
        rx.wait_for(4, Duration::from_secs(10)).await;
        let (_, deliveries) = json_of(
            app.get(&format!("/v1/merchants/me/events/{e}/deliveries"), &key)
                .await,
        )
        .await;
        let origins: Vec<&str> = deliveries
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["origin"].as_str().unwrap())
            .collect();
        assert_eq!(origins, vec!["initial", "resend", "resend", "resend"]);
        let (_, ev) = json_of(app.get(&format!("/v1/merchants/me/events/{e}"), &key).await).await;
        assert_eq!(ev["resend_count"], 3);
        app.stop().await;

        // An event older than the window cannot be resent.
        let app =
            TestApp::spawn_with(backend, |s| s.resend.window = Duration::from_millis(500)).await;
        let m = app.merchant().await;
        app.endpoint(&m, "https://localhost:9/hook", json!({}))
            .await;
        let e = app.publish(&m, "Payment", PAYMENT).await["event_id"]
            .as_str()
            .unwrap()
            .to_owned();
        tokio::time::sleep(Duration::from_millis(700)).await;
        let r = app
            .post(
                &format!("/v1/merchants/{m}/events/{e}/resend"),
                ADMIN,
                &json!({}),
            )
            .await;
        let p = assert_problem(r, 409, None, "too old").await;
        assert!(p["detail"].as_str().unwrap().contains("window"), "{p}");
        app.stop().await;
    }
}

/// Retrying one delivery sends its event again to that endpoint only, counts as a resend of the
/// event (so the same limit stops it), and another merchant's delivery is not found.
#[tokio::test]
async fn one_delivery_is_retried_within_the_resend_limits() {
    for backend in backends() {
        let app = TestApp::spawn_with(backend, |s| s.resend.max_per_event = 2).await;
        let a = Receiver::ok(Some(&app.ca)).await;
        let b = Receiver::ok(Some(&app.ca)).await;
        let m = app.merchant().await;
        let key = key_for(&app, &m).await;
        let ep_a = app.endpoint(&m, &a.url(), json!({})).await;
        app.endpoint(&m, &b.url(), json!({})).await;
        let e = app.publish(&m, "Payment", PAYMENT).await["event_id"]
            .as_str()
            .unwrap()
            .to_owned();
        a.wait_for(1, Duration::from_secs(10)).await;
        b.wait_for(1, Duration::from_secs(10)).await;
        let (_, deliveries) = json_of(
            app.get(&format!("/v1/merchants/me/events/{e}/deliveries"), &key)
                .await,
        )
        .await;
        let to_a = deliveries
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["endpoint_id"] == ep_a["id"])
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let path = format!("/v1/merchants/me/deliveries/{to_a}/retry");
        for n in 1..=2 {
            let (status, v) = json_of(app.post(&path, &key, &json!({})).await).await;
            assert_eq!(status, 202, "{backend:?} {v}");
            assert_eq!(v["delivery_ids"].as_array().unwrap().len(), 1);
            a.wait_for(1 + n, Duration::from_secs(10)).await;
        }
        let r = app.post(&path, &key, &json!({})).await;
        let p = assert_problem(r, 409, None, "past the resend limit").await;
        assert!(
            p["detail"].as_str().unwrap().contains("max_per_event"),
            "{p}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            (a.count(), b.count()),
            (3, 1),
            "only endpoint A got the retries"
        );
        let (_, ev) = json_of(app.get(&format!("/v1/merchants/me/events/{e}"), &key).await).await;
        assert_eq!(ev["resend_count"], 2);

        let other = app.merchant().await;
        let other_key = key_for(&app, &other).await;
        let r = app.post(&path, &other_key, &json!({})).await;
        assert_problem(r, 404, None, "another merchant's delivery").await;
        let r = app
            .post(
                "/v1/merchants/me/deliveries/dlv_nope/retry",
                &key,
                &json!({}),
            )
            .await;
        assert_problem(r, 404, None, "malformed id").await;
        app.stop().await;
    }
}

#[tokio::test]
async fn query_string_errors_are_400_problems_not_plain_text() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let m = app.merchant().await;
        for (path, q) in [
            ("events", "limit=-1"),
            ("events", "limit=abc"),
            ("events", "since=99999999999999999999999"),
            ("events", "until=soon"),
            ("endpoints", "limit=abc"),
        ] {
            let r = app
                .get(&format!("/v1/merchants/{m}/{path}?{q}"), ADMIN)
                .await;
            let p = assert_problem(r, 400, None, &format!("{backend:?} {path}?{q}")).await;
            assert_eq!(p["type"], "urn:blockhook:problem:malformed-query", "{p}");
            let name = q.split('=').next().unwrap();
            assert!(p["detail"].as_str().unwrap().contains(name), "{q}: {p}");
        }
        let r = app.get("/v1/merchants?limit=x", ADMIN).await;
        assert_problem(r, 400, None, "merchants?limit=x").await;
        app.stop().await;
    }
}
