//! The HTTP API under `/v1`, plus health, metrics and the OpenAPI document: one router per
//! resource, merged here, with the cross-cutting layers added once.
//!
//! Each resource module declares its routes once, with `routes!`: that one list builds the
//! module's router *and* its [`RouteSpec`] table, so [`route_table`] is exactly what the router
//! serves, and a test can check every entry against the OpenAPI document.

/// Declares a module's routes, as `method "path" => handler`, producing `ROUTES` (the table)
/// and `router()` (built from the same entries).
macro_rules! routes {
    ($($method:ident $path:literal => $handler:path),* $(,)?) => {
        /// The routes of this module, exactly as [`router`] registers them.
        pub const ROUTES: &[$crate::api::RouteSpec] =
            &[$($crate::api::RouteSpec { method: stringify!($method), path: $path }),*];

        /// This module's router.
        pub fn router() -> axum::Router<$crate::state::AppState> {
            axum::Router::new()$(.route($path, axum::routing::$method($handler)))*
        }
    };
}

pub mod endpoints;
pub mod events;
pub mod extract;
pub mod health;
pub mod logs;
pub mod merchants;
pub mod openapi;
pub mod ordering;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

use crate::config::ServerSettings;
use crate::error::ApiError;
use crate::state::AppState;

/// One registered route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    /// Lowercase HTTP method (`get`, `post`, …), as OpenAPI spells it.
    pub method: &'static str,
    /// The path template, `{param}` style (axum and OpenAPI agree).
    pub path: &'static str,
}

type Module = (fn() -> Router<AppState>, &'static [RouteSpec]);

/// Served by every role (workers too, for probes and scraping).
const ALWAYS: &[Module] = &[(health::router, health::ROUTES)];

/// Served by roles that answer the API.
const API: &[Module] = &[
    (openapi::router, openapi::ROUTES),
    (events::router, events::ROUTES),
    (merchants::router, merchants::ROUTES),
    (endpoints::router, endpoints::ROUTES),
    (logs::router, logs::ROUTES),
    (ordering::router, ordering::ROUTES),
];

/// Every route the API role serves.
pub fn route_table() -> impl Iterator<Item = &'static RouteSpec> {
    ALWAYS
        .iter()
        .chain(API)
        .flat_map(|(_, routes)| routes.iter())
}

/// Largest total size of request headers (names and values) accepted. hyper's own limit is far
/// larger (hundreds of KiB); no legitimate client of this API needs more than this.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Answers 431 problem+json when the request's headers are larger than [`MAX_HEADER_BYTES`].
async fn limit_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let size: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if size > MAX_HEADER_BYTES {
        return axum::response::IntoResponse::into_response(ApiError::HeadersTooLarge);
    }
    next.run(req).await
}

/// Notes a store that answered (a 2xx from a route that reads or writes it), so an outage's
/// end is logged once; see `error::store_answered`.
async fn note_store_answers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let touches_store = req.uri().path().starts_with("/v1/") || req.uri().path() == "/readyz";
    let resp = next.run(req).await;
    if touches_store && resp.status().is_success() {
        crate::error::store_answered();
    }
    resp
}

/// Each request's span (tower-http's default fields, at the same level), with the client's
/// address as the edge decided it (`edge::client`): behind a trusted proxy, the proxy's client.
fn request_span(request: &http::Request<axum::body::Body>) -> tracing::Span {
    let client = request
        .extensions()
        .get::<crate::edge::client::ClientAddr>()
        .map(|c| tracing::field::display(c.0));
    tracing::debug_span!(
        "request",
        method = %request.method(),
        uri = %request.uri(),
        version = ?request.version(),
        client,
    )
}

/// The API's routes for this role (health always; the rest where the role serves the API),
/// answering problem+json 404 for any other path. `startup` merges the dashboard's router
/// beside it and wraps both in [`layers`].
pub fn router(state: AppState) -> Router {
    let mut app = Router::new();
    let modules = if state.settings.server.role.serves_api() {
        [ALWAYS, API].concat()
    } else {
        ALWAYS.to_vec()
    };
    for (module, _) in modules {
        app = app.merge(module());
    }
    app.fallback(|| async { ApiError::NotFound("route".into()) })
        .with_state(state)
}

/// The cross-cutting layers every HTTP response passes through, API and dashboard alike: body
/// size and read time, header size, store-recovery notes, tracing, and panics as a 500.
pub fn layers(app: Router, server: &ServerSettings) -> Router {
    let limit = server.max_body_bytes;
    let body = crate::edge::body::BodyLimits {
        max_bytes: limit,
        timeout: server.body_read_timeout,
        min_rate: server.body_min_rate,
        grace: server.body_min_rate_grace,
    };
    app.layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            body,
            crate::edge::read_body_within,
        ))
        .layer(axum::middleware::from_fn(limit_headers))
        .layer(axum::middleware::from_fn(note_store_answers))
        // A 5xx is logged where it is made (`ApiError`: 500s at ERROR, an unavailable store
        // once at WARN), not again per request here.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        // The last layer is the outermost: a panic anywhere becomes a 500 problem, not a reset.
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::Internal(
                "handler panicked".into(),
            ))
        }))
}

/// What a connection over a connection cap is served: the health probes (a local supervisor
/// keeps seeing the process), and 503 problem+json for anything else.
pub fn overflow_router(state: AppState) -> Router {
    let mut app = Router::new();
    for (module, _) in ALWAYS {
        app = app.merge(module());
    }
    app.fallback(|| async { ApiError::Overloaded })
        .with_state(state)
}
