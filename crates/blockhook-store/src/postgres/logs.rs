//! Reading what happened: events, their deliveries and attempts, and the per-endpoint views
//! (backlog, health). Every query is scoped by merchant; another merchant's ids read exactly like
//! unknown ones.

use blockhook_core::{
    AttemptRecord, Delivery, DeliveryId, DeliveryState, EndpointBacklog, EndpointHealth,
    EndpointId, Error, Event, EventId, EventQuery, MerchantId, Page, Timestamp,
};

use super::rows::{AttemptRow, DeliveryRow, EventRow, count, to_u32};
use super::store::{PgStore, cursor, overfetch};
use crate::classify;

const GET_EVENT: &str = "SELECT id, merchant_id, event_type, payload, idempotency_key, created_at, \
     resend_count FROM events WHERE id = $1 AND merchant_id = $2";

pub(super) async fn get_event(
    db: &PgStore,
    merchant: &MerchantId,
    id: &EventId,
) -> Result<Event, Error> {
    let row: Option<EventRow> = sqlx::query_as(GET_EVENT)
        .bind(id.as_str())
        .bind(merchant.as_str())
        .fetch_optional(db.db())
        .await
        .map_err(classify)?;
    row.ok_or(Error::NotFound("event"))?.try_into()
}

// Newest first by id with `id < cursor`, so rows inserted while paging (newer ids) never shift
// a page. Each other filter is off when its parameter is NULL. The state filter has no `now` to compare
// leases with (the query carries none), so "in flight" means "claimed and not yet finished"
// (a lease token is set), and `Pending` matches every undelivered delivery, leased or not.
const LIST_EVENTS: &str = "SELECT ev.id, ev.merchant_id, ev.event_type, ev.payload, \
     ev.idempotency_key, ev.created_at, ev.resend_count \
     FROM events ev \
     WHERE ev.merchant_id = $1 \
       AND ev.id < $2 \
       AND ($3::text IS NULL OR lower(ev.event_type) = lower($3)) \
       AND ($4::int8 IS NULL OR ev.created_at >= $4) \
       AND ($5::int8 IS NULL OR ev.created_at < $5) \
       AND ($6::text IS NULL OR EXISTS ( \
           SELECT 1 FROM deliveries d WHERE d.event_id = ev.id AND d.state = $6 \
             AND (NOT $7 OR d.lease_token IS NOT NULL))) \
     ORDER BY ev.id DESC LIMIT $8";

pub(super) async fn list_events(
    db: &PgStore,
    merchant: &MerchantId,
    q: &EventQuery,
) -> Result<Page<Event>, Error> {
    let (state, leased) = match q.state {
        None => (None, false),
        Some(DeliveryState::InFlight) => (Some("pending"), true),
        Some(s) => (Some(s.as_str()), false),
    };
    let rows: Vec<EventRow> = sqlx::query_as(LIST_EVENTS)
        .bind(merchant.as_str())
        .bind(cursor(q.after.as_ref()))
        .bind(q.event_type.as_ref().map(|t| t.as_str()))
        .bind(q.since.map(Timestamp::ms))
        .bind(q.until.map(Timestamp::ms))
        .bind(state)
        .bind(leased)
        .bind(overfetch(q.limit))
        .fetch_all(db.db())
        .await
        .map_err(classify)?;
    let events = rows
        .into_iter()
        .map(Event::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_overfetch(events, q.limit.max(1) as usize, |e| {
        e.id.to_string()
    }))
}

const LIST_DELIVERIES: &str = "SELECT id, event_id, endpoint_id, merchant_id, state, origin, \
     attempts, next_attempt_at, lease_until, last_status, created_at, updated_at \
     FROM deliveries WHERE event_id = $1 AND merchant_id = $2 ORDER BY created_at, id";

// Only asked when an event has no delivery at all, to tell "none" from "no such event".
const EVENT_EXISTS: &str =
    "SELECT EXISTS (SELECT 1 FROM events WHERE id = $1 AND merchant_id = $2)";

pub(super) async fn list_deliveries(
    db: &PgStore,
    merchant: &MerchantId,
    event: &EventId,
    now: Timestamp,
) -> Result<Vec<Delivery>, Error> {
    let rows: Vec<DeliveryRow> = sqlx::query_as(LIST_DELIVERIES)
        .bind(event.as_str())
        .bind(merchant.as_str())
        .fetch_all(db.db())
        .await
        .map_err(classify)?;
    if rows.is_empty() {
        let exists: bool = sqlx::query_scalar(EVENT_EXISTS)
            .bind(event.as_str())
            .bind(merchant.as_str())
            .fetch_one(db.db())
            .await
            .map_err(classify)?;
        if !exists {
            return Err(Error::NotFound("event"));
        }
    }
    rows.into_iter().map(|r| r.at(now)).collect()
}

const GET_DELIVERY: &str = "SELECT id, event_id, endpoint_id, merchant_id, state, origin, \
     attempts, next_attempt_at, lease_until, last_status, created_at, updated_at \
     FROM deliveries WHERE id = $1 AND merchant_id = $2";

pub(super) async fn get_delivery(
    db: &PgStore,
    merchant: &MerchantId,
    id: &DeliveryId,
    now: Timestamp,
) -> Result<Delivery, Error> {
    let row: Option<DeliveryRow> = sqlx::query_as(GET_DELIVERY)
        .bind(id.as_str())
        .bind(merchant.as_str())
        .fetch_optional(db.db())
        .await
        .map_err(classify)?;
    row.ok_or(Error::NotFound("delivery"))?.at(now)
}

