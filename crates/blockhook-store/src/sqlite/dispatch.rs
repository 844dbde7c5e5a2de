//! The dispatcher's side of the queue: claiming due deliveries under leases, renewing leases,
//! recording finished attempts, and telling when work falls due next.
//!
//! A lease is `lease_token` + `lease_until`, and claiming also moves `next_attempt_at` to
//! `lease_until`: an expired lease is then simply due again, found by the same index scan as any
//! due delivery, and a crashed worker's claims come back without a separate sweep.

use std::collections::{HashMap, HashSet};

use blockhook_core::{
    Claim, ClaimRequest, Completion, DeliveryId, DeliveryState, Endpoint, EndpointId, Error,
    EventId, EventType, LeaseToken, Next, Payload, Timestamp,
};
use bytes::Bytes;

use super::SqliteStore;
use super::rows::{EndpointRow, from_hex, json_list, to_hex, to_u32};
use crate::classify;

/// The most candidate rows one claim looks at when `per_endpoint_max` may reject some.
const MAX_CANDIDATES: i64 = 10_000;

// Walks the partial index `deliveries_due` in due order (`d` is the outer loop: CROSS JOIN pins
// the join order, so the planner never scans endpoints first and sorts the whole backlog). The
// rows come back aggregated into ONE JSON array: sqlx hands every result row across a thread
// boundary, which costs more than the row itself, so hot-path reads return a single row.
const CANDIDATES: &str = "SELECT json_group_array(json_array(id, event_id, endpoint_id, \
       attempts, round_start, next_attempt_at)) FROM ( \
     SELECT d.id, d.event_id, d.endpoint_id, d.attempts, d.round_start, d.next_attempt_at \
     FROM deliveries d CROSS JOIN endpoints e \
     WHERE d.state = 'pending' AND d.next_attempt_at <= ?1 \
       AND e.id = d.endpoint_id AND e.enabled = 1 \
       AND d.endpoint_id NOT IN (SELECT value FROM json_each(?2)) \
     ORDER BY d.next_attempt_at LIMIT ?3)";

/// `[id, event_id, endpoint_id, attempts, round_start, next_attempt_at]`.
type Candidate = (String, String, String, i64, i64, i64);

// `OR IGNORE`: a statement that cannot abort needs no statement journal.
const LEASE: &str = "UPDATE OR IGNORE deliveries SET lease_token = ?1, lease_until = ?2, \
     next_attempt_at = ?2, updated_at = ?3 WHERE id IN (SELECT value FROM json_each(?4))";

// One row: `[[id, event_type, created_at, hex(payload) or null], ...]`.
const CLAIMED_EVENTS: &str = "SELECT json_group_array(json_array(id, event_type, created_at, \
       hex(payload))) FROM events WHERE id IN (SELECT value FROM json_each(?1))";

/// `[id, event_type, created_at, hex payload]`.
type ClaimedEvent = (String, String, i64, Option<String>);

const CLAIMED_ENDPOINTS: &str = concat!(
    "SELECT ",
    endpoint_columns!(),
    " FROM endpoints WHERE id IN (SELECT value FROM json_each(?1))"
);

fn decode<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> Result<T, Error> {
    serde_json::from_str(json).map_err(|e| Error::Internal(format!("decode {what}: {e}")))
}

