//! What the master key touches: the key check value and, for re-sealing, every sealed secret.

use blockhook_core::{EndpointId, Error, SealedSecret};

use super::store::PgStore;
use crate::classify;

const GET_CHECK: &str = "SELECT sealed FROM key_check WHERE id = 1";

pub(super) async fn key_check(db: &PgStore) -> Result<Option<Vec<u8>>, Error> {
    sqlx::query_scalar(GET_CHECK)
        .fetch_optional(db.db())
        .await
        .map_err(classify)
}

// One statement: the inserted row, or the one another process inserted first.
const INIT_CHECK: &str = "WITH ins AS ( \
        INSERT INTO key_check (id, sealed) VALUES (1, $1) ON CONFLICT (id) DO NOTHING \
        RETURNING sealed) \
     SELECT sealed FROM ins UNION ALL SELECT sealed FROM key_check WHERE id = 1 LIMIT 1";

pub(super) async fn init_key_check(db: &PgStore, sealed: &[u8]) -> Result<Vec<u8>, Error> {
    sqlx::query_scalar(INIT_CHECK)
        .bind(sealed)
        .fetch_one(db.db())
        .await
        .map_err(classify)
}

const REPLACE_CHECK: &str = "UPDATE key_check SET sealed = $2 WHERE id = 1 AND sealed = $1";

pub(super) async fn replace_key_check(
    db: &PgStore,
    expected: &[u8],
    new: &[u8],
) -> Result<bool, Error> {
    let done = sqlx::query(REPLACE_CHECK)
        .bind(expected)
        .bind(new)
        .execute(db.db())
        .await
        .map_err(classify)?;
    Ok(done.rows_affected() == 1)
}

const SEALED: &str = "SELECT id, secret FROM endpoints WHERE id > $1 ORDER BY id LIMIT $2";

pub(super) async fn sealed_secrets(
    db: &PgStore,
    after: Option<&EndpointId>,
    limit: u32,
) -> Result<Vec<(EndpointId, SealedSecret)>, Error> {
    let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(SEALED)
        .bind(after.map_or("", |id| id.as_str()))
        .bind(i64::from(limit))
        .fetch_all(db.db())
        .await
        .map_err(classify)?;
    Ok(rows
        .into_iter()
        .map(|(id, sealed)| (EndpointId::from_trusted(id), SealedSecret(sealed)))
        .collect())
}

// The version bump tells every process's endpoint cache the row changed.
const RESEAL: &str =
    "UPDATE endpoints SET secret = $3, version = version + 1 WHERE id = $1 AND secret = $2";

pub(super) async fn reseal_secret(
    db: &PgStore,
    id: &EndpointId,
    expected: &SealedSecret,
    new: &SealedSecret,
) -> Result<bool, Error> {
    let done = sqlx::query(RESEAL)
        .bind(id.as_str())
        .bind(&expected.0)
        .bind(&new.0)
        .execute(db.db())
        .await
        .map_err(classify)?;
    Ok(done.rows_affected() == 1)
}
