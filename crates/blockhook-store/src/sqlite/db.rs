//! The state a store shares with its background tasks, the writer connection's durability
//! switching, and the write transaction type every write goes through.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use blockhook_core::Error;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqlitePool;
use sqlx::{Sqlite, SqliteConnection};

use super::cache::EventCache;
use crate::{SqliteSync, classify};

/// Payload bytes the event cache may hold (see `cache`): at ~500 bytes an event, a backlog of
/// about 100,000 events claimed without reading payloads back.
const EVENT_CACHE_BYTES: usize = 64 << 20;

/// How a write's commit must reach the disk (see [`Db::write`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// As configured (`StoreOptions::sqlite_sync`).
    Durable,
    /// Lease bookkeeping: may be lost to a power cut.
    Relaxed,
}

// The writer connection's current `synchronous` level, as last set.
const SYNC_UNKNOWN: u8 = 0;
const SYNC_NORMAL: u8 = 1;
const SYNC_FULL: u8 = 2;

/// The connections and state behind a [`SqliteStore`](super::SqliteStore), shared with its
/// group-commit tasks.
pub(super) struct Db {
    /// The only connection that writes.
    pub(super) writer: SqlitePool,
    /// Connections that only read (the writer itself for an in-memory database).
    pub(super) readers: SqlitePool,
    /// The configured durability.
    sync: SqliteSync,
    /// The writer connection's `synchronous` level (`SYNC_*`).
    writer_sync: AtomicU8,
    /// Statements executed since opening.
    statements: AtomicU64,
    /// Recently ingested events, so claims rarely read payloads back (see `cache`).
    pub(super) events: EventCache,
    /// The database lives in the writer connection's memory.
    in_memory: bool,
}

impl Db {
    /// The state of a freshly opened store.
    pub(super) fn new(
        writer: SqlitePool,
        readers: SqlitePool,
        sync: SqliteSync,
        in_memory: bool,
    ) -> Self {
        Self {
            writer,
            readers,
            sync,
            writer_sync: AtomicU8::new(match sync {
                SqliteSync::Full => SYNC_FULL,
                SqliteSync::Normal => SYNC_NORMAL,
            }),
            statements: AtomicU64::new(0),
            events: EventCache::new(EVENT_CACHE_BYTES),
            in_memory,
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

    /// The writer connection, set to flush commits as `durability` asks.
    ///
    /// Decision: with `synchronous=FULL` configured, a commit that only records a lease
    /// (`claim_due`, `renew_leases`) runs with NORMAL instead: losing it to a power cut merely
    /// lets the lease lapse early and the delivery be claimed again (delivery is at-least-once
    /// anyway), and it saves an fsync per claim, which is most of a claim's cost on real disks.
    /// The next durable commit fsyncs the WAL, earlier frames included, so order is kept. SQLite
    /// refuses to change the level inside a transaction, hence here, before BEGIN.
    pub(super) async fn write(
        &self,
        durability: Durability,
    ) -> Result<PoolConnection<Sqlite>, Error> {
        let mut conn = self.writer.acquire().await.map_err(classify)?;
        let want = match (self.sync, durability) {
            (SqliteSync::Full, Durability::Durable) => SYNC_FULL,
            _ => SYNC_NORMAL,
        };
        if self.writer_sync.load(Ordering::Acquire) != want {
            // Unknown until the pragma is known to have run: if this future is dropped midway,
            // the next writer sets the level again instead of trusting a stale value. (A
            // replacement connection starts at the configured level, never below it, so a stale
            // value can at worst cost an fsync, never skip one.)
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
    pub(super) async fn begin(&self) -> Result<WriteTx, Error> {
        self.begin_as(Durability::Durable).await
    }

    /// Starts a write transaction on the writer connection. `BEGIN IMMEDIATE` takes the file's
    /// write lock up front, so a transaction that reads first cannot fail later when another
    /// process (the CLI, say) wrote in between.
    pub(super) async fn begin_as(&self, durability: Durability) -> Result<WriteTx, Error> {
        let mut conn = self.write(durability).await?;
        self.tick(1);
        if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
            // A transaction left open on the kept connection of an in-memory database (see
            // `WriteTx`): roll it back and start again. Anything else is a real error.
            if !e.to_string().contains("within a transaction") {
                let err = classify(e);
                if matches!(err, Error::Unavailable(_)) && !self.in_memory {
                    // See `WriteTx::end`: a connection that cannot even begin may be one
                    // opened read-only; the next writer gets a fresh one.
                    conn.close_on_drop();
                }
                return Err(err);
            }
            self.tick(2);
            sqlx::query("ROLLBACK")
                .execute(&mut *conn)
                .await
                .map_err(classify)?;
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut *conn)
                .await
                .map_err(classify)?;
        }
        Ok(WriteTx {
            conn,
            open: true,
            discardable: !self.in_memory,
        })
    }
}

/// A write transaction on the writer connection, ended by [`WriteTx::end`].
///
/// Decision: not `sqlx::Transaction`. After SQLITE_FULL or SQLITE_IOERR, SQLite may already have
/// rolled the transaction back by itself; sqlx's own ROLLBACK then fails, and sqlx keeps counting
/// the connection as inside a transaction, refusing every later BEGIN: the only writer would be
/// dead until a restart. Here a failed ROLLBACK, or a transaction dropped unfinished (a cancelled
/// future), instead discards the connection (closing it rolls back whatever is open), and the
/// pool opens a fresh one. An in-memory database lives in its one connection and cannot be
/// discarded; there `begin_as` clears a leftover transaction instead.
pub(super) struct WriteTx {
    conn: PoolConnection<Sqlite>,
    open: bool,
    /// Whether the connection may be discarded (not for an in-memory database).
    discardable: bool,
}

impl WriteTx {
    /// The connection, to run the transaction's statements on.
    pub(super) fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }

    /// Commits when `result` is `Ok`, rolls back when it is an error (or the commit fails), and
    /// hands `result` back.
    ///
    /// Decision: after a failure caused by the environment (`Unavailable`: disk full, I/O error,
    /// read-only file, lock timeout) the connection is replaced even when the rollback worked.
    /// SQLite opens a database read-only, silently, when it cannot open it read-write (the data
    /// directory or its file system was read-only at that moment, e.g. when the writer was
    /// replaced after a full disk), and such a connection stays read-only for its whole life:
    /// every write then fails with SQLITE_READONLY long after the directory is writable again,
    /// and the reliability test `disk::read_only_data_directory_then_writable_again` saw ingest
    /// refused until a restart. A fresh connection costs a reopen, only on this failure path.
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
        if matches!(result, Err(Error::Unavailable(_))) && self.discardable {
            self.conn.close_on_drop();
        }
        result
    }

    async fn rollback(&mut self, s: &Db) {
        s.tick(1);
        if let Err(e) = sqlx::query("ROLLBACK").execute(&mut *self.conn).await {
            tracing::warn!(error = %e, "rollback failed; replacing the SQLite writer connection");
            if self.discardable {
                self.conn.close_on_drop();
            }
        }
        self.open = false;
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if self.open && self.discardable {
            // Dropped mid-transaction (cancelled): never hand an open transaction to the next
            // writer. Closing the connection rolls it back.
            self.conn.close_on_drop();
        }
    }
}
