//! The embedded backend: one SQLite file in WAL mode, for single-process deployments.
//!
//! Decision: every write goes through ONE connection (a 1-connection pool), and reads use a
//! separate pool of `max_connections` readers. SQLite allows a single writer at a time anyway;
//! serialising writes in-process means they queue in a fair async pool instead of spinning on
//! `SQLITE_BUSY`, and because nothing else writes, read-then-write sequences inside one write
//! transaction (idempotency lookups, lease token checks) cannot race. WAL lets the readers run
//! alongside the writer. Transactions are short (no HTTP inside, STYLE rule 6), so one writer is
//! not the bottleneck: each store call is a handful of statements, batched over many rows.
//!
//! The SQL of each method sits in a `const` just above the method (STYLE rule 5), in one file
//! per aggregate. [`SqliteStore::statements`](blockhook_core::Store::statements) counts every
//! statement executed (transaction control included), to measure round trips per event.

// Column lists shared by the queries that read whole rows, as macros so they can be spliced
// into `const` SQL with `concat!` (the statements stay static strings, prepared once).

/// The columns `rows::EndpointRow` reads.
macro_rules! endpoint_columns {
    () => {
        "id, merchant_id, url, description, event_types, signing_mode, success_policy, headers, \
         rate_limit, label, enabled, disabled_reason, secret, created_at, updated_at"
    };
}

/// The columns `rows::EventRow` reads.
macro_rules! event_columns {
    () => {
        "id, merchant_id, event_type, payload, idempotency_key, created_at, resend_count"
    };
}

/// The columns `rows::DeliveryRow` reads.
macro_rules! delivery_columns {
    () => {
        "id, event_id, endpoint_id, merchant_id, state, origin, attempts, next_attempt_at, \
         lease_until, last_status, created_at, updated_at"
    };
}

/// The columns `rows::AttemptRow` reads.
macro_rules! attempt_columns {
    () => {
        "id, delivery_id, number, started_at, url, request_headers, status, response_headers, \
         response_body, response_truncated, latency_ms, error, error_detail"
    };
}

