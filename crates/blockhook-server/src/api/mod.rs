//! The HTTP API under `/v1`, plus health and metrics: one router per resource, merged here,
//! with the cross-cutting layers added once.

pub mod endpoints;
pub mod events;
pub mod extract;
pub mod health;
pub mod merchants;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// The application's router for `role`.
pub fn router(state: AppState) -> Router {
    let mut app = health::router();
    if state.settings.server.role.serves_api() {
        app = app
            .merge(events::router())
            .merge(merchants::router())
            .merge(endpoints::router());
    }
    let limit = state.settings.server.max_body_bytes;
    app.fallback(|| async { ApiError::NotFound("route".into()) })
        .layer(DefaultBodyLimit::max(limit))
        .layer(TraceLayer::new_for_http())
        // The last layer is the outermost: a panic anywhere becomes a 500 problem, not a reset.
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::Internal("handler panicked".into()))
        }))
        .with_state(state)
}
