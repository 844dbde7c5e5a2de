//! `Settings`: every knob of `blockhook serve`, loaded in one documented order.
//!
//! Layers, later ones winning: compiled-in defaults (`defaults.toml` beside this file) → the
//! config file (`--config`, default `blockhook.toml` if it exists) → `BLOCKHOOK_*` environment
//! variables (`__` separates sections: `BLOCKHOOK_DELIVERY__CONCURRENCY=64`) → command-line flags.
//!
//! Loading is strict (see [`strict`]): an unknown key in the file or an unknown
//! `BLOCKHOOK_<SECTION>__<KEY>` variable is an error, not a silently kept default.

pub mod strict;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::Error;

const DEFAULTS: &str = include_str!("defaults.toml");

/// Everything `blockhook serve` can be told.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// HTTP listener and API limits.
    pub server: ServerSettings,
    /// Where data lives.
    pub store: StoreSettings,
    /// How deliveries are made.
    pub delivery: DeliverySettings,
    /// Manual resend limits.
    pub resend: ResendSettings,
    /// Recovery of failed deliveries.
    pub recover: RecoverSettings,
    /// Data retention.
    pub retention: RetentionSettings,
    /// Failure alerts: the endpoint watch and its operational webhooks.
    pub alerts: AlertsSettings,
    /// Per-key API rate limit.
    pub api: ApiSettings,
    /// Logging.
    pub log: LogSettings,
    /// Encryption of secrets at rest.
    pub keys: KeySettings,
    /// The web dashboard.
    pub ui: UiSettings,
    /// Which payload fields events can be searched by.
    #[serde(default)]
    pub search: SearchSettings,
    /// Where events come from besides `POST /v1/events` (see `docs/publishing.md`).
    #[serde(default)]
    pub sources: SourcesSettings,
}

/// Which parts of blockhook this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// API and dispatcher.
    #[default]
    All,
    /// Ingest and management API only.
    Api,
    /// Dispatcher only (still serves `/healthz`, `/readyz` and `/metrics`).
    Worker,
}

impl Role {
    /// Whether this role delivers.
    pub fn delivers(self) -> bool {
        matches!(self, Self::All | Self::Worker)
    }

