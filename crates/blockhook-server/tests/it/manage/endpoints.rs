//! Endpoints: validation per field, CRUD, enable/disable, pagination under concurrent inserts,
//! secret rotation on the wire, secrets encrypted at rest, test sends, recovery.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use blockhook_core::{DeliveryState, EventId, MerchantId, Timestamp};
use blockhook_sig::VerifyOptions;

use super::{assert_problem, call, json_of, key_for};
use crate::helpers::{ADMIN, Backend, PAYMENT, TestApp, backends};
use crate::receiver::{Receiver, now_ms};

fn verifies(r: &crate::receiver::Received, secret: &str) -> bool {
    let opts = VerifyOptions {
        window_ms: 300_000,
        ..VerifyOptions::default()
    };
    blockhook_sig::verify(&r.headers, &r.body, &[secret.as_bytes()], &opts, r.at_ms).is_ok()
}

#[tokio::test]
async fn each_invalid_field_is_a_422_naming_it_on_create_and_update() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let m = app.merchant().await;
        let base = "https://merchant.example/hook";
        let cases: Vec<(&str, Value)> = vec![
            ("url", json!({ "url": "http://merchant.example/hook" })),
            ("url", json!({ "url": "ftp://merchant.example/" })),
            ("url", json!({ "url": "https://u:p@merchant.example/" })),
            ("url", json!({ "url": "not a url" })),
            (
                "description",
                json!({ "url": base, "description": "d".repeat(1_001) }),
            ),
            (
                "description",
                json!({ "url": base, "description": "nul \u{0} inside" }),
            ),
            (
                "event_types",
                json!({ "url": base, "event_types": ["Pay ment"] }),
            ),
            (
                "signing_mode",
                json!({ "url": base, "signing_mode": "sha1" }),
            ),
            (
                "success_policy",
                json!({ "url": base, "success_policy": "3xx" }),
            ),
            (
                "headers",
                json!({ "url": base, "headers": [["BlockATM-Signature-V2", "x"]] }),
            ),
            (
                "headers",
                json!({ "url": base, "headers": [["X-Ok", "a\nb"]] }),
            ),
            ("rate_limit", json!({ "url": base, "rate_limit": 0 })),
            ("label", json!({ "url": base, "label": "has space" })),
            ("secret", json!({ "url": base, "secret": "short" })),
        ];
        let path = format!("/v1/merchants/{m}/endpoints");
        for (field, body) in &cases {
            let r = app.post(&path, ADMIN, body).await;
            assert_problem(r, 422, Some(field), &format!("{backend:?} create {body}")).await;
        }
        // Unknown fields and wrong types are 422 too (without a field).
        let r = app
            .post(&path, ADMIN, &json!({ "url": base, "colour": "red" }))
            .await;
        assert_problem(r, 422, None, "unknown field").await;
        let ep = app.endpoint(&m, base, json!({})).await;
        let ep_path = format!("{path}/{}", ep["id"].as_str().unwrap());
        for (field, body) in cases.iter().filter(|(f, _)| *f != "secret") {
            let mut patch = body.clone();
            if *field != "url" {
                patch.as_object_mut().unwrap().remove("url");
            }
            let r = call(&app, Method::PATCH, &ep_path, Some(ADMIN), Some(&patch)).await;
            assert_problem(r, 422, Some(field), &format!("{backend:?} update {patch}")).await;
        }
        let r = call(
            &app,
            Method::PATCH,
            &ep_path,
            Some(ADMIN),
            Some(&json!({ "secret": "x".repeat(30) })),
        )
        .await;
        assert_problem(r, 422, None, "the secret is rotated, not patched").await;
        // Nothing was changed by the refused updates.
        let (_, now) = json_of(app.get(&ep_path, ADMIN).await).await;
        let mut created = ep.clone();
        created.as_object_mut().unwrap().remove("secret");
        assert_eq!(now, created);
        let r = app
            .post(
                &format!("{path}/{}/recover", ep["id"].as_str().unwrap()),
                ADMIN,
                &json!({ "since": 0 }),
            )
            .await;
        assert_problem(r, 422, Some("since"), "recover beyond the window").await;
        let r = app
            .post(
                &format!("{path}/{}/test", ep["id"].as_str().unwrap()),
                ADMIN,
                &json!({ "event_type": "Refund" }),
            )
            .await;
        assert_problem(r, 422, Some("event_type"), "test send of an unknown type").await;
        for q in ["limit=0", "limit=251", "after=evt_123"] {
            let r = app.get(&format!("{path}?{q}"), ADMIN).await;
            assert_problem(r, 422, Some(q.split('=').next().unwrap()), q).await;
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn update_enable_disable_and_delete() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let m = app.merchant().await;
        let key = key_for(&app, &m).await;
        let r = app.post("/v1/merchants/me/endpoints", &key, &json!({ "url": "https://a.example/h", "description": "first", "label": "cashier:91", "rate_limit": 5 })).await;
        let (status, ep) = json_of(r).await;
        assert_eq!(status, 201, "{ep}");
        let id = ep["id"].as_str().unwrap();
        let path = format!("/v1/merchants/me/endpoints/{id}");
        let patch = json!({ "url": "https://b.example/h", "event_types": ["Payout", "payout", "Payment"], "signing_mode": "raw", "success_policy": "2xx", "headers": [["X-Shop", "42"]], "description": null, "rate_limit": null });
        let (status, v) =
            json_of(call(&app, Method::PATCH, &path, Some(&key), Some(&patch)).await).await;
        assert_eq!(status, 200, "{backend:?} {v}");
        assert_eq!(v["url"], "https://b.example/h");
        assert_eq!(
            v["event_types"],
            json!(["Payment", "Payout"]),
            "deduplicated case-insensitively"
        );
        assert_eq!(
            (v["signing_mode"].as_str(), v["success_policy"].as_str()),
            (Some("raw"), Some("2xx"))
        );
        assert_eq!(v["headers"], json!([["X-Shop", "42"]]));
        assert_eq!(
            (v["description"].clone(), v["rate_limit"].clone()),
            (Value::Null, Value::Null),
            "null clears"
        );
        assert_eq!(v["label"], "cashier:91", "absent fields stay");
        assert!(
            v.get("secret").is_none(),
            "an update never answers the secret: {v}"
        );
        let (_, v) = json_of(app.post(&format!("{path}/disable"), &key, &json!({})).await).await;
        assert_eq!(v["enabled"], false);
        assert!(v["disabled_reason"].is_string());
        let published = app.publish(&m, "Payment", PAYMENT).await;
        assert_eq!(
            published["deliveries"], 0,
            "a disabled endpoint gets nothing"
        );
        let (_, v) = json_of(app.post(&format!("{path}/enable"), &key, &json!({})).await).await;
        assert_eq!(
            (v["enabled"].clone(), v["disabled_reason"].clone()),
            (json!(true), Value::Null)
        );
        let (status, v) = json_of(
            call(
                &app,
                Method::PATCH,
                &path,
                Some(&key),
                Some(&json!({ "enabled": false })),
            )
            .await,
        )
        .await;
        assert_eq!((status, v["enabled"].clone()), (200, json!(false)));
        assert_eq!(
            call(&app, Method::DELETE, &path, Some(&key), None)
                .await
                .status(),
            204
        );
        assert_eq!(app.get(&path, &key).await.status(), 404);
        assert_eq!(
            call(&app, Method::DELETE, &path, Some(&key), None)
                .await
                .status(),
            404
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn pagination_neither_skips_nor_repeats_under_concurrent_inserts() {
    for backend in backends() {
        let app = Arc::new(TestApp::spawn(backend).await);
        let m = app.merchant().await;
        let mut before = HashSet::new();
        for i in 0..25 {
            let ep = app
                .endpoint(&m, &format!("https://e{i}.example/h"), json!({}))
                .await;
            before.insert(ep["id"].as_str().unwrap().to_owned());
        }
        let (inserter, merchant) = (app.clone(), m.clone());
        let writer = tokio::spawn(async move {
            for i in 0..20 {
                inserter
                    .endpoint(&merchant, &format!("https://late{i}.example/h"), json!({}))
                    .await;
            }
        });
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let q = match &after {
                Some(a) => format!("?limit=4&after={a}"),
                None => "?limit=4".to_owned(),
            };
            let (status, page) = json_of(
                app.get(&format!("/v1/merchants/{m}/endpoints{q}"), ADMIN)
                    .await,
            )
            .await;
            assert_eq!(status, 200, "{page}");
            let rows = page["data"].as_array().unwrap();
            assert!(rows.len() <= 4);
            seen.extend(rows.iter().map(|r| r["id"].as_str().unwrap().to_owned()));
            match page["next"].as_str() {
                Some(n) => after = Some(n.to_owned()),
                None => break,
            }
            tokio::task::yield_now().await;
        }
        writer.await.unwrap();
        let unique: HashSet<_> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "{backend:?}: no row repeated");
        assert!(
            before.is_subset(&unique),
            "{backend:?}: every row present before the listing started is listed"
        );
        let mut sorted = seen.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(seen, sorted, "newest first");
        Arc::try_unwrap(app).ok().unwrap().stop().await;
    }
}

