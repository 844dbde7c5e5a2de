//! Throwaway schemas in a shared PostgreSQL database, for tools that run against one and remove
//! it afterwards (`blockhook bench`), so that nothing outside this crate speaks SQL. A store
//! opened with `search_path` set to the schema (the `options` URL parameter) creates its tables
//! there.

use blockhook_core::Error;
use sqlx::{Connection, PgConnection};

use crate::classify;

/// Refuses names that would need quoting: a schema name is spliced into the statement (DDL
/// takes no bind parameters).
fn checked(name: &str) -> Result<&str, Error> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        Ok(name)
    } else {
        Err(Error::invalid(
            "schema",
            "lowercase ASCII letters, digits and '_', at most 63, not starting with a digit",
        ))
    }
}

async fn run(url: &str, sql: &str) -> Result<(), Error> {
    let mut conn = PgConnection::connect(url).await.map_err(classify)?;
    let done = sqlx::query(sql).execute(&mut conn).await.map_err(classify);
    // The session ends either way; a failed close changes nothing the statement did.
    let _ = conn.close().await;
    done.map(|_| ())
}

/// Creates the empty schema `name` in the database at `url`.
pub async fn create(url: &str, name: &str) -> Result<(), Error> {
    run(url, &format!("CREATE SCHEMA {}", checked(name)?)).await
}

/// Drops the schema `name` with everything in it.
pub async fn drop(url: &str, name: &str) -> Result<(), Error> {
    run(url, &format!("DROP SCHEMA {} CASCADE", checked(name)?)).await
}
