//! The event logs of a merchant: events (searched and filtered, newest first, paged both ways,
//! counted), one event with its payload,
//! its deliveries, each delivery's attempts, and manual resends; for the dashboard also events
//! with their deliveries, and one event with every delivery's attempts.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use blockhook_core::{
    AttemptRecord, Cursor, Delivery, DeliveryId, DeliveryState, EndpointId, Event, EventId,
    EventQuery, EventType, MAX_SEARCH_VALUE_LEN, MerchantId, Page, ResendScope, SearchKey,
    Timestamp,
};

use super::{PageQuery, PageView};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Filters of the event list (the search): every one given must match.
#[derive(Debug, Clone, Default, Deserialize, Serialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventFilterQuery {
    /// Only this event (`evt_…`).
    pub event_id: Option<String>,
    /// With `value`: only events whose payload had this top-level field (one of the configured
    /// `[search] fields`) with this value when they were stored.
    pub field: Option<String>,
    /// The value of `field`: a string's text, or a number as written in the payload.
    pub value: Option<String>,
    /// Shorthand for `field=orderNo&value=…`.
    pub order_no: Option<String>,
    /// Only events with a delivery to this endpoint (`ep_…`) (in `state`, when given).
    pub endpoint_id: Option<String>,
    /// Only this type (case-insensitive).
    pub event_type: Option<String>,
    /// Created at or after (Unix ms).
    pub since: Option<i64>,
    /// Created before (Unix ms).
    pub until: Option<i64>,
    /// Only events with a delivery in this state: `pending`, `in_flight`, `succeeded`, `failed`.
    pub state: Option<String>,
    /// The `next` value of a page: the page of older matches.
    pub after: Option<String>,
    /// The `prev` value of a page: the page of newer matches (not with `after`).
    pub before: Option<String>,
    /// Page size, 1 to 250 (default 50).
    pub limit: Option<u32>,
}

/// The query parameters of the event list, to refuse any other (a misspelt filter must not
/// silently list everything).
const FILTER_PARAMETERS: [&str; 12] = [
    "event_id",
    "field",
    "value",
    "order_no",
    "endpoint_id",
    "event_type",
    "since",
    "until",
    "state",
    "after",
    "before",
    "limit",
];

/// Most matches counted for `total`: counting stops there, so a search over a long history
/// costs at most this many index entries (`total_capped` then says "more").
pub const TOTAL_CAP: u64 = 10_000;

/// One page of matching events, with the number of matches.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventPageView {
    /// The events, newest first.
    pub data: Vec<EventSummary>,
    /// Pass as `after` for the page of older matches; absent on the last page.
    pub next: Option<String>,
    /// Pass as `before` for the page of newer matches; absent on the first page.
    pub prev: Option<String>,
    /// How many events match the filters (all pages), counted up to 10000.
    pub total: u64,
    /// Whether counting stopped at 10000 (`total` is then a lower bound).
    pub total_capped: bool,
}

/// An event in a list (no payload).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventSummary {
    /// Its id (`evt_…`).
    pub id: String,
    /// Its type.
    pub event_type: String,
    /// The gateway's idempotency key.
    pub idempotency_key: Option<String>,
    /// When it arrived, Unix ms.
    pub created_at: i64,
    /// Manual resends so far.
    pub resend_count: u32,
}

/// One event with its payload.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventView {
    /// Its id (`evt_…`).
    pub id: String,
    /// Its merchant.
    pub merchant_id: String,
    /// Its type.
    pub event_type: String,
    /// The gateway's idempotency key.
    pub idempotency_key: Option<String>,
    /// When it arrived, Unix ms.
    pub created_at: i64,
    /// Manual resends so far.
    pub resend_count: u32,
    /// The payload exactly as published; `null` once retention removed it.
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Box<RawValue>>,
}

