//! Liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ApiResult;
use crate::state::AppState;

routes! {
    get "/healthz" => live,
    get "/readyz" => ready,
    get "/metrics" => metrics,
}

/// Alive whenever the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()), responses((status = 200, description = "alive")))]
async fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the store answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses((status = 200, description = "the store answers"), (status = 503, description = "it does not")))]
async fn ready(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    state.store.ping().await?;
    Ok(Json(
        json!({ "status": "ready", "store": state.store.backend() }),
    ))
}

/// Prometheus text format; queue gauges are refreshed from the store at each scrape.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()), responses((status = 200, description = "Prometheus text format")))]
async fn metrics(State(state): State<AppState>) -> Response {
    let now = state.clock.now();
    if let Ok(q) = state.store.queue_stats(now).await {
        state.metrics.set_queue(&q, now.ms());
    }
    let statements = i64::try_from(state.store.statements()).unwrap_or(i64::MAX);
    state.metrics.store_statements.set(statements);
    let mut resp = state.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
