//! Every `/v1` route, taken from the router's own route table: no key, a bad key and a revoked
//! key are 401; a merchant key on an operator route is 403; another merchant's key on a
//! merchant's resources is 404, exactly like an unknown id.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use blockhook_server::api::{self, RouteSpec};

use super::{call, json_of, key_for};
use crate::helpers::{ADMIN, PAYMENT, TestApp, backends};

struct Ids {
    merchant: String,
    endpoint: String,
    event: String,
    delivery: String,
    key_id: String,
}

fn fill(r: &RouteSpec, ids: &Ids, merchant: &str) -> String {
    r.path
        .replace("{merchant_id}", merchant)
        .replace("{endpoint_id}", &ids.endpoint)
        .replace("{event_id}", &ids.event)
        .replace("{delivery_id}", &ids.delivery)
        .replace("{key_id}", &ids.key_id)
}

fn method(r: &RouteSpec) -> Method {
    Method::from_bytes(r.method.to_ascii_uppercase().as_bytes()).unwrap()
}

/// The merchant's own record is readable with its key (`GET /v1/merchants/me`).
fn is_operator_route(r: &RouteSpec) -> bool {
    let own_record = r.method == "get" && r.path == "/v1/merchants/{merchant_id}";
    (api::merchants::ROUTES.contains(r) && !own_record) || api::events::ROUTES.contains(r)
}

