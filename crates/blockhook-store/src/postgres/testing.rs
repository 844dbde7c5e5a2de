//! Fresh PostgreSQL stores for tests: each in its own schema of the database named by
//! `BLOCKHOOK_TEST_DATABASE_URL`, so tests run in parallel without seeing each other's rows.
//!
//! The schema is `bh_test_<uuidv7>`; every connection of the store (queries and LISTEN) gets it
//! as its `search_path` through the `options` startup parameter, and its `application_name`, so a
//! test can find (and kill) exactly its own backends in `pg_stat_activity`. Schemas left behind
//! by earlier runs are dropped once they are an hour old (the UUIDv7 in the name carries the
//! creation time), so the test database does not grow without bound.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use blockhook_core::StoreRef;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use super::db::PgStore;
use crate::StoreOptions;

/// The variable naming the test database (e.g. `postgres://postgres@127.0.0.1:5432/test`).
pub const ENV: &str = "BLOCKHOOK_TEST_DATABASE_URL";

/// Schemas of earlier runs older than this are dropped.
const STALE_AFTER_MS: u128 = 3_600_000;

/// A fresh test store and what a test needs to reach its database from outside.
pub struct TestDb {
    /// The store, migrated and empty.
    pub store: StoreRef,
    /// Its schema, also the `application_name` of all its connections.
    pub schema: String,
    /// The database URL (for an admin connection).
    pub url: String,
}

/// A fresh, migrated, empty store in its own schema, or `None` when [`ENV`] is not set.
///
/// Panics when the variable is set but the database cannot be used: a misconfigured test
/// database must fail the run, not skip the PostgreSQL checks silently.
pub async fn fresh() -> Option<StoreRef> {
    fresh_db().await.map(|db| db.store)
}

/// Like [`fresh`], with the schema name and URL (for tests that act on the backends).
pub async fn fresh_db() -> Option<TestDb> {
    let url = std::env::var(ENV).ok().filter(|u| !u.is_empty())?;
    match create(&url).await {
        Ok(db) => Some(db),
        Err(e) => panic!("{ENV} is set but no test store could be created there: {e}"),
    }
}

/// [`fresh_db`], or `None` after saying that `test` was skipped (no test database).
pub async fn fresh_db_or_skip(test: &str) -> Option<TestDb> {
    let db = fresh_db().await;
    if db.is_none() {
        skipped(test);
    }
    db
}

/// Says on stderr that `test` was skipped for want of a test database.
pub fn skipped(test: &str) {
    eprintln!("{test}: skipped, {ENV} is not set (e.g. postgres://postgres@127.0.0.1:5432/test)");
}

impl TestDb {
    /// Another store on the same schema, as a second blockhook process would open it.
    pub async fn another_store(&self) -> StoreRef {
        let store = PgStore::open_with(connect_to(&self.url, &self.schema), &test_options())
            .await
            .unwrap_or_else(|e| panic!("a second store on {}: {e}", self.schema));
        Arc::new(store)
    }
}

/// Options for a store of `schema`, named after it in `pg_stat_activity`.
fn connect_to(url: &str, schema: &str) -> PgConnectOptions {
    // `create` parsed the same URL before.
    PgConnectOptions::from_str(url)
        .unwrap_or_else(|e| panic!("bad URL: {e}"))
        .options([("search_path", schema)])
        .application_name(schema)
}

fn test_options() -> StoreOptions {
    StoreOptions {
        max_connections: 4,
        acquire_timeout: Duration::from_secs(5),
        ..StoreOptions::default()
    }
}

async fn create(url: &str) -> Result<TestDb, String> {
    let base = PgConnectOptions::from_str(url).map_err(|e| format!("bad URL: {e}"))?;
    let schema = format!("bh_test_{}", uuid::Uuid::now_v7().simple());

    let mut admin = PgConnection::connect_with(&base)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    drop_stale_schemas(&mut admin).await;
    // The name is ours (hex digits only), so formatting it into DDL is safe.
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .map_err(|e| format!("create schema: {e}"))?;
    let _ = admin.close().await;

    let store = PgStore::open_with(connect_to(url, &schema), &test_options())
        .await
        .map_err(|e| format!("open: {e}"))?;
    Ok(TestDb {
        store: Arc::new(store),
        schema,
        url: url.to_owned(),
    })
}

const TEST_SCHEMAS: &str =
    "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'bh\\_test\\_%'";

/// Drops test schemas older than [`STALE_AFTER_MS`]; best effort (another run may be dropping
/// the same ones).
async fn drop_stale_schemas(admin: &mut PgConnection) {
    let Ok(names) = sqlx::query_scalar::<_, String>(TEST_SCHEMAS)
        .fetch_all(&mut *admin)
        .await
    else {
        return;
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    for name in names {
        let Some(created_ms) = created_ms(&name) else {
            continue;
        };
        if now_ms.saturating_sub(created_ms) > STALE_AFTER_MS {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .execute(&mut *admin)
                .await;
        }
    }
}

/// The creation time (Unix ms) in a `bh_test_<uuidv7 simple>` name: its first 48 bits.
fn created_ms(schema: &str) -> Option<u128> {
    let hex = schema.strip_prefix("bh_test_")?;
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(hex.get(..12)?, 16).ok()
}
