//! [`PgStore`]: the connection pool and the hot path's warm connections, the statement counter,
//! the wake-up listener, opening and migrating, and the small SQL helpers every concern file
//! shares (cursors, page sizes, insert errors). The `Store` traits are implemented in the
//! concern files above this one.

use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use blockhook_core::{Cursor, Error};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::listen;
use crate::{StoreOptions, classify};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// A connection idle for longer than this is pinged before it is handed out. Shorter idles skip
/// the ping: under load connections cycle in milliseconds, and a ping per checkout would double
/// the round trips. A connection that died while idle for less than this fails its one query
/// with `Unavailable` and is then discarded (sqlx tests every connection on release).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// The most connections the hot path keeps checked out between its statements (see
/// [`PgStore::warm`]): one serves an everyday rate; the second covers an ingest and a finish at
/// the same moment. At most a quarter of the pool, so that the rest stays free for everything
/// else (a pool of fewer than four keeps none).
const WARM_KEPT: usize = 2;

/// How many connections a pool of `max_connections` keeps warm.
pub(super) fn warm_kept(max_connections: u32) -> usize {
    (usize::try_from(max_connections).unwrap_or(usize::MAX) / 4).min(WARM_KEPT)
}

/// The PostgreSQL store: for several blockhook processes sharing one database.
pub struct PgStore {
    pool: PgPool,
    /// The hot path's connections between statements, most recently used last.
    warm: std::sync::Mutex<Vec<(PoolConnection<Postgres>, Instant)>>,
    /// How many `warm` may hold ([`warm_kept`]).
    warm_kept: usize,
    /// For connections outside the pool (job locks live as long as their session).
    pub(super) connect: PgConnectOptions,
    /// The schema in use: job locks are per database, so their keys name it.
    pub(super) schema: String,
    pub(super) statements: AtomicU64,
    pub(super) wake: Arc<Notify>,
    /// Where a claim's second pass over endpoints resumes (see `queue::SPREAD`): a hint of this
    /// process, not shared.
    pub(super) claim_cursor: std::sync::Mutex<Option<String>>,
    /// The fan-out targets of merchants ingested for lately (see `targets`).
    pub(super) targets: super::targets::TargetCache,
    listener: JoinHandle<()>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user:pass@host:port/db?options`), runs the migrations and
    /// starts listening for other processes' wake-ups.
    pub async fn open(url: &str, opts: &StoreOptions) -> Result<Self, Error> {
        let mut connect = PgConnectOptions::from_str(url)
            .map_err(|e| Error::invalid("database_url", format!("not a PostgreSQL URL: {e}")))?;
        if connect.get_application_name().is_none() {
            // So operators can tell blockhook's sessions apart in `pg_stat_activity`.
            connect = connect.application_name("blockhook");
        }
        Self::open_with(connect, opts).await
    }

    /// Like [`PgStore::open`], from parsed connection options (tests set a `search_path`).
    pub(super) async fn open_with(
        connect: PgConnectOptions,
        opts: &StoreOptions,
    ) -> Result<Self, Error> {
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.acquire_timeout)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        // An error here makes the pool discard the connection and open another.
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(connect.clone())
            .await
            .map_err(|e| missing_database(e, &connect))?;
        const HAS_MIGRATIONS: &str = "SELECT to_regclass('_sqlx_migrations') IS NOT NULL";
        const APPLIED: &str =
            "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success";
        let migrated: bool = sqlx::query_scalar(HAS_MIGRATIONS)
            .fetch_one(&pool)
            .await
            .map_err(classify)?;
        let applied: i64 = if migrated {
            sqlx::query_scalar(APPLIED)
                .fetch_one(&pool)
                .await
                .map_err(classify)?
        } else {
            0
        };
        let known = crate::latest(&MIGRATOR);
        match crate::schema(applied, known)? {
            crate::Schema::Older(v) if opts.upgrade == crate::Upgrade::FreshOnly => {
                return Err(Error::Conflict(format!(
                    "the database schema is at version {v}, older than this blockhook's                      (version {known}): run `blockhook migrate` with this release once, then                      start the servers"
                )));
            }
            _ => MIGRATOR.run(&pool).await.map_err(migrate_error)?,
        }

        const SCHEMA: &str = "SELECT current_schema()::text";
        let schema: Option<String> = sqlx::query_scalar(SCHEMA)
            .fetch_one(&pool)
            .await
            .map_err(classify)?;
        let schema = schema.ok_or_else(|| Error::Internal("no schema in search_path".into()))?;

        let wake = Arc::new(Notify::new());
        let listener = listen::start(
            connect.clone(),
            opts.acquire_timeout,
            schema.clone(),
            wake.clone(),
        )
        .await?;
        Ok(Self {
            pool,
            warm: std::sync::Mutex::new(Vec::new()),
            warm_kept: warm_kept(opts.max_connections.max(1)),
            connect,
            schema,
            statements: AtomicU64::new(0),
            wake,
            claim_cursor: std::sync::Mutex::new(None),
            targets: Default::default(),
            listener,
        })
    }

    /// The pool, counting one statement: pass it straight to the query it is for.
    pub(super) fn db(&self) -> &PgPool {
        self.statements.fetch_add(1, Ordering::Relaxed);
        &self.pool
    }

    /// A connection, counting one statement: pass it straight to the query it is for.
    pub(super) fn on<'c>(&self, conn: &'c mut PgConnection) -> &'c mut PgConnection {
        self.statements.fetch_add(1, Ordering::Relaxed);
        conn
    }

    /// A connection for the hot path's statements (ingest, finish), the one used last if it is
    /// free: give it back with [`Warm::keep`] once its statements succeeded.
    ///
    /// Why: sqlx's pool hands out its idle connections first in, first out, so at an everyday
    /// rate consecutive statements go to different PostgreSQL backends, each of them cold in the
    /// CPU's caches. Measured (BENCHMARKS.md, "The hot path on a warm connection"): with every
    /// statement on one backend, PostgreSQL's CPU per event at 400/s fell by a quarter. Under
    /// load the stack stays empty and statements take pooled connections as before.
    pub(super) async fn warm(&self) -> Result<Warm<'_>, Error> {
        loop {
            let top = self.warm.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some((mut conn, since)) = top else {
                let conn = self.pool.acquire().await.map_err(classify)?;
                return Ok(Warm { store: self, conn });
            };
            // As the pool's own check before handing out a connection idle this long.
            if since.elapsed() >= PING_IF_IDLE_FOR
                && sqlx::Connection::ping(&mut *conn).await.is_err()
            {
                conn.close_on_drop();
                continue;
            }
            return Ok(Warm { store: self, conn });
        }
    }

    /// `BEGIN` (one statement).
    pub(super) async fn begin(&self) -> Result<Transaction<'static, Postgres>, Error> {
        self.statements.fetch_add(1, Ordering::Relaxed);
        self.pool.begin().await.map_err(classify)
    }

    /// `COMMIT` (one statement).
    pub(super) async fn commit(&self, tx: Transaction<'static, Postgres>) -> Result<(), Error> {
        self.statements.fetch_add(1, Ordering::Relaxed);
        tx.commit().await.map_err(classify)
    }
}

/// A connection from [`PgStore::warm`]. Dropped, it goes back to the pool (after an error, the
/// pool's checks decide whether it is fit to serve again); kept, to the warm stack.
pub(super) struct Warm<'s> {
    store: &'s PgStore,
    conn: PoolConnection<Postgres>,
}

impl Warm<'_> {
    /// Its statements succeeded: the next hot-path statement takes it first.
    pub(super) fn keep(self) {
        let mut warm = self.store.warm.lock().unwrap_or_else(|p| p.into_inner());
        if warm.len() < self.store.warm_kept {
            warm.push((self.conn, Instant::now()));
        }
    }
}

impl Deref for Warm<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl DerefMut for Warm<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The listener holds its own connection; nothing else stops it.
        self.listener.abort();
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// `classify`, except that a database that does not exist says how to create it.
fn missing_database(e: sqlx::Error, connect: &PgConnectOptions) -> Error {
    if let sqlx::Error::Database(db) = &e {
        if db.code().as_deref() == Some("3D000") {
            let name = connect.get_database().unwrap_or("blockhook");
            return Error::invalid(
                "database_url",
                format!(
                    "{}: create it first, e.g. `createdb -h {} -p {} -U {} {name}` (or \
                     `CREATE DATABASE {name};` in psql), then run `blockhook migrate`",
                    db.message(),
                    connect.get_host(),
                    connect.get_port(),
                    connect.get_username(),
                ),
            );
        }
    }
    classify(e)
}

fn migrate_error(e: MigrateError) -> Error {
    match e {
        MigrateError::Execute(e) => classify(e),
        other => Error::Internal(format!("migration: {other}")),
    }
}

/// `classify` for inserts: a foreign-key violation means the parent (`parent`) does not exist,
/// a unique violation that `thing` (with this id or key) already does.
pub(super) fn insert_error(e: sqlx::Error, parent: &'static str, thing: &str) -> Error {
    if let sqlx::Error::Database(db) = &e {
        if db.is_foreign_key_violation() {
            return Error::NotFound(parent);
        }
        if db.is_unique_violation() {
            return Error::Conflict(format!("{thing} already exists"));
        }
    }
    classify(e)
}

/// The cursor of a first page: sorts after every id (ids are ASCII letters, digits and `_`,
/// compared byte by byte in the "C" collation the id columns use). Binding it instead of NULL
/// keeps `id < $cursor` an index range even in a generic (cached) plan, where an
/// `$cursor IS NULL OR id < $cursor` form would turn every deep page into a scan from the top.
const AFTER_EVERY_ID: &str = "~";

/// The cursor to bind for `after`.
pub(super) fn cursor(after: Option<&Cursor>) -> &str {
    after.map_or(AFTER_EVERY_ID, |c| c.0.as_str())
}

/// A page size as a `LIMIT` that fetches one extra row (which only says there is more).
pub(super) fn overfetch(limit: u32) -> i64 {
    i64::from(limit.max(1)) + 1
}

#[cfg(test)]
mod tests {
    use super::warm_kept;

    #[test]
    fn a_quarter_of_the_pool_is_kept_warm_at_most_two_and_none_below_four() {
        assert_eq!(warm_kept(1), 0);
        assert_eq!(warm_kept(3), 0);
        assert_eq!(warm_kept(4), 1);
        assert_eq!(warm_kept(8), 2);
        assert_eq!(warm_kept(100), 2);
    }
}