/// One delivery of an event to an endpoint.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryView {
    /// Its id (`dlv_…`).
    pub id: String,
    /// The event.
    pub event_id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// `pending`, `in_flight`, `succeeded` or `failed`.
    pub state: String,
    /// `initial` or `resend`.
    pub origin: String,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due, Unix ms (pending only).
    pub next_attempt_at: Option<i64>,
    /// Status of the last attempt.
    pub last_status: Option<u16>,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// Last change, Unix ms.
    pub updated_at: i64,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        Self {
            id: d.id.to_string(),
            event_id: d.event_id.to_string(),
            endpoint_id: d.endpoint_id.to_string(),
            state: d.state.as_str().to_owned(),
            origin: d.origin.as_str().to_owned(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at.map(|t| t.ms()),
            last_status: d.last_status,
            created_at: d.created_at.ms(),
            updated_at: d.updated_at.ms(),
        }
    }
}

/// One HTTP attempt.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttemptView {
    /// Its id (`att_…`).
    pub id: String,
    /// The delivery.
    pub delivery_id: String,
    /// 1 for the first attempt of the delivery.
    pub number: u32,
    /// When it was sent (the `BlockATM-Request-Time`), Unix ms.
    pub started_at: i64,
    /// The URL posted to.
    pub url: String,
    /// Headers sent (signature included, never the secret).
    #[schema(value_type = Vec<Vec<String>>)]
    pub request_headers: Vec<(String, String)>,
    /// Response status, when a response arrived.
    pub status: Option<u16>,
    /// Response headers.
    #[schema(value_type = Vec<Vec<String>>)]
    pub response_headers: Vec<(String, String)>,
    /// The first bytes of the response body (lossy UTF-8).
    pub response_body: String,
    /// Whether the body was cut.
    pub response_truncated: bool,
    /// Milliseconds until the response was read.
    pub latency_ms: u32,
    /// Failure class, if it failed.
    pub error: Option<String>,
    /// Human detail of the failure.
    pub error_detail: Option<String>,
}

impl From<AttemptRecord> for AttemptView {
    fn from(a: AttemptRecord) -> Self {
        Self {
            id: a.id.to_string(),
            delivery_id: a.delivery_id.to_string(),
            number: a.number,
            started_at: a.started_at.ms(),
            url: a.url,
            request_headers: a.request_headers,
            status: a.status,
            response_headers: a.response_headers,
            response_body: String::from_utf8_lossy(&a.response_body).into_owned(),
            response_truncated: a.response_truncated,
            latency_ms: a.latency_ms,
            error: a.error.map(|c| c.as_str().to_owned()),
            error_detail: a.error_detail,
        }
    }
}

/// Where to resend.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendRequest {
    /// One endpoint of the merchant; absent = every endpoint the event went to.
    #[serde(default)]
    pub endpoint_id: Option<String>,
}

/// The deliveries a resend created.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Resent {
    /// New deliveries, due now.
    pub delivery_ids: Vec<String>,
}

fn summary(e: Event) -> EventSummary {
    EventSummary {
        id: e.id.to_string(),
        event_type: e.event_type.as_str().to_owned(),
        idempotency_key: e.idempotency_key.map(|k| k.as_str().to_owned()),
        created_at: e.created_at.ms(),
        resend_count: e.resend_count,
    }
}

/// Parses an event id from a path; a malformed one is as unknown as a missing one.
pub fn event_id(raw: &str) -> ApiResult<EventId> {
    EventId::parse(raw).map_err(|_| ApiError::NotFound("event".into()))
}

/// Parses a delivery id from a path.
pub fn delivery_id(raw: &str) -> ApiResult<DeliveryId> {
    DeliveryId::parse(raw).map_err(|_| ApiError::NotFound("delivery".into()))
}

/// Refuses a query string naming a parameter the event list does not know, with a 422 that
/// names it (serde would drop it silently, and the list would answer unfiltered).
pub fn known_parameters(raw: Option<&str>) -> ApiResult<()> {
    for (name, _) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if !FILTER_PARAMETERS.contains(&name.as_ref()) {
            return Err(ApiError::invalid(
                name.into_owned(),
                format!("unknown parameter; known: {}", FILTER_PARAMETERS.join(", ")),
            ));
        }
    }
    Ok(())
}

