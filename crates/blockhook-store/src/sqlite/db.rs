//! The state a store's methods share (connections, the writer thread, the event cache, the
//! statement counter), and the write transaction type of the writes made through sqlx.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use blockhook_core::Error;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqlitePool;
use sqlx::{Sqlite, SqliteConnection};

use super::cache::{EndpointCache, EventCache};
use super::writer::{Cx, Writer};
use crate::classify;

/// Bytes the event cache may hold (see `cache`): at ~600 bytes an event with its overhead,
/// the last ~28,000 events, i.e. several seconds of the fastest ingest measured. That covers
/// the steady state, where a delivery is claimed moments after its event arrived; a larger
/// backlog reads its payloads back instead, and memory stays bounded (the RSS target is under
/// 100 MiB with 100,000 deliveries pending).
const EVENT_CACHE_BYTES: usize = 16 << 20;

/// The connections and state behind a [`SqliteStore`](super::SqliteStore).
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
