//! [`SqliteStore`]: opening the file (pools, pragmas, migrations) and the `Store` impl, which
//! hands each verb to the file of its aggregate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use blockhook_core::{
    ApiKey, ApiKeyId, AttemptRecord, Claim, ClaimRequest, Completion, Cursor, Delivery, DeliveryId,
    Endpoint, EndpointBacklog, EndpointHealth, EndpointId, Error, Event, EventId, EventQuery,
    Ingested, LeaseToken, Merchant, MerchantId, MerchantStatus, NewApiKey, NewEvent, NewMerchant,
    Page, QueueStats, ResendLimits, ResendScope, SealedSecret, Store, Timestamp,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::db::{self, Db};
use super::writer::Writer;
use super::{actions, dispatch, endpoints, events, files, keys, merchants, ops};
use crate::{SqliteSync, StoreOptions, classify};

/// How long a connection waits on a lock held by another process (e.g. a CLI opening the same
/// file) before answering `SQLITE_BUSY`.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// The embedded store.
pub struct SqliteStore {
    /// Everything the store's methods and its background writers share.
    db: Arc<Db>,
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
pub(super) enum Location {
    Memory,
    File(PathBuf),
}

/// Accepts `sqlite://path`, `sqlite:path`, a plain path, or `:memory:` in any of those forms.
/// Query strings (`?mode=rwc`) are ignored: the options come from [`StoreOptions`].
pub(super) fn location(raw: &str) -> Result<Location, Error> {
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
    /// Opens (creating the file and its directory, and migrating) the database at `url_or_path`:
    /// `sqlite://path`, `sqlite:path`, a plain path, or `sqlite::memory:`.
    ///
    /// Call it inside the Tokio runtime that will use the store: it starts the group-commit
    /// tasks there (see `group`), and they end with that runtime.
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

        // Decision: an in-memory database is a file in a temporary directory removed with the
        // store. The writer thread needs its own connection to the same database, which a
        // private in-memory database cannot give; nothing survives the store either way.
        let (path, temporary) = match loc {
            Location::Memory => {
                let dir = tempfile::tempdir()
                    .map_err(|e| unavailable("temporary directory for :memory:", e))?;
                (dir.path().join("blockhook.db"), Some(dir))
            }
            Location::File(path) => (path, None),
        };
        create_parent(&path)?;
        let file = base.filename(&path).journal_mode(SqliteJournalMode::Wal);
        // The sqlx writer makes only the rare management writes (see `writer`): a small cache.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(
                file.clone()
                    .create_if_missing(true)
                    .pragma("cache_size", "-2048"),
            )
            .await
            .map_err(classify)?;
        let readers = SqlitePoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(file.pragma("cache_size", "-4096"))
            .await
            .map_err(classify)?;

        const HAS_MIGRATIONS: &str =
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'";
        const APPLIED: &str =
            "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success";
        let migrated: i64 = sqlx::query_scalar(HAS_MIGRATIONS)
            .fetch_one(&writer)
            .await
            .map_err(classify)?;
        let applied: i64 = if migrated > 0 {
            sqlx::query_scalar(APPLIED)
                .fetch_one(&writer)
                .await
                .map_err(classify)?
        } else {
            0
        };
        if let crate::Schema::Older(v) = crate::schema(applied, crate::latest(&MIGRATOR))? {
            // A copy of the file as it was, beside it, before the schema changes.
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".schema-v{v}-{ms}.bak"));
            let copy = PathBuf::from(name);
            super::files::backup(&path, &copy)?;
            tracing::info!(
                from = v,
                to = crate::latest(&MIGRATOR),
                backup = %copy.display(),
                "upgrading the SQLite schema; the database as it was is in the backup file"
            );
        }
        MIGRATOR.run(&writer).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(inner) => classify(inner),
            other => Error::Internal(format!("sqlite migrations: {other}")),
        })?;

        let cx = db::shared();
        let thread = Writer::start(&path, opts.sqlite_sync, cx.clone())?;
        let db = Arc::new(Db::new(thread, writer, readers, cx));
        Ok(Self {
            db,
            _keep: temporary.map(|d| Box::new(d) as Box<dyn std::any::Any + Send + Sync>),
        })
    }

    /// The writer pool, for tests that hold or reconfigure the writer connection.
    #[cfg(test)]
    pub(super) fn writer(&self) -> &sqlx::SqlitePool {
        &self.db.writer
    }

    /// Keeps `thing` (a temporary directory) alive as long as the store.
    #[cfg(feature = "contract")]
    pub(super) fn keep_alive(mut self, thing: Box<dyn std::any::Any + Send + Sync>) -> Self {
        self._keep = Some(thing);
        self
    }

    /// Runs `f` on the writer thread's connection, outside any transaction (tests that
    /// reconfigure it: `max_page_count`, `query_only`).
    #[cfg(test)]
    pub(super) async fn on_writer_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> T + Send + 'static,
    ) -> Result<T, Error> {
        self.db.thread.raw(f).await
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
        self.db.statements()
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
        self.db.thread.ingest(events).await
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
        self.db.thread.finish(done, now).await
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
    async fn checkpoint(&self) -> Result<(), Error> {
        files::checkpoint(&self.db.writer).await
    }

    async fn key_check(&self) -> Result<Option<Vec<u8>>, Error> {
        keys::key_check(&self.db).await
    }
    async fn init_key_check(&self, sealed: &[u8]) -> Result<Vec<u8>, Error> {
        keys::init_key_check(&self.db, sealed).await
    }
    async fn replace_key_check(&self, expected: &[u8], new: &[u8]) -> Result<bool, Error> {
        keys::replace_key_check(&self.db, expected, new).await
    }
    async fn sealed_secrets(
        &self,
        after: Option<&EndpointId>,
        limit: u32,
    ) -> Result<Vec<(EndpointId, SealedSecret)>, Error> {
        keys::sealed_secrets(&self.db, after, limit).await
    }
    async fn reseal_secret(
        &self,
        id: &EndpointId,
        expected: &SealedSecret,
        new: &SealedSecret,
    ) -> Result<bool, Error> {
        keys::reseal_secret(&self.db, id, expected, new).await
    }
}