#[tokio::test]
async fn a_rotated_secret_signs_the_next_delivery_and_the_old_one_no_longer_verifies() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let rx = Receiver::ok(Some(&app.ca)).await;
        let m = app.merchant().await;
        let key = key_for(&app, &m).await;
        let ep = app.endpoint(&m, &rx.url(), json!({})).await;
        let old = ep["secret"].as_str().unwrap().to_owned();
        app.publish(&m, "Payment", PAYMENT).await;
        let got = rx.wait_for(1, Duration::from_secs(10)).await;
        assert!(verifies(&got[0], &old));
        let path = format!(
            "/v1/merchants/me/endpoints/{}/rotate-secret",
            ep["id"].as_str().unwrap()
        );
        let (status, rotated) = json_of(app.post(&path, &key, &json!({})).await).await;
        assert_eq!(status, 200, "{rotated}");
        let new = rotated["secret"].as_str().unwrap().to_owned();
        assert!(new.starts_with("sck_") && new != old);
        let (_, view) = json_of(
            app.get(
                &format!(
                    "/v1/merchants/me/endpoints/{}/secret",
                    ep["id"].as_str().unwrap()
                ),
                &key,
            )
            .await,
        )
        .await;
        assert_eq!(view["secret"], new.as_str());
        app.publish(&m, "Payment", PAYMENT).await;
        let got = rx.wait_for(2, Duration::from_secs(10)).await;
        assert!(
            verifies(&got[1], &new),
            "{backend:?}: the new secret verifies"
        );
        assert!(
            !verifies(&got[1], &old),
            "{backend:?}: the old secret no longer does"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn the_secret_is_answered_only_at_create_rotate_and_by_its_own_read() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let m = app.merchant().await;
        let key = key_for(&app, &m).await;
        let other = key_for(&app, &app.merchant().await).await;
        let ep = app
            .endpoint(&m, "https://a.example/h", json!({ "description": "x" }))
            .await;
        let secret = ep["secret"].as_str().unwrap().to_owned();
        assert!(secret.starts_with("sck_"), "{backend:?}: create shows it");
        let id = ep["id"].as_str().unwrap();
        let one = format!("/v1/merchants/{m}/endpoints/{id}");
        for token in [ADMIN, key.as_str()] {
            let (status, list) = json_of(
                app.get(&format!("/v1/merchants/{m}/endpoints"), token)
                    .await,
            )
            .await;
            assert_eq!(status, 200);
            assert_eq!(list["data"].as_array().unwrap().len(), 1);
            assert!(
                !list.to_string().contains(&secret) && list["data"][0].get("secret").is_none(),
                "{backend:?}: the list carries no secret: {list}"
            );
            let (_, read) = json_of(app.get(&one, token).await).await;
            assert_eq!(read["id"], id);
            assert!(
                !read.to_string().contains(&secret),
                "{backend:?}: a read carries no secret: {read}"
            );
            let patch = json!({ "description": "y" });
            let (status, patched) =
                json_of(call(&app, Method::PATCH, &one, Some(token), Some(&patch)).await).await;
            assert_eq!(status, 200);
            assert!(
                !patched.to_string().contains(&secret),
                "{backend:?}: a patch answers no secret: {patched}"
            );
            let (status, shown) = json_of(app.get(&format!("{one}/secret"), token).await).await;
            assert_eq!(status, 200, "{backend:?}: {shown}");
            assert_eq!(shown, json!({ "endpoint_id": id, "secret": secret }));
        }
        // Another merchant's key cannot read it: 404, like an unknown endpoint.
        let r = app
            .get(&format!("/v1/merchants/me/endpoints/{id}/secret"), &other)
            .await;
        assert_problem(r, 404, None, "another merchant's endpoint").await;
        let r = app
            .get(&format!("/v1/merchants/{m}/endpoints/{id}/secret"), &other)
            .await;
        assert_problem(r, 404, None, "another merchant's path").await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_merchant_may_bring_a_secret_from_16_characters_with_a_warning_below_32() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let rx = Receiver::ok(Some(&app.ca)).await;
        let m = app.merchant().await;
        let path = format!("/v1/merchants/{m}/endpoints");
        let r = app
            .post(
                &path,
                ADMIN,
                &json!({ "url": rx.url(), "secret": "x".repeat(15) }),
            )
            .await;
        assert_problem(r, 422, Some("secret"), "15 characters").await;
        let short = "legacy-secret-16";
        let ep = app
            .endpoint(&m, &rx.url(), json!({ "secret": short }))
            .await;
        assert_eq!(ep["secret"], short, "{backend:?}");
        let warnings = ep["warnings"].as_array().unwrap();
        assert!(
            warnings.len() == 1 && warnings[0].as_str().unwrap().contains("shorter than 32"),
            "{ep}"
        );
        // It signs with it.
        app.publish(&m, "Payment", PAYMENT).await;
        let got = rx.wait_for(1, Duration::from_secs(10)).await;
        assert!(verifies(&got[0], short), "{backend:?}");
        let long = app
            .endpoint(
                &m,
                "https://b.example/h",
                json!({ "secret": "y".repeat(32) }),
            )
            .await;
        assert!(
            long.get("warnings").is_none(),
            "no warning from 32 on: {long}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn secrets_are_encrypted_at_rest_in_the_sqlite_file() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let m = app.merchant().await;
    let secret = "sck_AtRestCanaryAtRestCanaryAtRest0123456789";
    app.endpoint(
        &m,
        "https://merchant.example/hook",
        json!({ "secret": secret }),
    )
    .await;
    let (_, rotated) = json_of(
        app.post(
            &format!("/v1/merchants/{m}/endpoints/{}/rotate-secret", "x"),
            ADMIN,
            &json!({}),
        )
        .await,
    )
    .await;
    assert!(rotated["secret"].is_null(), "a malformed id is a plain 404");
    let (_, page) = json_of(
        app.get(&format!("/v1/merchants/{m}/endpoints"), ADMIN)
            .await,
    )
    .await;
    let id = page["data"][0]["id"].as_str().unwrap().to_owned();
    let (_, rotated) = json_of(
        app.post(
            &format!("/v1/merchants/{m}/endpoints/{id}/rotate-secret"),
            ADMIN,
            &json!({}),
        )
        .await,
    )
    .await;
    let rotated = rotated["secret"].as_str().unwrap().to_owned();
    let dir = app.state.settings.store.data_dir.clone();
    let mut bytes = Vec::new();
    for name in ["blockhook.db", "blockhook.db-wal"] {
        if let Ok(b) = std::fs::read(dir.join(name)) {
            bytes.extend(b);
        }
    }
    assert!(bytes.len() > 4_096, "read the database");
    assert!(
        bytes.windows(id.len()).any(|w| w == id.as_bytes()),
        "the endpoint row is in these bytes"
    );
    for s in [secret, rotated.as_str()] {
        assert!(
            !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
            "secret {s} stored in clear"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_test_send_returns_the_receivers_real_answer_and_the_exact_request() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let rx = Receiver::scripted(
            Some(&app.ca),
            Arc::new(|n| if n == 0 { 201 } else { 200 }),
            Duration::ZERO,
        )
        .await;
        let m = app.merchant().await;
        let ep = app
            .endpoint(&m, &rx.url(), json!({ "headers": [["X-Shop", "42"]] }))
            .await;
        let path = format!(
            "/v1/merchants/{m}/endpoints/{}/test",
            ep["id"].as_str().unwrap()
        );
        let (status, v) = json_of(
            app.post(&path, ADMIN, &json!({ "event_type": "Payout" }))
                .await,
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            v["success"], false,
            "{backend:?}: 201 is not a success under the default policy"
        );
        assert_eq!(v["response"]["status"], 201);
        assert_eq!(v["response"]["body"], "answer 0: 201");
        assert_eq!(v["response"]["error"], "bad_status");
        assert!(v["response"]["latency_ms"].is_u64());
        let got = rx.wait_for(1, Duration::from_secs(5)).await;
        assert_eq!(
            v["request"]["body"].as_str().unwrap().as_bytes(),
            got[0].body.as_ref(),
            "the body shown is the body sent"
        );
        assert_eq!(v["request"]["url"], rx.url());
        let shown = v["request"]["headers"].as_array().unwrap();
        for pair in shown {
            let (name, value) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
            assert_eq!(got[0].header(name), Some(value), "header {name} as shown");
        }
        // And every header the receiver got is shown: nothing the client added is missing.
        for (name, value) in &got[0].headers {
            assert!(
                shown
                    .iter()
                    .any(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(name)
                        && p[1] == value.as_str()),
                "{backend:?}: received {name}: {value} but the test send shows {shown:?}"
            );
        }
        assert_eq!(shown.len(), got[0].headers.len(), "{shown:?}");
        assert_eq!(got[0].header("blockatm-event"), Some("Payout"));
        assert_eq!(got[0].header("x-shop"), Some("42"));
        assert!(verifies(&got[0], ep["secret"].as_str().unwrap()));
        let (_, v) = json_of(
            app.post(&path, ADMIN, &json!({ "event_type": "qr-payment" }))
                .await,
        )
        .await;
        assert_eq!(
            (v["success"].clone(), v["response"]["status"].clone()),
            (json!(true), json!(200))
        );
        assert_eq!(
            rx.wait_for(2, Duration::from_secs(5)).await[1].header("blockatm-event"),
            Some("QR-Payment")
        );
        // Nothing is stored: no event appears in the log.
        let (_, events) = json_of(app.get(&format!("/v1/merchants/{m}/events"), ADMIN).await).await;
        assert_eq!(events["data"], json!([]));
        // An unreachable endpoint is reported, not an error.
        let dead = app
            .endpoint(&m, "https://127.0.0.1:9/hook", json!({}))
            .await;
        let path = format!(
            "/v1/merchants/{m}/endpoints/{}/test",
            dead["id"].as_str().unwrap()
        );
        let (status, v) = json_of(
            app.post(&path, ADMIN, &json!({ "event_type": "Payment" }))
                .await,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(v["response"]["status"], Value::Null);
        assert_eq!(v["response"]["error"], "connection_refused", "{v}");
        app.stop().await;
    }
}

async fn states(app: &TestApp, m: &str, event: &str) -> Vec<DeliveryState> {
    let now = Timestamp::from_ms(now_ms() as i64);
    let ds = app
        .state
        .store
        .list_deliveries(
            &MerchantId::parse(m).unwrap(),
            &EventId::parse(event).unwrap(),
            now,
        )
        .await
        .unwrap();
    ds.into_iter().map(|d| d.state).collect()
}

async fn wait_state(app: &TestApp, m: &str, event: &str, want: DeliveryState) {
    for _ in 0..200 {
        if states(app, m, event).await == [want] {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{event} never reached {want:?}: {:?}",
        states(app, m, event).await
    );
}

#[tokio::test]
async fn recover_requeues_exactly_the_failed_deliveries() {
    for backend in backends() {
        let app = TestApp::spawn_with(backend, |s| s.delivery.retry_schedule = vec![]).await;
        // The first two requests fail, everything after succeeds.
        let rx = Receiver::scripted(
            Some(&app.ca),
            Arc::new(|n| if n < 2 { 500 } else { 200 }),
            Duration::ZERO,
        )
        .await;
        let m = app.merchant().await;
        let ep = app.endpoint(&m, &rx.url(), json!({})).await;
        let mut events = Vec::new();
        for (i, want) in [
            DeliveryState::Failed,
            DeliveryState::Failed,
            DeliveryState::Succeeded,
        ]
        .into_iter()
        .enumerate()
        {
            let e = app.publish(&m, "Payment", PAYMENT).await["event_id"]
                .as_str()
                .unwrap()
                .to_owned();
            wait_state(&app, &m, &e, want).await;
            assert_eq!(rx.count(), i + 1);
            events.push(e);
        }
        let (_, backlog) =
            json_of(app.get(&format!("/v1/merchants/{m}/backlog"), ADMIN).await).await;
        assert_eq!(backlog[0]["failed"], 2, "{backend:?} {backlog}");
        let path = format!(
            "/v1/merchants/{m}/endpoints/{}/recover",
            ep["id"].as_str().unwrap()
        );
        let since = now_ms() as i64 - 3_600_000;
        // A preview counts and changes nothing.
        let (status, v) = json_of(
            app.post(&path, ADMIN, &json!({ "since": since, "dry_run": true }))
                .await,
        )
        .await;
        assert_eq!(status, 200, "{backend:?} {v}");
        assert_eq!(v, json!({ "requeued": 2, "dry_run": true }));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(rx.count(), 3, "a dry run sends nothing");
        let (_, backlog) =
            json_of(app.get(&format!("/v1/merchants/{m}/backlog"), ADMIN).await).await;
        assert_eq!(backlog[0]["failed"], 2, "{backend:?} {backlog}");
        let (status, v) = json_of(app.post(&path, ADMIN, &json!({ "since": since })).await).await;
        assert_eq!(
            (status, v["requeued"].clone()),
            (200, json!(2)),
            "{backend:?} {v}"
        );
        let got = rx.wait_for(5, Duration::from_secs(10)).await;
        let resent: HashSet<&str> = got[3..]
            .iter()
            .map(|r| r.header("blockhook-event-id").unwrap())
            .collect();
        assert_eq!(
            resent,
            HashSet::from([events[0].as_str(), events[1].as_str()]),
            "only the failed ones"
        );
        for e in &events {
            wait_state(&app, &m, e, DeliveryState::Succeeded).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(rx.count(), 5, "nothing else was sent");
        let (_, v) = json_of(app.post(&path, ADMIN, &json!({ "since": since })).await).await;
        assert_eq!(v["requeued"], 0, "nothing left to recover");
        let (_, backlog) =
            json_of(app.get(&format!("/v1/merchants/{m}/backlog"), ADMIN).await).await;
        assert_eq!(backlog, json!([]));
        app.stop().await;
    }
}

/// `GET …/endpoints/{id}/activity`: per-hour and per-day bars by state, latency, queue, streak
/// and the newest deliveries; another merchant's endpoint is not found.
#[tokio::test]
async fn activity_shows_an_endpoint_at_a_glance() {
    for backend in backends() {
        let app = TestApp::spawn_with(backend, |s| s.delivery.retry_schedule = vec![]).await;
        // First request fails (no retries: failed for good), then the rest succeed.
        let rx = Receiver::scripted(
            Some(&app.ca),
            Arc::new(|n| if n < 1 { 503 } else { 200 }),
            Duration::ZERO,
        )
        .await;
        let m = app.merchant().await;
        let ep = app.endpoint(&m, &rx.url(), json!({})).await;
        let id = ep["id"].as_str().unwrap();
        for want in [
            DeliveryState::Failed,
            DeliveryState::Succeeded,
            DeliveryState::Succeeded,
        ] {
            let e = app.publish(&m, "Payment", PAYMENT).await["event_id"]
                .as_str()
                .unwrap()
                .to_owned();
            wait_state(&app, &m, &e, want).await;
        }
        let path = format!("/v1/merchants/{m}/endpoints/{id}/activity");
        let (status, v) = json_of(app.get(&path, ADMIN).await).await;
        assert_eq!(status, 200, "{backend:?} {v}");
        let hourly = v["hourly"].as_array().unwrap();
        let daily = v["daily"].as_array().unwrap();
        assert_eq!((hourly.len(), daily.len()), (24, 7));
        // Summed, so a test that runs across an hour or day boundary reads the same.
        let sum = |bars: &[Value], part: &str| -> u64 {
            bars.iter().map(|b| b[part].as_u64().unwrap()).sum()
        };
        assert_eq!(
            (
                sum(hourly, "succeeded"),
                sum(hourly, "failed"),
                sum(hourly, "retrying")
            ),
            (2, 1, 0),
            "{backend:?} {hourly:?}"
        );
        assert_eq!((sum(daily, "succeeded"), sum(daily, "failed")), (2, 1));
        assert!(
            hourly
                .windows(2)
                .all(|w| w[1]["start"].as_i64() > w[0]["start"].as_i64())
        );
        assert_eq!(v["latency"]["attempts"], 3);
        assert!(v["latency"]["p99_ms"].is_u64());
        assert_eq!(v["queue"]["due"], 0);
        assert_eq!(
            v["streak"]["failed_attempts"], 0,
            "the last attempt succeeded"
        );
        assert!(v["streak"]["last_success"].is_i64());
        let recent = v["recent"].as_array().unwrap();
        assert_eq!(recent.len(), 3);
        assert_eq!(
            recent[2]["state"], "failed",
            "newest first: the failed one is oldest"
        );

        let other = app.merchant().await;
        let (status, _) = json_of(
            app.get(
                &format!("/v1/merchants/{other}/endpoints/{id}/activity"),
                ADMIN,
            )
            .await,
        )
        .await;
        assert_eq!(status, 404, "{backend:?}");
        app.stop().await;
    }
}
