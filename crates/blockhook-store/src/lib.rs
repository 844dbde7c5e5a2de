//! blockhook's storage: the only crate that speaks SQL.
//!
//! [`open`] picks the backend from the URL (`sqlite://path` or a bare file path for the embedded
//! store; `postgres://…` for scale-out), runs the versioned migrations of that backend, and
//! returns it as a [`StoreRef`] (`Arc<dyn blockhook_core::Store>`), so nothing above this crate
//! knows which database is in use. Both backends pass the same contract suite (`contract`).
//!
//! Layout: `sqlite/` and `postgres/` mirror each other and the traits of `blockhook_core::store`.
//! Each has `db.rs` (the backend type: opening, pools, migrations) and one file per concern
//! implementing its trait directly (`merchants`, `endpoints`, `events`, `queue`, `maintenance`),
//! plus helpers only that backend has. `rows` holds the row types and their conversion into
//! domain values, shared by both; `error` the mapping of database errors.
#![forbid(unsafe_code)]

#[cfg(feature = "contract")]
pub mod contract;
mod error;
pub mod floor;
mod lease_plan;
pub mod outbox;
pub mod postgres;
mod rows;
pub mod sqlite;

use std::time::Duration;

pub use blockhook_core::StoreRef;
pub use error::{classify, classify_sqlite};

/// How the embedded store flushes commits to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqliteSync {
    /// `synchronous=FULL`: a commit is on disk before it returns. Survives power loss. Default.
    #[default]
    Full,
    /// `synchronous=NORMAL` in WAL mode: survives a process crash (`kill -9`), may lose the last
    /// commits on power loss or an OS crash. Faster.
    Normal,
}

/// What opening a store may do to a schema older than this release's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Upgrade {
    /// Apply pending migrations (`blockhook migrate`; `serve` on the embedded store, which first
    /// copies the database file to `<db>.schema-v<N>-<ms>.bak` beside it).
    #[default]
    Apply,
    /// Create the schema of an empty database, but refuse an older one: several processes
    /// share a PostgreSQL database, and upgrading it is a deliberate step (`blockhook migrate`),
    /// not a side effect of whichever process restarts first.
    FreshOnly,
}

/// Options for opening a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Connections in the pool (PostgreSQL), or readers (SQLite; writes use one connection).
    pub max_connections: u32,
    /// How long to wait for a connection before answering `Unavailable`.
    pub acquire_timeout: Duration,
    /// SQLite durability.
    pub sqlite_sync: SqliteSync,
    /// What to do with an older schema.
    pub upgrade: Upgrade,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            sqlite_sync: SqliteSync::Full,
            upgrade: Upgrade::Apply,
        }
    }
}

/// How many endpoints a claim's second pass walks (both stores; see "Claims spread over
/// endpoints" in docs/decisions.md): enough to fill the `missing` part of the claim if each gives
/// its share, twice over, within bounds (each endpoint costs one index probe).
pub(crate) fn spread_walk(missing: u32, per_endpoint_max: u32) -> i64 {
    i64::from((missing.div_ceil(per_endpoint_max.max(1)) * 2).clamp(8, 256))
}

/// Where a database's schema stands against the migrations this release knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Schema {
    /// No migration applied yet.
    Empty,
    /// At this release's latest version.
    Current,
    /// At an older version (the applied version).
    Older(i64),
}

/// Compares the applied version `applied` (0 for none) with the latest `known` one; a newer
/// schema than this release knows is refused: its data may mean things this code cannot read.
pub(crate) fn schema(applied: i64, known: i64) -> Result<Schema, blockhook_core::Error> {
    if applied > known {
        return Err(blockhook_core::Error::Conflict(format!(
            "the database schema is at version {applied}, newer than this blockhook {} knows              (version {known}): it was upgraded by a newer release; run that release or a newer one",
            env!("CARGO_PKG_VERSION")
        )));
    }
    Ok(match applied {
        0 => Schema::Empty,
        v if v == known => Schema::Current,
        v => Schema::Older(v),
    })
}

/// The latest version among `migrations`.
pub(crate) fn latest(migrations: &sqlx::migrate::Migrator) -> i64 {
    migrations.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Opens (creating and migrating as needed) the store at `url`.
pub async fn open(url: &str, opts: &StoreOptions) -> Result<StoreRef, blockhook_core::Error> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(
            postgres::PgStore::open(url, opts).await?,
        ))
    } else {
        Ok(std::sync::Arc::new(
            sqlite::SqliteStore::open(url, opts).await?,
        ))
    }
}