mod actions;
mod cache;
mod dispatch;
mod endpoints;
mod events;
mod merchants;
mod ops;
mod rows;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use blockhook_core::{
    ApiKey, ApiKeyId, AttemptRecord, Claim, ClaimRequest, Completion, Cursor, Delivery, DeliveryId,
    Endpoint, EndpointBacklog, EndpointHealth, EndpointId, Error, Event, EventId, EventQuery,
    Ingested, LeaseToken, Merchant, MerchantId, MerchantStatus, NewApiKey, NewEvent, NewMerchant,
    Page, QueueStats, ResendLimits, ResendScope, Store, Timestamp,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::{SqliteSync, StoreOptions, classify};

/// How long a connection waits on a lock held by another process (e.g. a CLI opening the same
/// file) before answering `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Payload bytes the event cache may hold (see `cache`): at ~500 bytes an event, a backlog of
/// about 100,000 events claimed without reading payloads back.
const EVENT_CACHE_BYTES: usize = 64 << 20;

/// The embedded store.
pub struct SqliteStore {
    /// The only connection that writes.
    writer: SqlitePool,
    /// Connections that only read (the writer itself for an in-memory database).
    readers: SqlitePool,
    /// Statements executed since opening.
    statements: AtomicU64,
    /// Recently ingested events, so claims rarely read payloads back (see `cache`).
    events: cache::EventCache,
    /// Keeps a temporary directory alive as long as the store (tests); dropped last.
    _keep: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

/// Where the database lives.
#[derive(Debug, PartialEq, Eq)]
enum Location {
    Memory,
    File(PathBuf),
}

/// Accepts `sqlite://path`, `sqlite:path`, a plain path, or `:memory:` in any of those forms.
/// Query strings (`?mode=rwc`) are ignored: the options come from [`StoreOptions`].
fn location(raw: &str) -> Result<Location, Error> {
    let rest = raw
        .strip_prefix("sqlite://")
        .or_else(|| raw.strip_prefix("sqlite:"))
        .unwrap_or(raw);
    let rest = rest.split_once('?').map_or(rest, |(path, _)| path);
    if rest.is_empty() {
        return Err(Error::invalid("database_url", "no SQLite file path given"));
    }
    if rest == ":memory:" {
        return Ok(Location::Memory);
    }
    Ok(Location::File(PathBuf::from(rest)))
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("{what}: {e}"))
}

impl SqliteStore {
    /// Opens (creating the file and its directory, and migrating) the database at `url_or_path`.
    pub async fn open(url_or_path: &str, opts: &StoreOptions) -> Result<Self, Error> {
        let loc = location(url_or_path)?;
        let sync = match opts.sqlite_sync {
            SqliteSync::Full => SqliteSynchronous::Full,
            SqliteSync::Normal => SqliteSynchronous::Normal,
        };
        let base = SqliteConnectOptions::new()
            // Only takes effect when the file is created. Larger pages than the default 4 KiB
            // mean fewer WAL frames (one write each) per commit for this append-heavy load.
            .page_size(8192)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .synchronous(sync)
            // Temporary b-trees (sorts, DISTINCT) in memory, not in temp files.
            .pragma("temp_store", "memory")
            .statement_cache_capacity(256);

        let (writer, readers) = match &loc {
            Location::Memory => {
                // One connection is the whole database: it must never be closed or replaced.
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .acquire_timeout(opts.acquire_timeout)
                    .connect_with(base.in_memory(true).pragma("cache_size", "-32768"))
                    .await
                    .map_err(classify)?;
                (pool.clone(), pool)
            }
            Location::File(path) => {
                create_parent(path)?;
                let file = base.filename(path).journal_mode(SqliteJournalMode::Wal);
                let writer = SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .acquire_timeout(opts.acquire_timeout)
                    .connect_with(
                        file.clone()
                            .create_if_missing(true)
                            .pragma("cache_size", std::env::var("BH_CACHE").unwrap_or("-32768".into())),
                    )
                    .await
                    .map_err(classify)?;
                let readers = SqlitePoolOptions::new()
                    .max_connections(opts.max_connections.max(1))
                    .acquire_timeout(opts.acquire_timeout)
                    .connect_with(file.pragma("cache_size", "-8192"))
                    .await
                    .map_err(classify)?;
                (writer, readers)
            }
        };

        sqlx::migrate!("migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(inner) => classify(inner),
                other => Error::Internal(format!("sqlite migrations: {other}")),
            })?;

        Ok(Self {
            writer,
            readers,
            statements: AtomicU64::new(0),
            events: cache::EventCache::new(EVENT_CACHE_BYTES),
            _keep: None,
        })
    }

    /// Counts `n` statements executed.
    fn tick(&self, n: u64) {
        self.statements.fetch_add(n, Ordering::Relaxed);
    }

    /// Starts a write transaction on the writer connection. `BEGIN IMMEDIATE` takes the file's
    /// write lock up front, so a transaction that reads first cannot fail later when another
    /// process (the CLI, say) wrote in between.
    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, Error> {
        self.tick(1);
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(classify)
    }

    /// Commits a write transaction.
    async fn commit(&self, tx: Transaction<'static, Sqlite>) -> Result<(), Error> {
        self.tick(1);
        tx.commit().await.map_err(classify)
    }
}