    /// Whether this role answers the API.
    pub fn serves_api(self) -> bool {
        matches!(self, Self::All | Self::Api)
    }
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerSettings {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// `all`, `api` or `worker`.
    pub role: Role,
    /// The operator's bearer token. When it and `admin_token_file` are empty, the embedded store
    /// generates one into `<data_dir>/admin-token`; PostgreSQL requires one.
    pub admin_token: String,
    /// A file holding the operator token (instead of `admin_token`).
    pub admin_token_file: String,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Most events in one batch ingest.
    pub max_batch_events: usize,
    /// A request's headers must arrive within this time from its first byte (and a new
    /// connection's first request within this time of connecting); also bounds the TLS
    /// handshake. Idle keep-alive connections are bounded by `idle_timeout` instead.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A request's whole body must arrive within this time (the slowest accepted upload is
    /// `max_body_bytes / body_read_timeout`); later answers 408.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// A body must arrive at this many bytes per second at least, on average since its start,
    /// once `body_min_rate_grace` has passed; slower answers 408 (0 = no minimum). Cuts a
    /// trickling client long before `body_read_timeout`, which must allow the largest body.
    pub body_min_rate: u64,
    /// The first seconds of a body, exempt from `body_min_rate` (a slow start, a small body).
    #[serde(with = "humantime_serde")]
    pub body_min_rate_grace: Duration,
    /// A connection on which no byte moves either way for this long is closed (slow readers,
    /// dead peers); HTTP/2 connections are pinged at half this interval.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Open connections at most; past it new ones get only `/healthz` and `/readyz` (503 for
    /// the rest) or are closed at once.
    pub max_connections: usize,
    /// Open connections at most from one client address (0 = no per-address cap).
    pub max_connections_per_ip: usize,
    /// Concurrent streams at most on one HTTP/2 connection.
    pub http2_max_concurrent_streams: u32,
    /// An HTTP/2 request's header list, decoded, at most (bytes, counting 32 per field as
    /// HTTP/2 does); a larger one answers 431. HPACK lets a few bytes on the wire decode to far
    /// more, so the cap is on the decoded size.
    pub http2_max_header_list_bytes: u32,
    /// HTTP/2 streams a client may reset before the server processed them, per connection;
    /// past it the connection is closed (the "rapid reset" attack).
    pub http2_max_pending_resets: usize,
    /// PEM certificate chain: with `tls_key`, `serve` speaks HTTPS (HTTP/1.1 and HTTP/2 by ALPN).
    pub tls_cert: PathBuf,
    /// PEM private key of `tls_cert`.
    pub tls_key: PathBuf,
    /// Reverse proxies (CIDRs) whose `client_ip_header` is believed: a request from a peer in
    /// them gets, as its client address, the right-most entry of that header that is not
    /// itself one of them; from any other peer the header is ignored, so it cannot be spoofed.
    /// Empty: the client is always the TCP peer. Requests on `unix_socket` come from the local
    /// proxy by construction: their header is always read.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header a trusted proxy puts the client's address in: a comma-separated list of
    /// addresses, each proxy appending the one it got the request from (`X-Forwarded-For`),
    /// or a single address (`X-Real-IP`).
    pub client_ip_header: String,
    /// Also serve plain HTTP on this Unix socket, for a reverse proxy on the same host (empty:
    /// none). A stale socket file is replaced; the socket is made readable and writable by the
    /// owner and group only.
    pub unix_socket: PathBuf,
    /// Threads of the async runtime (HTTP, delivery); 0 = automatic (see
    /// [`Settings::runtime_workers`]).
    pub workers: usize,
}

/// The runtime's threads when `server.workers` is 0: `TOKIO_WORKER_THREADS` if set (tokio's own
/// convention), else one per core, less one for the embedded store's writer thread (`embedded`),
/// at least one.
///
/// Decision (docs/decisions.md, "One core for the embedded store's writer"): the writer thread
/// does every SQLite write beside the runtime; a worker for its core only adds wake-ups. At an
/// everyday rate an idle second worker is woken to look for work several times per event
/// (measured in BENCHMARKS.md), and at saturation the writer keeps its core busy anyway.
pub fn automatic_workers(embedded: bool) -> usize {
    let from_env = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0);
    if let Some(n) = from_env {
        return n;
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    if embedded {
        cores.saturating_sub(1).max(1)
    } else {
        cores
    }
}

/// `[store]`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreSettings {
    /// `postgres://…` or `sqlite://path`; empty means `<data_dir>/blockhook.db`.
    pub url: String,
    /// Directory for the embedded database and generated keys.
    pub data_dir: PathBuf,
    /// Pool size.
    pub max_connections: u32,
    /// Wait for a connection at most this long.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// `full` (survives power loss) or `normal` (survives process crashes only).
    pub sqlite_sync: blockhook_store::SqliteSync,
}

/// `[delivery]`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliverySettings {
    /// Accept `http://` endpoint URLs (development only).
    pub allow_http: bool,
    /// CIDRs exempt from the address policy (e.g. `["127.0.0.0/8"]` for local testing).
    pub allow_nets: Vec<ipnet::IpNet>,
    /// PEM file with extra trusted CA certificates.
    pub extra_ca_file: String,
    /// TCP+TLS connect timeout.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    #[serde(with = "humantime_serde")]
    pub total_timeout: Duration,
    /// Response bytes kept per attempt.
    pub max_response_bytes: usize,
    /// Delay after each failed attempt; attempts in all = len + 1.
    #[serde(with = "duration_list")]
    pub retry_schedule: Vec<Duration>,
    /// ± fraction of each delay.
    pub jitter: f64,
    /// Longest `Retry-After` honoured.
    #[serde(with = "humantime_serde")]
    pub retry_after_max: Duration,
    /// Requests in flight at once, all endpoints together.
    pub concurrency: usize,
    /// Requests in flight at once to one endpoint.
    pub per_endpoint_concurrency: usize,
    /// Deliveries claimed per store round trip.
    pub claim_batch: u32,
    /// Lease length (renewed while the request runs).
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// On shutdown, wait this long for in-flight attempts.
    #[serde(with = "humantime_serde")]
    pub drain_deadline: Duration,
    /// With nothing due, look again at least this often.
    #[serde(with = "humantime_serde")]
    pub idle_poll: Duration,
}

