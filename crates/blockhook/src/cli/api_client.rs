//! The one small client the `merchant`, `endpoint` and `event` commands share: typed calls over
//! blockhook's management API, answering the JSON the server sent (for `--json` and tables).
//!
//! A problem+json answer becomes an [`ApiFailure`] carrying status, detail and field, so the
//! user sees what the server said rather than a bare status code.

use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use reqwest::Method;
use serde_json::{Value, json};

/// Where the server is and who is calling: `--url`/`--token` or `BLOCKHOOK_URL`/`BLOCKHOOK_TOKEN`.
#[derive(Debug, Clone, clap::Args)]
pub struct Conn {
    /// Base URL of the blockhook server.
    #[arg(
        long,
        env = "BLOCKHOOK_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// Operator token or merchant API key.
    #[arg(long, env = "BLOCKHOOK_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A refusal from the server (problem+json).
#[derive(Debug)]
pub struct ApiFailure {
    /// HTTP status.
    pub status: u16,
    /// The problem's `detail` (or the body).
    pub detail: String,
    /// The offending field, for validation errors.
    pub field: Option<String>,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "server answered {}: {}", self.status, self.detail)?;
        if let Some(field) = &self.field {
            write!(f, " (field `{field}`)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiFailure {}

/// The client.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// A path segment from user input, percent-encoded so an id cannot change the route.
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

impl ApiClient {
    /// A client for `conn`; a token is required (every management route needs one).
    pub fn new(conn: &Conn) -> anyhow::Result<Self> {
        let token = conn.token.clone().filter(|t| !t.is_empty()).context(
            "no token: pass --token or set BLOCKHOOK_TOKEN (operator token or a merchant API key)",
        )?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            http,
            base: conn.url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    async fn call(&self, method: Method, path: &str, body: Option<Body>) -> anyhow::Result<Value> {
        let text = self.call_text(method, path, body).await?;
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        })
    }

    /// The answer's body exactly as sent (a refusal becomes an [`ApiFailure`]).
    async fn call_text(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> anyhow::Result<String> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        match body {
            Some(Body::Json(v)) => req = req.json(&v),
            Some(Body::Raw(bytes)) => {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(bytes);
            }
            None => {}
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .with_context(|| format!("reading the answer of {method} {url}"))?;
        if status >= 400 {
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            let detail = value["detail"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string());
            let field = value["field"].as_str().map(str::to_owned);
            return Err(ApiFailure {
                status,
                detail,
                field,
            }
            .into());
        }
        Ok(text)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(Method::POST, path, Some(Body::Json(body))).await
    }

    // --- merchants and keys (operator) ------------------------------------------------------

    /// `POST /v1/merchants`.
    pub async fn create_merchant(&self, name: &str, id: Option<&str>) -> anyhow::Result<Value> {
        self.post("/v1/merchants", json!({ "name": name, "id": id }))
            .await
    }

    /// `GET /v1/merchants`.
    pub async fn list_merchants(&self, page: &PageArgs) -> anyhow::Result<Value> {
        self.get(&format!("/v1/merchants{}", page.query())).await
    }

    /// `GET /v1/merchants/{id}`.
    pub async fn get_merchant(&self, id: &str) -> anyhow::Result<Value> {
        self.get(&format!("/v1/merchants/{}", seg(id))).await
    }

    /// `PATCH /v1/merchants/{id}` with a status.
    pub async fn set_merchant_status(&self, id: &str, status: &str) -> anyhow::Result<Value> {
        let path = format!("/v1/merchants/{}", seg(id));
        self.call(
            Method::PATCH,
            &path,
            Some(Body::Json(json!({ "status": status }))),
        )
        .await
    }

    /// `DELETE /v1/merchants/{id}`.
    pub async fn delete_merchant(&self, id: &str) -> anyhow::Result<Value> {
        self.call(Method::DELETE, &format!("/v1/merchants/{}", seg(id)), None)
            .await
    }

    /// `POST /v1/merchants/{id}/api-keys`.
    pub async fn issue_key(&self, merchant: &str) -> anyhow::Result<Value> {
        self.post(
            &format!("/v1/merchants/{}/api-keys", seg(merchant)),
            json!({}),
        )
        .await
    }

    /// `GET /v1/merchants/{id}/api-keys`.
    pub async fn list_keys(&self, merchant: &str) -> anyhow::Result<Value> {
        self.get(&format!("/v1/merchants/{}/api-keys", seg(merchant)))
            .await
    }

    /// `DELETE /v1/merchants/{id}/api-keys/{key_id}`.
    pub async fn revoke_key(&self, merchant: &str, key_id: &str) -> anyhow::Result<Value> {
        let path = format!("/v1/merchants/{}/api-keys/{}", seg(merchant), seg(key_id));
        self.call(Method::DELETE, &path, None).await
    }

    // --- endpoints --------------------------------------------------------------------------

    fn endpoint_path(merchant: &str, id: Option<&str>, action: Option<&str>) -> String {
        let mut p = format!("/v1/merchants/{}/endpoints", seg(merchant));
        if let Some(id) = id {
            p.push('/');
            p.push_str(&seg(id));
        }
        if let Some(a) = action {
            p.push('/');
            p.push_str(a);
        }
        p
    }

    /// `POST …/endpoints` with a `CreateEndpoint` body.
    pub async fn create_endpoint(&self, merchant: &str, body: Value) -> anyhow::Result<Value> {
        self.post(&Self::endpoint_path(merchant, None, None), body)
            .await
    }

    /// `GET …/endpoints`.
    pub async fn list_endpoints(&self, merchant: &str, page: &PageArgs) -> anyhow::Result<Value> {
        self.get(&format!(
            "{}{}",
            Self::endpoint_path(merchant, None, None),
            page.query()
        ))
        .await
    }

    /// `GET …/endpoints/{id}`.
    pub async fn get_endpoint(&self, merchant: &str, id: &str) -> anyhow::Result<Value> {
        self.get(&Self::endpoint_path(merchant, Some(id), None))
            .await
    }

    /// `GET …/endpoints/{id}/secret`.
    pub async fn endpoint_secret(&self, merchant: &str, id: &str) -> anyhow::Result<Value> {
        self.get(&Self::endpoint_path(merchant, Some(id), Some("secret")))
            .await
    }

    /// `PATCH …/endpoints/{id}` with an `UpdateEndpoint` body.
    pub async fn update_endpoint(
        &self,
        merchant: &str,
        id: &str,
        patch: Value,
    ) -> anyhow::Result<Value> {
        let path = Self::endpoint_path(merchant, Some(id), None);
        self.call(Method::PATCH, &path, Some(Body::Json(patch)))
            .await
    }

    /// `DELETE …/endpoints/{id}`.
    pub async fn delete_endpoint(&self, merchant: &str, id: &str) -> anyhow::Result<Value> {
        self.call(
            Method::DELETE,
            &Self::endpoint_path(merchant, Some(id), None),
            None,
        )
        .await
    }

    /// `POST …/endpoints/{id}/{action}` for `enable`, `disable`, `rotate-secret`, `test`, `recover`.
    pub async fn endpoint_action(
        &self,
        merchant: &str,
        id: &str,
        action: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        self.post(&Self::endpoint_path(merchant, Some(id), Some(action)), body)
            .await
    }

    /// `GET …/backlog`.
    pub async fn backlog(&self, merchant: &str) -> anyhow::Result<Value> {
        self.get(&format!("/v1/merchants/{}/backlog", seg(merchant)))
            .await
    }

    // --- events -----------------------------------------------------------------------------

    /// `POST /v1/events` with the payload bytes relayed exactly as given.
    pub async fn publish(
        &self,
        merchant: &str,
        event_type: &str,
        payload: &str,
        (idempotency_key, ordering_key): (Option<&str>, Option<&str>),
    ) -> anyhow::Result<Value> {
        // Built as text so the payload's bytes (key order, number literals) reach the server as
        // they are in the file: `raw` signatures are computed over exactly those bytes.
        let mut body = format!(
            r#"{{"merchant_id":{},"event_type":{},"payload":{}"#,
            Value::from(merchant),
            Value::from(event_type),
            payload.trim()
        );
        if let Some(k) = idempotency_key {
            body.push_str(&format!(r#","idempotency_key":{}"#, Value::from(k)));
        }
        if let Some(k) = ordering_key {
            body.push_str(&format!(r#","ordering_key":{}"#, Value::from(k)));
        }
        body.push('}');
        self.call(
            Method::POST,
            "/v1/events",
            Some(Body::Raw(body.into_bytes())),
        )
        .await
    }

    /// `GET …/events` with filters.
    pub async fn list_events(
        &self,
        merchant: &str,
        filters: &[(&str, String)],
    ) -> anyhow::Result<Value> {
        let query: Vec<String> = filters
            .iter()
            .map(|(k, v)| format!("{k}={}", seg(v)))
            .collect();
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        self.get(&format!("/v1/merchants/{}/events{q}", seg(merchant)))
            .await
    }

    /// `GET …/events/{id}`, as the server's text: the payload inside is the published bytes,
    /// which parsing into a [`Value`] would re-order and re-space.
    pub async fn get_event(&self, merchant: &str, id: &str) -> anyhow::Result<String> {
        let path = format!("/v1/merchants/{}/events/{}", seg(merchant), seg(id));
        self.call_text(Method::GET, &path, None).await
    }

    /// `GET …/events/{id}/deliveries`.
    pub async fn deliveries(&self, merchant: &str, id: &str) -> anyhow::Result<Value> {
        self.get(&format!(
            "/v1/merchants/{}/events/{}/deliveries",
            seg(merchant),
            seg(id)
        ))
        .await
    }

    /// `GET …/deliveries/{id}/attempts`.
    pub async fn attempts(&self, merchant: &str, delivery: &str) -> anyhow::Result<Value> {
        self.get(&format!(
            "/v1/merchants/{}/deliveries/{}/attempts",
            seg(merchant),
            seg(delivery)
        ))
        .await
    }

    /// `POST …/events/{id}/resend`.
    pub async fn resend(
        &self,
        merchant: &str,
        id: &str,
        endpoint: Option<&str>,
    ) -> anyhow::Result<Value> {
        let path = format!("/v1/merchants/{}/events/{}/resend", seg(merchant), seg(id));
        self.post(&path, json!({ "endpoint_id": endpoint })).await
    }

    /// `POST …/deliveries/{id}/retry`.
    pub async fn retry_delivery(&self, merchant: &str, id: &str) -> anyhow::Result<Value> {
        let path = format!(
            "/v1/merchants/{}/deliveries/{}/retry",
            seg(merchant),
            seg(id)
        );
        self.post(&path, json!({})).await
    }
}

enum Body {
    Json(Value),
    Raw(Vec<u8>),
}

/// `--after`/`--limit` of listings.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PageArgs {
    /// Continue after this cursor (the `next` of the previous page).
    #[arg(long)]
    pub after: Option<String>,
    /// Page size (1 to 250).
    #[arg(long)]
    pub limit: Option<u32>,
}

impl PageArgs {
    fn query(&self) -> String {
        let mut q = Vec::new();
        if let Some(a) = &self.after {
            q.push(format!("after={}", seg(a)));
        }
        if let Some(l) = self.limit {
            q.push(format!("limit={l}"));
        }
        if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
        }
    }
}

/// Runs one async client call on a small runtime (the CLI is otherwise synchronous).
pub fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("ep_abc"), "ep_abc");
        assert_eq!(seg("../x y"), "..%2Fx%20y");
    }
}
