//! The merchant's side end to end: the `blockhook-receiver` axum extractor accepts what
//! blockhook's own dispatcher sends over real HTTPS, in both signing modes, and rejects a replay
//! of it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::json;

use blockhook_receiver::axum::VerifiedWebhook;
use blockhook_receiver::{EventKind, Verifier, VerifyMode};

use crate::helpers::{PAYMENT, TestApp, backends};
use crate::receiver::Receiver;

#[tokio::test]
async fn the_axum_extractor_accepts_what_the_dispatcher_sends() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let m = app.merchant().await;
        // Register first (to learn the secrets), then point the endpoints at the verifying apps.
        let placeholder = Receiver::ok(Some(&app.ca)).await;
        let sorted = app
            .endpoint(&m, &placeholder.url(), json!({ "signing_mode": "sorted" }))
            .await;
        let raw = app
            .endpoint(&m, &placeholder.url(), json!({ "signing_mode": "raw" }))
            .await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for (ep, mode) in [(&sorted, VerifyMode::Sorted), (&raw, VerifyMode::Raw)] {
            let verifier = Arc::new(
                Verifier::builder()
                    .secret(ep["secret"].as_str().unwrap())
                    .mode(mode)
                    .replay_protection(true)
                    .build()
                    .unwrap(),
            );
            let tx = tx.clone();
            let router = Router::new()
                .route(
                    "/hook",
                    post(move |VerifiedWebhook(hook): VerifiedWebhook| {
                        let tx = tx.clone();
                        async move {
                            let _ = tx.send(hook);
                            StatusCode::OK
                        }
                    }),
                )
                .with_state(verifier);
            let port = app.ca.serve(router).await;
            let path = format!("/v1/merchants/{m}/endpoints/{}", ep["id"].as_str().unwrap());
            let r = app
                .http
                .patch(format!("{}{path}", app.base))
                .bearer_auth(crate::helpers::ADMIN)
                .json(&json!({ "url": format!("https://localhost:{port}/hook") }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{backend:?}: repoint endpoint");
        }
        let published = app.publish(&m, "Payment", PAYMENT).await;
        for _ in 0..2 {
            let hook = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("a verified webhook arrives")
                .unwrap();
            assert_eq!(hook.event(), &EventKind::Payment);
            assert_eq!(hook.event_id(), published["event_id"].as_str());
            assert_eq!(hook.body(), PAYMENT.as_bytes());
        }
        assert_eq!(placeholder.count(), 0);
        app.stop().await;
    }
}
