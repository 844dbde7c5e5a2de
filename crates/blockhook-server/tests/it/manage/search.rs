//! Event search over the API on both stores: by `orderNo` (and a configured field), by event
//! id, endpoint and state, paged both ways with a total; tenancy; the 422s.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{assert_problem, json_of, key_for};
use crate::helpers::{ADMIN, TestApp, backends};
use crate::receiver::Receiver;

fn ids(v: &Value) -> Vec<String> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn publish_order(app: &TestApp, m: &str, order: &str, tx: u64) -> String {
    let payload = format!(r#"{{"orderNo":"{order}","txId":{tx},"amount":"10.00"}}"#);
    app.publish(m, "Payment", &payload).await["event_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn search_finds_by_order_number_and_pages_both_ways() {
    for backend in backends() {
        let app = TestApp::spawn_with(backend, |s| {
            s.search.fields = vec!["orderNo".into(), "txId".into()];
        })
        .await;
        let m = app.merchant().await;
        let key = key_for(&app, &m).await;
        let other = app.merchant().await;
        let mut same = Vec::new();
        for i in 0..5 {
            same.push(publish_order(&app, &m, "ORD-7", i).await);
        }
        let lone = publish_order(&app, &m, "ORD-8", 99).await;
        let theirs = publish_order(&app, &other, "ORD-7", 100).await;
        same.reverse();

        // Forwards, two at a time, with the total on every page.
        let base = "/v1/merchants/me/events?order_no=ORD-7&limit=2";
        let (status, p1) = json_of(app.get(base, &key).await).await;
        assert_eq!(status, 200, "{p1}");
        assert_eq!(ids(&p1), same[0..2], "{backend:?}");
        assert_eq!(p1["total"], 5);
        assert_eq!(p1["total_capped"], false);
        assert!(p1["prev"].is_null());
        let next = p1["next"].as_str().unwrap();
        let (_, p2) = json_of(app.get(&format!("{base}&after={next}"), &key).await).await;
        assert_eq!(ids(&p2), same[2..4]);
        let next = p2["next"].as_str().unwrap();
        let (_, p3) = json_of(app.get(&format!("{base}&after={next}"), &key).await).await;
        assert_eq!(ids(&p3), same[4..5]);
        assert!(p3["next"].is_null());
        // Backwards from the last page.
        let prev = p3["prev"].as_str().unwrap();
        let (_, b2) = json_of(app.get(&format!("{base}&before={prev}"), &key).await).await;
        assert_eq!(ids(&b2), same[2..4]);
        let prev = b2["prev"].as_str().unwrap();
        let (_, b1) = json_of(app.get(&format!("{base}&before={prev}"), &key).await).await;
        assert_eq!(ids(&b1), same[0..2]);
        assert!(b1["prev"].is_null(), "back on the first page: {b1}");

        // A number field, as written; the event id; the other merchant's order is theirs only.
        let (_, by_tx) = json_of(
            app.get("/v1/merchants/me/events?field=txId&value=99", &key)
                .await,
        )
        .await;
        assert_eq!(ids(&by_tx), vec![lone.clone()]);
        let (_, by_id) = json_of(
            app.get(&format!("/v1/merchants/me/events?event_id={lone}"), &key)
                .await,
        )
        .await;
        assert_eq!(ids(&by_id), vec![lone.clone()]);
        assert_eq!(by_id["total"], 1);
        let (_, cross) = json_of(
            app.get(&format!("/v1/merchants/me/events?event_id={theirs}"), &key)
                .await,
        )
        .await;
        assert_eq!(cross["total"], 0, "another merchant's event: {cross}");
        let (_, none) = json_of(app.get("/v1/merchants/me/events?order_no=NOPE", &key).await).await;
        assert!(ids(&none).is_empty());
        assert_eq!(none["total"], 0);
        let r = app
            .get(
                &format!("/v1/merchants/{other}/events?order_no=ORD-7"),
                &key,
            )
            .await;
        assert_eq!(r.status(), 404, "another merchant's events");
        app.stop().await;
    }
}

#[tokio::test]
async fn search_by_endpoint_and_state() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let ok = Receiver::scripted(Some(&app.ca), Arc::new(|_| 200), Duration::ZERO).await;
        let m = app.merchant().await;
        let a = app
            .endpoint(&m, &ok.url(), json!({ "event_types": ["Payment"] }))
            .await;
        let b = app
            .endpoint(&m, &ok.url(), json!({ "event_types": ["Payout"] }))
            .await;
        let pay = publish_order(&app, &m, "P-1", 1).await;
        let payout = app.publish(&m, "Payout", r#"{"orderNo":"P-2"}"#).await["event_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let list = |q: String| {
            let app = &app;
            let m = m.clone();
            async move {
                let (status, v) = json_of(
                    app.get(&format!("/v1/merchants/{m}/events?{q}"), ADMIN)
                        .await,
                )
                .await;
                assert_eq!(status, 200, "{q}: {v}");
                v
            }
        };
        assert_eq!(
            ids(&list(format!("endpoint_id={}", a["id"].as_str().unwrap())).await),
            vec![pay.clone()]
        );
        assert_eq!(
            ids(&list(format!("endpoint_id={}", b["id"].as_str().unwrap())).await),
            vec![payout.clone()]
        );
        // Both deliveries succeed (the receiver answers 200), then the state filter finds them.
        let mut succeeded = Vec::new();
        for _ in 0..200 {
            succeeded = ids(&list("state=succeeded".into()).await);
            if succeeded.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(succeeded, vec![payout.clone(), pay.clone()]);
        let q = format!("state=failed&endpoint_id={}", a["id"].as_str().unwrap());
        assert!(ids(&list(q).await).is_empty());
        app.stop().await;
    }
}

#[tokio::test]
async fn bad_search_filters_are_422_naming_the_parameter() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let m = app.merchant().await;
        let other = app.merchant().await;
        let rx = Receiver::scripted(Some(&app.ca), Arc::new(|_| 200), Duration::ZERO).await;
        let theirs = app.endpoint(&other, &rx.url(), json!({})).await;
        let theirs = theirs["id"].as_str().unwrap();
        for (q, field) in [
            ("orderno=1", "orderno"),
            ("field=amount&value=1", "field"),
            ("field=orderNo", "value"),
            ("value=1", "field"),
            ("order_no=1&field=orderNo&value=1", "order_no"),
            ("event_id=nope", "event_id"),
            ("endpoint_id=nope", "endpoint_id"),
            (&format!("endpoint_id={theirs}")[..], "endpoint_id"),
            ("after=evt_x&before=evt_y", "before"),
            ("before=ep_1", "before"),
            ("state=lost", "state"),
        ] {
            let r = app
                .get(&format!("/v1/merchants/{m}/events?{q}"), ADMIN)
                .await;
            let p = assert_problem(r, 422, Some(field), &format!("{backend:?} {q}")).await;
            if q.starts_with("field=amount") {
                let detail = p["detail"].as_str().unwrap();
                assert!(detail.contains("searchable fields: orderNo"), "{p}");
            }
        }
        app.stop().await;
    }
}
