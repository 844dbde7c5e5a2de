//! Merchants (tenants) and their API keys.

use blockhook_core::{
    ApiKey, ApiKeyId, Cursor, Error, Merchant, MerchantId, MerchantStatus, NewApiKey, NewMerchant,
    Page, Timestamp,
};

use super::db::Db;
use super::rows::{ApiKeyRow, MerchantRow, page_limit};
use crate::classify;

const CREATE: &str = "INSERT INTO merchants (id, name, status, created_at) VALUES (?1, ?2, 'active', ?3) \
     RETURNING id, name, status, created_at";

/// Creates a merchant; an existing id is a unique violation, i.e. `Conflict`.
pub(super) async fn create(s: &Db, m: &NewMerchant) -> Result<Merchant, Error> {
    s.tick(1);
    let row: MerchantRow = sqlx::query_as(CREATE)
        .bind(m.id.as_str())
        .bind(&m.name)
        .bind(m.created_at.ms())
        .fetch_one(&mut *s.write().await?)
        .await
        .map_err(classify)?;
    row.try_into()
}

const GET: &str = "SELECT id, name, status, created_at FROM merchants WHERE id = ?1";

pub(super) async fn get(s: &Db, id: &MerchantId) -> Result<Merchant, Error> {
    s.tick(1);
    let row: Option<MerchantRow> = sqlx::query_as(GET)
        .bind(id.as_str())
        .fetch_optional(&s.readers)
        .await
        .map_err(classify)?;
    row.ok_or(Error::NotFound("merchant"))?.try_into()
}

// Merchant ids may be chosen by the operator, so they are not time-ordered: order by creation
// time, the id breaking ties, and resume after the cursor's (created_at, id).
const LIST_FIRST: &str = "SELECT id, name, status, created_at FROM merchants \
     ORDER BY created_at DESC, id DESC LIMIT ?1";
const LIST_AFTER: &str = "SELECT id, name, status, created_at FROM merchants \
     WHERE (created_at, id) < (SELECT created_at, id FROM merchants WHERE id = ?2) \
     ORDER BY created_at DESC, id DESC LIMIT ?1";

pub(super) async fn list(
    s: &Db,
    after: Option<&Cursor>,
    limit: u32,
) -> Result<Page<Merchant>, Error> {
    let (limit, fetch) = page_limit(limit);
    s.tick(1);
    let rows: Vec<MerchantRow> = match after {
        None => {
            sqlx::query_as(LIST_FIRST)
                .bind(fetch)
                .fetch_all(&s.readers)
                .await
        }
        Some(c) => {
            sqlx::query_as(LIST_AFTER)
                .bind(fetch)
                .bind(&c.0)
                .fetch_all(&s.readers)
                .await
        }
    }
    .map_err(classify)?;
    let merchants = rows
        .into_iter()
        .map(Merchant::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_overfetch(merchants, limit, |m| m.id.to_string()))
}

const SET_STATUS: &str =
    "UPDATE merchants SET status = ?2 WHERE id = ?1 RETURNING id, name, status, created_at";

pub(super) async fn set_status(
    s: &Db,
    id: &MerchantId,
    status: MerchantStatus,
) -> Result<Merchant, Error> {
    s.tick(1);
    let row: Option<MerchantRow> = sqlx::query_as(SET_STATUS)
        .bind(id.as_str())
        .bind(status.as_str())
        .fetch_optional(&mut *s.write().await?)
        .await
        .map_err(classify)?;
    row.ok_or(Error::NotFound("merchant"))?.try_into()
}

// Deliveries and attempts carry no foreign keys (see the migration): they go first, through the
// merchant's endpoints (every delivery goes to an endpoint of its event's merchant); then the
// merchant, whose foreign keys cascade to api_keys, endpoints and events.
const DELETE_ATTEMPTS: &str = "DELETE FROM attempts WHERE endpoint_id IN \
     (SELECT id FROM endpoints WHERE merchant_id = ?1)";
const DELETE_DELIVERIES: &str = "DELETE FROM deliveries WHERE endpoint_id IN \
     (SELECT id FROM endpoints WHERE merchant_id = ?1)";
const DELETE: &str = "DELETE FROM merchants WHERE id = ?1";

pub(super) async fn delete(s: &Db, id: &MerchantId) -> Result<(), Error> {
    let mut tx = s.begin().await?;
    let result: Result<_, Error> = async {
        for sql in [DELETE_ATTEMPTS, DELETE_DELIVERIES] {
            s.tick(1);
            sqlx::query(sql)
                .bind(id.as_str())
                .execute(tx.conn())
                .await
                .map_err(classify)?;
        }
        s.tick(1);
        let done = sqlx::query(DELETE)
            .bind(id.as_str())
            .execute(tx.conn())
            .await
            .map_err(classify)?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound("merchant"));
        }
        Ok(())
    }
    .await;
    tx.end(s, result).await
}

// Inserts only when the merchant exists, so an unknown one is `NotFound` rather than a foreign
// key failure (which SQLite reports without saying which key).
const CREATE_KEY: &str = "INSERT INTO api_keys (id, merchant_id, prefix, hash, created_at) \
     SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM merchants WHERE id = ?2) \
     RETURNING id, merchant_id, prefix, created_at, revoked_at";

pub(super) async fn create_key(s: &Db, key: &NewApiKey) -> Result<ApiKey, Error> {
    s.tick(1);
    let row: Option<ApiKeyRow> = sqlx::query_as(CREATE_KEY)
        .bind(key.id.as_str())
        .bind(key.merchant_id.as_str())
        .bind(&key.prefix)
        .bind(&key.hash)
        .bind(key.created_at.ms())
        .fetch_optional(&mut *s.write().await?)
        .await
        .map_err(classify)?;
    Ok(row.ok_or(Error::NotFound("merchant"))?.into())
}

const BY_HASH: &str =
    "SELECT id, merchant_id, prefix, created_at, revoked_at FROM api_keys WHERE hash = ?1";

pub(super) async fn key_by_hash(s: &Db, hash: &str) -> Result<Option<ApiKey>, Error> {
    s.tick(1);
    let row: Option<ApiKeyRow> = sqlx::query_as(BY_HASH)
        .bind(hash)
        .fetch_optional(&s.readers)
        .await
        .map_err(classify)?;
    Ok(row.map(ApiKey::from))
}

const LIST_KEYS: &str = "SELECT id, merchant_id, prefix, created_at, revoked_at FROM api_keys \
     WHERE merchant_id = ?1 ORDER BY id DESC";

pub(super) async fn list_keys(s: &Db, merchant: &MerchantId) -> Result<Vec<ApiKey>, Error> {
    s.tick(1);
    let rows: Vec<ApiKeyRow> = sqlx::query_as(LIST_KEYS)
        .bind(merchant.as_str())
        .fetch_all(&s.readers)
        .await
        .map_err(classify)?;
    Ok(rows.into_iter().map(ApiKey::from).collect())
}

// Idempotent: the first revocation time stays.
const REVOKE_KEY: &str =
    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?3) WHERE id = ?1 AND merchant_id = ?2";

pub(super) async fn revoke_key(
    s: &Db,
    merchant: &MerchantId,
    id: &ApiKeyId,
    at: Timestamp,
) -> Result<(), Error> {
    s.tick(1);
    let done = sqlx::query(REVOKE_KEY)
        .bind(id.as_str())
        .bind(merchant.as_str())
        .bind(at.ms())
        .execute(&mut *s.write().await?)
        .await
        .map_err(classify)?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound("api_key"));
    }
    Ok(())
}