/// Checks `filter` into a store query for `merchant`: each bad value is a 422 naming its
/// parameter; a field that is not configured as searchable says which ones are; an endpoint
/// that is not the merchant's is as unknown as a missing one. Empty strings are absent (what
/// an untouched form field sends).
pub async fn query(
    state: &AppState,
    merchant: &MerchantId,
    filter: &EventFilterQuery,
) -> ApiResult<EventQuery> {
    let page = PageQuery {
        after: given(&filter.after).map(str::to_owned),
        limit: filter.limit,
    };
    let before = PageQuery {
        after: given(&filter.before).map(str::to_owned),
        limit: None,
    }
    .cursor(EventId::parse)
    .map_err(|_| ApiError::invalid("before", "not a cursor of this listing"))?;
    let after = page.cursor(EventId::parse)?;
    if after.is_some() && before.is_some() {
        return Err(ApiError::invalid("before", "give either after or before"));
    }
    let event_id = given(&filter.event_id)
        .map(|raw| {
            EventId::parse(raw).map_err(|_| ApiError::invalid("event_id", "not an event id"))
        })
        .transpose()?;
    let endpoint = match given(&filter.endpoint_id) {
        None => None,
        Some(raw) => {
            let unknown = || ApiError::invalid("endpoint_id", "no such endpoint");
            let id = EndpointId::parse(raw).map_err(|_| unknown())?;
            match state.store.get_endpoint(merchant, &id).await {
                Ok(_) => Some(id),
                Err(blockhook_core::Error::NotFound(_)) => return Err(unknown()),
                Err(e) => return Err(e.into()),
            }
        }
    };
    let q = EventQuery {
        event_type: given(&filter.event_type)
            .map(EventType::parse)
            .transpose()?,
        since: filter.since.map(Timestamp::from_ms),
        until: filter.until.map(Timestamp::from_ms),
        state: given(&filter.state).map(DeliveryState::parse).transpose()?,
        event_id,
        endpoint,
        key: search_key(state, filter)?,
        after,
        before,
        limit: page.limit()?,
    };
    if let (Some(s), Some(u)) = (q.since, q.until) {
        if u < s {
            return Err(ApiError::invalid("until", "is before since"));
        }
    }
    Ok(q)
}

/// A parameter's value, trimmed; empty is absent (what an untouched form field sends).
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The (field, value) of `field` + `value` or `order_no`, checked against `[search] fields`.
fn search_key(state: &AppState, filter: &EventFilterQuery) -> ApiResult<Option<SearchKey>> {
    let (field, value, param) = match (
        given(&filter.order_no),
        given(&filter.field),
        given(&filter.value),
    ) {
        (None, None, None) => return Ok(None),
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(ApiError::invalid(
                "order_no",
                "give either order_no or field and value",
            ));
        }
        (Some(no), None, None) => ("orderNo", no, "order_no"),
        (None, Some(f), Some(v)) => (f, v, "value"),
        (None, Some(_), None) => return Err(ApiError::invalid("value", "required with field")),
        (None, None, Some(_)) => return Err(ApiError::invalid("field", "required with value")),
    };
    let fields = &state.settings.search.fields;
    if !fields.iter().any(|f| f == field) {
        let name = if param == "order_no" {
            "order_no"
        } else {
            "field"
        };
        return Err(ApiError::invalid(
            name,
            format!(
                "{field:?} is not searchable; searchable fields: {} (setting [search] fields)",
                if fields.is_empty() {
                    "none".to_owned()
                } else {
                    fields.join(", ")
                }
            ),
        ));
    }
    if value.len() > MAX_SEARCH_VALUE_LEN {
        return Err(ApiError::invalid(
            param,
            format!("at most {MAX_SEARCH_VALUE_LEN} bytes"),
        ));
    }
    Ok(Some(SearchKey {
        field: field.to_owned(),
        value: value.to_owned(),
    }))
}

