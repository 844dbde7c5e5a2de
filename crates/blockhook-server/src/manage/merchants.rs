//! Merchants (create, list, read, suspend or reactivate, delete) and their API keys (issue,
//! list, revoke); for the dashboard also merchants with their keys. Operator actions: the
//! callers check that the operator is acting.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use blockhook_core::{
    ApiKey, ApiKeyId, Merchant, MerchantId, MerchantStatus, NewApiKey, NewMerchant,
};

use super::{MAX_PAGE, PageView};
use crate::error::{ApiError, ApiResult};
use crate::keys::IssuedKey;
use crate::state::AppState;

/// A merchant to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMerchant {
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// An id of your choice (`mch_` + letters and digits); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
}

/// A new status for a merchant.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMerchant {
    /// `active` or `suspended`. A suspended merchant's keys are refused and its events rejected.
    pub status: String,
}

/// A merchant as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MerchantView {
    /// Its id (`mch_…`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// `active` or `suspended`.
    pub status: String,
    /// Creation time, Unix ms.
    pub created_at: i64,
}

impl From<Merchant> for MerchantView {
    fn from(m: Merchant) -> Self {
        Self {
            id: m.id.to_string(),
            name: m.name,
            status: m.status.as_str().to_owned(),
            created_at: m.created_at.ms(),
        }
    }
}

/// An API key as listed: its prefix only, never the key.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeyView {
    /// Its id (`key_…`).
    pub id: String,
    /// The merchant it authenticates.
    pub merchant_id: String,
    /// The key's first characters, to recognise it.
    pub prefix: String,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// Revocation time, Unix ms, if revoked.
    pub revoked_at: Option<i64>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id.to_string(),
            merchant_id: k.merchant_id.to_string(),
            prefix: k.prefix,
            created_at: k.created_at.ms(),
            revoked_at: k.revoked_at.map(|t| t.ms()),
        }
    }
}

/// A key as issued: the only time the key itself is shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IssuedKeyView {
    /// Its id (`key_…`).
    pub id: String,
    /// The merchant it authenticates.
    pub merchant_id: String,
    /// The key: send it as `Authorization: Bearer <key>`. Not retrievable later.
    pub key: String,
    /// The key's first characters, as lists show them.
    pub prefix: String,
}

/// Creates a merchant.
pub async fn create(state: &AppState, input: CreateMerchant) -> ApiResult<MerchantView> {
    let id = match input.id.as_deref() {
        Some(raw) => MerchantId::parse(raw)?,
        None => MerchantId::generate(),
    };
    let new = NewMerchant::parse(id, &input.name, state.clock.now())?;
    Ok(state.store.create_merchant(&new).await?.into())
}

/// Merchants, newest first.
pub async fn list(state: &AppState, page: &super::PageQuery) -> ApiResult<PageView<MerchantView>> {
    let limit = page.limit()?;
    let after = page.cursor(MerchantId::parse)?;
    let rows = state.store.list_merchants(after.as_ref(), limit).await?;
    PageView::map(rows, |m| Ok(m.into()))
}

/// One merchant.
pub async fn get(state: &AppState, id: &MerchantId) -> ApiResult<MerchantView> {
    Ok(state.store.get_merchant(id).await?.into())
}

/// Suspends or reactivates a merchant.
pub async fn set_status(
    state: &AppState,
    id: &MerchantId,
    input: UpdateMerchant,
) -> ApiResult<MerchantView> {
    let status = MerchantStatus::parse(&input.status)?;
    Ok(state.store.set_merchant_status(id, status).await?.into())
}

/// Deletes a merchant with everything it owns.
pub async fn delete(state: &AppState, id: &MerchantId) -> ApiResult<()> {
    Ok(state.store.delete_merchant(id).await?)
}

/// Issues a new API key; the answer is the only place the key appears.
pub async fn issue_key(state: &AppState, merchant: &MerchantId) -> ApiResult<IssuedKeyView> {
    let issued = IssuedKey::generate();
    let key = NewApiKey {
        id: ApiKeyId::generate(),
        merchant_id: merchant.clone(),
        prefix: issued.prefix.clone(),
        hash: issued.hash.clone(),
        created_at: state.clock.now(),
    };
    let stored = state.store.create_api_key(&key).await?;
    Ok(IssuedKeyView {
        id: stored.id.to_string(),
        merchant_id: stored.merchant_id.to_string(),
        key: issued.token,
        prefix: stored.prefix,
    })
}

/// A merchant's keys, newest first (prefixes only).
pub async fn list_keys(state: &AppState, merchant: &MerchantId) -> ApiResult<Vec<ApiKeyView>> {
    Ok(state
        .store
        .list_api_keys(merchant)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Revokes a key (idempotent); requests with it are refused from then on.
pub async fn revoke_key(state: &AppState, merchant: &MerchantId, key_id: &str) -> ApiResult<()> {
    let id = ApiKeyId::parse(key_id).map_err(|_| ApiError::NotFound("api_key".into()))?;
    Ok(state
        .store
        .revoke_api_key(merchant, &id, state.clock.now())
        .await?)
}

/// A merchant with its API keys.
#[derive(Debug, Clone)]
pub struct MerchantWithKeys {
    /// The merchant.
    pub merchant: Merchant,
    /// Its keys, newest first (hashes and prefixes only).
    pub keys: Vec<ApiKey>,
}

/// The newest merchants (one page of [`MAX_PAGE`]), each with its API keys.
pub async fn with_keys(state: &AppState) -> ApiResult<Vec<MerchantWithKeys>> {
    let merchants = state.store.list_merchants(None, MAX_PAGE).await?.data;
    let ids: Vec<MerchantId> = merchants.iter().map(|m| m.id.clone()).collect();
    let mut keys: HashMap<MerchantId, Vec<ApiKey>> = HashMap::new();
    for key in state.store.list_api_keys_of(&ids).await? {
        keys.entry(key.merchant_id.clone()).or_default().push(key);
    }
    Ok(merchants
        .into_iter()
        .map(|merchant| MerchantWithKeys {
            keys: keys.remove(&merchant.id).unwrap_or_default(),
            merchant,
        })
        .collect())
}
