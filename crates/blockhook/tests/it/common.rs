//! Shared helpers for the black-box reliability tests: the real `blockhook` binary run as a
//! child process (killed on drop), a config file written per test, a raw-TCP loopback receiver
//! whose misbehaviour is scripted, a small API client, and read-only store queries for ledgers.
#![allow(dead_code)] // each test file uses a different subset

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The operator token every test server uses.
pub const ADMIN: &str = "chaos-admin-token-0123456789abcdef";

/// The master key of PostgreSQL-backed test servers (base64 of 32 bytes).
pub const TEST_MASTER_KEY: &str = "dGVzdC1tYXN0ZXIta2V5LTAxMjM0NTY3ODlhYmNkZWY=";

/// Ports handed out by [`free_port`]: below the kernel's ephemeral range (32768 and up on
/// Linux), where outgoing connections take their source ports, and above the fixed ports the
/// documentation uses (8080, 8090, 9000).
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A loopback port free now, for a server a test starts (and may restart on the same port).
///
/// Not `bind(":0")`: that hands out an ephemeral port, which any outgoing connection of the
/// tests running beside this one (one test binary, many servers and clients) may take as its
/// source port before the server binds it. Ports come from [`PORTS`] in turn, from an offset
/// of this process, each checked by binding it, and none twice in a run.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let span = usize::from(PORTS.end - PORTS.start);
    let offset = std::process::id() as usize;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < span, "no free test port left in {PORTS:?}");
        let port = PORTS.start + u16::try_from((offset + n) % span).unwrap();
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Which store a server runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// `<data_dir>/blockhook.db`.
    Sqlite,
    /// A fresh schema in `BLOCKHOOK_TEST_DATABASE_URL`; the full URL selecting it.
    Postgres(String),
}

/// SQLite always; PostgreSQL too (on a fresh schema) when `BLOCKHOOK_TEST_DATABASE_URL` is set.
pub async fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Sqlite];
    match std::env::var("BLOCKHOOK_TEST_DATABASE_URL") {
        Ok(base) => {
            let schema = format!("bh_chaos_{}", uuid::Uuid::new_v4().simple());
            blockhook_store::postgres::schema::create(&base, &schema)
                .await
                .unwrap();
            let sep = if base.contains('?') { '&' } else { '?' };
            all.push(Backend::Postgres(format!(
                "{base}{sep}options=-c%20search_path%3D{schema}"
            )));
        }
        Err(_) => eprintln!("SKIP postgres run: BLOCKHOOK_TEST_DATABASE_URL is not set"),
    }
    all
}

/// What goes into the test's config file besides the fixed parts.
#[derive(Debug, Clone)]
pub struct Conf {
    pub allow_loopback: bool,
    pub lease: &'static str,
    pub total_timeout: &'static str,
    pub retry_schedule: Vec<&'static str>,
    pub max_response_bytes: usize,
    /// TOML appended as is (e.g. `[[sources.postgres_outbox]]` entries).
    pub extra: String,
}

impl Default for Conf {
    fn default() -> Self {
        Self {
            allow_loopback: true,
            lease: "3s",
            total_timeout: "2s",
            retry_schedule: vec!["1s"; 5],
            max_response_bytes: 65536,
            extra: String::new(),
        }
    }
}

impl Conf {
    fn toml(&self) -> String {
        let nets = if self.allow_loopback {
            r#"["127.0.0.0/8"]"#
        } else {
            "[]"
        };
        let schedule: Vec<String> = self
            .retry_schedule
            .iter()
            .map(|d| format!("\"{d}\""))
            .collect();
        format!(
            r#"[server]
admin_token = "{ADMIN}"
[delivery]
allow_http = true
allow_nets = {nets}
connect_timeout = "1s"
total_timeout = "{total}"
lease = "{lease}"
retry_schedule = [{schedule}]
jitter = 0.0
idle_poll = "50ms"
drain_deadline = "1s"
max_response_bytes = {maxresp}
[api]
requests_per_second = 0
[retention]
max_age = "0s"
[log]
format = "json"
filter = "info"
{extra}
"#,
            extra = self.extra,
            total = self.total_timeout,
            lease = self.lease,
            schedule = schedule.join(", "),
            maxresp = self.max_response_bytes,
        )
    }
}

