//! A merchant's endpoints: CRUD, enable/disable, secret rotation, test sends, recovery, backlog.
//! Thin handlers over `manage::endpoints`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::extract::{ApiJson, ApiJsonOrEmpty, ApiQuery, Tenant};
use crate::error::ApiResult;
use crate::manage::activity::ActivityView;
use crate::manage::endpoints::{
    self as e, BacklogView, CreateEndpoint, EndpointSecretView, RecoverRequest, Recovered,
    RotateSecret, TestSendRequest, TestSendResult, UpdateEndpoint, endpoint_id,
};
use crate::manage::{PageQuery, PageView};
use crate::state::AppState;

pub use crate::manage::endpoints::EndpointView;

routes! {
    post "/v1/merchants/{merchant_id}/endpoints" => create,
    get "/v1/merchants/{merchant_id}/endpoints" => list,
    get "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}" => read,
    patch "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}" => update,
    delete "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}" => remove,
    post "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}/enable" => enable,
    post "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}/disable" => disable,
    get "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}/secret" => reveal_secret,
    post "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}/rotate-secret" => rotate_secret,
    post "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}/test" => test_send,
    post "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}/recover" => recover,
    get "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}/activity" => activity,
    get "/v1/merchants/{merchant_id}/backlog" => backlog,
}

type Ids = Path<(String, String)>;

/// Creates an endpoint; the answer holds its signing secret (the only read that does, besides
/// `…/secret` and a rotation).
#[utoipa::path(post, path = "/v1/merchants/{merchant_id}/endpoints", tag = "endpoints",
    params(("merchant_id" = String, Path, description = "the merchant's id, or `me` with a merchant key")),
    request_body = CreateEndpoint,
    responses((status = 201, body = EndpointView), (status = 422, description = "validation failed; `field` names the input")))]
async fn create(
    tenant: Tenant,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateEndpoint>,
) -> ApiResult<(StatusCode, Json<EndpointView>)> {
    Ok((
        StatusCode::CREATED,
        Json(e::create(&state, &tenant.merchant_id, body).await?),
    ))
}

/// Lists endpoints, newest first.
#[utoipa::path(get, path = "/v1/merchants/{merchant_id}/endpoints", tag = "endpoints",
    params(("merchant_id" = String, Path), PageQuery),
    responses((status = 200, body = PageView<EndpointView>)))]
