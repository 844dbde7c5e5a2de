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
mod group;
mod merchants;
mod ops;
mod rows;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use blockhook_core::{
    ApiKey, ApiKeyId, AttemptRecord, Claim, ClaimRequest, Completion, Cursor, Delivery, DeliveryId,
    Endpoint, EndpointBacklog, EndpointHealth, EndpointId, Error, Event, EventId, EventQuery,
    Ingested, LeaseToken, Merchant, MerchantId, MerchantStatus, NewApiKey, NewEvent, NewMerchant,
    Page, QueueStats, ResendLimits, ResendScope, Store, Timestamp,
};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, SqliteConnection};

use crate::{SqliteSync, StoreOptions, classify};

/// How long a connection waits on a lock held by another process (e.g. a CLI opening the same
/// file) before answering `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Payload bytes the event cache may hold (see `cache`): at ~500 bytes an event, a backlog of
/// about 100,000 events claimed without reading payloads back.
const EVENT_CACHE_BYTES: usize = 64 << 20;

/// How a write's commit must reach the disk (see [`Db::write`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// As configured (`StoreOptions::sqlite_sync`).
    Durable,
    /// Lease bookkeeping: may be lost to a power cut.
    Relaxed,
}

// The writer connection's current `synchronous` level, as last set.
const SYNC_UNKNOWN: u8 = 0;
const SYNC_NORMAL: u8 = 1;
const SYNC_FULL: u8 = 2;

/// The embedded store.
pub struct SqliteStore {
    /// Everything the store's methods and its background writers share.
    db: Arc<Db>,
    /// Ingest and finish requests, merged into shared transactions (see `group`).
    groups: group::Queues,
    /// Keeps a temporary directory alive as long as the store (tests); dropped last.
    _keep: Option<Box<dyn std::any::Any + Send + Sync>>,
}

/// The connections and state behind a [`SqliteStore`].
struct Db {
    /// The only connection that writes.
    writer: SqlitePool,
    /// Connections that only read (the writer itself for an in-memory database).
    readers: SqlitePool,
    /// The configured durability.
    sync: SqliteSync,
    /// The writer connection's `synchronous` level (`SYNC_*`).
    writer_sync: AtomicU8,
    /// Statements executed since opening.
    statements: AtomicU64,
    /// Recently ingested events, so claims rarely read payloads back (see `cache`).
    events: cache::EventCache,
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
                            .pragma("cache_size", "-32768"),
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

        let db = Arc::new(Db {
            writer,
            readers,
            sync: opts.sqlite_sync,
            writer_sync: AtomicU8::new(match opts.sqlite_sync {
                SqliteSync::Full => SYNC_FULL,
                SqliteSync::Normal => SYNC_NORMAL,
            }),
            statements: AtomicU64::new(0),
            events: cache::EventCache::new(EVENT_CACHE_BYTES),
        });
        let groups = group::Queues::start(&db);
        Ok(Self {
            db,
            groups,
            _keep: None,
        })
    }
}

impl Db {
    /// Counts `n` statements executed.
    fn tick(&self, n: u64) {
        self.statements.fetch_add(n, Ordering::Relaxed);
    }

    /// The writer connection, set to flush commits as `durability` asks.
    ///
    /// Decision: with `synchronous=FULL` configured, a commit that only records a lease
    /// (`claim_due`, `renew_leases`) runs with NORMAL instead: losing it to a power cut merely
    /// lets the lease lapse early and the delivery be claimed again (delivery is at-least-once
    /// anyway), and it saves an fsync per claim, which is most of a claim's cost on real disks.
    /// The next durable commit fsyncs the WAL, earlier frames included, so order is kept. SQLite
    /// refuses to change the level inside a transaction, hence here, before BEGIN.
    async fn write(&self, durability: Durability) -> Result<PoolConnection<Sqlite>, Error> {
        let mut conn = self.writer.acquire().await.map_err(classify)?;
        let want = match (self.sync, durability) {
            (SqliteSync::Full, Durability::Durable) => SYNC_FULL,
            _ => SYNC_NORMAL,
        };
        if self.writer_sync.load(Ordering::Acquire) != want {
            // Unknown until the pragma is known to have run: if this future is dropped midway,
            // the next writer sets the level again instead of trusting a stale value.
            self.writer_sync.store(SYNC_UNKNOWN, Ordering::Release);
            let pragma = if want == SYNC_FULL {
                "PRAGMA synchronous = FULL"
            } else {
                "PRAGMA synchronous = NORMAL"
            };
            self.tick(1);
            sqlx::query(pragma)
                .execute(&mut *conn)
                .await
                .map_err(classify)?;
            self.writer_sync.store(want, Ordering::Release);
        }
        Ok(conn)
    }

