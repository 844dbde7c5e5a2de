//! Merchants and their API keys.

use blockhook_core::{
    ApiKey, ApiKeyId, Cursor, Error, Merchant, MerchantId, MerchantStatus, NewApiKey, NewMerchant,
    Page, Timestamp,
};

use super::rows::{ApiKeyRow, MerchantRow};
use super::store::{PgStore, cursor, insert_error, overfetch};
use crate::classify;

const CREATE: &str = "INSERT INTO merchants (id, name, status, created_at) \
     VALUES ($1, $2, 'active', $3) RETURNING id, name, status, created_at";

pub(super) async fn create(db: &PgStore, m: &NewMerchant) -> Result<Merchant, Error> {
    let row: MerchantRow = sqlx::query_as(CREATE)
        .bind(m.id.as_str())
        .bind(&m.name)
        .bind(m.created_at.ms())
        .fetch_one(db.db())
        .await
        .map_err(|e| insert_error(e, "merchant", "merchant"))?;
    row.try_into()
}

const GET: &str = "SELECT id, name, status, created_at FROM merchants WHERE id = $1";

pub(super) async fn get(db: &PgStore, id: &MerchantId) -> Result<Merchant, Error> {
    let row: Option<MerchantRow> = sqlx::query_as(GET)
        .bind(id.as_str())
        .fetch_optional(db.db())
        .await
        .map_err(classify)?;
    row.ok_or(Error::NotFound("merchant"))?.try_into()
}

// Newest first by id (ids are time-ordered); the cursor is the last id returned.
const LIST: &str = "SELECT id, name, status, created_at FROM merchants \
     WHERE id < $1 ORDER BY id DESC LIMIT $2";

pub(super) async fn list(
    db: &PgStore,
    after: Option<&Cursor>,
    limit: u32,
) -> Result<Page<Merchant>, Error> {
    let rows: Vec<MerchantRow> = sqlx::query_as(LIST)
        .bind(cursor(after))
        .bind(overfetch(limit))
        .fetch_all(db.db())
        .await
        .map_err(classify)?;
    let merchants = rows
        .into_iter()
        .map(Merchant::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_overfetch(
        merchants,
        limit.max(1) as usize,
        |m| m.id.to_string(),
    ))
}

const SET_STATUS: &str = "UPDATE merchants SET status = $2 WHERE id = $1 \
     RETURNING id, name, status, created_at";

pub(super) async fn set_status(
    db: &PgStore,
    id: &MerchantId,
    status: MerchantStatus,
) -> Result<Merchant, Error> {
    let row: Option<MerchantRow> = sqlx::query_as(SET_STATUS)
        .bind(id.as_str())
        .bind(status.as_str())
        .fetch_optional(db.db())
        .await
        .map_err(classify)?;
    row.ok_or(Error::NotFound("merchant"))?.try_into()
}

// Keys, endpoints and events cascade; deliveries and attempts cascade from those.
const DELETE: &str = "DELETE FROM merchants WHERE id = $1";

pub(super) async fn delete(db: &PgStore, id: &MerchantId) -> Result<(), Error> {
    let done = sqlx::query(DELETE)
        .bind(id.as_str())
        .execute(db.db())
        .await
        .map_err(classify)?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound("merchant"));
    }
    Ok(())
}

const CREATE_KEY: &str = "INSERT INTO api_keys (id, merchant_id, prefix, hash, created_at) \
     VALUES ($1, $2, $3, $4, $5) RETURNING id, merchant_id, prefix, created_at, revoked_at";

pub(super) async fn create_key(db: &PgStore, key: &NewApiKey) -> Result<ApiKey, Error> {
    let row: ApiKeyRow = sqlx::query_as(CREATE_KEY)
        .bind(key.id.as_str())
        .bind(key.merchant_id.as_str())
        .bind(&key.prefix)
        .bind(&key.hash)
        .bind(key.created_at.ms())
        .fetch_one(db.db())
        .await
        .map_err(|e| insert_error(e, "merchant", "api key"))?;
    Ok(row.into())
}

const KEY_BY_HASH: &str =
    "SELECT id, merchant_id, prefix, created_at, revoked_at FROM api_keys WHERE hash = $1";

pub(super) async fn key_by_hash(db: &PgStore, hash: &str) -> Result<Option<ApiKey>, Error> {
    let row: Option<ApiKeyRow> = sqlx::query_as(KEY_BY_HASH)
        .bind(hash)
        .fetch_optional(db.db())
        .await
        .map_err(classify)?;
    Ok(row.map(ApiKey::from))
}

const LIST_KEYS: &str = "SELECT id, merchant_id, prefix, created_at, revoked_at FROM api_keys \
     WHERE merchant_id = $1 ORDER BY id DESC";

pub(super) async fn list_keys(db: &PgStore, merchant: &MerchantId) -> Result<Vec<ApiKey>, Error> {
    let rows: Vec<ApiKeyRow> = sqlx::query_as(LIST_KEYS)
        .bind(merchant.as_str())
        .fetch_all(db.db())
        .await
        .map_err(classify)?;
    Ok(rows.into_iter().map(ApiKey::from).collect())
}

// Idempotent: a second revocation matches the row but keeps the first time.
const REVOKE_KEY: &str = "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) \
     WHERE id = $1 AND merchant_id = $2";

pub(super) async fn revoke_key(
    db: &PgStore,
    merchant: &MerchantId,
    id: &ApiKeyId,
    at: Timestamp,
) -> Result<(), Error> {
    let done = sqlx::query(REVOKE_KEY)
        .bind(id.as_str())
        .bind(merchant.as_str())
        .bind(at.ms())
        .execute(db.db())
        .await
        .map_err(classify)?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound("api_key"));
    }
    Ok(())
}
