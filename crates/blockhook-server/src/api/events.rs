//! Publishing events: `POST /v1/events` (one) and `POST /v1/events/batch` (up to
//! `server.max_batch_events`, one transaction). Operator only.
//!
//! The payload is kept as the exact bytes the gateway sent (a slice of the request body), so
//! `raw` signatures and the merchant's logs show precisely what was published. A `202` is sent
//! only after the events and all their deliveries are committed.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use blockhook_core::{Error as CoreError, EventId, Ingested, NewEvent, Publication};

use super::extract::{Operator, json_bytes, json_error};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

routes! {
    post "/v1/events" => publish,
    post "/v1/events/batch" => publish_batch,
}

/// One event as the gateway publishes it. The schema documents the checks `parse_event` makes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PublishEvent<'a> {
    /// The merchant whose endpoints receive it.
    #[schema(
        pattern = "^mch_[A-Za-z0-9]{1,64}$",
        example = "mch_01j9zk3m4n5p6q7r8s9t0v1w2x"
    )]
    merchant_id: String,
    /// Sent as `BlockATM-Event`; the contract's types are Payment, Payout, QR-Payment and
    /// QR-Payout.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,64}$", example = "Payment")]
    event_type: String,
    /// A JSON object, stored and delivered byte for byte.
    #[serde(borrow)]
    #[schema(value_type = Object)]
    payload: &'a RawValue,
    /// Publishing the same key again for the merchant with the same event (type and payload
    /// bytes) returns the first event (`duplicate`); with a different event it is a `409`.
    #[serde(default)]
    #[schema(pattern = "^[!-~]{1,255}$", nullable = false)]
    idempotency_key: Option<String>,
    /// Orders this event's deliveries to endpoints with `ordering.mode` `per_key` behind the
    /// earlier-published events of the same key (1 to 256 bytes; wins over the endpoint's
    /// `key_field`). Ignored by unordered endpoints. See docs/ordering.md.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        nullable = false,
        example = "OrderNo_1"
    )]
    ordering_key: Option<String>,
}

/// Up to `server.max_batch_events` events, stored in one transaction.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PublishBatch<'a> {
    #[serde(borrow)]
    #[schema(min_items = 1, max_items = 10000)]
    events: Vec<PublishEvent<'a>>,
}

/// The answer for one event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Published {
    #[schema(value_type = String)]
    event_id: EventId,
    duplicate: bool,
    deliveries: u32,
}

impl From<Ingested> for Published {
    fn from(i: Ingested) -> Self {
        Self {
            event_id: i.event_id,
            duplicate: i.duplicate,
            deliveries: i.deliveries,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PublishedBatch {
    data: Vec<Published>,
}

/// Publishes one event: `{"merchant_id", "event_type", "payload": {…}, "idempotency_key"?}`.
/// Answered once the event and its deliveries are committed.
#[utoipa::path(post, path = "/v1/events", tag = "publish",
    request_body = PublishEvent,
    responses((status = 202, body = Published), (status = 409, description = "the idempotency key names another event"),
        (status = 422, description = "validation failed")))]
async fn publish(
    _: Operator,
    State(state): State<AppState>,
    req: Request,
) -> ApiResult<(StatusCode, Json<Published>)> {
    let body = json_bytes(req, &state).await?;
    let input: PublishEvent<'_> = serde_json::from_slice(&body).map_err(json_error)?;
    let event = parse_event(&input, &body, &state, None)?;
    let stored = submit(&state, vec![event], false).await?;
    let first = stored
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::Internal("no result".into()))?;
    Ok((StatusCode::ACCEPTED, Json(first.into())))
}

/// Publishes up to `server.max_batch_events` events in one transaction: `{"events": [...]}`.
#[utoipa::path(post, path = "/v1/events/batch", tag = "publish",
    request_body = PublishBatch,
    responses((status = 202, body = PublishedBatch), (status = 409, description = "a member's idempotency key names another event; nothing stored")))]
async fn publish_batch(
    _: Operator,
    State(state): State<AppState>,
    req: Request,
) -> ApiResult<(StatusCode, Json<PublishedBatch>)> {
    let body = json_bytes(req, &state).await?;
    let input: PublishBatch<'_> = serde_json::from_slice(&body).map_err(json_error)?;
    let max = state.settings.server.max_batch_events;
    if input.events.is_empty() || input.events.len() > max {
        return Err(ApiError::invalid(
            "events",
            format!("must hold 1 to {max} events"),
        ));
    }
    let events = input
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| parse_event(e, &body, &state, Some(i)))
        .collect::<Result<Vec<_>, _>>()?;
    let stored = submit(&state, events, true).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(PublishedBatch {
            data: stored.into_iter().map(Into::into).collect(),
        }),
    ))
}

fn parse_event(
    e: &PublishEvent<'_>,
    body: &Bytes,
    state: &AppState,
    index: Option<usize>,
) -> Result<NewEvent, ApiError> {
    let at = |field: &str| match index {
        Some(i) => format!("events[{i}].{field}"),
        None => field.to_owned(),
    };
    let publication = Publication {
        merchant_id: &e.merchant_id,
        event_type: &e.event_type,
        payload: body.slice_ref(e.payload.get().as_bytes()),
        idempotency_key: e.idempotency_key.as_deref(),
        ordering_key: e.ordering_key.as_deref(),
    };
    NewEvent::check(publication, state.clock.now()).map_err(|e| match e.error {
        CoreError::Invalid { reason, .. } => ApiError::invalid(at(e.field), reason),
        other => ApiError::from(other),
    })
}

/// Stores the events. `batch`: whether they came as `/v1/events/batch` (errors then name the
/// member).
async fn submit(
    state: &AppState,
    events: Vec<NewEvent>,
    batch: bool,
) -> Result<Vec<Ingested>, ApiError> {
    state.ingest.submit(events).await.map_err(|e| match e {
        CoreError::NotFound("merchant") => ApiError::invalid("merchant_id", "no such merchant"),
        CoreError::Conflict(why) => ApiError::invalid("merchant_id", why),
        CoreError::IdempotencyConflict {
            key,
            original,
            index,
        } => {
            let at = if batch {
                format!("events[{index}]: ")
            } else {
                String::new()
            };
            ApiError::Conflict(format!(
                "{at}idempotency key {key:?} already names event {original}, which has another \
                 event type or payload; nothing was stored"
            ))
        }
        other => other.into(),
    })
}