/// `[resend]`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResendSettings {
    /// Events older than this cannot be resent.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Most manual resends per event.
    pub max_per_event: u32,
}

/// `[recover]`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoverSettings {
    /// How far back a recovery may reach.
    #[serde(with = "humantime_serde")]
    pub max_window: Duration,
}

/// `[retention]`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetentionSettings {
    /// Payloads and attempts older than this are deleted (0s disables).
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// How often the job runs.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Rows per statement.
    pub batch: u32,
}

/// `[alerts]` (see `docs/alerts.md`)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertsSettings {
    /// How often the endpoint watch runs (0s turns failure alerts off).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Failed attempts in a row that make an endpoint `failing` (sends `endpoint.failing`).
    pub failure_streak: u32,
    /// An endpoint with no success for this long since its first failure is disabled
    /// (sends `endpoint.disabled`); 0s never disables.
    #[serde(with = "humantime_serde")]
    pub disable_after: Duration,
    /// The operator's merchant: every merchant's operational events are also published as its
    /// events, so its endpoints subscribed to them are the operator's alert URLs ("" = none).
    pub operator_merchant: String,
}

/// `[api]`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiSettings {
    /// Sustained requests per second per API key (0 disables the limit).
    pub requests_per_second: u32,
    /// Burst size per key.
    pub burst: u32,
    /// Also apply the limit to the operator token's publishing (`POST /v1/events`,
    /// `/v1/events/batch`); off by default, so the gateway is never answered 429.
    pub limit_operator_publish: bool,
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogSettings {
    /// `pretty` or `json`.
    pub format: LogFormat,
    /// An `EnvFilter` directive (`RUST_LOG` overrides it).
    pub filter: String,
    /// OpenTelemetry trace export over OTLP/HTTP (protobuf): the collector's base URL, e.g.
    /// `http://127.0.0.1:4318` (spans go to `/v1/traces` under it). Empty: off.
    pub otlp_endpoint: String,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[keys]`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeySettings {
    /// Base64 of 32 random bytes. When it and `master_key_file` are empty, the embedded store
    /// generates one into `<data_dir>/master.key`; PostgreSQL requires one.
    pub master_key: String,
    /// A file holding the master key (instead of `master_key`).
    pub master_key_file: String,
    /// Previous master keys, which still open secrets (never seal) during a rotation.
    pub old_master_keys: Vec<String>,
}

/// `[ui]`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UiSettings {
    /// How long a dashboard session lasts after sign-in (no sliding renewal).
    #[serde(with = "humantime_serde")]
    pub session_lifetime: Duration,
}

/// `[search]`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchSettings {
    /// Top-level payload fields whose string or number value is indexed when an event is
    /// stored (at most 8 names; none turns the index off); only these can be searched by value. Events stored before a field
    /// was added are not indexed under it.
    pub fields: Vec<String>,
}

impl Default for SearchSettings {
    fn default() -> Self {
        Self {
            fields: blockhook_core::SearchFields::default().names().to_vec(),
        }
    }
}

impl SearchSettings {
    /// The checked list (checked at load, so this only fails for settings built in code).
    pub fn fields(&self) -> Result<blockhook_core::SearchFields, Error> {
        blockhook_core::SearchFields::new(&self.fields).map_err(|e| match e {
            blockhook_core::Error::Invalid { reason, .. } => {
                Error::Config(format!("search.fields: {reason}"))
            }
            other => Error::Config(format!("search.fields: {other}")),
        })
    }
}

/// `[sources]`: event sources blockhook reads by itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourcesSettings {
    /// `[[sources.postgres_outbox]]`: transactional outbox tables in gateways' PostgreSQL
    /// databases, each relayed by this process (see `crate::outbox`).
    #[serde(default)]
    pub postgres_outbox: Vec<PostgresOutboxSource>,
    /// `[[sources.nats]]`: NATS JetStream streams, each read by this process through a durable
    /// pull consumer (see `crate::jetstream`).
    #[serde(default)]
    pub nats: Vec<NatsSource>,
}

/// One `[[sources.nats]]` entry.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSource {
    /// The NATS server, `nats://host:4222` (credentials in it are never logged).
    #[serde(default = "NatsSource::default_url")]
    pub url: String,
    /// The JetStream stream to read (it must exist).
    pub stream: String,
    /// The durable consumer's name: created when missing; processes with the same name share
    /// the work, each message going to one of them.
    pub consumer: String,
    /// Only subjects matching this filter (empty: every subject of the stream).
    #[serde(default)]
    pub subject: String,
    /// Messages fetched at once.
    #[serde(default = "NatsSource::default_batch")]
    pub batch: u32,
    /// A message that could not be stored this many times (the store unavailable each time) is
    /// dead-lettered and terminated instead of redelivered again.
    #[serde(default = "NatsSource::default_max_deliver")]
    pub max_deliver: u32,
}

