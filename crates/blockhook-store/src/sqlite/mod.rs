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
mod db;
mod dispatch;
mod endpoints;
mod events;
mod group;
mod merchants;
mod ops;
#[cfg(test)]
mod perf;
mod rows;
mod store;
#[cfg(test)]
mod tests;

pub use store::SqliteStore;

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
