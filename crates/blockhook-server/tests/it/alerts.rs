//! Failure alerts end to end on a `ManualClock`: an endpoint answering 503 reaches the failure
//! streak (`endpoint.failing`) and exhausts its deliveries (`delivery.exhausted`), is disabled
//! once `disable_after` has passed (`endpoint.disabled`, also to the operator's merchant), and
//! after being re-enabled and acknowledging again, `endpoint.recovered`. Every operational
//! webhook arrives at a loopback receiver, signed, and is verified with the receiver kit; the
//! catch-all endpoint never receives one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use blockhook_core::{Clock, DeliveryState, EventId, ManualClock, MerchantId, Timestamp};
use blockhook_receiver::{Verifier, VerifyMode};

use crate::helpers::{ADMIN, Backend, PAYMENT, TestApp, backends, store_url, test_settings};
use crate::receiver::{Receiver, TestCa, now_ms};

const OPERATOR: &str = "mch_operatoralerts";
const TYPES: [&str; 4] = [
    "endpoint.failing",
    "endpoint.recovered",
    "endpoint.disabled",
    "delivery.exhausted",
];

async fn spawn(backend: Backend, clock: &ManualClock) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new());
    let url = store_url(backend, dir.path()).await;
    let mut s = test_settings(dir.path(), url, &ca);
    s.alerts.interval = Duration::from_millis(100);
    s.alerts.failure_streak = 3;
    s.alerts.disable_after = Duration::from_secs(3600);
    s.alerts.operator_merchant = OPERATOR.into();
    TestApp::start_with_clock(backend, s, ca, dir, Arc::new(clock.clone())).await
}

/// The operational webhooks `rx` got so far, each verified with `secret`: (type, payload).
fn verified(rx: &Receiver, secret: &str) -> Vec<(String, Value)> {
    let verifier = Verifier::builder()
        .secret(secret)
        .mode(VerifyMode::Sorted)
        .replay_protection(false)
        .build()
        .unwrap();
    rx.received()
        .into_iter()
        .map(|r| {
            // Signed at the manual clock's time: check the signature at that time.
            let at: u64 = r.header("BlockATM-Request-Time").unwrap().parse().unwrap();
            let hook = verifier
                .verify_at(&r.headers, &r.body, at)
                .expect("an operational webhook verifies with the endpoint's secret");
            let body: Value = serde_json::from_slice(hook.body()).unwrap();
            (hook.event_header().to_owned(), body)
        })
        .collect()
}