impl NatsSource {
    fn default_url() -> String {
        "nats://127.0.0.1:4222".to_owned()
    }

    fn default_batch() -> u32 {
        100
    }

    fn default_max_deliver() -> u32 {
        5
    }

    /// An entry with every default (its keys are the valid keys of an entry).
    pub fn example() -> Self {
        Self {
            url: Self::default_url(),
            stream: String::new(),
            consumer: String::new(),
            subject: String::new(),
            batch: Self::default_batch(),
            max_deliver: Self::default_max_deliver(),
        }
    }

    /// The URL with any user, password or token hidden, for logs and errors (a NATS token is
    /// written where a user name would be: `nats://s3cret@host`).
    pub fn redacted_url(&self) -> String {
        Self::redact(&self.url)
    }

    /// [`NatsSource::redacted_url`] of any text.
    pub fn redact(raw: &str) -> String {
        match url::Url::parse(raw) {
            Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
                let _ = url.set_username("redacted");
                let _ = url.set_password(None);
                url.to_string()
            }
            Ok(url) => url.to_string(),
            Err(_) => "(not a URL)".to_owned(),
        }
    }
}

impl std::fmt::Debug for NatsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSource")
            .field("url", &self.redacted_url())
            .field("stream", &self.stream)
            .field("consumer", &self.consumer)
            .field("subject", &self.subject)
            .field("batch", &self.batch)
            .field("max_deliver", &self.max_deliver)
            .finish()
    }
}

/// One `[[sources.postgres_outbox]]` entry.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresOutboxSource {
    /// The gateway's database, `postgres://user:password@host/db` (the password is never logged).
    pub url: String,
    /// The outbox table, `name` or `schema.name` (`blockhook outbox schema` prints its DDL).
    pub table: String,
    /// Rows relayed per gateway transaction.
    #[serde(default = "PostgresOutboxSource::default_batch")]
    pub batch: u32,
    /// Look at the table at least this often; an insert's NOTIFY wakes the relay sooner.
    #[serde(
        default = "PostgresOutboxSource::default_poll",
        with = "humantime_serde"
    )]
    pub poll: Duration,
}

impl PostgresOutboxSource {
    fn default_batch() -> u32 {
        500
    }

    fn default_poll() -> Duration {
        Duration::from_secs(1)
    }

    /// An entry with every default (its keys are the valid keys of an entry).
    pub fn example() -> Self {
        Self {
            url: String::new(),
            table: String::new(),
            batch: Self::default_batch(),
            poll: Self::default_poll(),
        }
    }

    /// The URL with its password hidden, for logs and errors.
    pub fn redacted_url(&self) -> String {
        strict::redact_url_password(&self.url)
    }
}

impl std::fmt::Debug for PostgresOutboxSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOutboxSource")
            .field("url", &self.redacted_url())
            .field("table", &self.table)
            .field("batch", &self.batch)
            .field("poll", &self.poll)
            .finish()
    }
}

impl Settings {
    /// The compiled-in defaults alone.
    pub fn defaults() -> Result<Self, Error> {
        Self::figment(None)
            .extract()
            .map_err(|e| Error::Config(e.to_string()))
    }

