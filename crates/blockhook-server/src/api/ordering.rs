//! Ordered delivery's held keys (docs/ordering.md): listing the keys of an endpoint held after a
//! final failure (`on_final_failure: hold`) and releasing one. Thin handlers over
//! `manage::ordering`; the endpoint's `ordering` setting itself is part of the endpoint routes.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::extract::Tenant;
use crate::error::ApiResult;
use crate::manage::endpoints::endpoint_id;
use crate::manage::ordering::{self as o, HeldKeyView};
use crate::state::AppState;

routes! {
    get "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}/ordering/held" => held,
    post "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}/ordering/held/{key}/release" => release,
}

/// The endpoint's held keys, oldest first: each with the failed delivery that holds it, since
/// when, and how many deliveries wait behind it.
#[utoipa::path(get, path = "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}/ordering/held", tag = "endpoints",
    params(("merchant_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 200, body = Vec<HeldKeyView>), (status = 404, description = "unknown or not yours")))]
async fn held(
    tenant: Tenant,
    State(state): State<AppState>,
    Path(ids): Path<(String, String)>,
) -> ApiResult<Json<Vec<HeldKeyView>>> {
    Ok(Json(
        o::held(&state, &tenant.merchant_id, &endpoint_id(&ids.1)?).await?,
    ))
}

/// Releases a held key: the key's next delivery proceeds; the failed head stays failed (resend
/// it to deliver it again, at the back of the key's queue). The key is percent-encoded in the
/// path.
#[utoipa::path(post, path = "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}/ordering/held/{key}/release", tag = "endpoints",
    params(("merchant_id" = String, Path), ("endpoint_id" = String, Path),
        ("key" = String, Path, description = "the ordering key, percent-encoded")),
    responses((status = 204, description = "released"), (status = 404, description = "the key is not held, or the endpoint is unknown or not yours")))]
async fn release(
    tenant: Tenant,
    State(state): State<AppState>,
    Path(ids): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    o::release(&state, &tenant.merchant_id, &endpoint_id(&ids.1)?, &ids.2).await?;
    Ok(StatusCode::NO_CONTENT)
}
