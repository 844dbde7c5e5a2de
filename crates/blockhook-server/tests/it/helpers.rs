//! `TestApp`: a real blockhook on 127.0.0.1:0 with a temporary data directory, on SQLite or on a
//! fresh PostgreSQL schema, plus typed helpers for the routes tests use.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use blockhook_server::{AppState, Application, Settings};

use crate::receiver::TestCa;

pub const ADMIN: &str = "test-admin-token-0123456789";
/// The master key of PostgreSQL-backed test apps (base64 of 32 bytes).
pub const TEST_MASTER_KEY: &str = "dGVzdC1tYXN0ZXIta2V5LTAxMjM0NTY3ODlhYmNkZWY=";

/// Which store an app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// SQLite always; PostgreSQL too when `BLOCKHOOK_TEST_DATABASE_URL` is set.
pub fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Sqlite];
    if std::env::var("BLOCKHOOK_TEST_DATABASE_URL").is_ok() {
        all.push(Backend::Postgres);
    } else {
        eprintln!("postgres runs skipped: BLOCKHOOK_TEST_DATABASE_URL not set");
    }
    all
}

/// A store URL for `backend`: a file in `dir`, or a new schema in the test database.
pub async fn store_url(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join("blockhook.db").display()),
        Backend::Postgres => {
            let base = std::env::var("BLOCKHOOK_TEST_DATABASE_URL").unwrap();
            let schema = format!("bh_it_{}", uuid::Uuid::new_v4().simple());
            blockhook_store::postgres::schema::create(&base, &schema)
                .await
                .unwrap();
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}options=-c%20search_path%3D{schema}")
        }
    }
}

/// Test settings: loopback allowed, short retries, fast polling, no API rate limit.
pub fn test_settings(dir: &std::path::Path, store_url: String, ca: &TestCa) -> Settings {
    let ca_path = dir.join("test-ca.pem");
    std::fs::write(&ca_path, &ca.ca_pem).unwrap();
    let mut s = Settings::defaults().unwrap();
    s.server.listen = "127.0.0.1:0".parse().unwrap();
    s.server.admin_token = ADMIN.into();
    s.store.data_dir = dir.to_path_buf();
    if store_url.starts_with("postgres") {
        // PostgreSQL generates no key: it must be configured.
        s.keys.master_key = TEST_MASTER_KEY.into();
    }
    s.store.url = store_url;
    s.delivery.allow_nets = vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
    s.delivery.extra_ca_file = ca_path.display().to_string();
    s.delivery.retry_schedule = vec![Duration::from_secs(1), Duration::from_secs(1)];
    s.delivery.jitter = 0.0;
    s.delivery.idle_poll = Duration::from_millis(50);
    s.delivery.total_timeout = Duration::from_secs(5);
    s.delivery.lease = Duration::from_secs(10);
    s.delivery.drain_deadline = Duration::from_secs(2);
    s.api.requests_per_second = 0;
    s.retention.max_age = Duration::ZERO;
    s
}

/// A running app.
pub struct TestApp {
    #[allow(dead_code)]
    pub backend: Backend,
    pub base: String,
    pub http: reqwest::Client,
    pub state: AppState,
    pub ca: Arc<TestCa>,
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = Arc::new(TestCa::new());
        let url = store_url(backend, dir.path()).await;
        let mut settings = test_settings(dir.path(), url, &ca);
        tweak(&mut settings);
        Self::start(backend, settings, ca, dir).await
    }

    /// Runs an app with exactly these settings (`ca` is the one `test_settings` was given);
    /// `dir` is kept until the app is dropped.
    pub async fn start(
        backend: Backend,
        settings: Settings,
        ca: Arc<TestCa>,
        dir: tempfile::TempDir,
    ) -> Self {
        let clock = Arc::new(blockhook_core::SystemClock);
        Self::start_with_clock(backend, settings, ca, dir, clock).await
    }

    /// [`TestApp::start`] with a given clock (a `ManualClock` drives retries and the endpoint
    /// watch without waiting).
    pub async fn start_with_clock(
        backend: Backend,
        settings: Settings,
        ca: Arc<TestCa>,
        dir: tempfile::TempDir,
        clock: Arc<dyn blockhook_core::Clock>,
    ) -> Self {
        let app = Application::build_with_clock(settings, clock)
            .await
            .unwrap();
        let addr = app.local_addr().unwrap();
        let state = app.state().clone();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let handle = tokio::spawn(async move {
            app.run_until_stopped(token).await.unwrap();
        });
        Self {
            backend,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            state,
            ca,
            stop,
            handle,
            _dir: dir,
        }
    }

    /// The address the app listens on, for raw sockets.
    #[allow(dead_code)]
    pub fn addr(&self) -> std::net::SocketAddr {
        self.base.trim_start_matches("http://").parse().unwrap()
    }

    /// Stops the app and waits for it to drain.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.handle).await;
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_raw(
        &self,
        path: &str,
        token: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Creates a merchant and returns its id.
    pub async fn merchant(&self) -> String {
        let r = self
            .post("/v1/merchants", ADMIN, &json!({ "name": "Test merchant" }))
            .await;
        assert_eq!(r.status(), 201, "create merchant");
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Creates an endpoint (extra fields merged into the body) and returns its view.
    pub async fn endpoint(&self, merchant: &str, url: &str, extra: Value) -> Value {
        let mut body = json!({ "url": url });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let r = self
            .post(&format!("/v1/merchants/{merchant}/endpoints"), ADMIN, &body)
            .await;
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 201, "create endpoint: {v}");
        v
    }

    /// Publishes one event (the payload given as exact JSON text) and returns the answer.
    pub async fn publish(&self, merchant: &str, event_type: &str, payload: &str) -> Value {
        let body = format!(
            r#"{{"merchant_id":"{merchant}","event_type":"{event_type}","payload":{payload}}}"#
        );
        let r = self.post_raw("/v1/events", ADMIN, body).await;
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 202, "publish: {v}");
        v
    }
}

/// A realistic Payment payload with unsorted keys and decimal strings.
pub const PAYMENT: &str = r#"{"custNo":"CustNo_00240101","orderNo":"OrderNo_202504010023","id":8210003616,"symbol":"USDT","amount":"2000.00","status":"SUCCESS","txId":"0x7614a9840d9422feaef4671e0ee98dd7092ebcba6e41076285f99d0b2b0de5fe","network":"Ethereum","chainId":"1","fromAddress":"0xa9e358e33a57e67c9b84618a52f0194c345c8e35","cashierId":86100021}"#;