    /// Defaults → file → environment → `overrides` (a serialisable value holding only the
    /// keys the user set on the command line, nested like the file).
    pub fn load(file: Option<&Path>, overrides: impl Serialize) -> Result<Self, Error> {
        Self::check_keys(file)?;
        let mut fig = Self::figment(file);
        // Only `BLOCKHOOK_<SECTION>__<KEY>` names are settings; the others (the CLI's
        // BLOCKHOOK_URL, …) were checked against the allow list above and are not read here.
        fig = fig.merge(
            Env::prefixed("BLOCKHOOK_")
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        );
        fig = fig.merge(Serialized::defaults(overrides));
        let settings: Settings = fig.extract().map_err(|e| Error::Config(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Refuses unknown keys in the config file and unknown `BLOCKHOOK_*` variables, naming
    /// each, where it came from, and the closest valid key.
    fn check_keys(file: Option<&Path>) -> Result<(), Error> {
        let defaults: Settings = Figment::from(Toml::string(DEFAULTS))
            .extract()
            .map_err(|e| Error::Config(e.to_string()))?;
        let known = strict::KnownKeys::new(DEFAULTS, &defaults)?;
        // The file figment reads when none is given: `blockhook.toml` in the working directory
        // or the nearest parent that has one.
        let implicit = || {
            let cwd = std::env::current_dir().ok()?;
            cwd.ancestors()
                .map(|d| d.join("blockhook.toml"))
                .find(|p| p.is_file())
        };
        let path = file.map(Path::to_path_buf).or_else(implicit);
        let mut problems = path.map(|p| known.check_file(&p)).unwrap_or_default();
        let vars =
            std::env::vars_os().map(|(k, _)| (k.to_string_lossy().into_owned(), String::new()));
        problems.extend(known.check_env(vars));
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(problems.join("\n")))
        }
    }

    /// The settings as TOML, every secret redacted (what `blockhook config check` prints).
    pub fn redacted_toml(&self) -> Result<String, Error> {
        strict::redacted_toml(self)
    }

    fn figment(file: Option<&Path>) -> Figment {
        let fig = Figment::from(Toml::string(DEFAULTS));
        match file {
            Some(path) => fig.merge(Toml::file_exact(path)),
            None => fig.merge(Toml::file("blockhook.toml")),
        }
    }

    fn validate(&self) -> Result<(), Error> {
        let bad = |msg: &str| Err(Error::Config(msg.to_owned()));
        if self.delivery.concurrency == 0 || self.delivery.per_endpoint_concurrency == 0 {
            return bad("delivery.concurrency and delivery.per_endpoint_concurrency must be > 0");
        }
        if self.delivery.claim_batch == 0 {
            return bad("delivery.claim_batch must be > 0");
        }
        if !(0.0..=0.5).contains(&self.delivery.jitter) {
            return bad("delivery.jitter must be between 0.0 and 0.5");
        }
        if self.delivery.lease < Duration::from_secs(1) {
            return bad("delivery.lease must be at least 1s");
        }
        if self.delivery.lease <= self.delivery.total_timeout {
            return bad("delivery.lease must be longer than delivery.total_timeout");
        }
        if self.alerts.failure_streak == 0 {
            return bad("alerts.failure_streak must be > 0");
        }
        if !self.alerts.operator_merchant.is_empty()
            && blockhook_core::MerchantId::parse(&self.alerts.operator_merchant).is_err()
        {
            return bad("alerts.operator_merchant must be a merchant id (mch_…) or empty");
        }
        if self.server.workers > 1024 {
            return bad("server.workers must be between 0 (automatic) and 1024");
        }
        if self.server.max_batch_events == 0 || self.server.max_batch_events > 10_000 {
            return bad("server.max_batch_events must be between 1 and 10000");
        }
        let server = &self.server;
        for (name, d) in [
            ("server.header_read_timeout", server.header_read_timeout),
            ("server.body_read_timeout", server.body_read_timeout),
            ("server.idle_timeout", server.idle_timeout),
        ] {
            if d < Duration::from_millis(100) {
                return bad(&format!("{name} must be at least 100ms"));
            }
        }
        if server.max_connections == 0 || server.http2_max_concurrent_streams == 0 {
            return bad(
                "server.max_connections and server.http2_max_concurrent_streams must be > 0",
            );
        }
        if server.http2_max_header_list_bytes < 1024 {
            return bad("server.http2_max_header_list_bytes must be at least 1024");
        }
        if server.http2_max_pending_resets == 0 {
            return bad("server.http2_max_pending_resets must be > 0");
        }
        if http::HeaderName::from_bytes(server.client_ip_header.as_bytes()).is_err() {
            return bad("server.client_ip_header must be a header name, such as X-Forwarded-For");
        }
        if server.tls_cert.as_os_str().is_empty() != server.tls_key.as_os_str().is_empty() {
            return bad("server.tls_cert and server.tls_key go together: set both or neither");
        }
        let otlp = &self.log.otlp_endpoint;
        let otlp_ok =
            otlp.is_empty() || (otlp.starts_with("http://") && url::Url::parse(otlp).is_ok());
        if !otlp_ok {
            return bad(
                "log.otlp_endpoint must be empty or an http:// URL (an OTLP/HTTP collector)",
            );
        }
        for (i, src) in self.sources.postgres_outbox.iter().enumerate() {
            let at = format!("sources.postgres_outbox[{i}]");
            if !(src.url.starts_with("postgres://") || src.url.starts_with("postgresql://")) {
                return bad(&format!("{at}.url must be a postgres:// URL"));
            }
            if let Err(e) = blockhook_store::outbox::OutboxTable::parse(&src.table) {
                return bad(&format!("{at}.table: {e}"));
            }
            if src.batch == 0 || src.batch > 10_000 {
                return bad(&format!("{at}.batch must be between 1 and 10000"));
            }
            if src.poll < Duration::from_millis(10) {
                return bad(&format!("{at}.poll must be at least 10ms"));
            }
        }
        for (i, src) in self.sources.nats.iter().enumerate() {
            let at = format!("sources.nats[{i}]");
            if !(src.url.starts_with("nats://") || src.url.starts_with("tls://")) {
                return bad(&format!("{at}.url must be a nats:// or tls:// URL"));
            }
            let name_ok = |s: &str| {
                !s.is_empty()
                    && s.len() <= 255
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            };
            if !name_ok(&src.stream) {
                return bad(&format!(
                    "{at}.stream must be a JetStream stream name (letters, digits, - and _)"
                ));
            }
            if !name_ok(&src.consumer) {
                return bad(&format!(
                    "{at}.consumer must be a consumer name (letters, digits, - and _)"
                ));
            }
            if src.batch == 0 || src.batch > 10_000 {
                return bad(&format!("{at}.batch must be between 1 and 10000"));
            }
            if src.max_deliver == 0 {
                return bad(&format!("{at}.max_deliver must be at least 1"));
            }
        }
        let lifetime = self.ui.session_lifetime;
        if lifetime < Duration::from_secs(1) || lifetime > Duration::from_secs(30 * 86_400) {
            return bad("ui.session_lifetime must be between 1s and 30d");
        }
        self.search.fields()?;
        Ok(())
    }

    /// The store URL, defaulting to the SQLite file in the data directory.
    pub fn store_url(&self) -> String {
        if self.store.url.is_empty() {
            format!(
                "sqlite://{}",
                self.store.data_dir.join("blockhook.db").display()
            )
        } else {
            self.store.url.clone()
        }
    }

    /// How many threads the async runtime gets: `server.workers`, or when it is 0,
    /// [`automatic_workers`] for this store.
    pub fn runtime_workers(&self) -> usize {
        match self.server.workers {
            0 => automatic_workers(self.store_url().starts_with("sqlite:")),
            n => n,
        }
    }

    /// The retry policy these settings describe.
    pub fn retry_policy(&self) -> blockhook_core::RetryPolicy {
        blockhook_core::RetryPolicy {
            schedule: self.delivery.retry_schedule.clone(),
            jitter: self.delivery.jitter,
            retry_after_max: self.delivery.retry_after_max,
        }
    }

    /// The manual resend limits.
    pub fn resend_limits(&self) -> blockhook_core::ResendLimits {
        blockhook_core::ResendLimits {
            window: self.resend.window,
            max_per_event: self.resend.max_per_event,
        }
    }
}

/// `["1m", "5m"]` lists of human-readable durations.
mod duration_list {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        let texts: Vec<String> = v
            .iter()
            .map(|d| humantime::format_duration(*d).to_string())
            .collect();
        texts.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let texts = Vec::<String>::deserialize(d)?;
        texts
            .iter()
            .map(|t| humantime::parse_duration(t).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_match_the_contract() {
        let s = Settings::defaults().unwrap();
        assert_eq!(s.delivery.retry_schedule.len(), 5);
        assert_eq!(s.delivery.retry_schedule[4], Duration::from_secs(86_400));
        assert_eq!(s.server.max_body_bytes, 256 * 1024);
        assert_eq!(s.delivery.connect_timeout, Duration::from_secs(5));
        assert!(!s.delivery.allow_http);
    }

    #[test]
    fn workers_are_set_or_sized_to_the_store() {
        let with = |v: serde_json::Value| Settings::load(None, v);
        let set = with(serde_json::json!({ "server": { "workers": 3 } })).unwrap();
        assert_eq!(set.runtime_workers(), 3);
        assert!(with(serde_json::json!({ "server": { "workers": 1025 } })).is_err());

        let sqlite = Settings::defaults().unwrap();
        assert_eq!(sqlite.server.workers, 0);
        assert_eq!(sqlite.runtime_workers(), automatic_workers(true));
        let postgres = with(serde_json::json!({
            "store": { "url": "postgres://postgres@127.0.0.1/test" }
        }))
        .unwrap();
        assert_eq!(postgres.runtime_workers(), automatic_workers(false));
        // The environment is the same for both calls; only the writer's core differs.
        if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
            let cores = std::thread::available_parallelism().unwrap().get();
            assert_eq!(automatic_workers(false), cores);
            assert_eq!(automatic_workers(true), (cores - 1).max(1));
        }
    }

