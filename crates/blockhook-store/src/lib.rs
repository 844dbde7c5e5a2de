//! blockhook's storage: the only crate that speaks SQL.
//!
//! [`open`] picks the backend from the URL (`sqlite://path` or a bare file path for the embedded
//! store; `postgres://…` for scale-out), runs the versioned migrations of that backend, and
//! returns it as a [`StoreRef`] (`Arc<dyn blockhook_core::Store>`), so nothing above this crate
//! knows which database is in use. Both backends pass the same contract suite (`contract`).
#![forbid(unsafe_code)]

#[cfg(feature = "contract")]
pub mod contract;
mod error;
pub mod postgres;
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

/// Options for opening a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Connections in the pool (PostgreSQL), or readers (SQLite; writes use one connection).
    pub max_connections: u32,
    /// How long to wait for a connection before answering `Unavailable`.
    pub acquire_timeout: Duration,
    /// SQLite durability.
    pub sqlite_sync: SqliteSync,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            sqlite_sync: SqliteSync::Full,
        }
    }
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