/// A `blockhook serve` child process; SIGKILLed on drop.
pub struct Server {
    pub port: u16,
    pub dir: PathBuf,
    pub backend: Backend,
    child: Option<Child>,
    /// How many times this server has been started (log files are numbered by it).
    pub starts: usize,
    /// Names this server's config and log files (`server` → `blockhook.toml`, `server-N.log`).
    name: String,
    /// Extra `serve` flags and environment variables (see [`Server::start_with`]).
    args: Vec<String>,
    envs: Vec<(String, String)>,
    /// A command the server runs under (see [`Server::start_wrapped`]); empty for none.
    wrapper: Vec<String>,
}

impl Server {
    /// Writes the config into `dir` and starts the server on `port`.
    pub fn start(dir: &Path, port: u16, backend: Backend, conf: &Conf) -> Self {
        Self::start_with(dir, "server", port, backend, conf, &[], &[])
    }

    /// Like [`Server::start`], but runs `wrapper` with the `blockhook serve ...` command line
    /// appended to it (e.g. `unshare -m sh -c '<setup> && exec "$@"' <arg0>`, to give the server
    /// a private mount namespace). The wrapper must `exec` the command, so that the child's pid
    /// is the server's (for [`Server::pid`] and SIGKILL). Kept on restart.
    pub fn start_wrapped(
        dir: &Path,
        port: u16,
        backend: Backend,
        conf: &Conf,
        wrapper: &[String],
    ) -> Self {
        let mut s = Self::new(dir, "server", port, backend, &[], &[]);
        s.wrapper = wrapper.to_vec();
        std::fs::write(s.config_path(), conf.toml()).unwrap();
        s.spawn();
        s
    }

    /// Like [`Server::start`], for several servers in one `dir` (sharing `dir/data`, hence the
    /// master key: start the first one and wait for it before the others): `name` names the
    /// config (`<name>.toml`) and log files (`<name>-N.log`); `args` are extra `serve` flags
    /// (e.g. `["--role", "worker"]`) and `envs` extra `BLOCKHOOK_*` variables, kept on restart.
    pub fn start_with(
        dir: &Path,
        name: &str,
        port: u16,
        backend: Backend,
        conf: &Conf,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        let mut s = Self::new(dir, name, port, backend, args, envs);
        std::fs::write(s.config_path(), conf.toml()).unwrap();
        s.spawn();
        s
    }

    fn new(
        dir: &Path,
        name: &str,
        port: u16,
        backend: Backend,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        Self {
            port,
            dir: dir.to_path_buf(),
            backend,
            child: None,
            starts: 0,
            name: name.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            wrapper: Vec::new(),
        }
    }

    fn config_path(&self) -> PathBuf {
        if self.name == "server" {
            self.dir.join("blockhook.toml")
        } else {
            self.dir.join(format!("{}.toml", self.name))
        }
    }

