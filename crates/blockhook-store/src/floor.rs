//! The durable floor: the least a store can write per event and still keep the promise of a
//! `202` (the event survives `kill -9`, and a power cut at `synchronous=FULL`): one row of the
//! event's bytes, committed alone. `blockhook bench --rate R` runs it at the offered rate and
//! prints its CPU per commit beside the loopback floor, so that every run shows how much of the
//! server's CPU per event no implementation with this durability can avoid on that machine.
//!
//! Not used by the server. It lives here because this crate is the only one that speaks SQL,
//! and it opens SQLite with the writer thread's settings (`sqlite/writer.rs`: WAL, the page size
//! of `sqlite/db.rs`, the configured `synchronous`), built with the workspace's SQLite flags.

use std::path::Path;
use std::time::{Duration, Instant};

use blockhook_core::Error;
use rusqlite::Connection;
use sqlx::Connection as _;

use crate::sqlite::PAGE_SIZE;
use crate::{SqliteSync, classify, classify_sqlite};

/// `n` commits, one every `gap`, as a publisher at a fixed rate paces them.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// How many commits.
    pub commits: u64,
    /// The time between two commits' starts.
    pub gap: Duration,
}

impl Pace {
    /// When commit `i` is due, counted from `started`.
    fn due(&self, started: Instant, i: u64) -> Instant {
        started + self.gap.mul_f64(i as f64)
    }
}

/// Commits `pace.commits` rows of `body(i)`, each alone and paced, into a fresh SQLite database
/// at `path` (WAL, the store's page size, `sync`). Blocks the calling thread for the whole run.
pub fn sqlite_commits(
    path: &Path,
    sync: SqliteSync,
    pace: Pace,
    body: impl Fn(u64) -> String,
) -> Result<(), Error> {
    let conn = Connection::open(path).map_err(classify_sqlite)?;
    let level = match sync {
        SqliteSync::Full => "FULL",
        SqliteSync::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA page_size = {PAGE_SIZE}; PRAGMA journal_mode = WAL; PRAGMA synchronous = {level}; \
         CREATE TABLE floor (id INTEGER PRIMARY KEY, body BLOB NOT NULL);"
    ))
    .map_err(classify_sqlite)?;
    let mut insert = conn
        .prepare("INSERT INTO floor (body) VALUES (?1)")
        .map_err(classify_sqlite)?;
    let started = Instant::now();
    for i in 0..pace.commits {
        std::thread::sleep(
            pace.due(started, i)
                .saturating_duration_since(Instant::now()),
        );
        insert
            .execute([body(i).as_bytes()])
            .map_err(classify_sqlite)?;
    }
    Ok(())
}

/// Commits `pace.commits` rows of `body(i)`, each alone and paced, on one connection to the
/// PostgreSQL database at `url`, into a table `floor` it creates in the connection's schema
/// (the caller's fresh schema: `url` sets its `search_path`).
pub async fn postgres_commits(
    url: &str,
    pace: Pace,
    body: impl Fn(u64) -> String,
) -> Result<(), Error> {
    let mut conn = sqlx::PgConnection::connect(url).await.map_err(classify)?;
    sqlx::query("CREATE TABLE floor (id bigserial PRIMARY KEY, body bytea NOT NULL)")
        .execute(&mut conn)
        .await
        .map_err(classify)?;
    let started = Instant::now();
    for i in 0..pace.commits {
        tokio::time::sleep_until(pace.due(started, i).into()).await;
        sqlx::query("INSERT INTO floor (body) VALUES ($1)")
            .bind(body(i).into_bytes())
            .execute(&mut conn)
            .await
            .map_err(classify)?;
    }
    conn.close().await.map_err(classify)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_commit_is_a_row_of_its_body() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("floor.db");
        let pace = Pace {
            commits: 5,
            gap: Duration::from_millis(2),
        };
        let started = Instant::now();
        sqlite_commits(&path, SqliteSync::Full, pace, |i| format!("body {i}"))?;
        // Paced: the last commit starts no earlier than four gaps after the first.
        assert!(started.elapsed() >= Duration::from_millis(8));
        let conn = Connection::open(&path)?;
        let bodies: Vec<Vec<u8>> = conn
            .prepare("SELECT body FROM floor ORDER BY id")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let expected: Vec<Vec<u8>> = (0..5).map(|i| format!("body {i}").into_bytes()).collect();
        assert_eq!(bodies, expected);
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        assert_eq!(mode, "wal");
        let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        assert_eq!(page, i64::from(PAGE_SIZE));
        Ok(())
    }

    #[cfg(feature = "contract")]
    #[tokio::test]
    async fn every_postgres_commit_is_a_row_of_its_body() -> Result<(), Box<dyn std::error::Error>>
    {
        use crate::postgres::testing;
        let Some(db) =
            testing::fresh_db_or_skip("every_postgres_commit_is_a_row_of_its_body").await
        else {
            return Ok(());
        };
        let sep = if db.url.contains('?') { '&' } else { '?' };
        let url = format!("{}{sep}options=-c%20search_path%3D{}", db.url, db.schema);
        let pace = Pace {
            commits: 3,
            gap: Duration::from_millis(1),
        };
        postgres_commits(&url, pace, |i| format!("body {i}")).await?;
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        let bodies: Vec<Vec<u8>> = sqlx::query_scalar("SELECT body FROM floor ORDER BY id")
            .fetch_all(&mut conn)
            .await?;
        let expected: Vec<Vec<u8>> = (0..3).map(|i| format!("body {i}").into_bytes()).collect();
        assert_eq!(bodies, expected);
        Ok(())
    }
}
