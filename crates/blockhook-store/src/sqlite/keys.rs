//! What the master key touches: the key check value and, for re-sealing, every sealed secret.

use blockhook_core::{EndpointId, Error, SealedSecret};

use super::db::Db;
use crate::classify;

const GET_CHECK: &str = "SELECT sealed FROM key_check WHERE id = 1";

pub(super) async fn key_check(s: &Db) -> Result<Option<Vec<u8>>, Error> {
    s.tick(1);
    sqlx::query_scalar(GET_CHECK)
        .fetch_optional(&s.readers)
        .await
        .map_err(classify)
}

const INIT_CHECK: &str =
    "INSERT INTO key_check (id, sealed) VALUES (1, ?1) ON CONFLICT (id) DO NOTHING";

pub(super) async fn init_key_check(s: &Db, sealed: &[u8]) -> Result<Vec<u8>, Error> {
    s.tick(2);
    let mut conn = s.write().await?;
    sqlx::query(INIT_CHECK)
        .bind(sealed)
        .execute(&mut *conn)
        .await
        .map_err(classify)?;
    sqlx::query_scalar(GET_CHECK)
        .fetch_one(&mut *conn)
        .await
        .map_err(classify)
}

const REPLACE_CHECK: &str = "UPDATE key_check SET sealed = ?2 WHERE id = 1 AND sealed = ?1";

pub(super) async fn replace_key_check(s: &Db, expected: &[u8], new: &[u8]) -> Result<bool, Error> {
    s.tick(1);
    let done = sqlx::query(REPLACE_CHECK)
        .bind(expected)
        .bind(new)
        .execute(&mut *s.write().await?)
        .await
        .map_err(classify)?;
    Ok(done.rows_affected() == 1)
}

const SEALED: &str = "SELECT id, secret FROM endpoints WHERE id > ?1 ORDER BY id LIMIT ?2";

pub(super) async fn sealed_secrets(
    s: &Db,
    after: Option<&EndpointId>,
    limit: u32,
) -> Result<Vec<(EndpointId, SealedSecret)>, Error> {
    s.tick(1);
    let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(SEALED)
        .bind(after.map_or("", |id| id.as_str()))
        .bind(i64::from(limit))
        .fetch_all(&s.readers)
        .await
        .map_err(classify)?;
    Ok(rows
        .into_iter()
        .map(|(id, sealed)| (EndpointId::from_trusted(id), SealedSecret(sealed)))
        .collect())
}

// The version bump tells the endpoint cache the row changed.
const RESEAL: &str =
    "UPDATE endpoints SET secret = ?3, version = version + 1 WHERE id = ?1 AND secret = ?2";

pub(super) async fn reseal_secret(
    s: &Db,
    id: &EndpointId,
    expected: &SealedSecret,
    new: &SealedSecret,
) -> Result<bool, Error> {
    s.tick(1);
    let done = sqlx::query(RESEAL)
        .bind(id.as_str())
        .bind(expected.0.as_slice())
        .bind(new.0.as_slice())
        .execute(&mut *s.write().await?)
        .await
        .map_err(classify)?;
    Ok(done.rows_affected() == 1)
}
