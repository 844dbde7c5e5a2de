//! Merchants and their API keys (operator routes).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use blockhook_core::{ApiKeyId, Merchant, MerchantId, NewApiKey, NewMerchant};

use super::extract::{ApiJson, Operator, Tenant};
use crate::error::ApiResult;
use crate::keys::IssuedKey;
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/merchants", post(create))
        .route("/v1/merchants/{merchant_id}/api-keys", post(issue_key))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateMerchant {
    name: String,
    #[serde(default)]
    id: Option<String>,
}

async fn create(
    _: Operator,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateMerchant>,
) -> ApiResult<(StatusCode, Json<Merchant>)> {
    let id = match body.id.as_deref() {
        Some(raw) => MerchantId::parse(raw)?,
        None => MerchantId::generate(),
    };
    let new = NewMerchant::parse(id, &body.name, state.clock.now())?;
    let merchant = state.store.create_merchant(&new).await?;
    Ok((StatusCode::CREATED, Json(merchant)))
}

/// A key as issued: the only time the key itself is shown.
#[derive(Debug, Serialize)]
struct IssuedKeyView {
    id: ApiKeyId,
    merchant_id: MerchantId,
    key: String,
    prefix: String,
}

async fn issue_key(
    tenant: Tenant,
    _: Operator,
    State(state): State<AppState>,
) -> ApiResult<(StatusCode, Json<IssuedKeyView>)> {
    let issued = IssuedKey::generate();
    let key = NewApiKey {
        id: ApiKeyId::generate(),
        merchant_id: tenant.merchant_id.clone(),
        prefix: issued.prefix.clone(),
        hash: issued.hash.clone(),
        created_at: state.clock.now(),
    };
    let stored = state.store.create_api_key(&key).await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedKeyView {
            id: stored.id,
            merchant_id: stored.merchant_id,
            key: issued.token,
            prefix: stored.prefix,
        }),
    ))
}