    #[test]
    fn otlp_endpoint_is_empty_or_plain_http() {
        let with =
            |v: &str| Settings::load(None, serde_json::json!({ "log": { "otlp_endpoint": v } }));
        assert!(with("").is_ok());
        assert!(with("http://127.0.0.1:4318").is_ok());
        assert!(with("https://collector.example:4318").is_err());
        assert!(with("http://").is_err());
        assert!(with("127.0.0.1:4318").is_err());
    }

    #[test]
    fn search_fields_are_checked() {
        let with = |v: serde_json::Value| {
            Settings::load(None, serde_json::json!({ "search": { "fields": v } }))
        };
        assert_eq!(Settings::defaults().unwrap().search.fields, ["orderNo"]);
        assert_eq!(
            with(serde_json::json!(["orderNo", "txId"]))
                .unwrap()
                .search
                .fields,
            ["orderNo", "txId"]
        );
        for bad in [
            serde_json::json!(["order no"]),
            serde_json::json!(["a", "a"]),
            serde_json::json!(["a", "b", "c", "d", "e", "f", "g", "h", "i"]),
        ] {
            let err = with(bad.clone()).unwrap_err().to_string();
            assert!(err.contains("search.fields"), "{bad}: {err}");
        }
    }

    #[test]
    fn session_lifetime_is_bounded() {
        let with =
            |v: &str| Settings::load(None, serde_json::json!({ "ui": { "session_lifetime": v } }));
        assert_eq!(
            with("15m").unwrap().ui.session_lifetime,
            Duration::from_secs(900)
        );
        assert!(with("0s").is_err());
        assert!(with("31d").is_err());
        assert_eq!(
            Settings::defaults().unwrap().ui.session_lifetime,
            Duration::from_secs(12 * 3600)
        );
    }