/// Events matching `filter`, newest first, one page, with the number of matches.
pub async fn list(
    state: &AppState,
    merchant: &MerchantId,
    filter: &EventFilterQuery,
) -> ApiResult<EventPageView> {
    let q = query(state, merchant, filter).await?;
    let rows = state.store.list_events(merchant, &q).await?;
    let total = state.store.count_events(merchant, &q, TOTAL_CAP).await?;
    let page = PageView::map(
        Page {
            data: rows.data,
            next: rows.next,
            prev: None,
        },
        |e| Ok(summary(e)),
    )?;
    Ok(EventPageView {
        data: page.data,
        next: page.next,
        prev: rows.prev.map(|c| c.0),
        total: total.min(TOTAL_CAP),
        total_capped: total > TOTAL_CAP,
    })
}

/// One event, payload included.
pub async fn get(state: &AppState, merchant: &MerchantId, id: &EventId) -> ApiResult<EventView> {
    let e = state.store.get_event(merchant, id).await?;
    let payload = match &e.payload {
        // The payload was validated as one JSON object when it was published.
        Some(p) => Some(
            serde_json::from_slice::<Box<RawValue>>(p.bytes())
                .map_err(|err| ApiError::Internal(format!("stored payload: {err}")))?,
        ),
        None => None,
    };
    let s = summary(e.clone());
    Ok(EventView {
        id: s.id,
        merchant_id: e.merchant_id.to_string(),
        event_type: s.event_type,
        idempotency_key: s.idempotency_key,
        created_at: s.created_at,
        resend_count: s.resend_count,
        payload,
    })
}