    /// The running server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` once the process has exited (None while it runs or after [`Server::kill`]).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).unwrap();
        let bin = env!("CARGO_BIN_EXE_blockhook");
        let mut cmd = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(bin);
                cmd
            }
            None => Command::new(bin),
        };
        cmd.arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.dir.join("data"));
        if let Backend::Postgres(url) = &self.backend {
            // PostgreSQL generates no key: every process of a test shares this one.
            cmd.arg("--database-url")
                .arg(url)
                .env("BLOCKHOOK_KEYS__MASTER_KEY", TEST_MASTER_KEY);
        }
        cmd.args(&self.args).envs(self.envs.iter().cloned());
        cmd.env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(cmd.spawn().unwrap());
    }

    fn log_path(&self, n: usize) -> PathBuf {
        self.dir.join(format!("{}-{n}.log", self.name))
    }

    /// Everything the server wrote to stdout and stderr so far, every run.
    pub fn logs(&self) -> Vec<u8> {
        (1..=self.starts)
            .flat_map(|n| std::fs::read(self.log_path(n)).unwrap_or_default())
            .collect()
    }

    /// Waits until the server's log contains `text` (panics with `what` at `deadline`).
    pub async fn wait_for_log(&self, text: &str, deadline: Instant, what: &str) {
        while !String::from_utf8_lossy(&self.logs()).contains(text) {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits for `/readyz` to answer 200 (panics after 30 s or if the process exited).
    pub async fn ready(&mut self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "server exited early ({status}): {}",
                    String::from_utf8_lossy(&self.logs())
                );
            }
            if let Ok(r) = http.get(format!("{}/readyz", self.base())).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "server not ready within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL (no drain, no shutdown hook) and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same data directory, store and port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.ready().await;
    }

    /// The store, opened read-side by the test for ledgers.
    pub async fn db(&self) -> Db {
        match &self.backend {
            Backend::Sqlite => {
                let path = self.dir.join("data").join("blockhook.db");
                let opts = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(path)
                    .read_only(true);
                Db::Sqlite(sqlx::SqlitePool::connect_with(opts).await.unwrap())
            }
            Backend::Postgres(url) => Db::Postgres(sqlx::PgPool::connect(url).await.unwrap()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Read-only queries against a server's store.
pub enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Db {
    /// `(key, count)` rows of a `SELECT <text>, COUNT(*) ... GROUP BY 1` query.
    pub async fn groups(&self, sql: &str) -> Vec<(String, i64)> {
        match self {
            Self::Sqlite(p) => {
                sqlx::query_as::<_, (Option<String>, i64)>(sql)
                    .fetch_all(p)
                    .await
            }
            Self::Postgres(p) => {
                sqlx::query_as::<_, (Option<String>, i64)>(sql)
                    .fetch_all(p)
                    .await
            }
        }
        .unwrap()
        .into_iter()
        .map(|(k, n)| (k.unwrap_or_else(|| "null".into()), n))
        .collect()
    }

    /// One `COUNT(*)`.
    pub async fn count(&self, sql: &str) -> i64 {
        match self {
            Self::Sqlite(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await,
            Self::Postgres(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await,
        }
        .unwrap()
    }

    /// Delivery states (`pending`/`succeeded`/`failed`) with their counts, for one merchant.
    pub async fn delivery_states(&self, merchant: &str) -> HashMap<String, i64> {
        self.groups(&format!(
            "SELECT state, COUNT(*) FROM deliveries WHERE merchant_id = '{merchant}' GROUP BY state"
        ))
        .await
        .into_iter()
        .collect()
    }

    /// Attempts logged for one merchant, by error class (`null` = acknowledged).
    pub async fn attempt_classes(&self, merchant: &str) -> HashMap<String, i64> {
        self.groups(&format!(
            "SELECT a.error, COUNT(*) FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
             WHERE d.merchant_id = '{merchant}' GROUP BY a.error"
        ))
        .await
        .into_iter()
        .collect()
    }

    /// Every attempt of one merchant as `(event id, attempt number, started_at ms)`, oldest first.
    pub async fn attempt_times(&self, merchant: &str) -> Vec<(String, i64, i64)> {
        let sql = format!(
            "SELECT d.event_id, CAST(a.number AS BIGINT), a.started_at FROM attempts a \
             JOIN deliveries d ON d.id = a.delivery_id WHERE d.merchant_id = '{merchant}' \
             ORDER BY a.started_at"
        );
        match self {
            Self::Sqlite(p) => sqlx::query_as(&sql).fetch_all(p).await,
            Self::Postgres(p) => sqlx::query_as(&sql).fetch_all(p).await,
        }
        .unwrap()
    }

    /// One BLOB/BYTEA value.
    pub async fn bytes(&self, sql: &str) -> Vec<u8> {
        match self {
            Self::Sqlite(p) => sqlx::query_scalar::<_, Vec<u8>>(sql).fetch_one(p).await,
            Self::Postgres(p) => sqlx::query_scalar::<_, Vec<u8>>(sql).fetch_one(p).await,
        }
        .unwrap()
    }

    /// Waits until no delivery of `merchant` is pending (false after `within`).
    pub async fn settle(&self, merchant: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self
                .delivery_states(merchant)
                .await
                .get("pending")
                .copied()
                .unwrap_or(0)
                == 0
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    pub async fn close(self) {
        match self {
            Self::Sqlite(p) => p.close().await,
            Self::Postgres(p) => p.close().await,
        }
    }
}

/// A small client for the routes the tests use.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: String) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self { base, http }
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .json(body)
            .send()
            .await
    }

    /// Creates a merchant and returns its id.
    pub async fn merchant(&self, name: &str) -> String {
        let r = self
            .post("/v1/merchants", &json!({ "name": name }))
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "create merchant");
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Creates an endpoint and returns its view (including `secret`).
    pub async fn endpoint(&self, merchant: &str, url: &str) -> Value {
        self.endpoint_with(merchant, json!({ "url": url })).await
    }

    pub async fn endpoint_with(&self, merchant: &str, body: Value) -> Value {
        let r = self
            .post(&format!("/v1/merchants/{merchant}/endpoints"), &body)
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 201, "create endpoint: {v}");
        v
    }

    /// Publishes one event; `Some(event_id)` only on 202.
    pub async fn publish(&self, merchant: &str, seq: u64) -> Option<String> {
        let body = event(merchant, seq);
        let r = self.post("/v1/events", &body).await.ok()?;
        if r.status() != 202 {
            return None;
        }
        Some(
            r.json::<Value>().await.ok()?["event_id"]
                .as_str()?
                .to_owned(),
        )
    }

    /// Publishes `seqs` in one batch; the event ids only on 202.
    pub async fn publish_batch(
        &self,
        merchant: &str,
        seqs: std::ops::Range<u64>,
    ) -> Option<Vec<String>> {
        let events: Vec<Value> = seqs.map(|s| event(merchant, s)).collect();
        let r = self
            .post("/v1/events/batch", &json!({ "events": events }))
            .await
            .ok()?;
        if r.status() != 202 {
            return None;
        }
        let v: Value = r.json().await.ok()?;
        v["data"]
            .as_array()?
            .iter()
            .map(|d| d["event_id"].as_str().map(str::to_owned))
            .collect()
    }
}

/// Event number `seq`, with an idempotency key, so that a retried request whose `202` was lost
/// in a crash answers with the first event's id instead of storing a second event.
pub fn event(merchant: &str, seq: u64) -> Value {
    json!({
        "merchant_id": merchant,
        "event_type": "Payment",
        "payload": payload(seq),
        "idempotency_key": format!("order-{seq}"),
    })
}

/// A Payment-like payload numbered `seq`.
pub fn payload(seq: u64) -> Value {
    json!({ "orderNo": format!("Order_{seq:08}"), "amount": "10.00", "symbol": "USDT", "status": "SUCCESS", "seq": seq })
}

/// How a [`Receiver`] answers each request it has read in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 after a delay in `min..=max` ms (pseudo-random per request).
    Ok { min_ms: u64, max_ms: u64 },
    /// 500 at once.
    Status500,
    /// Never answers (holds the connection for `secs`).
    Hang { secs: u64 },
    /// TCP reset (SO_LINGER 0, then close).
    Reset,
    /// Closes the connection halfway through the status line and headers.
    CloseMidResponse,
    /// 200 with a `Content-Length` of 1 GiB, produced lazily until the peer goes away.
    HugeBody,
    /// 500 to the first `failures` requests of each event, 200 from then on.
    FailFirst { failures: usize },
}

/// One request as received: headers (lower-cased names) and body.
pub type Request = (Vec<(String, String)>, Vec<u8>);

/// A loopback HTTP/1.1 receiver on raw TCP, so that it can misbehave at the socket level.
/// Records every request's `BlockHook-Event-Id`, the bodies, and connection counts.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<RxState>,
}

#[derive(Default)]
struct RxState {
    seen: Mutex<HashMap<String, usize>>,
    bodies: Mutex<Vec<Request>>,
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    connections: AtomicUsize,
    huge_bytes_sent: AtomicU64,
    /// Event id → requests for it being answered right now.
    answering: Mutex<HashMap<String, usize>>,
    /// Event id and arrival time (test process's monotonic clock) of every request, in order.
    arrivals: Mutex<Vec<(String, Instant)>>,
    overlaps: AtomicUsize,
}

impl Receiver {
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(RxState::default());
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                st.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_conn(tcp, st.clone(), behaviour));
            }
        });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.addr.port())
    }

    /// Requests read in full.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Requests read but not yet answered.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Bytes of the 1 GiB body actually written before the client went away.
    pub fn huge_bytes_sent(&self) -> u64 {
        self.state.huge_bytes_sent.load(Ordering::SeqCst)
    }

    /// Requests that arrived while another request for the same event was still being answered
    /// (this receiver is one endpoint, so: concurrent attempts of one delivery).
    pub fn overlaps(&self) -> usize {
        self.state.overlaps.load(Ordering::SeqCst)
    }

    /// Event id → times received.
    pub fn seen(&self) -> HashMap<String, usize> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Event id and arrival time of every request that named an event, in arrival order.
    pub fn arrivals(&self) -> Vec<(String, Instant)> {
        self.state.arrivals.lock().unwrap().clone()
    }

    /// Every request's headers (lower-cased names) and body.
    pub fn bodies(&self) -> Vec<Request> {
        self.state.bodies.lock().unwrap().clone()
    }

    /// Waits until every id in `ids` has been received (false after `within`).
    pub async fn wait_all(&self, ids: &[String], within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.seen();
            if ids.iter().all(|id| seen.contains_key(id)) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Reads one request head and body; `None` when the peer closed or sent garbage.
pub async fn read_request(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 8192];
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let mut chunk = [0u8; 8192];
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    Some((headers, body))
}

