//! The Flask webhook handler of BlockATM's documentation, in Rust with axum.
//!
//! `POST /webhook`: verify the signature over the raw body, switch on the event type, print the
//! order number, answer `200` at once (real work belongs in a queue).
//!
//! ```sh
//! BLOCKATM_WEBHOOK_SECRET=sck_... PORT=8000 \
//!   cargo run -p blockhook-receiver --features axum --example flask_like
//! # in another shell:
//! blockhook send --url http://127.0.0.1:8000/webhook --secret sck_... --event Payment
//! ```
//!
//! Environment: `BLOCKATM_WEBHOOK_SECRET` (required; several comma-separated during a
//! rotation), `PORT` (default 8000), `BLOCKATM_SIGNING_MODE` (`sorted`, `raw` or `either`;
//! default `sorted`).

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;

use blockhook_receiver::axum::VerifiedWebhook;
use blockhook_receiver::{EventKind, Verifier, VerifyMode};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let secrets = std::env::var("BLOCKATM_WEBHOOK_SECRET")
        .map_err(|_| "set BLOCKATM_WEBHOOK_SECRET to the endpoint's webhook secret")?;
    let mode: VerifyMode = match std::env::var("BLOCKATM_SIGNING_MODE") {
        Ok(m) => m.parse()?,
        Err(_) => VerifyMode::Sorted,
    };
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .map_err(|_| format!("PORT={p:?} is not a port number"))?,
        Err(_) => 8000,
    };

    let verifier = Verifier::builder()
        .secrets(secrets.split(',').map(str::trim).filter(|s| !s.is_empty()))
        .mode(mode)
        .replay_protection(true)
        .build()?;
    let app = Router::new()
        .route("/webhook", post(webhook))
        .with_state(Arc::new(verifier));

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}/webhook", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// Only verified requests get here; a bad signature, stale time or replay was already answered
/// `401 <reason>` by the extractor.
async fn webhook(VerifiedWebhook(hook): VerifiedWebhook) -> (StatusCode, &'static str) {
    let order = hook.order_no().unwrap_or("?");
    // `status` is a string ("SUCCESS") in current payloads, a number (9) in legacy ones.
    let status = match hook.value().get("status") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "?".to_owned(),
    };
    match hook.event() {
        EventKind::Payment => println!("payment notification: orderNo={order} status={status}"),
        EventKind::Payout => println!("payout notification: bizOrderNo={order} status={status}"),
        other => println!("{other} notification (not handled here): {order}"),
    }
    // Acknowledge fast; unknown event types too, or they are retried.
    (StatusCode::OK, "success")
}
