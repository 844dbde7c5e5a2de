//! Merchants (tenants) and their API keys. The [`Merchants`] impl.

use blockhook_core::{
    ApiKey, ApiKeyId, Cursor, Error, Merchant, MerchantId, MerchantStatus, Merchants, NewApiKey,
    NewMerchant, Page, Timestamp,
};

use super::db::SqliteStore;
use super::rows::{ApiKeyRow, MerchantRow, json_list, page_limit};
use crate::classify;

#[async_trait::async_trait]
impl Merchants for SqliteStore {
    /// Creates a merchant; an existing id is a unique violation, i.e. `Conflict`.
    async fn create_merchant(&self, m: &NewMerchant) -> Result<Merchant, Error> {
        const CREATE: &str = "INSERT INTO merchants (id, name, status, created_at) VALUES (?1, ?2, 'active', ?3) \
             RETURNING id, name, status, created_at";

        self.db.tick(1);
        let row: MerchantRow = sqlx::query_as(CREATE)
            .bind(m.id.as_str())
            .bind(&m.name)
            .bind(m.created_at.ms())
            .fetch_one(&mut *self.db.write().await?)
            .await
            .map_err(classify)?;
        row.try_into()
    }

    async fn get_merchant(&self, id: &MerchantId) -> Result<Merchant, Error> {
        const GET: &str = "SELECT id, name, status, created_at FROM merchants WHERE id = ?1";

        self.db.tick(1);
        let row: Option<MerchantRow> = sqlx::query_as(GET)
            .bind(id.as_str())
            .fetch_optional(&self.db.readers)
            .await
            .map_err(classify)?;
        row.ok_or(Error::NotFound("merchant"))?.try_into()
    }