async fn serve_conn(mut tcp: TcpStream, st: Arc<RxState>, behaviour: Behaviour) {
    let mut buf = Vec::new();
    while let Some((headers, body)) = read_request(&mut tcp, &mut buf).await {
        let n = st.requests.fetch_add(1, Ordering::SeqCst) as u64;
        let event = headers
            .iter()
            .find(|(k, _)| k == "blockhook-event-id")
            .map(|(_, id)| id.clone());
        let mut nth = 0;
        if let Some(id) = &event {
            let mut seen = st.seen.lock().unwrap();
            let count = seen.entry(id.clone()).or_default();
            *count += 1;
            nth = *count;
            drop(seen);
            st.arrivals
                .lock()
                .unwrap()
                .push((id.clone(), Instant::now()));
            let mut answering = st.answering.lock().unwrap();
            let now = answering.entry(id.clone()).or_default();
            if *now > 0 {
                st.overlaps.fetch_add(1, Ordering::SeqCst);
            }
            *now += 1;
        }
        st.bodies.lock().unwrap().push((headers, body));
        st.in_flight.fetch_add(1, Ordering::SeqCst);
        let keep = respond(&mut tcp, &st, behaviour, n, nth).await;
        st.in_flight.fetch_sub(1, Ordering::SeqCst);
        if let Some(id) = &event {
            let mut answering = st.answering.lock().unwrap();
            if let Some(now) = answering.get_mut(id) {
                *now -= 1;
                if *now == 0 {
                    answering.remove(id);
                }
            }
        }
        if !keep {
            return;
        }
    }
}

