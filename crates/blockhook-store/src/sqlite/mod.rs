//! The embedded backend: one SQLite file in WAL mode, for single-process deployments.
//!
//! Decisions, each explained where it is implemented:
//! - **A writer thread** (`writer`) owns the connection that makes the hot path's writes
//!   (ingest, leases, finishes, resends) and runs each transaction whole, with no async hop
//!   between statements; the rare management writes go through a 1-connection sqlx pool; a pool
//!   of `max_connections` sqlx connections reads. SQLite allows one writer at a time anyway;
//!   serialising writes in-process means they queue instead of spinning on `SQLITE_BUSY`, and
//!   read-then-write sequences inside a write transaction (idempotency lookups, lease checks)
//!   cannot race. WAL lets the readers run alongside. No HTTP inside a transaction (STYLE rule 6).
//! - **Group commit** (`writer`): concurrent `ingest` and `finish` calls share one transaction,
//!   so an fsync per commit does not cap throughput; at an everyday rate finishes wait on a tray
//!   for the next ingest's commit (without waking the thread), and `ingest_and_claim` leases in
//!   the ingest's transaction: the batch's own deliveries inserted already leased while the
//!   dispatcher has room (`ClaimRequest::new_first`), a claim oldest due first otherwise.
//! - **Few statements, few result rows** per call, whatever the batch size: multi-row writes
//!   padded to a handful of cached shapes (`rows::padded_chunks`), id lists bound as one JSON
//!   array, hot-path reads aggregated into one JSON row (sqlx hands every row across a thread).
//! - **Lease-only commits skip the fsync** (`writer::Durability`), and claims take payloads from an
//!   in-memory cache of recent events (`cache`) rather than reading them back.
//! - **A write transaction that fails or is abandoned never poisons the writer** (`db::WriteTx`).
//!
//! Files, mirroring `postgres/` and the traits of `blockhook_core::store`: `db` (the type,
//! opening, pools, migrations, shared state, sqlx write transactions), then one file per concern
//! implementing its trait directly, each statement in a `const` just above the code that runs it
//! (STYLE rule 5): `merchants` (and API keys), `endpoints`, `events` (ingest, logs, backlog,
//! health), `queue` (claim, renew, finish, resend, recover), `maintenance` (ping, stats,
//! retention, checkpoint, key rotation). Below them, the backend's own helpers: `writer` (the
//! writer thread, durability), `cache`, `files` (locations, lock file, backup, restore), `rows`
//! (this backend's row decoding and SQL helpers; the shared part is `crate::rows`). Imports only
//! go downwards: the concern files use `db`, `writer`, `cache`, `rows`; `db` uses `writer`,
//! `cache`, `files`; the writer thread is handed the group transactions of `events` and `queue`
//! when it starts (`writer::Groups`) instead of importing them.
//! [`Maintenance::statements`](blockhook_core::Maintenance::statements) counts every statement
//! executed, transaction control included.

// Column lists shared by the queries that read whole rows, as macros so they can be spliced
// into `const` SQL with `concat!` (the statements stay static strings, prepared once).

/// The columns `rows::EndpointRow` reads.
macro_rules! endpoint_columns {
    () => {
        "id, merchant_id, url, description, event_types, signing_mode, success_policy, headers, \
         rate_limit, label, enabled, disabled_reason, secret, previous_secret, previous_secret_until, \
         created_at, updated_at, ordering"
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

mod activity;
mod alerts;
mod cache;
mod checkpoints;
mod db;
mod endpoints;
mod events;
mod files;
mod maintenance;
mod merchants;
mod queue;
mod rows;
#[cfg(test)]
mod tests;
mod writer;

use blockhook_core::Error;

pub(crate) use db::PAGE_SIZE;
pub use db::SqliteStore;
pub use files::{StoreLock, backup, database_path, lock, restore};

use crate::StoreOptions;

impl SqliteStore {
    /// Opens (creating the file and its directory, and migrating) the database at `url_or_path`:
    /// `sqlite://path`, `sqlite:path`, a plain path, or `sqlite::memory:`.
    ///
    /// Call it inside the Tokio runtime that will use the store: it starts the group-commit
    /// tasks there (see `writer`), and they end with that runtime.
    pub async fn open(url_or_path: &str, opts: &StoreOptions) -> Result<Self, Error> {
        // Here, at the top, because the writer thread (below the concern files) runs these.
        let groups = writer::Groups {
            ingest: events::ingest_group,
            ingested: events::remember_ingested,
            finish: queue::finish_group,
        };
        Self::open_with(url_or_path, opts, groups).await
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
        let store = SqliteStore::open(&path.to_string_lossy(), &opts)
            .await
            .expect("open a fresh SQLite store");
        Arc::new(store.keep_alive(Box::new(dir)))
    }
}
