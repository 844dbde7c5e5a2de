//! [`PgStore`]: the connection pool, the statement counter, the wake-up listener, opening and
//! migrating, and the small SQL helpers every concern file shares (cursors, page sizes, insert
//! errors). The `Store` traits are implemented in the concern files above this one.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use blockhook_core::{Cursor, Error};
use sqlx::migrate::{MigrateError, Migrator};
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

/// The PostgreSQL store: for several blockhook processes sharing one database.
pub struct PgStore {
    pool: PgPool,
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

    /// A connection for several statements in a row (one checkout, no transaction).
    pub(super) async fn conn(&self) -> Result<sqlx::pool::PoolConnection<Postgres>, Error> {
        self.pool.acquire().await.map_err(classify)
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