/// Answers one request (`n`: its number on this receiver; `nth`: how many requests for its
/// event have arrived, this one included); false when the connection must not be reused.
async fn respond(
    tcp: &mut TcpStream,
    st: &RxState,
    behaviour: Behaviour,
    n: u64,
    nth: usize,
) -> bool {
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok";
    const ERR: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\noops";
    match behaviour {
        Behaviour::Ok { min_ms, max_ms } => {
            let spread = max_ms.saturating_sub(min_ms) + 1;
            let jitter = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            tokio::time::sleep(Duration::from_millis(min_ms + jitter % spread)).await;
            tcp.write_all(OK).await.is_ok()
        }
        Behaviour::Status500 => tcp.write_all(ERR).await.is_ok(),
        Behaviour::FailFirst { failures } if nth <= failures => tcp.write_all(ERR).await.is_ok(),
        Behaviour::FailFirst { .. } => tcp.write_all(OK).await.is_ok(),
        Behaviour::Hang { secs } => {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            false
        }
        Behaviour::Reset => {
            #[allow(deprecated)] // linger 0 resets at once; it never blocks
            let _ = tcp.set_linger(Some(Duration::ZERO));
            false
        }
        Behaviour::CloseMidResponse => {
            let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-le").await;
            let _ = tcp.shutdown().await;
            false
        }
        Behaviour::HugeBody => {
            const GIB: u64 = 1 << 30;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {GIB}\r\ncontent-type: application/octet-stream\r\n\r\n"
            );
            if tcp.write_all(head.as_bytes()).await.is_err() {
                return false;
            }
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0u64;
            while sent < GIB {
                match tokio::time::timeout(Duration::from_secs(5), tcp.write_all(&chunk)).await {
                    Ok(Ok(())) => sent += chunk.len() as u64,
                    _ => break,
                }
            }
            st.huge_bytes_sent.fetch_add(sent, Ordering::SeqCst);
            false
        }
    }
}

/// A tiny deterministic PRNG (xorshift64*), seeded from the clock and printed, so a failing run
/// can be replayed with `BLOCKHOOK_CHAOS_SEED`.
pub struct Rng(u64);

impl Rng {
    pub fn from_env_or_clock() -> Self {
        let seed = std::env::var("BLOCKHOOK_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("chaos seed: {seed} (replay with BLOCKHOOK_CHAOS_SEED={seed})");
        Self(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Appends a line to the ledger file named by `BLOCKHOOK_CHAOS_LEDGER` (if set) and prints it.
pub fn ledger(line: &str) {
    eprintln!("LEDGER {line}");
    if let Ok(path) = std::env::var("BLOCKHOOK_CHAOS_LEDGER")
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}