    /// Starts a durable write transaction.
    async fn begin(&self) -> Result<WriteTx, Error> {
        self.begin_as(Durability::Durable).await
    }

    /// Starts a write transaction on the writer connection. `BEGIN IMMEDIATE` takes the file's
    /// write lock up front, so a transaction that reads first cannot fail later when another
    /// process (the CLI, say) wrote in between.
    async fn begin_as(&self, durability: Durability) -> Result<WriteTx, Error> {
        let mut conn = self.write(durability).await?;
        self.tick(1);
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .map_err(classify)?;
        Ok(WriteTx { conn, open: true })
    }
}

/// A write transaction on the writer connection, ended by [`WriteTx::end`].
///
/// Decision: not `sqlx::Transaction`. After SQLITE_FULL or SQLITE_IOERR, SQLite may already have
/// rolled the transaction back by itself; sqlx's own ROLLBACK then fails, and sqlx keeps counting
/// the connection as inside a transaction, refusing every later BEGIN: the only writer would be
/// dead until a restart. Here a failed ROLLBACK, or a transaction dropped unfinished (a cancelled
/// future), instead discards the connection (closing it rolls back whatever is open), and the
/// pool opens a fresh one.
struct WriteTx {
    conn: PoolConnection<Sqlite>,
    open: bool,
}

