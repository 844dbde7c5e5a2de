//! A merchant's event logs: events, one event with its payload, its deliveries, a delivery's
//! attempts, and manual resends. Thin handlers over `manage::events`.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;

use super::extract::{ApiJson, ApiQuery, Tenant};
use crate::error::ApiResult;
use crate::manage::events::{
    self as ev, AttemptView, DeliveryView, EventFilterQuery, EventPageView, EventView,
    ResendRequest, Resent, delivery_id, event_id,
};
use crate::state::AppState;

routes! {
    get "/v1/merchants/{merchant_id}/events" => list,
    get "/v1/merchants/{merchant_id}/events/{event_id}" => read,
    get "/v1/merchants/{merchant_id}/events/{event_id}/deliveries" => deliveries,
    post "/v1/merchants/{merchant_id}/events/{event_id}/resend" => resend,
    get "/v1/merchants/{merchant_id}/deliveries/{delivery_id}/attempts" => attempts,
    post "/v1/merchants/{merchant_id}/deliveries/{delivery_id}/retry" => retry,
}

/// Searches events: by id, by a searchable payload field's value, by endpoint, state, type and
/// time range; newest first, paged both ways (`after` = `next`, `before` = `prev`), with the
/// number of matches. An unknown parameter, a bad value or a field that is not searchable is a
/// 422 naming the parameter.
#[utoipa::path(get, path = "/v1/merchants/{merchant_id}/events", tag = "events",
    params(("merchant_id" = String, Path), EventFilterQuery),
    responses((status = 200, body = EventPageView),
        (status = 422, description = "an unknown parameter or a bad filter value")))]
async fn list(
    tenant: Tenant,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    ApiQuery(filter): ApiQuery<EventFilterQuery>,
) -> ApiResult<Json<EventPageView>> {
    ev::known_parameters(raw.as_deref())?;
    Ok(Json(ev::list(&state, &tenant.merchant_id, &filter).await?))
}

/// One event with its payload.
#[utoipa::path(get, path = "/v1/merchants/{merchant_id}/events/{event_id}", tag = "events",
    params(("merchant_id" = String, Path), ("event_id" = String, Path)),
    responses((status = 200, body = EventView)))]
async fn read(
    tenant: Tenant,
    State(state): State<AppState>,
    Path(ids): Path<(String, String)>,
) -> ApiResult<Json<EventView>> {
    Ok(Json(
        ev::get(&state, &tenant.merchant_id, &event_id(&ids.1)?).await?,
    ))
}

/// The event's deliveries, oldest first.
#[utoipa::path(get, path = "/v1/merchants/{merchant_id}/events/{event_id}/deliveries", tag = "events",
    params(("merchant_id" = String, Path), ("event_id" = String, Path)),
    responses((status = 200, body = Vec<DeliveryView>)))]
async fn deliveries(
    tenant: Tenant,
    State(state): State<AppState>,
    Path(ids): Path<(String, String)>,
) -> ApiResult<Json<Vec<DeliveryView>>> {
    Ok(Json(
        ev::deliveries(&state, &tenant.merchant_id, &event_id(&ids.1)?).await?,
    ))
}

/// Resends the event (within `resend.window`, at most `resend.max_per_event` times).
#[utoipa::path(post, path = "/v1/merchants/{merchant_id}/events/{event_id}/resend", tag = "events",
    params(("merchant_id" = String, Path), ("event_id" = String, Path)),
    request_body = ResendRequest,
    responses((status = 202, body = Resent), (status = 409, description = "a resend limit was reached")))]
async fn resend(
    tenant: Tenant,
    State(state): State<AppState>,
    Path(ids): Path<(String, String)>,
    ApiJson(body): ApiJson<ResendRequest>,
) -> ApiResult<(StatusCode, Json<Resent>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(ev::resend(&state, &tenant.merchant_id, &event_id(&ids.1)?, body).await?),
    ))
}

/// The delivery's attempts, oldest first: request headers, status, response, latency, error.
#[utoipa::path(get, path = "/v1/merchants/{merchant_id}/deliveries/{delivery_id}/attempts", tag = "events",
    params(("merchant_id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 200, body = Vec<AttemptView>)))]
async fn attempts(
    tenant: Tenant,
    State(state): State<AppState>,
    Path(ids): Path<(String, String)>,
) -> ApiResult<Json<Vec<AttemptView>>> {
    Ok(Json(
        ev::attempts(&state, &tenant.merchant_id, &delivery_id(&ids.1)?).await?,
    ))
}

/// Sends one delivery again: a new delivery of its event to its endpoint, due now. It counts as
/// a resend of the event (same `resend.window` and `resend.max_per_event` limits).
#[utoipa::path(post, path = "/v1/merchants/{merchant_id}/deliveries/{delivery_id}/retry", tag = "events",
    params(("merchant_id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 202, body = Resent), (status = 409, description = "a resend limit was reached")))]
async fn retry(
    tenant: Tenant,
    State(state): State<AppState>,
    Path(ids): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Resent>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(ev::retry_delivery(&state, &tenant.merchant_id, &delivery_id(&ids.1)?).await?),
    ))
}