    #[test]
    fn an_unknown_key_in_the_file_names_it_the_file_and_the_closest_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("typo.toml");
        std::fs::write(
            &path,
            "leese = \"3s\"\n[delivery]\nleese = \"3s\"\n[retension]\nmax_age = \"1d\"\n",
        )
        .unwrap();
        let err = Settings::load(Some(&path), serde_json::json!({}))
            .unwrap_err()
            .to_string();
        let shown = path.display().to_string();
        assert!(
            err.contains(&format!(
                "unknown setting `leese` in [delivery] of {shown}; did you mean `delivery.lease`?"
            )),
            "{err}"
        );
        assert!(
            err.contains("unknown section [retension]") && err.contains("did you mean [retention]"),
            "{err}"
        );
        assert!(
            err.contains("`leese` at the top of") && err.contains("`delivery.lease`"),
            "{err}"
        );
        // A correct file loads.
        std::fs::write(&path, "[delivery]\nlease = \"30s\"\n").unwrap();
        let ok = Settings::load(Some(&path), serde_json::json!({})).unwrap();
        assert_eq!(ok.delivery.lease, Duration::from_secs(30));
    }

    #[test]
    fn outbox_sources_take_defaults_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.toml");
        std::fs::write(
            &path,
            "[[sources.postgres_outbox]]\nurl = \"postgres://gw:hunter2@127.0.0.1/pay\"\n\
             table = \"payments.outbox\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&path), serde_json::json!({})).unwrap();
        let src = &s.sources.postgres_outbox[0];
        assert_eq!((src.batch, src.poll), (500, Duration::from_secs(1)));
        assert!(!format!("{src:?}").contains("hunter2"));
        assert!(!s.redacted_toml().unwrap().contains("hunter2"));
        // A mistyped key of an entry is named, like any other.
        std::fs::write(
            &path,
            "[[sources.postgres_outbox]]\nurl = \"postgres://127.0.0.1/pay\"\ntable = \"outbox\"\n\
             bacth = 10\n",
        )
        .unwrap();
        let err = Settings::load(Some(&path), serde_json::json!({}))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`bacth`") && err.contains("sources.postgres_outbox.batch"),
            "{err}"
        );
        std::fs::write(
            &path,
            "[[sources.postgres_outbox]]\nurl = \"postgres://127.0.0.1/pay\"\ntable = \"Out-box\"\n",
        )
        .unwrap();
        let err = Settings::load(Some(&path), serde_json::json!({}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sources.postgres_outbox[0].table"), "{err}");
    }

    #[test]
    fn nats_sources_take_defaults_hide_tokens_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nats.toml");
        let write = |body: &str| std::fs::write(&path, body).unwrap();
        let load = || Settings::load(Some(&path), serde_json::json!({}));
        write(
            "[[sources.nats]]
stream = \"PAYMENTS\"
consumer = \"blockhook\"
\n\
             [[sources.nats]]
url = \"nats://s3cret-token@10.0.0.5:4222\"
\
             stream = \"PAYOUTS\"
consumer = \"blockhook\"
subject = \"payouts.>\"
",
        );
        let s = load().unwrap();
        let first = &s.sources.nats[0];
        assert_eq!(first.url, "nats://127.0.0.1:4222");
        assert_eq!((first.batch, first.max_deliver), (100, 5));
        assert_eq!(s.sources.nats[1].subject, "payouts.>");
        assert!(!format!("{:?}", s.sources.nats[1]).contains("s3cret"));
        assert!(!s.redacted_toml().unwrap().contains("s3cret"));
        write(
            "[[sources.nats]]
stream = \"P\"
consumer = \"c\"
bacth = 10
",
        );
        let err = load().unwrap_err().to_string();
        assert!(err.contains("sources.nats.batch"), "{err}");
        for (entry, field) in [
            (
                "stream = \"a.b\"
consumer = \"c\"",
                "sources.nats[0].stream",
            ),
            (
                "stream = \"P\"
consumer = \"\"",
                "sources.nats[0].consumer",
            ),
            (
                "stream = \"P\"
consumer = \"c\"
url = \"http://x\"",
                "sources.nats[0].url",
            ),
            (
                "stream = \"P\"
consumer = \"c\"
max_deliver = 0",
                "sources.nats[0].max_deliver",
            ),
        ] {
            write(&format!(
                "[[sources.nats]]
{entry}
"
            ));
            let err = load().unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn example_file_mirrors_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../blockhook.example.toml");
        let example = Settings::load(Some(&path), serde_json::json!({})).unwrap();
        let defaults = Settings::defaults().unwrap();
        assert_eq!(
            serde_json::to_value(&example).unwrap(),
            serde_json::to_value(&defaults).unwrap()
        );
    }
}