/// Waits (real time) until `rx` has received an event of `event_type`.
async fn wait_type(rx: &Receiver, secret: &str, event_type: &str) -> Value {
    for _ in 0..400 {
        if let Some((_, body)) = verified(rx, secret)
            .into_iter()
            .find(|(t, _)| t == event_type)
        {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no {event_type} within 10s; got {:?}", verified(rx, secret));
}

async fn patch(app: &TestApp, path: &str, body: Value) -> Value {
    let r = app
        .http
        .patch(format!("{}{path}", app.base))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "PATCH {path}: {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_endpoint_is_reported_disabled_and_recovers() {
    for backend in backends() {
        let clock = ManualClock::at(Timestamp::from_ms(now_ms() as i64));
        let app = spawn(backend, &clock).await;
        let m = app.merchant().await;
        let r = app
            .post(
                "/v1/merchants",
                ADMIN,
                &json!({ "name": "Operator", "id": OPERATOR }),
            )
            .await;
        assert_eq!(r.status(), 201);

        let down = Arc::new(AtomicBool::new(true));
        let flag = down.clone();
        let failing = Receiver::scripted(
            Some(&app.ca),
            Arc::new(move |_| {
                if flag.load(Ordering::SeqCst) {
                    503
                } else {
                    200
                }
            }),
            Duration::ZERO,
        )
        .await;
        let alerts_rx = Receiver::ok(Some(&app.ca)).await;
        let ops_rx = Receiver::ok(Some(&app.ca)).await;
        let all_rx = Receiver::ok(Some(&app.ca)).await;
        let ep = app
            .endpoint(&m, &failing.url(), json!({ "event_types": ["Payment"] }))
            .await;
        let alert_ep = app
            .endpoint(&m, &alerts_rx.url(), json!({ "event_types": TYPES }))
            .await;
        let catch_all = app.endpoint(&m, &all_rx.url(), json!({})).await;
        let ops_ep = app
            .endpoint(
                OPERATOR,
                &ops_rx.url(),
                json!({ "event_types": ["endpoint.disabled"] }),
            )
            .await;
        let (ep_id, secret) = (
            ep["id"].as_str().unwrap().to_owned(),
            alert_ep["secret"].as_str().unwrap().to_owned(),
        );
        let ep_path = format!("/v1/merchants/{m}/endpoints/{ep_id}");

        // Three events, three failed first attempts: the streak. Retries (1s, 1s) exhaust them.
        for _ in 0..3 {
            app.publish(&m, "Payment", PAYMENT).await;
        }
        failing.wait_for(3, Duration::from_secs(10)).await;
        drive(&clock, &failing, 9).await;
        recorded(&app, &clock, 3).await;
        // Past the watch's settle time (total timeout + lease): the window is read.
        clock.advance(Duration::from_secs(60));
        let body = wait_type(&alerts_rx, &secret, "endpoint.failing").await;
        assert_eq!(body["endpoint_id"], ep_id.as_str(), "{backend:?}: {body}");
        assert_eq!(body["merchant_id"], m.as_str());
        assert_eq!(body["state"], "failing");
        assert!(body["streak"].as_u64().unwrap() >= 3, "{body}");
        assert!(
            body["last_error"].as_str().unwrap().contains("503"),
            "{body}"
        );
        let exhausted = wait_type(&alerts_rx, &secret, "delivery.exhausted").await;
        assert_eq!(exhausted["endpoint_id"], ep_id.as_str());
        assert_eq!(exhausted["attempts"], 3);
        assert_eq!(exhausted["last_status"], 503);
        for _ in 0..200 {
            let n = verified(&alerts_rx, &secret)
                .iter()
                .filter(|(t, _)| t == "delivery.exhausted")
                .count();
            if n == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let hooks = verified(&alerts_rx, &secret);
        assert_eq!(
            hooks
                .iter()
                .filter(|(t, _)| t == "delivery.exhausted")
                .count(),
            3,
            "{backend:?}: one per exhausted delivery"
        );
        assert_eq!(
            hooks
                .iter()
                .filter(|(t, _)| t == "endpoint.failing")
                .count(),
            1,
            "once per streak"
        );
        // The API shows the alert state on the endpoint.
        // (The pass saves its state after publishing: the webhook may arrive first.)
        let got = wait_health(&app, &ep_path, "failing").await;
        assert!(got["enabled"].as_bool().unwrap());

        // No success for disable_after (1h) since the first failure: disabled, with a reason.
        clock.advance(Duration::from_secs(3600));
        let body = wait_type(&alerts_rx, &secret, "endpoint.disabled").await;
        assert_eq!(body["endpoint_id"], ep_id.as_str());
        assert!(
            body["disabled_reason"]
                .as_str()
                .unwrap()
                .contains("no successful delivery")
        );
        let ops = wait_type_plain(&ops_rx, "endpoint.disabled").await;
        assert_eq!(
            ops["merchant_id"],
            m.as_str(),
            "the operator's copy names the merchant"
        );
        let got = wait_health(&app, &ep_path, "disabled").await;
        assert_eq!(got["enabled"], false, "{got}");
        assert!(
            got["disabled_reason"]
                .as_str()
                .unwrap()
                .starts_with("disabled automatically"),
            "{got}"
        );

        // Re-enabled, and the receiver is back: the next success says recovered.
        down.store(false, Ordering::SeqCst);
        patch(&app, &ep_path, json!({ "enabled": true })).await;
        tokio::time::sleep(Duration::from_millis(300)).await; // a pass sees it enabled again
        let published = app.publish(&m, "Payment", PAYMENT).await;
        let event = EventId::parse(published["event_id"].as_str().unwrap()).unwrap();
        let merchant = MerchantId::parse(&m).unwrap();
        for _ in 0..400 {
            let ds = app
                .state
                .store
                .list_deliveries(&merchant, &event, clock.now())
                .await
                .unwrap();
            if !ds.is_empty() && ds.iter().all(|d| d.state == DeliveryState::Succeeded) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        clock.advance(Duration::from_secs(60));
        let body = wait_type(&alerts_rx, &secret, "endpoint.recovered").await;
        assert_eq!(body["endpoint_id"], ep_id.as_str());
        assert!(body["recovered_at"].is_string());
        wait_health(&app, &ep_path, "ok").await;

        // The catch-all endpoint got the payments only; the alert endpoint nothing but alerts.
        let all = all_rx.received();
        assert_eq!(all.len(), 4, "{backend:?}");
        assert!(
            all.iter()
                .all(|r| r.header("BlockATM-Event") == Some("Payment"))
        );
        assert!(
            verified(&alerts_rx, &secret)
                .iter()
                .all(|(t, _)| TYPES.contains(&t.as_str()))
        );
        let _ = (catch_all, ops_ep);
        app.stop().await;
    }
}

/// Waits until the endpoint resource at `path` shows `health.state == want`; returns it.
async fn wait_health(app: &TestApp, path: &str, want: &str) -> Value {
    let mut got = Value::Null;
    for _ in 0..400 {
        got = app.get(path, ADMIN).await.json().await.unwrap();
        if got["health"]["state"] == want {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("health never became {want}: {got}");
}

/// Waits until `failed` deliveries were recorded as failed, before the
/// test jumps the clock past the watch's settle time: the jump stands for the time a real clock
/// would take, during which the dispatcher records what it sent.
async fn recorded(app: &TestApp, clock: &ManualClock, failed: u64) {
    for _ in 0..400 {
        let q = app.state.store.queue_stats(clock.now()).await.unwrap();
        if q.failed >= failed {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("deliveries were not recorded");
}

/// Moves the clock a second at a time (each retry is due 1s after its attempt was recorded)
/// until `rx` has seen `n` requests.
async fn drive(clock: &ManualClock, rx: &Receiver, n: usize) {
    for _ in 0..200 {
        if rx.count() >= n {
            return;
        }
        clock.advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("receiver got {} of {n} requests", rx.count());
}

/// Waits until `rx` got an event of `event_type` (signature not checked) and returns its body.
async fn wait_type_plain(rx: &Receiver, event_type: &str) -> Value {
    for _ in 0..400 {
        if let Some(r) = rx
            .received()
            .into_iter()
            .find(|r| r.header("BlockATM-Event") == Some(event_type))
        {
            return serde_json::from_slice(&r.body).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no {event_type} within 10s");
}

/// A publisher cannot fake an operational event: the type is refused with a problem+json 422.
#[tokio::test]
async fn publishing_an_operational_type_is_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let m = app.merchant().await;
    let body = format!(r#"{{"merchant_id":"{m}","event_type":"endpoint.failing","payload":{{}}}}"#);
    let r = app.post_raw("/v1/events", ADMIN, body).await;
    let status = r.status().as_u16();
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    let v: Value = r.json().await.unwrap();
    assert!(status == 400 || status == 422, "{status}: {v}");
    assert!(ct.starts_with("application/problem+json"));
    assert!(v.to_string().contains("reserved"), "{v}");
    app.stop().await;
}