async fn list(
    tenant: Tenant,
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<PageView<EndpointView>>> {
    Ok(Json(e::list(&state, &tenant.merchant_id, &page).await?))
}

/// One endpoint.
#[utoipa::path(get, path = "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}", tag = "endpoints",
    params(("merchant_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 200, body = EndpointView), (status = 404, description = "unknown or not yours")))]
async fn read(
    tenant: Tenant,
    State(state): State<AppState>,
    Path(ids): Ids,
) -> ApiResult<Json<EndpointView>> {
    Ok(Json(
        e::get(&state, &tenant.merchant_id, &endpoint_id(&ids.1)?).await?,
    ))
}

/// Changes an endpoint (only the fields given).
#[utoipa::path(patch, path = "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}", tag = "endpoints",
    params(("merchant_id" = String, Path), ("endpoint_id" = String, Path)),
    request_body = UpdateEndpoint, responses((status = 200, body = EndpointView)))]
async fn update(
    tenant: Tenant,
    State(state): State<AppState>,
    Path(ids): Ids,
    ApiJson(body): ApiJson<UpdateEndpoint>,
) -> ApiResult<Json<EndpointView>> {
    Ok(Json(
        e::update(&state, &tenant.merchant_id, &endpoint_id(&ids.1)?, body).await?,
    ))
}

/// Deletes an endpoint with its deliveries and attempts.
#[utoipa::path(delete, path = "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}", tag = "endpoints",
    params(("merchant_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 204, description = "deleted")))]
async fn remove(
    tenant: Tenant,
    State(state): State<AppState>,
    Path(ids): Ids,
) -> ApiResult<StatusCode> {
    e::delete(&state, &tenant.merchant_id, &endpoint_id(&ids.1)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enables an endpoint (clears the reason it was disabled).
#[utoipa::path(post, path = "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}/enable", tag = "endpoints",
    params(("merchant_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 200, body = EndpointView)))]
async fn enable(
    tenant: Tenant,
    State(state): State<AppState>,
    Path(ids): Ids,
) -> ApiResult<Json<EndpointView>> {
    Ok(Json(
        e::set_enabled(&state, &tenant.merchant_id, &endpoint_id(&ids.1)?, true).await?,
    ))
}

/// Disables an endpoint: it gets no new deliveries and its pending ones wait.
#[utoipa::path(post, path = "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}/disable", tag = "endpoints",
    params(("merchant_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 200, body = EndpointView)))]
async fn disable(
    tenant: Tenant,
    State(state): State<AppState>,
    Path(ids): Ids,
) -> ApiResult<Json<EndpointView>> {
    Ok(Json(
        e::set_enabled(&state, &tenant.merchant_id, &endpoint_id(&ids.1)?, false).await?,
    ))
}

/// The endpoint's signing secret, in clear. Listings, reads and updates never carry it.
#[utoipa::path(get, path = "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}/secret", tag = "endpoints",
    params(("merchant_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 200, body = EndpointSecretView), (status = 404, description = "unknown or not yours")))]
async fn reveal_secret(
    tenant: Tenant,
    State(state): State<AppState>,
    Path(ids): Ids,
) -> ApiResult<Json<EndpointSecretView>> {
    Ok(Json(
        e::reveal_secret(&state, &tenant.merchant_id, &endpoint_id(&ids.1)?).await?,
    ))
}

/// Replaces the signing secret; deliveries signed from now on use the new one. The body is
/// optional: `{"overlap": "24h"}` keeps the old secret signing beside the new one for that long
/// (`standard` mode; default 24h there, 0s in the BlockATM modes, which send one signature).
#[utoipa::path(post, path = "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}/rotate-secret", tag = "endpoints",
    params(("merchant_id" = String, Path), ("endpoint_id" = String, Path)),
    request_body(content = Option<RotateSecret>, description = "optional"),
    responses((status = 200, body = EndpointSecretView), (status = 422, description = "overlap out of range or not allowed in this mode")))]
async fn rotate_secret(
    tenant: Tenant,
    State(state): State<AppState>,
    Path(ids): Ids,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<RotateSecret>,
) -> ApiResult<Json<EndpointSecretView>> {
    Ok(Json(
        e::rotate_secret(&state, &tenant.merchant_id, &endpoint_id(&ids.1)?, body).await?,
    ))
}

/// Sends a signed sample webhook now and shows the request and the response (nothing stored).
#[utoipa::path(post, path = "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}/test", tag = "endpoints",
    params(("merchant_id" = String, Path), ("endpoint_id" = String, Path)),
    request_body = TestSendRequest, responses((status = 200, body = TestSendResult)))]
async fn test_send(
    tenant: Tenant,
    State(state): State<AppState>,
    Path(ids): Ids,
    ApiJson(body): ApiJson<TestSendRequest>,
) -> ApiResult<Json<TestSendResult>> {
    Ok(Json(
        e::test_send(&state, &tenant.merchant_id, &endpoint_id(&ids.1)?, body).await?,
    ))
}

/// The endpoint at a glance: deliveries per hour (24 h) and per UTC day (7 d) by state, p50/p99
/// latency, its queue, its failure streak and its 50 newest deliveries.
#[utoipa::path(get, path = "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}/activity", tag = "endpoints",
    params(("merchant_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 200, body = ActivityView)))]
async fn activity(
    tenant: Tenant,
    State(state): State<AppState>,
    Path(ids): Ids,
) -> ApiResult<Json<ActivityView>> {
    Ok(Json(
        crate::manage::activity::activity(&state, &tenant.merchant_id, &endpoint_id(&ids.1)?)
            .await?,
    ))
}

/// Re-queues the endpoint's failed deliveries created since `since` (at most `recover.max_window`
/// ago); with `dry_run`, only counts them.
#[utoipa::path(post, path = "/v1/merchants/{merchant_id}/endpoints/{endpoint_id}/recover", tag = "endpoints",
    params(("merchant_id" = String, Path), ("endpoint_id" = String, Path)),
    request_body = RecoverRequest,
    responses((status = 200, body = Recovered), (status = 422, description = "`since` too far back")))]
async fn recover(
    tenant: Tenant,
    State(state): State<AppState>,
    Path(ids): Ids,
    ApiJson(body): ApiJson<RecoverRequest>,
) -> ApiResult<Json<Recovered>> {
    Ok(Json(
        e::recover(&state, &tenant.merchant_id, &endpoint_id(&ids.1)?, body).await?,
    ))
}

/// Undelivered work per endpoint (endpoints with nothing undelivered are omitted).
#[utoipa::path(get, path = "/v1/merchants/{merchant_id}/backlog", tag = "endpoints",
    params(("merchant_id" = String, Path)), responses((status = 200, body = Vec<BacklogView>)))]
async fn backlog(
    tenant: Tenant,
    State(state): State<AppState>,
) -> ApiResult<Json<Vec<BacklogView>>> {
    Ok(Json(e::backlog(&state, &tenant.merchant_id).await?))
}