/// Four statements plus BEGIN/COMMIT whatever the batch size: candidates and lease in one short
/// write transaction, then the claimed events and endpoints read (concurrently, on readers)
/// after the commit. Each event's payload is read once and its bytes shared by all its claims.
pub(super) async fn claim_due(s: &SqliteStore, req: &ClaimRequest) -> Result<Vec<Claim>, Error> {
    if req.max == 0 || req.per_endpoint_max == 0 {
        return Ok(Vec::new());
    }
    let capped = req.per_endpoint_max < req.max;
    let look_at = if capped { (i64::from(req.max) * 4).min(MAX_CANDIDATES) } else { i64::from(req.max) };
    let exclude = json_list(req.exclude.iter().map(EndpointId::as_str))?;

    let mut tx = s.begin().await?;
    s.tick(1);
    let (json,): (String,) = sqlx::query_as(CANDIDATES)
        .bind(req.now.ms())
        .bind(exclude)
        .bind(look_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
    let mut candidates: Vec<Candidate> = decode(&json, "claim candidates")?;
    // Oldest due first (the aggregate's input order is not guaranteed to survive).
    candidates.sort_by_key(|c| c.5);

    let mut per_endpoint: HashMap<&str, u32> = HashMap::new();
    let mut chosen: Vec<&Candidate> = Vec::with_capacity(candidates.len().min(req.max as usize));
    for c in &candidates {
        if chosen.len() >= req.max as usize {
            break;
        }
        let n = per_endpoint.entry(c.2.as_str()).or_insert(0);
        if *n < req.per_endpoint_max {
            *n += 1;
            chosen.push(c);
        }
    }
    if chosen.is_empty() {
        // Nothing written: let the transaction roll back on drop.
        return Ok(Vec::new());
    }

    let token = LeaseToken::generate();
    s.tick(1);
    sqlx::query(LEASE)
        .bind(token.0)
        .bind(req.lease_until.ms())
        .bind(req.now.ms())
        .bind(json_list(chosen.iter().map(|c| c.0.as_str()))?)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    s.commit(tx).await?;

    let mut event_ids: Vec<&str> = chosen.iter().map(|c| c.1.as_str()).collect();
    event_ids.sort_unstable();
    event_ids.dedup();
    let endpoint_ids: Vec<&str> = per_endpoint.keys().copied().collect();
    s.tick(2);
    let ((events,), endpoints) = futures::try_join!(
        sqlx::query_as::<_, (String,)>(CLAIMED_EVENTS)
            .bind(json_list(event_ids)?)
            .fetch_one(&s.readers),
        sqlx::query_as::<_, EndpointRow>(CLAIMED_ENDPOINTS)
            .bind(json_list(endpoint_ids)?)
            .fetch_all(&s.readers),
    )
    .map_err(classify)?;

    let events: Vec<ClaimedEvent> = decode(&events, "claimed events")?;
    let mut events_by_id: HashMap<String, (EventType, Option<Payload>, Timestamp)> =
        HashMap::with_capacity(events.len());
    for (id, event_type, created_at, payload) in events {
        let ty = EventType::parse(&event_type)
            .map_err(|_| Error::Internal(format!("stored event type {event_type:?}")))?;
        // One `Bytes` per event, shared by all its claims.
        let payload = payload
            .map(|hex| from_hex(&hex).map(|b| Payload::from_trusted(Bytes::from(b))))
            .transpose()?;
        events_by_id.insert(id, (ty, payload, Timestamp::from_ms(created_at)));
    }
    let mut endpoints_by_id: HashMap<String, Endpoint> = HashMap::with_capacity(endpoints.len());
    for row in endpoints {
        let ep = Endpoint::try_from(row)?;
        endpoints_by_id.insert(ep.id.as_str().to_owned(), ep);
    }

    let mut claims = Vec::with_capacity(chosen.len());
    for (id, event_id, endpoint_id, attempts, round_start, _) in chosen {
        // Both can only be missing if the endpoint or merchant was deleted since the commit (the
        // delivery went with it), or a payload was purged under a pending delivery (purge skips
        // those); either way there is nothing to send, and the lease simply lapses.
        let (Some((ty, Some(payload), created)), Some(endpoint)) =
            (events_by_id.get(event_id), endpoints_by_id.get(endpoint_id))
        else {
            tracing::warn!(delivery = %id, "claimed delivery lost its event payload or endpoint");
            continue;
        };
        let attempts = to_u32(*attempts, "attempts")?;
        let round_start = to_u32(*round_start, "round start")?;
        claims.push(Claim {
            delivery_id: DeliveryId::from_trusted(id.clone()),
            lease: token,
            attempt: attempts.saturating_add(1),
            round_attempt: attempts.saturating_sub(round_start).saturating_add(1),
            event_id: EventId::from_trusted(event_id.clone()),
            event_type: ty.clone(),
            payload: payload.clone(),
            event_created_at: *created,
            endpoint: endpoint.clone(),
        });
    }
    Ok(claims)
}

// `[[delivery_id, token], ...]` joined to the table by primary key; only rows still holding the
// token move.
const RENEW: &str = "UPDATE OR IGNORE deliveries SET lease_until = ?2, next_attempt_at = ?2 \
     FROM (SELECT value ->> 0 AS id, value ->> 1 AS token FROM json_each(?1)) AS r \
     WHERE deliveries.id = r.id AND deliveries.lease_token = r.token \
       AND deliveries.state = 'pending'";

pub(super) async fn renew_leases(
    s: &SqliteStore,
    leases: &[(DeliveryId, LeaseToken)],
    until: Timestamp,
) -> Result<(), Error> {
    if leases.is_empty() {
        return Ok(());
    }
    let pairs: Vec<(&str, i64)> = leases.iter().map(|(id, t)| (id.as_str(), t.0)).collect();
    let pairs = serde_json::to_string(&pairs).map_err(|e| Error::Internal(e.to_string()))?;
    s.tick(1);
    sqlx::query(RENEW).bind(pairs).bind(until.ms()).execute(&s.writer).await.map_err(classify)?;
    Ok(())
}

// Logs the attempt of every completion whose lease token still holds (the join with the live
// delivery row is the token check), taking endpoint_id from the delivery. One JSON array element
// per completion, see [`CompletionRow`]; headers stay JSON (`->`), the body travels as hex.
const LOG_ATTEMPTS: &str = "INSERT OR IGNORE INTO attempts (id, delivery_id, endpoint_id, number, \
       started_at, url, request_headers, status, response_headers, response_body, \
       response_truncated, latency_ms, error, error_detail) \
     SELECT c.value ->> 5, d.id, d.endpoint_id, c.value ->> 6, c.value ->> 7, c.value ->> 8, \
       c.value -> 9, c.value ->> 4, c.value -> 10, COALESCE(unhex(c.value ->> 11), x''), \
       c.value ->> 12, c.value ->> 13, c.value ->> 14, c.value ->> 15 \
     FROM json_each(?1) AS c CROSS JOIN deliveries d \
     WHERE d.id = c.value ->> 0 AND d.lease_token = c.value ->> 1 AND d.state = 'pending'";

// Before APPLY releases the lease: the token check is the same.
const DISABLE_ENDPOINT: &str = "UPDATE endpoints SET enabled = 0, disabled_reason = ?3, \
     updated_at = ?4 WHERE id = (SELECT endpoint_id FROM deliveries \
       WHERE id = ?1 AND lease_token = ?2 AND state = 'pending')";

// Applies every completion whose token still holds; its row count is the number applied.
const APPLY: &str = "UPDATE OR IGNORE deliveries SET state = c.value ->> 2, \
       attempts = attempts + 1, next_attempt_at = c.value ->> 3, last_status = c.value ->> 4, \
       lease_token = NULL, lease_until = NULL, updated_at = ?2 \
     FROM json_each(?1) AS c \
     WHERE deliveries.id = c.value ->> 0 AND deliveries.lease_token = c.value ->> 1 \
       AND deliveries.state = 'pending'";

/// One completion as bound to [`LOG_ATTEMPTS`] and [`APPLY`] (serialised as a JSON array):
/// delivery id, token, new state, next attempt time, status, then the attempt's id, number,
/// start, url, request headers, response headers, hex body, truncated, latency, error class,
/// error detail.
#[derive(serde::Serialize)]
struct CompletionRow<'a>(
    &'a str,
    i64,
    &'static str,
    Option<i64>,
    Option<u16>,
    &'a str,
    u32,
    i64,
    &'a str,
    &'a [(String, String)],
    &'a [(String, String)],
    String,
    bool,
    u32,
    Option<&'static str>,
    Option<&'a str>,
);