/// The deliveries of one event, oldest first.
pub async fn deliveries(
    state: &AppState,
    merchant: &MerchantId,
    id: &EventId,
) -> ApiResult<Vec<DeliveryView>> {
    // An unknown (or another merchant's) event is a 404, not an empty list.
    state.store.get_event(merchant, id).await?;
    let rows = state
        .store
        .list_deliveries(merchant, id, state.clock.now())
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// The attempts of one delivery, oldest first.
pub async fn attempts(
    state: &AppState,
    merchant: &MerchantId,
    id: &DeliveryId,
) -> ApiResult<Vec<AttemptView>> {
    state
        .store
        .get_delivery(merchant, id, state.clock.now())
        .await?;
    let rows = state.store.list_attempts(merchant, id).await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// An event with its deliveries, as the dashboard's event list shows it.
#[derive(Debug, Clone)]
pub struct EventOverview {
    /// The event.
    pub event: Event,
    /// Its deliveries, oldest first.
    pub deliveries: Vec<Delivery>,
}

/// One page of [`EventOverview`]s, newest first.
#[derive(Debug, Clone)]
pub struct OverviewPage {
    /// The rows.
    pub events: Vec<EventOverview>,
    /// Where the next (older) page starts; `None` on the last page.
    pub next: Option<Cursor>,
    /// Where the previous (newer) page ends; `None` on the first page.
    pub prev: Option<Cursor>,
    /// Matches on all pages, counted up to [`TOTAL_CAP`] + 1 (more means "over the cap").
    pub total: u64,
}

/// Events matching `query` (already validated by the caller), each with its deliveries.
pub async fn overview(
    state: &AppState,
    merchant: &MerchantId,
    query: &EventQuery,
) -> ApiResult<OverviewPage> {
    let page = state.store.list_events(merchant, query).await?;
    let total = state.store.count_events(merchant, query, TOTAL_CAP).await?;
    let ids: Vec<EventId> = page.data.iter().map(|e| e.id.clone()).collect();
    let mut deliveries: HashMap<EventId, Vec<Delivery>> = HashMap::new();
    for delivery in state
        .store
        .list_deliveries_of_events(merchant, &ids, state.clock.now())
        .await?
    {
        deliveries
            .entry(delivery.event_id.clone())
            .or_default()
            .push(delivery);
    }
    let events = page
        .data
        .into_iter()
        .map(|event| EventOverview {
            deliveries: deliveries.remove(&event.id).unwrap_or_default(),
            event,
        })
        .collect();
    Ok(OverviewPage {
        events,
        next: page.next,
        prev: page.prev,
        total,
    })
}

/// A delivery with its attempts.
#[derive(Debug, Clone)]
pub struct DeliveryDetail {
    /// The delivery.
    pub delivery: Delivery,
    /// Its attempts, oldest first.
    pub attempts: Vec<AttemptRecord>,
}

/// One event with every delivery and each delivery's attempts.
#[derive(Debug, Clone)]
pub struct EventDetail {
    /// The event, payload included (unless retention removed it).
    pub event: Event,
    /// Its deliveries, oldest first.
    pub deliveries: Vec<DeliveryDetail>,
}

/// One event, its deliveries and their attempts.
pub async fn detail(
    state: &AppState,
    merchant: &MerchantId,
    id: &EventId,
) -> ApiResult<EventDetail> {
    let event = state.store.get_event(merchant, id).await?;
    let rows = state
        .store
        .list_deliveries(merchant, &event.id, state.clock.now())
        .await?;
    let mut attempts: HashMap<DeliveryId, Vec<AttemptRecord>> = HashMap::new();
    for attempt in state
        .store
        .list_attempts_of_event(merchant, &event.id)
        .await?
    {
        attempts
            .entry(attempt.delivery_id.clone())
            .or_default()
            .push(attempt);
    }
    let deliveries = rows
        .into_iter()
        .map(|delivery| DeliveryDetail {
            attempts: attempts.remove(&delivery.id).unwrap_or_default(),
            delivery,
        })
        .collect();
    Ok(EventDetail { event, deliveries })
}

/// Resends an event (to one endpoint, or to every endpoint it went to) within the configured
/// limits (`resend.window`, `resend.max_per_event`); a limit reached is a conflict naming it.
pub async fn resend(
    state: &AppState,
    merchant: &MerchantId,
    id: &EventId,
    input: ResendRequest,
) -> ApiResult<Resent> {
    let scope = match input.endpoint_id.as_deref() {
        None => ResendScope::All,
        Some(raw) => ResendScope::Endpoint(
            EndpointId::parse(raw).map_err(|_| ApiError::NotFound("endpoint".into()))?,
        ),
    };
    resend_to(state, merchant, id, &scope).await
}

/// One delivery of the merchant.
pub async fn delivery(
    state: &AppState,
    merchant: &MerchantId,
    id: &DeliveryId,
) -> ApiResult<Delivery> {
    Ok(state
        .store
        .get_delivery(merchant, id, state.clock.now())
        .await?)
}

/// Sends one delivery again: a new delivery of its event to its endpoint, due now. It is a
/// resend of the event to that endpoint, so it counts against the same limits.
pub async fn retry_delivery(
    state: &AppState,
    merchant: &MerchantId,
    id: &DeliveryId,
) -> ApiResult<Resent> {
    retry(state, merchant, &delivery(state, merchant, id).await?).await
}

/// [`retry_delivery`] of a delivery already read.
pub async fn retry(state: &AppState, merchant: &MerchantId, d: &Delivery) -> ApiResult<Resent> {
    resend_to(
        state,
        merchant,
        &d.event_id,
        &ResendScope::Endpoint(d.endpoint_id.clone()),
    )
    .await
}

async fn resend_to(
    state: &AppState,
    merchant: &MerchantId,
    id: &EventId,
    scope: &ResendScope,
) -> ApiResult<Resent> {
    let limits = state.settings.resend_limits();
    let ids = state
        .store
        .resend(merchant, id, scope, &limits, state.clock.now())
        .await?;
    if !ids.is_empty() {
        state.wake.notify_one();
    }
    Ok(Resent {
        delivery_ids: ids.into_iter().map(|d| d.to_string()).collect(),
    })
}