impl WriteTx {
    /// The connection, to run the transaction's statements on.
    fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }

    /// Commits when `result` is `Ok`, rolls back when it is an error (or the commit fails), and
    /// hands `result` back.
    async fn end<T>(mut self, s: &Db, result: Result<T, Error>) -> Result<T, Error> {
        match result {
            Ok(value) => {
                s.tick(1);
                match sqlx::query("COMMIT").execute(&mut *self.conn).await {
                    Ok(_) => {
                        self.open = false;
                        Ok(value)
                    }
                    Err(e) => {
                        self.rollback(s).await;
                        Err(classify(e))
                    }
                }
            }
            Err(e) => {
                self.rollback(s).await;
                Err(e)
            }
        }
    }

    async fn rollback(&mut self, s: &Db) {
        s.tick(1);
        if let Err(e) = sqlx::query("ROLLBACK").execute(&mut *self.conn).await {
            tracing::warn!(error = %e, "rollback failed; replacing the SQLite writer connection");
            self.conn.close_on_drop();
        }
        self.open = false;
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if self.open {
            // Dropped mid-transaction (cancelled): never hand an open transaction to the next
            // writer. Closing the connection rolls it back.
            self.conn.close_on_drop();
        }
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
        self.db.tick(1);
        sqlx::query("SELECT 1")
            .execute(&self.db.readers)
            .await
            .map_err(classify)?;
        Ok(())
    }

    fn statements(&self) -> u64 {
        self.db.statements.load(Ordering::Relaxed)
    }

    async fn wait_for_work(&self, max: Duration) {
        // One process uses the file, and its dispatcher is woken directly on ingest.
        tokio::time::sleep(max).await;
    }

    async fn create_merchant(&self, m: &NewMerchant) -> Result<Merchant, Error> {
        merchants::create(&self.db, m).await
    }
    async fn get_merchant(&self, id: &MerchantId) -> Result<Merchant, Error> {
        merchants::get(&self.db, id).await
    }
    async fn list_merchants(
        &self,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Merchant>, Error> {
        merchants::list(&self.db, after, limit).await
    }
    async fn set_merchant_status(
        &self,
        id: &MerchantId,
        status: MerchantStatus,
    ) -> Result<Merchant, Error> {
        merchants::set_status(&self.db, id, status).await
    }
    async fn delete_merchant(&self, id: &MerchantId) -> Result<(), Error> {
        merchants::delete(&self.db, id).await
    }
    async fn create_api_key(&self, key: &NewApiKey) -> Result<ApiKey, Error> {
        merchants::create_key(&self.db, key).await
    }
    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, Error> {
        merchants::key_by_hash(&self.db, hash).await
    }
    async fn list_api_keys(&self, merchant: &MerchantId) -> Result<Vec<ApiKey>, Error> {
        merchants::list_keys(&self.db, merchant).await
    }
    async fn revoke_api_key(
        &self,
        merchant: &MerchantId,
        id: &ApiKeyId,
        at: Timestamp,
    ) -> Result<(), Error> {
        merchants::revoke_key(&self.db, merchant, id, at).await
    }

    async fn create_endpoint(&self, ep: &Endpoint) -> Result<(), Error> {
        endpoints::create(&self.db, ep).await
    }
    async fn get_endpoint(
        &self,
        merchant: &MerchantId,
        id: &EndpointId,
    ) -> Result<Endpoint, Error> {
        endpoints::get(&self.db, merchant, id).await
    }
    async fn list_endpoints(
        &self,
        merchant: &MerchantId,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Endpoint>, Error> {
        endpoints::list(&self.db, merchant, after, limit).await
    }
    async fn update_endpoint(&self, ep: &Endpoint) -> Result<(), Error> {
        endpoints::update(&self.db, ep).await
    }
    async fn delete_endpoint(&self, merchant: &MerchantId, id: &EndpointId) -> Result<(), Error> {
        endpoints::delete(&self.db, merchant, id).await
    }

    async fn ingest(&self, events: &[NewEvent]) -> Result<Vec<Ingested>, Error> {
        self.groups.ingest(events).await
    }
    async fn get_event(&self, merchant: &MerchantId, id: &EventId) -> Result<Event, Error> {
        events::get(&self.db, merchant, id).await
    }
    async fn list_events(
        &self,
        merchant: &MerchantId,
        q: &EventQuery,
    ) -> Result<Page<Event>, Error> {
        events::list(&self.db, merchant, q).await
    }
    async fn list_deliveries(
        &self,
        merchant: &MerchantId,
        event: &EventId,
        now: Timestamp,
    ) -> Result<Vec<Delivery>, Error> {
        events::list_deliveries(&self.db, merchant, event, now).await
    }
    async fn get_delivery(
        &self,
        merchant: &MerchantId,
        id: &DeliveryId,
        now: Timestamp,
    ) -> Result<Delivery, Error> {
        events::get_delivery(&self.db, merchant, id, now).await
    }
    async fn list_attempts(
        &self,
        merchant: &MerchantId,
        delivery: &DeliveryId,
    ) -> Result<Vec<AttemptRecord>, Error> {
        events::list_attempts(&self.db, merchant, delivery).await
    }
    async fn backlog(&self, merchant: &MerchantId) -> Result<Vec<EndpointBacklog>, Error> {
        ops::backlog(&self.db, merchant).await
    }
    async fn endpoint_health(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
        since: Timestamp,
    ) -> Result<EndpointHealth, Error> {
        ops::endpoint_health(&self.db, merchant, endpoint, since).await
    }

    async fn claim_due(&self, req: &ClaimRequest) -> Result<Vec<Claim>, Error> {
        dispatch::claim_due(&self.db, req).await
    }
    async fn renew_leases(
        &self,
        leases: &[(DeliveryId, LeaseToken)],
        until: Timestamp,
    ) -> Result<(), Error> {
        dispatch::renew_leases(&self.db, leases, until).await
    }
    async fn finish(&self, done: &[Completion], now: Timestamp) -> Result<u32, Error> {
        self.groups.finish(done, now).await
    }
    async fn next_due_at(&self) -> Result<Option<Timestamp>, Error> {
        dispatch::next_due_at(&self.db).await
    }

    async fn resend(
        &self,
        merchant: &MerchantId,
        event: &EventId,
        scope: &ResendScope,
        limits: &ResendLimits,
        now: Timestamp,
    ) -> Result<Vec<DeliveryId>, Error> {
        actions::resend(&self.db, merchant, event, scope, limits, now).await
    }
    async fn recover(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
        since: Timestamp,
        now: Timestamp,
    ) -> Result<u64, Error> {
        actions::recover(&self.db, merchant, endpoint, since, now).await
    }

    async fn queue_stats(&self, now: Timestamp) -> Result<QueueStats, Error> {
        ops::queue_stats(&self.db, now).await
    }
    async fn purge_before(&self, before: Timestamp, batch: u32) -> Result<u64, Error> {
        ops::purge_before(&self.db, before, batch).await
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
mod failure_tests {
    //! What the store does when the disk misbehaves, and paths the contract suite cannot reach
    //! (the event cache's miss path, the writer's `synchronous` switching).
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use blockhook_core::{
        ClaimRequest, EndpointUrl, EventFilter, EventType, ExtraHeaders, NewEvent, Payload,
        SealedSecret, SigningMode, SuccessPolicy,
    };
    use bytes::Bytes;

    use super::*;

    const T0: Timestamp = Timestamp::from_ms(1_700_000_000_000);

    async fn open_at(path: &Path, sync: SqliteSync) -> SqliteStore {
        let opts = StoreOptions {
            sqlite_sync: sync,
            max_connections: 2,
            ..Default::default()
        };
        SqliteStore::open(&path.to_string_lossy(), &opts)
            .await
            .unwrap()
    }

    /// A merchant with one endpoint taking every event.
    async fn tenant(store: &SqliteStore) -> MerchantId {
        let m = NewMerchant::parse(MerchantId::generate(), "m", T0).unwrap();
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
            secret: SealedSecret(vec![1; 8]),
            created_at: T0,
            updated_at: T0,
        };
        store.create_endpoint(&ep).await.unwrap();
        m.id
    }

    fn events(m: &MerchantId, n: usize, size: usize) -> Vec<NewEvent> {
        (0..n)
            .map(|i| NewEvent {
                id: EventId::generate(),
                merchant_id: m.clone(),
                event_type: EventType::parse("Payment").unwrap(),
                payload: Payload::from_trusted(Bytes::from(format!(
                    r#"{{"i":{i},"pad":"{}"}}"#,
                    "x".repeat(size)
                ))),
                idempotency_key: None,
                created_at: T0,
            })
            .collect()
    }

    fn claim_req(max: u32) -> ClaimRequest {
        ClaimRequest {
            now: T0 + Duration::from_secs(1),
            max,
            lease_until: T0 + Duration::from_secs(31),
            per_endpoint_max: max,
            exclude: Vec::new(),
        }
    }

    async fn writer_pragma(store: &SqliteStore, sql: &str) -> i64 {
        let mut conn = store.db.writer.acquire().await.unwrap();
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_optional(&mut *conn)
            .await
            .unwrap()
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn full_disk_is_unavailable_and_the_store_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_at(&dir.path().join("bh.db"), SqliteSync::Full).await;
        let m = tenant(&store).await;
        // Cap the file at its current size: the next batch cannot fit (SQLITE_FULL).
        let pages = writer_pragma(&store, "PRAGMA page_count").await;
        writer_pragma(&store, &format!("PRAGMA max_page_count = {pages}")).await;
        let batch = events(&m, 200, 2000);
        match store.ingest(&batch).await {
            Err(Error::Unavailable(msg)) => assert!(msg.contains("full"), "{msg}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        // Space comes back: the same writer connection works, nothing half-written remains.
        writer_pragma(&store, "PRAGMA max_page_count = 1073741823").await;
        assert!(store.get_event(&m, &batch[0].id).await.is_err());
        let done = store.ingest(&batch).await.unwrap();
        assert_eq!(done.len(), 200);
        assert_eq!(store.claim_due(&claim_req(500)).await.unwrap().len(), 200);
    }

    #[tokio::test]
    async fn read_only_database_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_at(&dir.path().join("bh.db"), SqliteSync::Normal).await;
        let m = tenant(&store).await;
        writer_pragma(&store, "PRAGMA query_only = ON").await;
        let r = store.ingest(&events(&m, 3, 10)).await;
        assert!(matches!(r, Err(Error::Unavailable(_))), "{r:?}");
        let r = store
            .set_merchant_status(&m, MerchantStatus::Suspended)
            .await;
        assert!(matches!(r, Err(Error::Unavailable(_))), "{r:?}");
        writer_pragma(&store, "PRAGMA query_only = OFF").await;
        assert_eq!(store.ingest(&events(&m, 3, 10)).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn claims_read_payloads_back_when_the_cache_misses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bh.db");
        let first = open_at(&path, SqliteSync::Normal).await;
        let m = tenant(&first).await;
        let batch = events(&m, 5, 100);
        first.ingest(&batch).await.unwrap();
        // A second store on the same file has an empty cache: payloads come from the database,
        // one shared buffer per event.
        let second = open_at(&path, SqliteSync::Normal).await;
        let claims = second.claim_due(&claim_req(10)).await.unwrap();
        assert_eq!(claims.len(), 5);
        for c in &claims {
            let ev = batch.iter().find(|e| e.id == c.event_id).unwrap();
            assert_eq!(c.payload.bytes(), ev.payload.bytes());
            assert_eq!(c.event_type.as_str(), "Payment");
            assert_eq!(c.event_created_at, T0);
        }
    }

    #[tokio::test]
    async fn fan_out_shares_one_payload_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_at(&dir.path().join("bh.db"), SqliteSync::Normal).await;
        let m = tenant(&store).await;
        let mut second = store
            .list_endpoints(&m, None, 10)
            .await
            .unwrap()
            .data
            .remove(0);
        second.id = EndpointId::generate();
        store.create_endpoint(&second).await.unwrap();
        store.ingest(&events(&m, 1, 10)).await.unwrap();
        let claims = store.claim_due(&claim_req(10)).await.unwrap();
        assert_eq!(claims.len(), 2);
        assert_eq!(
            claims[0].payload.bytes().as_ptr(),
            claims[1].payload.bytes().as_ptr()
        );
    }

    #[tokio::test]
    async fn lease_commits_relax_sync_and_durable_writes_restore_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_at(&dir.path().join("bh.db"), SqliteSync::Full).await;
        let m = tenant(&store).await;
        assert_eq!(
            writer_pragma(&store, "PRAGMA synchronous").await,
            2,
            "FULL as configured"
        );
        store.ingest(&events(&m, 2, 10)).await.unwrap();
        assert_eq!(store.claim_due(&claim_req(10)).await.unwrap().len(), 2);
        assert_eq!(
            writer_pragma(&store, "PRAGMA synchronous").await,
            1,
            "NORMAL after a claim"
        );
        store.ingest(&events(&m, 1, 10)).await.unwrap();
        assert_eq!(
            writer_pragma(&store, "PRAGMA synchronous").await,
            2,
            "FULL again"
        );
        store
            .set_merchant_status(&m, MerchantStatus::Active)
            .await
            .unwrap();
        assert_eq!(writer_pragma(&store, "PRAGMA synchronous").await, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_ingests_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open_at(&dir.path().join("bh.db"), SqliteSync::Full).await);
        let m = tenant(&store).await;
        let before = store.statements();
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (store, batch) = (Arc::clone(&store), events(&m, 1, 10));
                tokio::spawn(
                    async move { store.ingest(&batch).await.map(|r| r[0].event_id.clone()) },
                )
            })
            .collect();
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap().unwrap());
        }
        for id in &ids {
            assert!(store.get_event(&m, id).await.is_ok());
        }
        // Alone, each call would be BEGIN, targets, two INSERTs, COMMIT and a pragma at most.
        let used = store.statements() - before - 200; // minus the 200 get_event reads
        assert!(
            used < 600,
            "{used} statements for 200 single-event ingests: no grouping?"
        );
        assert_eq!(store.claim_due(&claim_req(500)).await.unwrap().len(), 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_batch_does_not_fail_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open_at(&dir.path().join("bh.db"), SqliteSync::Normal).await);
        let m = tenant(&store).await;
        let existing = events(&m, 1, 10);
        store.ingest(&existing).await.unwrap();

        // Hold the writer so that the batches queue up and are taken as one group.
        let held = store.db.writer.acquire().await.unwrap();
        let send = |batch: Vec<NewEvent>| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.ingest(&batch).await })
        };
        let warmup = send(events(&m, 1, 10)); // taken alone while the writer is held
        tokio::time::sleep(Duration::from_millis(50)).await;
        let good = events(&m, 3, 10);
        let mut clash = events(&m, 2, 10);
        clash[1].id = existing[0].id.clone();
        let stranger = events(&MerchantId::generate(), 1, 10);
        let tasks = [
            send(good.clone()),
            send(clash.clone()),
            send(stranger),
            send(events(&m, 2, 10)),
        ];
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);

        assert!(warmup.await.unwrap().is_ok());
        let [good_r, clash_r, stranger_r, other_r] = tasks;
        assert_eq!(good_r.await.unwrap().unwrap().len(), 3);
        assert!(matches!(clash_r.await.unwrap(), Err(Error::Conflict(_))));
        assert!(matches!(
            stranger_r.await.unwrap(),
            Err(Error::NotFound("merchant"))
        ));
        assert_eq!(other_r.await.unwrap().unwrap().len(), 2);
        assert!(store.get_event(&m, &good[0].id).await.is_ok());
        assert!(
            store.get_event(&m, &clash[0].id).await.is_err(),
            "the clashing batch is all or nothing"
        );
        // 1 existing + 1 warm-up + 3 good + 2 other.
        assert_eq!(store.claim_due(&claim_req(100)).await.unwrap().len(), 7);
    }

    #[tokio::test]
    async fn in_memory_store_works() {
        let store = SqliteStore::open("sqlite::memory:", &StoreOptions::default())
            .await
            .unwrap();
        let m = tenant(&store).await;
        store.ingest(&events(&m, 3, 10)).await.unwrap();
        assert_eq!(store.claim_due(&claim_req(10)).await.unwrap().len(), 3);
        assert!(store.statements() > 0);
        store.ping().await.unwrap();
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
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
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
        let single = std::env::var("BH_SINGLE").is_ok();
        let store = SqliteStore::open(&dir.path().join("p.db").to_string_lossy(), &opts)
            .await
            .unwrap();
        let store = Arc::new(store);
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
            if single {
                // One call per event, 64 at a time, as API requests would: group commit at work.
                let calls: Vec<_> = evs
                    .into_iter()
                    .map(|ev| {
                        let store = Arc::clone(&store);
                        tokio::spawn(async move { store.ingest(&[ev]).await.unwrap() })
                    })
                    .collect();
                for c in calls {
                    c.await.unwrap();
                }
            } else {
                store.ingest(&evs).await.unwrap();
            }
        }
        let ingest = start.elapsed();
        let cpu_ingest = cpu() - cpu0;
        let s_ingest = store.statements();
        if std::env::var("BH_ONLY").as_deref() == Ok("ingest") {
            println!(
                "{total} events, batch {batch}{}, {sync:?}: ingest {:.0}/s",
                if single { " (one per call)" } else { "" },
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
            if single {
                // One call per delivery, as delivery tasks would.
                let calls: Vec<_> = completions
                    .into_iter()
                    .map(|c| {
                        let store = Arc::clone(&store);
                        tokio::spawn(async move { store.finish(&[c], now).await.unwrap() })
                    })
                    .collect();
                for c in calls {
                    done += c.await.unwrap();
                }
            } else {
                done += store.finish(&completions, now).await.unwrap();
            }
            in_finish += lap.elapsed();
        }
        let dispatch = start.elapsed();
        let cpu_dispatch = cpu() - cpu1;
        assert_eq!(done as usize, total);
        let per_s = |d: Duration| total as f64 / d.as_secs_f64();
        println!(
            "{total} events, batch {batch}{}, {sync:?}: ingest {:.0}/s, claim+finish {:.0}/s, \
             (claim {:.0}/s, finish {:.0}/s), statements: ingest {s_ingest}, dispatch {}; \
             CPU µs/event: ingest {:.1}, claim+finish {:.1}",
            if single { " (one per call)" } else { "" },
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