const LIST_ATTEMPTS: &str = "SELECT a.id, a.delivery_id, a.number, a.started_at, a.url, \
     a.request_headers, a.status, a.response_headers, a.response_body, a.response_truncated, \
     a.latency_ms, a.error, a.error_detail \
     FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
     WHERE a.delivery_id = $1 AND d.merchant_id = $2 \
     ORDER BY a.number, a.started_at, a.id";

const DELIVERY_EXISTS: &str =
    "SELECT EXISTS (SELECT 1 FROM deliveries WHERE id = $1 AND merchant_id = $2)";

pub(super) async fn list_attempts(
    db: &PgStore,
    merchant: &MerchantId,
    delivery: &DeliveryId,
) -> Result<Vec<AttemptRecord>, Error> {
    let rows: Vec<AttemptRow> = sqlx::query_as(LIST_ATTEMPTS)
        .bind(delivery.as_str())
        .bind(merchant.as_str())
        .fetch_all(db.db())
        .await
        .map_err(classify)?;
    if rows.is_empty() {
        let exists: bool = sqlx::query_scalar(DELIVERY_EXISTS)
            .bind(delivery.as_str())
            .bind(merchant.as_str())
            .fetch_one(db.db())
            .await
            .map_err(classify)?;
        if !exists {
            return Err(Error::NotFound("delivery"));
        }
    }
    rows.into_iter().map(AttemptRecord::try_from).collect()
}

#[derive(sqlx::FromRow)]
struct BacklogRow {
    endpoint_id: String,
    pending: i64,
    failed: i64,
    oldest: Option<i64>,
}

// Through the merchant's endpoints, so the (endpoint_id, state, ...) index serves each one.
const BACKLOG: &str = "SELECT d.endpoint_id, \
        count(*) FILTER (WHERE d.state = 'pending') AS pending, \
        count(*) FILTER (WHERE d.state = 'failed') AS failed, \
        min(d.created_at) AS oldest \
     FROM endpoints e JOIN deliveries d ON d.endpoint_id = e.id \
     WHERE e.merchant_id = $1 AND d.state IN ('pending', 'failed') \
     GROUP BY d.endpoint_id ORDER BY d.endpoint_id";

pub(super) async fn backlog(
    db: &PgStore,
    merchant: &MerchantId,
) -> Result<Vec<EndpointBacklog>, Error> {
    let rows: Vec<BacklogRow> = sqlx::query_as(BACKLOG)
        .bind(merchant.as_str())
        .fetch_all(db.db())
        .await
        .map_err(classify)?;
    Ok(rows
        .into_iter()
        .map(|r| EndpointBacklog {
            endpoint_id: EndpointId::from_trusted(r.endpoint_id),
            pending: count(r.pending),
            failed: count(r.failed),
            oldest: r.oldest.map(Timestamp::from_ms),
        })
        .collect())
}

#[derive(sqlx::FromRow)]
struct HealthRow {
    started_at: i64,
    latency_ms: i64,
    attempts: i64,
    succeeded: i64,
}

/// At most this many latencies (the most recent) come back.
const MAX_LATENCIES: i64 = 10_000;

// The totals are window functions over the whole window, computed before the LIMIT keeps the
// most recent latencies; so one statement answers all three. An acknowledged attempt is one
// logged without an error class.
const HEALTH: &str = "SELECT a.started_at, a.latency_ms, \
        count(*) OVER () AS attempts, \
        count(*) FILTER (WHERE a.error IS NULL) OVER () AS succeeded \
     FROM attempts a JOIN endpoints e ON e.id = a.endpoint_id \
     WHERE a.endpoint_id = $1 AND e.merchant_id = $2 AND a.started_at >= $3 \
     ORDER BY a.started_at DESC, a.id DESC LIMIT $4";

const ENDPOINT_EXISTS: &str =
    "SELECT EXISTS (SELECT 1 FROM endpoints WHERE id = $1 AND merchant_id = $2)";

pub(super) async fn endpoint_health(
    db: &PgStore,
    merchant: &MerchantId,
    endpoint: &EndpointId,
    since: Timestamp,
) -> Result<EndpointHealth, Error> {
    let rows: Vec<HealthRow> = sqlx::query_as(HEALTH)
        .bind(endpoint.as_str())
        .bind(merchant.as_str())
        .bind(since.ms())
        .bind(MAX_LATENCIES)
        .fetch_all(db.db())
        .await
        .map_err(classify)?;
    let Some(first) = rows.first() else {
        let exists: bool = sqlx::query_scalar(ENDPOINT_EXISTS)
            .bind(endpoint.as_str())
            .bind(merchant.as_str())
            .fetch_one(db.db())
            .await
            .map_err(classify)?;
        return if exists {
            Ok(EndpointHealth::default())
        } else {
            Err(Error::NotFound("endpoint"))
        };
    };
    let (attempts, succeeded) = (count(first.attempts), count(first.succeeded));
    let mut latencies = rows
        .iter()
        .map(|r| {
            Ok((
                Timestamp::from_ms(r.started_at),
                to_u32(r.latency_ms, "latency")?,
            ))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    latencies.reverse(); // oldest first
    Ok(EndpointHealth {
        attempts,
        succeeded,
        latencies,
    })
}
