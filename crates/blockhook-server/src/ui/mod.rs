//! The web dashboard under `/ui`: server-rendered HTML over the service layer (`manage`), the
//! same operations the API calls; pages never reach the store themselves.
//!
//! Layout: `session` (cookie sessions; the key behind a merchant session is re-checked with
//! `auth::authenticate`), `csrf` (the `Csrf<Form<T>>` extractor every POST handler takes),
//! `error` (`UiError` and the page each failure shows), `html` (escaping, the page shell,
//! times), `charts` (server-rendered SVG), `pages/` (one module per page) and `assets/` (one CSS
//! file and one small script, embedded with `include_str!`; nothing is loaded from elsewhere).
//! Every page works without the script; it only shows times in the viewer's zone. [`router`] is
//! mounted by `startup` beside the API's router, under the same cross-cutting layers.
//!
//! Tenancy: every read and write goes through the session's merchant, so another merchant's
//! event or endpoint answers 404 exactly like an unknown id.

pub mod charts;
pub mod csrf;
pub mod error;
pub mod html;
pub mod layout;
pub mod pages;
pub mod session;

use std::sync::Arc;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};

use crate::state::AppState;

const STYLE: &str = include_str!("assets/style.css");
const PAGE_JS: &str = include_str!("assets/page.js");
const FAVICON: &str = include_str!("assets/favicon.svg");

/// The dashboard's routes, with a fresh session table for this app whose sessions last
/// `ui.session_lifetime`.
pub(crate) fn router(state: AppState) -> Router {
    let session_lifetime = state.settings.ui.session_lifetime;
    use pages::{debugger, endpoints, events, health, login, operator, ordering};
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/endpoints") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/endpoints") }))
        .route("/ui/login", get(login::form).post(login::submit))
        .route("/ui/logout", post(login::logout))
        .route(
            "/ui/endpoints",
            get(endpoints::list).post(endpoints::create),
        )
        .route(
            "/ui/endpoints/{id}",
            get(endpoints::detail).post(endpoints::update),
        )
        .route("/ui/endpoints/{id}/enabled", post(endpoints::set_enabled))
        .route(
            "/ui/endpoints/{id}/delete",
            get(endpoints::confirm_delete).post(endpoints::delete),
        )
        .route("/ui/endpoints/{id}/secret", post(endpoints::reveal_secret))
        .route("/ui/endpoints/{id}/rotate", post(endpoints::rotate_secret))
        .route("/ui/endpoints/{id}/test", post(endpoints::send_test))
        .route(
            "/ui/endpoints/{id}/recover",
            get(endpoints::recover_preview).post(endpoints::recover),
        )
        .route(
            "/ui/endpoints/{id}/ordering/release",
            post(ordering::release),
        )
        .route("/ui/events", get(events::list))
        .route("/ui/events/{id}", get(events::detail))
        .route("/ui/events/{id}/resend", post(events::resend))
        .route("/ui/deliveries/{id}/retry", post(events::retry))
        .route("/ui/health", get(health::show))
        .route("/ui/debugger", get(debugger::show).post(debugger::explain))
        .route("/ui/operator", get(operator::show))
        .route("/ui/operator/merchants", post(operator::create_merchant))
        .route(
            "/ui/operator/merchants/{id}/status",
            post(operator::set_status),
        )
        .route(
            "/ui/operator/merchants/{id}/keys",
            post(operator::issue_key),
        )
        .route(
            "/ui/operator/merchants/{id}/keys/{key}/revoke",
            post(operator::revoke_key),
        )
        .route("/ui/operator/act", post(operator::act_as))
        .route(
            "/ui/assets/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/ui/assets/page.js",
            get(|| async { asset("text/javascript; charset=utf-8", PAGE_JS) }),
        )
        .route(
            "/ui/assets/favicon.svg",
            get(|| async { asset("image/svg+xml", FAVICON) }),
        )
        // Browsers ask for it on their own (a 404 in every console otherwise).
        .route(
            "/favicon.ico",
            get(|| async { asset("image/svg+xml", FAVICON) }),
        )
        .layer(axum::middleware::map_response(security_headers))
        .layer(Extension(Arc::new(session::Sessions::new(
            session_lifetime,
        ))))
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "public, max-age=3600"),
    ];
    (headers, body).into_response()
}

/// Headers every dashboard response carries: a strict CSP (only our own CSS and script), no
/// framing, no referrer to other sites, and no caching of pages (they show secrets and
/// per-merchant data). The referrer policy is `same-origin`, not `no-referrer`: under
/// `no-referrer` a browser sends `Origin: null` even on the dashboard's own form posts, and the
/// Origin check (`csrf::same_origin`) needs the real origin there.
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}
