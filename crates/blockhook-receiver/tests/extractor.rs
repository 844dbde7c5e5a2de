//! The axum extractor over real HTTP on loopback: a correctly signed request is accepted, and a
//! tampered body, a wrong secret, a stale time, a replay and a missing header are refused with
//! `401` and the reason code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::post;
use blockhook_sig::{Mode, sign};

use blockhook_receiver::axum::{VerifiedWebhook, WebhookRejection};
use blockhook_receiver::{EventKind, Verifier};

const SECRET: &str = "sck_QOoPSlHDSsgXYeNyTP2i0ug1HKLRjHw9Ug7mCc1Q0";
const OLD_SECRET: &str = "sck_old_secret_being_rotated_out";
const PAYMENT: &str = r#"{"custNo":"CustNo_00240101","orderNo":"OrderNo_202504010023","id":8210003616,"symbol":"USDT","amount":"2000.00","status":"SUCCESS","network":"Ethereum","chainId":"1","cashierId":86100021}"#;

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Echoes what the handler saw, so the test can check the extracted `Webhook`.
async fn echo(VerifiedWebhook(hook): VerifiedWebhook) -> String {
    let kind = match hook.event() {
        EventKind::Payment => "payment",
        EventKind::Payout => "payout",
        _ => "other",
    };
    format!(
        "{kind} {} secret={} attempt={:?} id={:?} amount={}",
        hook.order_no().unwrap_or("-"),
        hook.secret_index(),
        hook.attempt(),
        hook.event_id(),
        hook.value()["amount"],
    )
}

/// An application state that holds the verifier among other things.
#[derive(Clone, FromRef)]
struct AppState {
    verifier: Arc<Verifier>,
    greeting: &'static str,
}