fn create_parent(path: &Path) -> Result<(), Error> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|e| unavailable("create database directory", e))
        }
        _ => Ok(()),
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), Error> {
        self.tick(1);
        sqlx::query("SELECT 1")
            .execute(&self.readers)
            .await
            .map_err(classify)?;
        Ok(())
    }

    fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    async fn wait_for_work(&self, max: Duration) {
        // One process uses the file, and its dispatcher is woken directly on ingest.
        tokio::time::sleep(max).await;
    }

    async fn create_merchant(&self, m: &NewMerchant) -> Result<Merchant, Error> {
        merchants::create(self, m).await
    }
    async fn get_merchant(&self, id: &MerchantId) -> Result<Merchant, Error> {
        merchants::get(self, id).await
    }
    async fn list_merchants(
        &self,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Merchant>, Error> {
        merchants::list(self, after, limit).await
    }
    async fn set_merchant_status(
        &self,
        id: &MerchantId,
        status: MerchantStatus,
    ) -> Result<Merchant, Error> {
        merchants::set_status(self, id, status).await
    }
    async fn delete_merchant(&self, id: &MerchantId) -> Result<(), Error> {
        merchants::delete(self, id).await
    }
    async fn create_api_key(&self, key: &NewApiKey) -> Result<ApiKey, Error> {
        merchants::create_key(self, key).await
    }
    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, Error> {
        merchants::key_by_hash(self, hash).await
    }
    async fn list_api_keys(&self, merchant: &MerchantId) -> Result<Vec<ApiKey>, Error> {
        merchants::list_keys(self, merchant).await
    }
    async fn revoke_api_key(
        &self,
        merchant: &MerchantId,
        id: &ApiKeyId,
        at: Timestamp,
    ) -> Result<(), Error> {
        merchants::revoke_key(self, merchant, id, at).await
    }

    async fn create_endpoint(&self, ep: &Endpoint) -> Result<(), Error> {
        endpoints::create(self, ep).await
    }
    async fn get_endpoint(
        &self,
        merchant: &MerchantId,
        id: &EndpointId,
    ) -> Result<Endpoint, Error> {
        endpoints::get(self, merchant, id).await
    }
    async fn list_endpoints(
        &self,
        merchant: &MerchantId,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Endpoint>, Error> {
        endpoints::list(self, merchant, after, limit).await
    }
    async fn update_endpoint(&self, ep: &Endpoint) -> Result<(), Error> {
        endpoints::update(self, ep).await
    }
    async fn delete_endpoint(&self, merchant: &MerchantId, id: &EndpointId) -> Result<(), Error> {
        endpoints::delete(self, merchant, id).await
    }

    async fn ingest(&self, events: &[NewEvent]) -> Result<Vec<Ingested>, Error> {
        events::ingest(self, events).await
    }
    async fn get_event(&self, merchant: &MerchantId, id: &EventId) -> Result<Event, Error> {
        events::get(self, merchant, id).await
    }
    async fn list_events(
        &self,
        merchant: &MerchantId,
        q: &EventQuery,
    ) -> Result<Page<Event>, Error> {
        events::list(self, merchant, q).await
    }
    async fn list_deliveries(
        &self,
        merchant: &MerchantId,
        event: &EventId,
        now: Timestamp,
    ) -> Result<Vec<Delivery>, Error> {
        events::list_deliveries(self, merchant, event, now).await
    }
    async fn get_delivery(
        &self,
        merchant: &MerchantId,
        id: &DeliveryId,
        now: Timestamp,
    ) -> Result<Delivery, Error> {
        events::get_delivery(self, merchant, id, now).await
    }
    async fn list_attempts(
        &self,
        merchant: &MerchantId,
        delivery: &DeliveryId,
    ) -> Result<Vec<AttemptRecord>, Error> {
        events::list_attempts(self, merchant, delivery).await
    }
    async fn backlog(&self, merchant: &MerchantId) -> Result<Vec<EndpointBacklog>, Error> {
        ops::backlog(self, merchant).await
    }
    async fn endpoint_health(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
        since: Timestamp,
    ) -> Result<EndpointHealth, Error> {
        ops::endpoint_health(self, merchant, endpoint, since).await
    }

    async fn claim_due(&self, req: &ClaimRequest) -> Result<Vec<Claim>, Error> {
        dispatch::claim_due(self, req).await
    }
    async fn renew_leases(
        &self,
        leases: &[(DeliveryId, LeaseToken)],
        until: Timestamp,
    ) -> Result<(), Error> {
        dispatch::renew_leases(self, leases, until).await
    }
    async fn finish(&self, done: &[Completion], now: Timestamp) -> Result<u32, Error> {
        dispatch::finish(self, done, now).await
    }
    async fn next_due_at(&self) -> Result<Option<Timestamp>, Error> {
        dispatch::next_due_at(self).await
    }

    async fn resend(
        &self,
        merchant: &MerchantId,
        event: &EventId,
        scope: &ResendScope,
        limits: &ResendLimits,
        now: Timestamp,
    ) -> Result<Vec<DeliveryId>, Error> {
        actions::resend(self, merchant, event, scope, limits, now).await
    }
    async fn recover(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
        since: Timestamp,
        now: Timestamp,
    ) -> Result<u64, Error> {
        actions::recover(self, merchant, endpoint, since, now).await
    }

    async fn queue_stats(&self, now: Timestamp) -> Result<QueueStats, Error> {
        ops::queue_stats(self, now).await
    }
    async fn purge_before(&self, before: Timestamp, batch: u32) -> Result<u64, Error> {
        ops::purge_before(self, before, batch).await
    }
}

/// Fresh stores for tests.
#[cfg(feature = "contract")]
pub mod testing {
    use std::sync::Arc;

    use blockhook_core::StoreRef;

    use super::SqliteStore;
    use crate::{SqliteSync, StoreOptions};

    /// A new, empty, migrated store in its own temporary directory (removed when the store is
    /// dropped). `synchronous=NORMAL`: tests need no power-loss durability, and it spares the
    /// shared test machine an fsync per commit.
    #[allow(clippy::expect_used)] // test helper: no store means no test
    pub async fn fresh() -> StoreRef {
        let dir = tempfile::tempdir().expect("temporary directory for a test store");
        let path = dir.path().join("blockhook.db");
        let opts = StoreOptions {
            max_connections: 4,
            sqlite_sync: SqliteSync::Normal,
            ..Default::default()
        };
        let mut store = SqliteStore::open(&path.to_string_lossy(), &opts)
            .await
            .expect("open a fresh SQLite store");
        store._keep = Some(Box::new(dir));
        Arc::new(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let file = |p: &str| Some(Location::File(PathBuf::from(p)));
        assert_eq!(location("sqlite://data/bh.db").ok(), file("data/bh.db"));
        assert_eq!(
            location("sqlite:///var/lib/bh.db?mode=rwc").ok(),
            file("/var/lib/bh.db")
        );
        assert_eq!(location("sqlite:bh.db").ok(), file("bh.db"));
        assert_eq!(location("/tmp/x/bh.db").ok(), file("/tmp/x/bh.db"));
        assert_eq!(location("sqlite::memory:").ok(), Some(Location::Memory));
        assert_eq!(location(":memory:").ok(), Some(Location::Memory));
        assert!(location("sqlite://").is_err());
    }
}

#[cfg(test)]
mod perf {
    //! A rough throughput probe of the hot path (ingest, claim, finish), run by hand:
    //! `cargo test -p blockhook-store --release --lib perf -- --ignored --nocapture`.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Instant;

    use blockhook_core::{
        AttemptId, AttemptRecord, ClaimRequest, Completion, EndpointUrl, EventFilter, EventType,
        ExtraHeaders, NewEvent, Next, Payload, SealedSecret, SigningMode, SuccessPolicy,
    };
    use bytes::Bytes;

    use super::*;

    /// Process CPU time (user + system) so far, from /proc (10 ms resolution): wall time on a
    /// shared 2-core machine says little.
    fn cpu() -> Duration {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        // After the command name: state, ppid, pgrp, session, tty_nr, tpgid, flags, minflt,
        // cminflt, majflt, cmajflt, utime, stime (clock ticks, 100 per second).
        let fields: Vec<&str> = after.split_whitespace().collect();
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        let ticks = field(11) + field(12);
        Duration::from_millis(ticks * 10)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "throughput probe, run by hand"]
    async fn hot_path_throughput() {
        let dir = tempfile::tempdir().unwrap();
        let sync = match std::env::var("BH_SYNC").as_deref() {
            Ok("normal") => SqliteSync::Normal,
            _ => SqliteSync::Full,
        };
        let opts = StoreOptions {
            sqlite_sync: sync,
            ..Default::default()
        };
        let store = SqliteStore::open(&dir.path().join("p.db").to_string_lossy(), &opts)
            .await
            .unwrap();
        let t0 = Timestamp::from_ms(1_700_000_000_000);
        let m = NewMerchant::parse(MerchantId::generate(), "perf", t0).unwrap();
        store.create_merchant(&m).await.unwrap();
        let ep = Endpoint {
            id: EndpointId::generate(),
            merchant_id: m.id.clone(),
            url: EndpointUrl::parse("https://r.example/h", false).unwrap(),
            description: None,
            filter: EventFilter::all(),
            signing_mode: SigningMode::Sorted,
            success_policy: SuccessPolicy::Exactly200,
            headers: ExtraHeaders::default(),
            rate_limit: None,
            label: None,
            enabled: true,
            disabled_reason: None,
            secret: SealedSecret(vec![1; 60]),
            created_at: t0,
            updated_at: t0,
        };
        store.create_endpoint(&ep).await.unwrap();
        let body = Bytes::from_static(br#"{"custNo":"CustNo_00240101","orderNo":"OrderNo_202504010023","id":8210003616,"symbol":"USDT","amount":"2000.00","status":"SUCCESS","txId":"0x7614a9840d9422feaef4671e0ee98dd7092ebcba6e41076285f99d0b2b0de5fe","network":"Ethereum","chainId":"1","fromAddress":"0xa9e358e33a57e67c9b84618a52f0194c345c8e35","cashierId":86100021}"#);
        let total: usize = std::env::var("BH_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000);
        let batch: usize = std::env::var("BH_BATCH")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100);

        let start = Instant::now();
        let cpu0 = cpu();
        for i in 0..total / batch {
            let evs: Vec<NewEvent> = (0..batch)
                .map(|_| NewEvent {
                    id: EventId::generate(),
                    merchant_id: m.id.clone(),
                    event_type: EventType::parse("Payment").unwrap(),
                    payload: Payload::from_trusted(body.clone()),
                    idempotency_key: None,
                    created_at: t0 + Duration::from_millis(i as u64),
                })
                .collect();
            store.ingest(&evs).await.unwrap();
        }
        let ingest = start.elapsed();
        let cpu_ingest = cpu() - cpu0;
        let s_ingest = store.statements();
        if std::env::var("BH_ONLY").as_deref() == Ok("ingest") {
            println!(
                "{total} events, batch {batch}, {sync:?}: ingest {:.0}/s",
                total as f64 / ingest.as_secs_f64()
            );
            return;
        }

        let start = Instant::now();
        let cpu1 = cpu();
        let now = t0 + Duration::from_secs(3600);
        let mut done = 0;
        let (mut in_claim, mut in_finish) = (Duration::ZERO, Duration::ZERO);
        loop {
            let lap = Instant::now();
            let req = ClaimRequest {
                now,
                max: 256,
                lease_until: now + Duration::from_secs(30),
                per_endpoint_max: 256,
                exclude: vec![],
            };
            let claims = store.claim_due(&req).await.unwrap();
            in_claim += lap.elapsed();
            if claims.is_empty() {
                break;
            }
            let completions: Vec<Completion> = claims
                .iter()
                .map(|c| Completion {
                    delivery_id: c.delivery_id.clone(),
                    lease: c.lease,
                    attempt: AttemptRecord {
                        id: AttemptId::generate(),
                        delivery_id: c.delivery_id.clone(),
                        number: c.attempt,
                        started_at: now,
                        url: c.endpoint.url.as_str().to_owned(),
                        request_headers: vec![("BlockATM-Event".into(), "Payment".into())],
                        status: Some(200),
                        response_headers: vec![],
                        response_body: Bytes::from_static(b"ok"),
                        response_truncated: false,
                        latency_ms: 3,
                        error: None,
                        error_detail: None,
                    },
                    next: Next::Succeeded,
                    disable_reason: None,
                })
                .collect();
            let lap = Instant::now();
            done += store.finish(&completions, now).await.unwrap();
            in_finish += lap.elapsed();
        }
        let dispatch = start.elapsed();
        let cpu_dispatch = cpu() - cpu1;
        assert_eq!(done as usize, total);
        let per_s = |d: Duration| total as f64 / d.as_secs_f64();
        println!(
            "{total} events, batch {batch}, {sync:?}: ingest {:.0}/s, claim+finish {:.0}/s, \
             (claim {:.0}/s, finish {:.0}/s), statements: ingest {s_ingest}, dispatch {}; \
             CPU µs/event: ingest {:.1}, claim+finish {:.1}",
            per_s(ingest),
            per_s(dispatch),
            per_s(in_claim),
            per_s(in_finish),
            store.statements() - s_ingest,
            cpu_ingest.as_secs_f64() * 1e6 / total as f64,
            cpu_dispatch.as_secs_f64() * 1e6 / total as f64,
        );
    }
}
