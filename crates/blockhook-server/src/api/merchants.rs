//! Merchants and their API keys (operator routes: a merchant key is answered 403), except
//! reading one merchant, which a merchant key may do for its own (`GET /v1/merchants/me`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::extract::{ApiJson, ApiQuery, Operator, Tenant};
use crate::error::ApiResult;
use crate::manage::merchants::{
    self as m, ApiKeyView, CreateMerchant, IssuedKeyView, MerchantView, UpdateMerchant,
};
use crate::manage::{PageQuery, PageView};
use crate::state::AppState;

routes! {
    post "/v1/merchants" => create,
    get "/v1/merchants" => list,
    get "/v1/merchants/{merchant_id}" => read,
    patch "/v1/merchants/{merchant_id}" => update,
    delete "/v1/merchants/{merchant_id}" => remove,
    post "/v1/merchants/{merchant_id}/api-keys" => issue_key,
    get "/v1/merchants/{merchant_id}/api-keys" => list_keys,
    delete "/v1/merchants/{merchant_id}/api-keys/{key_id}" => revoke_key,
}

/// Creates a merchant.
#[utoipa::path(post, path = "/v1/merchants", tag = "merchants", request_body = CreateMerchant,
    responses((status = 201, body = MerchantView), (status = 409, description = "id taken")))]
async fn create(
    _: Operator,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateMerchant>,
) -> ApiResult<(StatusCode, Json<MerchantView>)> {
    Ok((StatusCode::CREATED, Json(m::create(&state, body).await?)))
}

/// Lists merchants, newest first.
#[utoipa::path(get, path = "/v1/merchants", tag = "merchants", params(PageQuery),
    responses((status = 200, body = PageView<MerchantView>)))]
async fn list(
    _: Operator,
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<PageView<MerchantView>>> {
    Ok(Json(m::list(&state, &page).await?))
}

/// One merchant. A merchant key may read its own record (`/v1/merchants/me`); every other
/// merchant route is the operator's.
#[utoipa::path(get, path = "/v1/merchants/{merchant_id}", tag = "merchants",
    params(("merchant_id" = String, Path, description = "the merchant's id, or `me` with a merchant key")),
    responses((status = 200, body = MerchantView), (status = 404, description = "unknown or not yours")))]
async fn read(tenant: Tenant, State(state): State<AppState>) -> ApiResult<Json<MerchantView>> {
    Ok(Json(m::get(&state, &tenant.merchant_id).await?))
}

/// Suspends (`{"status":"suspended"}`) or reactivates (`active`) a merchant.
#[utoipa::path(patch, path = "/v1/merchants/{merchant_id}", tag = "merchants",
    params(("merchant_id" = String, Path)), request_body = UpdateMerchant,
    responses((status = 200, body = MerchantView)))]
async fn update(
    _: Operator,
    tenant: Tenant,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<UpdateMerchant>,
) -> ApiResult<Json<MerchantView>> {
    Ok(Json(
        m::set_status(&state, &tenant.merchant_id, body).await?,
    ))
}

/// Deletes a merchant with its endpoints, events, deliveries and keys.
#[utoipa::path(delete, path = "/v1/merchants/{merchant_id}", tag = "merchants",
    params(("merchant_id" = String, Path)), responses((status = 204, description = "deleted")))]
async fn remove(
    _: Operator,
    tenant: Tenant,
    State(state): State<AppState>,
) -> ApiResult<StatusCode> {
    m::delete(&state, &tenant.merchant_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Issues an API key for the merchant; the key is shown only in this answer.
#[utoipa::path(post, path = "/v1/merchants/{merchant_id}/api-keys", tag = "merchants",
    params(("merchant_id" = String, Path)), responses((status = 201, body = IssuedKeyView)))]
async fn issue_key(
    _: Operator,
    tenant: Tenant,
    State(state): State<AppState>,
) -> ApiResult<(StatusCode, Json<IssuedKeyView>)> {
    Ok((
        StatusCode::CREATED,
        Json(m::issue_key(&state, &tenant.merchant_id).await?),
    ))
}

/// Lists the merchant's API keys (prefixes only).
#[utoipa::path(get, path = "/v1/merchants/{merchant_id}/api-keys", tag = "merchants",
    params(("merchant_id" = String, Path)), responses((status = 200, body = Vec<ApiKeyView>)))]
async fn list_keys(
    _: Operator,
    tenant: Tenant,
    State(state): State<AppState>,
) -> ApiResult<Json<Vec<ApiKeyView>>> {
    Ok(Json(m::list_keys(&state, &tenant.merchant_id).await?))
}

/// Revokes an API key; requests with it are answered 401 from then on.
#[utoipa::path(delete, path = "/v1/merchants/{merchant_id}/api-keys/{key_id}", tag = "merchants",
    params(("merchant_id" = String, Path), ("key_id" = String, Path)),
    responses((status = 204, description = "revoked")))]
async fn revoke_key(
    _: Operator,
    tenant: Tenant,
    State(state): State<AppState>,
    Path(ids): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    m::revoke_key(&state, &tenant.merchant_id, &ids.1).await?;
    Ok(StatusCode::NO_CONTENT)
}
