//! Merchants and their API keys: the [`Merchants`] impl.

use blockhook_core::{
    ApiKey, ApiKeyId, Cursor, Error, Merchant, MerchantId, MerchantStatus, Merchants, NewApiKey,
    NewMerchant, Page, Timestamp,
};

use super::db::{PgStore, cursor, insert_error, overfetch};
use super::rows::{ApiKeyRow, MerchantRow};
use crate::classify;

#[async_trait::async_trait]
impl Merchants for PgStore {
    async fn create_merchant(&self, m: &NewMerchant) -> Result<Merchant, Error> {
        const CREATE: &str = "INSERT INTO merchants (id, name, status, created_at) \
             VALUES ($1, $2, 'active', $3) RETURNING id, name, status, created_at";

        let row: MerchantRow = sqlx::query_as(CREATE)
            .bind(m.id.as_str())
            .bind(&m.name)
            .bind(m.created_at.ms())
            .fetch_one(self.db())
            .await
            .map_err(|e| insert_error(e, "merchant", "merchant"))?;
        row.try_into()
    }

    async fn get_merchant(&self, id: &MerchantId) -> Result<Merchant, Error> {
        const GET: &str = "SELECT id, name, status, created_at FROM merchants WHERE id = $1";

        let row: Option<MerchantRow> = sqlx::query_as(GET)
            .bind(id.as_str())
            .fetch_optional(self.db())
            .await
            .map_err(classify)?;
        row.ok_or(Error::NotFound("merchant"))?.try_into()
    }

    async fn list_merchants(
        &self,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Merchant>, Error> {
        // Newest first by id (ids are time-ordered); the cursor is the last id returned.
        const LIST: &str = "SELECT id, name, status, created_at FROM merchants \
             WHERE id < $1 ORDER BY id DESC LIMIT $2";

        let rows: Vec<MerchantRow> = sqlx::query_as(LIST)
            .bind(cursor(after))
            .bind(overfetch(limit))
            .fetch_all(self.db())
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

    async fn set_merchant_status(
        &self,
        id: &MerchantId,
        status: MerchantStatus,
    ) -> Result<Merchant, Error> {
        const SET_STATUS: &str = "UPDATE merchants SET status = $2 WHERE id = $1 \
             RETURNING id, name, status, created_at";

        let row: Option<MerchantRow> = sqlx::query_as(SET_STATUS)
            .bind(id.as_str())
            .bind(status.as_str())
            .fetch_optional(self.db())
            .await
            .map_err(classify)?;
        row.ok_or(Error::NotFound("merchant"))?.try_into()
    }

    async fn delete_merchant(&self, id: &MerchantId) -> Result<(), Error> {
        // Attempts have no foreign key (migration 12): they go by their endpoints, so the order
        // matters. The merchant's row lock comes first: creating an endpoint takes a key-share
        // lock on its merchant, so no endpoint is added meanwhile. Then the endpoints (their
        // deliveries cascade), which waits for any finish holding one of those deliveries locked;
        // the attempts' statement comes after it, so its fresh snapshot (READ COMMITTED) sees
        // what such a finish logged, and it needs the endpoints' ids from their delete, as they
        // are gone by then. Last the merchant: its keys, events and search rows cascade.
        const LOCK: &str = "SELECT 1 FROM merchants WHERE id = $1 FOR UPDATE";
        const DELETE_ENDPOINTS: &str = "DELETE FROM endpoints WHERE merchant_id = $1 RETURNING id";
        const DELETE_ATTEMPTS: &str = "DELETE FROM attempts WHERE endpoint_id = ANY($1)";
        const DELETE: &str = "DELETE FROM merchants WHERE id = $1";

        let mut tx = self.begin().await?;
        let found: Option<i32> = sqlx::query_scalar(LOCK)
            .bind(id.as_str())
            .fetch_optional(self.on(&mut tx))
            .await
            .map_err(classify)?;
        if found.is_none() {
            // Dropping the transaction rolls it back.
            return Err(Error::NotFound("merchant"));
        }
        let endpoints: Vec<String> = sqlx::query_scalar(DELETE_ENDPOINTS)
            .bind(id.as_str())
            .fetch_all(self.on(&mut tx))
            .await
            .map_err(classify)?;
        if !endpoints.is_empty() {
            sqlx::query(DELETE_ATTEMPTS)
                .bind(&endpoints)
                .execute(self.on(&mut tx))
                .await
                .map_err(classify)?;
        }
        sqlx::query(DELETE)
            .bind(id.as_str())
            .execute(self.on(&mut tx))
            .await
            .map_err(classify)?;
        self.commit(tx).await
    }

    async fn create_api_key(&self, key: &NewApiKey) -> Result<ApiKey, Error> {
        const CREATE_KEY: &str = "INSERT INTO api_keys (id, merchant_id, prefix, hash, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id, merchant_id, prefix, created_at, revoked_at";

        let row: ApiKeyRow = sqlx::query_as(CREATE_KEY)
            .bind(key.id.as_str())
            .bind(key.merchant_id.as_str())
            .bind(&key.prefix)
            .bind(&key.hash)
            .bind(key.created_at.ms())
            .fetch_one(self.db())
            .await
            .map_err(|e| insert_error(e, "merchant", "api key"))?;
        Ok(row.into())
    }

    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, Error> {
        const KEY_BY_HASH: &str =
            "SELECT id, merchant_id, prefix, created_at, revoked_at FROM api_keys WHERE hash = $1";

        let row: Option<ApiKeyRow> = sqlx::query_as(KEY_BY_HASH)
            .bind(hash)
            .fetch_optional(self.db())
            .await
            .map_err(classify)?;
        Ok(row.map(ApiKey::from))
    }

    async fn list_api_keys(&self, merchant: &MerchantId) -> Result<Vec<ApiKey>, Error> {
        const LIST_KEYS: &str = "SELECT id, merchant_id, prefix, created_at, revoked_at FROM api_keys \
             WHERE merchant_id = $1 ORDER BY id DESC";

        let rows: Vec<ApiKeyRow> = sqlx::query_as(LIST_KEYS)
            .bind(merchant.as_str())
            .fetch_all(self.db())
            .await
            .map_err(classify)?;
        Ok(rows.into_iter().map(ApiKey::from).collect())
    }

    async fn list_api_keys_of(&self, merchants: &[MerchantId]) -> Result<Vec<ApiKey>, Error> {
        const KEYS_OF: &str = "SELECT id, merchant_id, prefix, created_at, revoked_at \
             FROM api_keys WHERE merchant_id = ANY($1) ORDER BY id DESC";

        if merchants.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = merchants.iter().map(MerchantId::as_str).collect();
        let rows: Vec<ApiKeyRow> = sqlx::query_as(KEYS_OF)
            .bind(&ids)
            .fetch_all(self.db())
            .await
            .map_err(classify)?;
        Ok(rows.into_iter().map(ApiKey::from).collect())
    }

    async fn revoke_api_key(
        &self,
        merchant: &MerchantId,
        id: &ApiKeyId,
        at: Timestamp,
    ) -> Result<(), Error> {
        // Idempotent: a second revocation matches the row but keeps the first time.
        const REVOKE_KEY: &str = "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) \
             WHERE id = $1 AND merchant_id = $2";

        let done = sqlx::query(REVOKE_KEY)
            .bind(id.as_str())
            .bind(merchant.as_str())
            .bind(at.ms())
            .execute(self.db())
            .await
            .map_err(classify)?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound("api_key"));
        }
        Ok(())
    }
}