async fn with_app_state(
    State(greeting): State<&'static str>,
    hook: Result<VerifiedWebhook, WebhookRejection>,
) -> (StatusCode, String) {
    match hook {
        Ok(h) => (StatusCode::OK, format!("{greeting} {}", h.event())),
        Err(rejection) => (StatusCode::IM_A_TEAPOT, rejection.to_string()),
    }
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn spawn_receiver() -> SocketAddr {
    let verifier = Verifier::builder()
        .secret(SECRET)
        .secret(OLD_SECRET)
        .replay_protection(true)
        .build()
        .unwrap();
    serve(
        Router::new()
            .route("/webhook", post(echo))
            .with_state(Arc::new(verifier)),
    )
    .await
}

struct Request {
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn signed(secret: &str, body: &str, time_ms: u64) -> Request {
    let sig = sign(secret.as_bytes(), Mode::Sorted, body.as_bytes(), time_ms)
        .unwrap()
        .to_string();
    Request {
        headers: vec![
            ("Content-Type", "application/json".into()),
            ("BlockATM-Event", "Payment".into()),
            ("BlockATM-Request-Time", time_ms.to_string()),
            ("BlockATM-Signature-V2", sig),
            ("BlockHook-Event-Id", "evt_0123".into()),
            ("BlockHook-Attempt", "2".into()),
        ],
        body: body.as_bytes().to_vec(),
    }
}

async fn post_to(addr: SocketAddr, req: &Request) -> (u16, String) {
    let client = reqwest::Client::new();
    let mut r = client
        .post(format!("http://{addr}/webhook"))
        .body(req.body.clone());
    for (k, v) in &req.headers {
        r = r.header(*k, v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

#[tokio::test]
async fn accepts_a_correctly_signed_request() {
    let addr = spawn_receiver().await;
    let (status, body) = post_to(addr, &signed(SECRET, PAYMENT, now_ms())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        r#"payment OrderNo_202504010023 secret=0 attempt=Some(2) id=Some("evt_0123") amount="2000.00""#
    );
}

#[tokio::test]
async fn accepts_the_old_secret_during_a_rotation() {
    let addr = spawn_receiver().await;
    let (status, body) = post_to(addr, &signed(OLD_SECRET, PAYMENT, now_ms())).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("secret=1"), "{body}");
}

#[tokio::test]
async fn event_names_are_case_insensitive() {
    let addr = spawn_receiver().await;
    for (i, name) in ["payment", "PAYMENT", "payment.success"]
        .into_iter()
        .enumerate()
    {
        // Distinct times: the same time would sign identically and count as a replay.
        let mut req = signed(SECRET, PAYMENT, now_ms() + i as u64);
        req.headers[1].1 = name.into();
        let (status, body) = post_to(addr, &req).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with("payment "), "{name}: {body}");
    }
}

#[tokio::test]
async fn rejects_a_tampered_body() {
    let addr = spawn_receiver().await;
    let mut req = signed(SECRET, PAYMENT, now_ms());
    req.body = PAYMENT.replace("2000.00", "9000.00").into_bytes();
    assert_eq!(post_to(addr, &req).await, (401, "mismatch".to_owned()));
}

#[tokio::test]
async fn rejects_a_wrong_secret() {
    let addr = spawn_receiver().await;
    let req = signed("sck_not_the_secret", PAYMENT, now_ms());
    assert_eq!(post_to(addr, &req).await, (401, "mismatch".to_owned()));
}

#[tokio::test]
async fn rejects_a_stale_or_future_time() {
    let addr = spawn_receiver().await;
    let req = signed(SECRET, PAYMENT, now_ms() - 6 * 60 * 1000);
    assert_eq!(post_to(addr, &req).await, (401, "too_old".to_owned()));
    let req = signed(SECRET, PAYMENT, now_ms() + 6 * 60 * 1000);
    assert_eq!(post_to(addr, &req).await, (401, "too_new".to_owned()));
}

#[tokio::test]
async fn rejects_a_replay_but_accepts_a_re_signed_retry() {
    let addr = spawn_receiver().await;
    let t = now_ms();
    let req = signed(SECRET, PAYMENT, t);
    assert_eq!(post_to(addr, &req).await.0, 200);
    assert_eq!(post_to(addr, &req).await, (401, "replay".to_owned()));
    // A retry is signed again with a fresh time: not a replay.
    let retry = signed(SECRET, PAYMENT, t + 1);
    assert_eq!(post_to(addr, &retry).await.0, 200);
}

#[tokio::test]
async fn rejects_missing_or_malformed_headers() {
    let addr = spawn_receiver().await;
    for (drop, reason) in [
        ("BlockATM-Signature-V2", "missing_header"),
        ("BlockATM-Request-Time", "missing_header"),
    ] {
        let mut req = signed(SECRET, PAYMENT, now_ms());
        req.headers.retain(|(k, _)| *k != drop);
        assert_eq!(
            post_to(addr, &req).await,
            (401, reason.to_owned()),
            "without {drop}"
        );
    }
    let mut req = signed(SECRET, PAYMENT, now_ms());
    req.headers[2].1 = "1.7e12".into();
    assert_eq!(
        post_to(addr, &req).await,
        (401, "time_not_integer".to_owned())
    );
    let mut req = signed(SECRET, PAYMENT, now_ms());
    req.headers[3].1 = "abc".into();
    assert_eq!(
        post_to(addr, &req).await,
        (401, "malformed_signature".to_owned())
    );
    let t = now_ms();
    let mut req = signed(SECRET, PAYMENT, t);
    req.body = b"[1,2,3]".to_vec();
    assert_eq!(
        post_to(addr, &req).await,
        (401, "not_json_object".to_owned())
    );
}

#[tokio::test]
async fn works_with_an_application_state_and_custom_rejections() {
    let verifier = Arc::new(Verifier::new(SECRET).unwrap());
    let state = AppState {
        verifier,
        greeting: "hello",
    };
    let addr = serve(
        Router::new()
            .route("/webhook", post(with_app_state))
            .with_state(state),
    )
    .await;
    let (status, body) = post_to(addr, &signed(SECRET, PAYMENT, now_ms())).await;
    assert_eq!((status, body.as_str()), (200, "hello Payment"));
    let (status, body) = post_to(addr, &signed("sck_wrong", PAYMENT, now_ms())).await;
    assert_eq!(status, 418);
    assert!(
        body.starts_with("webhook rejected (mismatch): signature does not match"),
        "{body}"
    );
}
