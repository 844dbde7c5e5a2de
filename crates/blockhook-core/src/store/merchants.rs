//! Tenants and their API keys: who may use blockhook, and with which credentials.

use crate::{
    ApiKey, ApiKeyId, Cursor, Error, Merchant, MerchantId, MerchantStatus, NewApiKey, NewMerchant,
    Page, Timestamp,
};

/// Merchants (tenants) and their API keys.
#[async_trait::async_trait]
pub trait Merchants: Send + Sync + 'static {
    /// Creates a merchant (`Conflict` if the id exists).
    async fn create_merchant(&self, m: &NewMerchant) -> Result<Merchant, Error>;
    /// One merchant.
    async fn get_merchant(&self, id: &MerchantId) -> Result<Merchant, Error>;
    /// Merchants, newest first.
    async fn list_merchants(
        &self,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Merchant>, Error>;
    /// Suspends or reactivates.
    async fn set_merchant_status(
        &self,
        id: &MerchantId,
        status: MerchantStatus,
    ) -> Result<Merchant, Error>;
    /// Deletes a merchant and everything it owns.
    async fn delete_merchant(&self, id: &MerchantId) -> Result<(), Error>;

    /// Stores a new API key (hash only).
    async fn create_api_key(&self, key: &NewApiKey) -> Result<ApiKey, Error>;
    /// The key with this hash, revoked or not (the caller checks).
    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, Error>;
    /// A merchant's keys, newest first.
    async fn list_api_keys(&self, merchant: &MerchantId) -> Result<Vec<ApiKey>, Error>;
    /// The keys of all of `merchants`, newest first, in one query (for views listing several
    /// merchants). Unknown ids contribute nothing.
    async fn list_api_keys_of(&self, merchants: &[MerchantId]) -> Result<Vec<ApiKey>, Error>;
    /// Revokes a key (idempotent).
    async fn revoke_api_key(
        &self,
        merchant: &MerchantId,
        id: &ApiKeyId,
        at: Timestamp,
    ) -> Result<(), Error>;
}
