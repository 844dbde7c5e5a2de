//! Handlers driven in-process: the router `Application::router` serves, called with
//! `tower::ServiceExt::oneshot`, over a real SQLite store. No socket and no dispatcher: for
//! answers that depend only on the request, a full server adds nothing but time.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

use blockhook_server::Application;

use crate::helpers::{ADMIN, Backend, store_url, test_settings};
use crate::receiver::TestCa;

/// The served router over a fresh store, and the directory that holds it.
async fn router() -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = store_url(Backend::Sqlite, dir.path()).await;
    let settings = test_settings(dir.path(), url, &TestCa::new());
    let app = Application::build(settings).await.unwrap();
    (app.router(), dir)
}

/// Status, content type and body (as JSON when it parses) of one request.
async fn call(router: Router, req: Request<Body>) -> (StatusCode, String, Value) {
    let resp = router.oneshot(req).await.unwrap();
    let status = resp.status();
    let kind = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        kind,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn publish(auth: Option<&str>, body: &'static str) -> Request<Body> {
    let mut req = Request::post("/v1/events").header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = auth {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    req.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn an_unknown_route_is_a_problem_404() {
    let (router, _dir) = router().await;
    let req = Request::get("/v1/nothing-here")
        .body(Body::empty())
        .unwrap();
    let (status, kind, body) = call(router, req).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(kind, "application/problem+json");
    assert_eq!(body["status"], 404, "{body}");
}

#[tokio::test]
async fn publishing_without_a_key_is_a_problem_401() {
    let (router, _dir) = router().await;
    let (status, kind, body) = call(router, publish(None, "{}")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(kind, "application/problem+json");
    assert_eq!(body["status"], 401, "{body}");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_problem_400() {
    let (router, _dir) = router().await;
    let (status, kind, body) = call(router, publish(Some(ADMIN), "{\"event_type\":")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(kind, "application/problem+json");
    assert!(
        body["type"]
            .as_str()
            .unwrap_or("")
            .ends_with("malformed-body"),
        "{body}"
    );
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_a_problem_422() {
    let (router, _dir) = router().await;
    let (status, kind, body) = call(router, publish(Some(ADMIN), r#"{"payload":[]}"#)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(kind, "application/problem+json");
}

#[tokio::test]
async fn the_dashboard_without_a_session_sends_to_sign_in() {
    let (router, _dir) = router().await;
    let req = Request::get("/ui/events").body(Body::empty()).unwrap();
    let resp = router.oneshot(req).await.unwrap();
    assert!(resp.status().is_redirection(), "{}", resp.status());
    assert_eq!(resp.headers()[header::LOCATION], "/ui/login");
}

#[tokio::test]
async fn liveness_answers_without_credentials() {
    let (router, _dir) = router().await;
    let req = Request::get("/healthz").body(Body::empty()).unwrap();
    let (status, _, _) = call(router, req).await;
    assert_eq!(status, StatusCode::OK);
}