    async fn list_merchants(
        &self,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Merchant>, Error> {
        // Merchant ids may be chosen by the operator, so they are not time-ordered: order by creation
        // time, the id breaking ties, and resume after the cursor's (created_at, id).
        const LIST_FIRST: &str = "SELECT id, name, status, created_at FROM merchants \
             ORDER BY created_at DESC, id DESC LIMIT ?1";
        const LIST_AFTER: &str = "SELECT id, name, status, created_at FROM merchants \
             WHERE (created_at, id) < (SELECT created_at, id FROM merchants WHERE id = ?2) \
             ORDER BY created_at DESC, id DESC LIMIT ?1";

        let (limit, fetch) = page_limit(limit);
        self.db.tick(1);
        let rows: Vec<MerchantRow> = match after {
            None => {
                sqlx::query_as(LIST_FIRST)
                    .bind(fetch)
                    .fetch_all(&self.db.readers)
                    .await
            }
            Some(c) => {
                sqlx::query_as(LIST_AFTER)
                    .bind(fetch)
                    .bind(&c.0)
                    .fetch_all(&self.db.readers)
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

    async fn set_merchant_status(
        &self,
        id: &MerchantId,
        status: MerchantStatus,
    ) -> Result<Merchant, Error> {
        const SET_STATUS: &str =
            "UPDATE merchants SET status = ?2 WHERE id = ?1 RETURNING id, name, status, created_at";

        self.db.tick(1);
        let row: Option<MerchantRow> = sqlx::query_as(SET_STATUS)
            .bind(id.as_str())
            .bind(status.as_str())
            .fetch_optional(&mut *self.db.write().await?)
            .await
            .map_err(classify)?;
        row.ok_or(Error::NotFound("merchant"))?.try_into()
    }

    async fn delete_merchant(&self, id: &MerchantId) -> Result<(), Error> {
        // Deliveries and attempts carry no foreign keys (see the migration): they go first, through the
        // merchant's endpoints (every delivery goes to an endpoint of its event's merchant); then the
        // merchant, whose foreign keys cascade to api_keys, endpoints and events.
        const DELETE_ATTEMPTS: &str = "DELETE FROM attempts WHERE endpoint_id IN \
             (SELECT id FROM endpoints WHERE merchant_id = ?1)";
        const DELETE_DELIVERIES: &str = "DELETE FROM deliveries WHERE endpoint_id IN \
             (SELECT id FROM endpoints WHERE merchant_id = ?1)";

        let mut tx = self.db.begin().await?;
        let result: Result<_, Error> = async {
            for sql in [DELETE_ATTEMPTS, DELETE_DELIVERIES] {
                self.db.tick(1);
                sqlx::query(sql)
                    .bind(id.as_str())
                    .execute(tx.conn())
                    .await
                    .map_err(classify)?;
            }
            self.db.tick(1);
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
        tx.end(&self.db, result).await
    }

    async fn create_api_key(&self, key: &NewApiKey) -> Result<ApiKey, Error> {
        // Inserts only when the merchant exists, so an unknown one is `NotFound` rather than a foreign
        // key failure (which SQLite reports without saying which key).
        const CREATE_KEY: &str = "INSERT INTO api_keys (id, merchant_id, prefix, hash, created_at) \
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM merchants WHERE id = ?2) \
             RETURNING id, merchant_id, prefix, created_at, revoked_at";

        self.db.tick(1);
        let row: Option<ApiKeyRow> = sqlx::query_as(CREATE_KEY)
            .bind(key.id.as_str())
            .bind(key.merchant_id.as_str())
            .bind(&key.prefix)
            .bind(&key.hash)
            .bind(key.created_at.ms())
            .fetch_optional(&mut *self.db.write().await?)
            .await
            .map_err(classify)?;
        Ok(row.ok_or(Error::NotFound("merchant"))?.into())
    }

    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, Error> {
        const BY_HASH: &str =
            "SELECT id, merchant_id, prefix, created_at, revoked_at FROM api_keys WHERE hash = ?1";

        self.db.tick(1);
        let row: Option<ApiKeyRow> = sqlx::query_as(BY_HASH)
            .bind(hash)
            .fetch_optional(&self.db.readers)
            .await
            .map_err(classify)?;
        Ok(row.map(ApiKey::from))
    }

    async fn list_api_keys(&self, merchant: &MerchantId) -> Result<Vec<ApiKey>, Error> {
        const LIST_KEYS: &str = "SELECT id, merchant_id, prefix, created_at, revoked_at FROM api_keys \
             WHERE merchant_id = ?1 ORDER BY id DESC";

        self.db.tick(1);
        let rows: Vec<ApiKeyRow> = sqlx::query_as(LIST_KEYS)
            .bind(merchant.as_str())
            .fetch_all(&self.db.readers)
            .await
            .map_err(classify)?;
        Ok(rows.into_iter().map(ApiKey::from).collect())
    }

    async fn list_api_keys_of(&self, merchants: &[MerchantId]) -> Result<Vec<ApiKey>, Error> {
        // The ids bound as one JSON array: any number of merchants, one statement, one plan.
        const KEYS_OF: &str = "SELECT id, merchant_id, prefix, created_at, revoked_at \
             FROM api_keys WHERE merchant_id IN (SELECT value FROM json_each(?1)) \
             ORDER BY id DESC";

        if merchants.is_empty() {
            return Ok(Vec::new());
        }
        self.db.tick(1);
        let rows: Vec<ApiKeyRow> = sqlx::query_as(KEYS_OF)
            .bind(json_list(merchants.iter().map(MerchantId::as_str))?)
            .fetch_all(&self.db.readers)
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
        // Idempotent: the first revocation time stays.
        const REVOKE_KEY: &str = "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?3) WHERE id = ?1 AND merchant_id = ?2";

        self.db.tick(1);
        let done = sqlx::query(REVOKE_KEY)
            .bind(id.as_str())
            .bind(merchant.as_str())
            .bind(at.ms())
            .execute(&mut *self.db.write().await?)
            .await
            .map_err(classify)?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound("api_key"));
        }
        Ok(())
    }
}
const DELETE: &str = "DELETE FROM merchants WHERE id = ?1";