async fn setup(app: &TestApp) -> (Ids, String, String, String) {
    let m = app.merchant().await;
    let ep = app
        .endpoint(&m, "https://localhost:9/hook", json!({}))
        .await;
    let published = app.publish(&m, "Payment", PAYMENT).await;
    let event = published["event_id"].as_str().unwrap().to_owned();
    let (_, deliveries) = json_of(
        app.get(
            &format!("/v1/merchants/{m}/events/{event}/deliveries"),
            ADMIN,
        )
        .await,
    )
    .await;
    let delivery = deliveries[0]["id"].as_str().unwrap().to_owned();
    let a_key = key_for(app, &m).await;
    let revoked = key_for(app, &m).await;
    let (_, keys) = json_of(app.get(&format!("/v1/merchants/{m}/api-keys"), ADMIN).await).await;
    let prefix: String = revoked.chars().take(10).collect();
    let revoked_id = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["prefix"] == prefix.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = call(
        app,
        Method::DELETE,
        &format!("/v1/merchants/{m}/api-keys/{revoked_id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(r.status(), 204);
    let b = app.merchant().await;
    let b_key = key_for(app, &b).await;
    let ids = Ids {
        merchant: m,
        endpoint: ep["id"].as_str().unwrap().to_owned(),
        event,
        delivery,
        key_id: revoked_id,
    };
    (ids, a_key, revoked, b_key)
}

/// A body the route would accept, so that only tenancy can refuse the request.
fn valid_body(r: &RouteSpec) -> Value {
    if r.path.ends_with("/test") {
        json!({ "event_type": "Payment" })
    } else if r.path.ends_with("/recover") {
        json!({ "since": crate::receiver::now_ms() as i64 - 60_000 })
    } else if r.path.ends_with("/endpoints") {
        json!({ "url": "https://merchant.example/hook" })
    } else {
        json!({})
    }
}

#[tokio::test]
async fn every_route_refuses_missing_bad_and_revoked_keys_and_merchant_keys_on_operator_routes() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let (ids, a_key, revoked, _) = setup(&app).await;
        let body = json!({});
        let mut operator_routes = 0;
        for r in api::route_table().filter(|r| r.path.starts_with("/v1/")) {
            let path = fill(r, &ids, &ids.merchant);
            let what = format!("{backend:?} {} {}", r.method, r.path);
            for token in [None, Some("not-a-key"), Some(revoked.as_str())] {
                let resp = call(&app, method(r), &path, token, Some(&body)).await;
                let (status, v) = json_of(resp).await;
                assert_eq!(status, 401, "{what} with {token:?}: {v}");
                assert!(
                    v["type"].as_str().unwrap().ends_with("unauthorized"),
                    "{what}"
                );
            }
            if is_operator_route(r) {
                operator_routes += 1;
                let (status, v) =
                    json_of(call(&app, method(r), &path, Some(&a_key), Some(&body)).await).await;
                assert_eq!(status, 403, "{what} with a merchant key: {v}");
            }
        }
        assert!(
            operator_routes >= 9,
            "operator routes checked: {operator_routes}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn another_merchants_key_gets_404_on_every_merchant_route_like_an_unknown_id() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let (ids, a_key, _, b_key) = setup(&app).await;
        let mut checked = 0;
        for r in api::route_table()
            .filter(|r| r.path.starts_with("/v1/merchants/{merchant_id}") && !is_operator_route(r))
        {
            let what = format!("{backend:?} {} {}", r.method, r.path);
            // B's key on A's merchant id, and on A's resources through B's own `me`.
            for merchant in [ids.merchant.as_str(), "me"] {
                let path = fill(r, &ids, merchant);
                if merchant == "me" && r.path.matches('{').count() == 1 {
                    continue; // `me` is B itself: nothing of A's in the path to leak
                }
                let (status, v) =
                    json_of(call(&app, method(r), &path, Some(&b_key), Some(&valid_body(r))).await)
                        .await;
                assert_eq!(status, 404, "{what} via {merchant}: {v}");
                assert_eq!(v["type"], "urn:blockhook:problem:not-found", "{what}");
            }
            checked += 1;
            if r.method == "get" {
                // The owner reaches the same resources, by id and as `me`.
                for merchant in [ids.merchant.as_str(), "me"] {
                    let (status, v) = json_of(
                        call(
                            &app,
                            Method::GET,
                            &fill(r, &ids, merchant),
                            Some(&a_key),
                            None,
                        )
                        .await,
                    )
                    .await;
                    assert_eq!(status, 200, "{what} by its owner via {merchant}: {v}");
                }
            }
        }
        assert!(checked >= 15, "merchant routes checked: {checked}");
        // Unknown ids of A's own merchant answer the same 404.
        let m = &ids.merchant;
        for path in [
            format!("/v1/merchants/{m}/endpoints/ep_0000"),
            format!("/v1/merchants/{m}/events/evt_0000"),
            format!("/v1/merchants/{m}/deliveries/dlv_0000/attempts"),
            "/v1/merchants/mch_0000/endpoints".to_owned(),
        ] {
            let (status, v) = json_of(app.get(&path, &a_key).await).await;
            assert_eq!(status, 404, "{path}: {v}");
        }
        // A suspended merchant's key is refused.
        let r = call(
            &app,
            Method::PATCH,
            &format!("/v1/merchants/{m}"),
            Some(ADMIN),
            Some(&json!({ "status": "suspended" })),
        )
        .await;
        assert_eq!(r.status(), 200);
        let (status, _) = json_of(app.get("/v1/merchants/me/endpoints", &a_key).await).await;
        assert_eq!(status, 401, "suspended");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_tiny_per_key_rate_limit_answers_429_with_retry_after() {
    for backend in backends() {
        let app = TestApp::spawn_with(backend, |s| {
            s.api.requests_per_second = 1;
            s.api.burst = 3;
        })
        .await;
        // Three operator requests: exactly the operator's own burst.
        let m = app.merchant().await;
        let key = key_for(&app, &m).await;
        let other = key_for(&app, &m).await;
        let mut statuses = Vec::new();
        let mut retry_after = None;
        for _ in 0..5 {
            let r = app.get("/v1/merchants/me/endpoints", &key).await;
            if r.status() == 429 {
                retry_after = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["type"], "urn:blockhook:problem:rate-limited");
                statuses.push(429);
            } else {
                statuses.push(r.status().as_u16());
            }
        }
        assert_eq!(
            &statuses[..3],
            &[200, 200, 200],
            "{backend:?}: the burst is admitted: {statuses:?}"
        );
        assert!(statuses[3..].contains(&429), "{statuses:?}");
        let secs: u64 = retry_after.expect("Retry-After").parse().unwrap();
        assert!((1..=2).contains(&secs));
        // Each key has its own budget.
        assert_eq!(
            app.get("/v1/merchants/me/endpoints", &other).await.status(),
            200
        );
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        assert_eq!(
            app.get("/v1/merchants/me/endpoints", &key).await.status(),
            200,
            "budget refills"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn the_operator_publishes_past_the_burst_without_429_while_merchant_keys_stay_limited() {
    for backend in backends() {
        let app = TestApp::spawn_with(backend, |s| {
            s.api.requests_per_second = 1;
            s.api.burst = 3;
        })
        .await;
        let m = app.merchant().await;
        let key = key_for(&app, &m).await;
        // Ten single publishes and two batches within one second: far past the burst of 3.
        for i in 0..10 {
            let body = json!({ "merchant_id": m, "event_type": "Payment", "payload": { "n": i } });
            let r = app.post("/v1/events", ADMIN, &body).await;
            assert_eq!(r.status(), 202, "{backend:?}: publish {i}");
        }
        for i in 0..2 {
            let body = json!({ "events": [{ "merchant_id": m, "event_type": "Payment", "payload": { "b": i } }] });
            let r = app.post("/v1/events/batch", ADMIN, &body).await;
            assert_eq!(r.status(), 202, "{backend:?}: batch {i}");
        }
        let statuses: Vec<u16> = merchant_statuses(&app, &key).await;
        assert!(
            statuses.contains(&429),
            "{backend:?}: merchant keys keep their limit: {statuses:?}"
        );
        app.stop().await;
    }
}

async fn merchant_statuses(app: &TestApp, key: &str) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            app.get("/v1/merchants/me/endpoints", key)
                .await
                .status()
                .as_u16(),
        );
    }
    statuses
}