/// BEGIN, log the attempts, apply the states, COMMIT: four statements whatever the batch size
/// (plus one per endpoint disabled). Stale completions fail the token join in both statements,
/// so they change nothing and log nothing.
pub(super) async fn finish(s: &SqliteStore, done: &[Completion], now: Timestamp) -> Result<u32, Error> {
    if done.is_empty() {
        return Ok(0);
    }
    // A delivery completed twice in one batch: only the first counts.
    let mut seen: HashSet<&str> = HashSet::with_capacity(done.len());
    let mut rows = Vec::with_capacity(done.len());
    let mut disabling = Vec::new();
    for c in done {
        if !seen.insert(c.delivery_id.as_str()) {
            continue;
        }
        let (state, next_at) = match c.next {
            Next::Succeeded => (DeliveryState::Succeeded, None),
            Next::RetryAt(t) => (DeliveryState::Pending, Some(t.ms())),
            Next::GiveUp | Next::DisableEndpoint => (DeliveryState::Failed, None),
        };
        if c.next == Next::DisableEndpoint {
            disabling.push(c);
        }
        let a = &c.attempt;
        rows.push(CompletionRow(
            c.delivery_id.as_str(),
            c.lease.0,
            state.as_str(),
            next_at,
            a.status,
            a.id.as_str(),
            a.number,
            a.started_at.ms(),
            a.url.as_str(),
            &a.request_headers,
            &a.response_headers,
            to_hex(&a.response_body),
            a.response_truncated,
            a.latency_ms,
            a.error.map(|e| e.as_str()),
            a.error_detail.as_deref(),
        ));
    }
    let rows = serde_json::to_string(&rows).map_err(|e| Error::Internal(e.to_string()))?;

    let mut tx = s.begin().await?;
    s.tick(1);
    let logged = sqlx::query(LOG_ATTEMPTS)
        .bind(rows.as_str())
        .execute(&mut *tx)
        .await
        .map_err(classify)?
        .rows_affected();
    for c in disabling {
        let reason = c.disable_reason.clone().unwrap_or_else(|| {
            format!("410 Gone on attempt {} of {}", c.attempt.number, c.delivery_id)
        });
        s.tick(1);
        sqlx::query(DISABLE_ENDPOINT)
            .bind(c.delivery_id.as_str())
            .bind(c.lease.0)
            .bind(reason)
            .bind(now.ms())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
    }
    s.tick(1);
    let applied = sqlx::query(APPLY)
        .bind(rows.as_str())
        .bind(now.ms())
        .execute(&mut *tx)
        .await
        .map_err(classify)?
        .rows_affected();
    if applied != logged {
        // Only possible if an attempt id was reused (OR IGNORE skipped its row).
        return Err(Error::Conflict("an attempt with this id already exists".to_owned()));
    }
    if applied == 0 {
        return Ok(0); // nothing written: roll back on drop
    }
    s.commit(tx).await?;
    Ok(u32::try_from(applied).unwrap_or(u32::MAX))
}

// The head of the due index among enabled endpoints (a disabled endpoint's deliveries wait and
// must not make the dispatcher spin on work it cannot claim).
const NEXT_DUE: &str = "SELECT d.next_attempt_at FROM deliveries d CROSS JOIN endpoints e \
     WHERE d.state = 'pending' AND e.id = d.endpoint_id AND e.enabled = 1 \
     ORDER BY d.next_attempt_at LIMIT 1";

pub(super) async fn next_due_at(s: &SqliteStore) -> Result<Option<Timestamp>, Error> {
    s.tick(1);
    let row: Option<(Option<i64>,)> =
        sqlx::query_as(NEXT_DUE).fetch_optional(&s.readers).await.map_err(classify)?;
    Ok(row.and_then(|(t,)| t).map(Timestamp::from_ms))
}
