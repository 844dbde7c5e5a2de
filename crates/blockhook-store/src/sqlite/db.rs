//! [`SqliteStore`]: opening the file (pools, pragmas, migrations, the writer thread), and the
//! state its methods share (connections, the writer thread, the event cache, the statement
//! counter), with the write transaction type of the writes made through sqlx. The `Store` traits
//! are implemented in the concern files above this one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use blockhook_core::Error;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, SqliteConnection};

use super::cache::{EndpointCache, EventCache};
use super::files::{BUSY_TIMEOUT, Location, location};
use super::writer::{Cx, Groups, Writer};
use crate::{SqliteSync, StoreOptions, classify};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// The embedded store.
pub struct SqliteStore {
    /// Everything the store's methods and its background writers share.
    pub(super) db: Arc<Db>,
    /// Keeps a temporary directory alive as long as the store (tests); dropped last.
    _keep: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("{what}: {e}"))
}

/// The page size of a new database file. Larger pages than SQLite's default 4 KiB mean fewer WAL
/// frames (one write each) per commit for this append-heavy load.
pub(crate) const PAGE_SIZE: u32 = 8192;

impl SqliteStore {
    /// [`SqliteStore::open`] (in `sqlite/mod.rs`), with the writer thread's group transactions
    /// `groups` (see `writer::Groups`).
    pub(super) async fn open_with(
        url_or_path: &str,
        opts: &StoreOptions,
        groups: Groups,
    ) -> Result<Self, Error> {
        let loc = location(url_or_path)?;
        let sync = match opts.sqlite_sync {
            SqliteSync::Full => SqliteSynchronous::Full,
            SqliteSync::Normal => SqliteSynchronous::Normal,
        };
        let base = SqliteConnectOptions::new()
            // Only takes effect when the file is created.
            .page_size(PAGE_SIZE)
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

        let cx = shared();
        let thread = Writer::start(&path, opts.sqlite_sync, cx.clone(), groups)?;
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

/// Bytes the event cache may hold (see `cache`): at ~600 bytes an event with its overhead,
/// the last ~28,000 events, i.e. several seconds of the fastest ingest measured. That covers
/// the steady state, where a delivery is claimed moments after its event arrived; a larger
/// backlog reads its payloads back instead, and memory stays bounded (the RSS target is under
/// 100 MiB with 100,000 deliveries pending).
const EVENT_CACHE_BYTES: usize = 16 << 20;

/// The connections and state behind a [`SqliteStore`].
pub(super) struct Db {
    /// The hot path's writes: ingest, leases, finishes, resends (see `writer`).
    pub(super) thread: Writer,
    /// The other writes (management, recover, retention): a 1-connection pool.
    pub(super) writer: SqlitePool,
    /// Connections that only read.
    pub(super) readers: SqlitePool,
    /// Statements executed since opening (shared with the writer thread).
    statements: Arc<AtomicU64>,
    /// Recently ingested events, so claims rarely read payloads back (see `cache`).
    pub(super) events: Arc<EventCache>,
}

/// A fresh statement counter and event cache, for [`Db::new`] and the writer thread.
pub(super) fn shared() -> Cx {
    Cx {
        statements: Arc::new(AtomicU64::new(0)),
        events: Arc::new(EventCache::new(EVENT_CACHE_BYTES)),
        endpoints: Arc::new(EndpointCache::new()),
        claim_cursor: Arc::default(),
    }
}

impl Db {
    /// The state of a freshly opened store; `cx` is the one the writer thread was started with.
    pub(super) fn new(thread: Writer, writer: SqlitePool, readers: SqlitePool, cx: Cx) -> Self {
        Self {
            thread,
            writer,
            readers,
            statements: cx.statements,
            events: cx.events,
        }
    }

    /// Statements executed so far.
    pub(super) fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Counts `n` statements executed.
    pub(super) fn tick(&self, n: u64) {
        self.statements.fetch_add(n, Ordering::Relaxed);
    }

    /// The sqlx writer connection.
    pub(super) async fn write(&self) -> Result<PoolConnection<Sqlite>, Error> {
        self.writer.acquire().await.map_err(classify)
    }

    /// Starts a write transaction on the sqlx writer connection. `BEGIN IMMEDIATE` takes the
    /// file's write lock up front, so a transaction that reads first cannot fail later when
    /// another connection (the writer thread, the CLI) wrote in between.
    pub(super) async fn begin(&self) -> Result<WriteTx, Error> {
        let mut conn = self.write().await?;
        self.tick(1);
        if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
            let err = classify(e);
            if matches!(err, Error::Unavailable(_)) {
                // See `WriteTx::end`: a connection that cannot even begin may be one opened
                // read-only; the next writer gets a fresh one.
                conn.close_on_drop();
            }
            return Err(err);
        }
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
pub(super) struct WriteTx {
    conn: PoolConnection<Sqlite>,
    open: bool,
}

impl WriteTx {
    /// The connection, to run the transaction's statements on.
    pub(super) fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }

    /// Commits when `result` is `Ok`, rolls back when it is an error (or the commit fails), and
    /// hands `result` back.
    ///
    /// After a failure caused by the environment (`Unavailable`: disk full, I/O error, read-only
    /// file, lock timeout) the connection is replaced even when the rollback worked: SQLite
    /// silently opens a database read-only when it cannot open it read-write, and such a
    /// connection stays read-only for life (the same rule as `writer::Session::transaction`;
    /// `docs/decisions.md`, "Replace the SQLite writer after an environment failure").
    pub(super) async fn end<T>(mut self, s: &Db, result: Result<T, Error>) -> Result<T, Error> {
        let result = match result {
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
        };
        if matches!(result, Err(Error::Unavailable(_))) {
            self.conn.close_on_drop();
        }
        result
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
