//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::error::ApiResult;
use crate::state::AppState;

/// `/healthz`, `/readyz`, `/metrics`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
}

/// Ready when the store answers.
async fn ready(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    state.store.ping().await?;
    Ok(Json(json!({ "status": "ready", "store": state.store.backend() })))
}

/// Prometheus text format; queue gauges are refreshed from the store at each scrape.
async fn metrics(State(state): State<AppState>) -> Response {
    let now = state.clock.now();
    if let Ok(q) = state.store.queue_stats(now).await {
        state.metrics.set_queue(&q, now.ms());
    }
    let mut resp = state.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
