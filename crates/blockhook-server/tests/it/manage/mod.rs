//! The management API over real HTTP on both stores: auth and tenancy on every route,
//! validation, pagination, secrets, test sends, recovery, resends, logs and the OpenAPI document.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod endpoints;
mod events;
mod merchants;
mod openapi;
mod ordering;
mod search;
mod standard;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{ADMIN, TestApp};

/// Any request; `body` is sent as JSON when given.
pub async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut req = app.http.request(method, format!("{}{path}", app.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    req.send().await.unwrap()
}

/// Status and JSON body (`Null` when there is none).
pub async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Issues an API key for `merchant` and returns it.
pub async fn key_for(app: &TestApp, merchant: &str) -> String {
    let (status, v) = json_of(
        app.post(
            &format!("/v1/merchants/{merchant}/api-keys"),
            ADMIN,
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "issue key: {v}");
    v["key"].as_str().unwrap().to_owned()
}

/// Asserts a problem+json answer with `status` (and `field`, when given).
pub async fn assert_problem(
    r: reqwest::Response,
    status: u16,
    field: Option<&str>,
    what: &str,
) -> Value {
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let (got, v) = json_of(r).await;
    assert_eq!(got, status, "{what}: {v}");
    assert_eq!(ct.as_deref(), Some("application/problem+json"), "{what}");
    if let Some(f) = field {
        assert_eq!(v["field"], f, "{what}: {v}");
    }
    v
}
