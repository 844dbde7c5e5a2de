//! The dispatcher's side of the queue: claiming due deliveries under leases, renewing leases,
//! recording finished attempts, and telling when work falls due next.
//!
//! A lease is `lease_token` + `lease_until`, and claiming also moves `next_attempt_at` to
//! `lease_until`: an expired lease is then simply due again, found by the same index scan as any
//! due delivery, and a crashed worker's claims come back without a separate sweep.

use std::collections::HashMap;

use blockhook_core::{
    Claim, ClaimRequest, Completion, DeliveryId, DeliveryState, Endpoint, EndpointId, Error,
    EventId, EventType, LeaseToken, Next, Payload, Timestamp,
};
use bytes::Bytes;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::SqliteStore;
use super::rows::{EndpointRow, chunks, json_list, pairs_json, to_u32};
use crate::classify;

/// The most candidate rows one claim looks at when `per_endpoint_max` may reject some.
const MAX_CANDIDATES: i64 = 10_000;

// Walks the partial index `deliveries_due` in due order (`d` is the outer loop: CROSS JOIN pins
// the join order, so the planner never scans endpoints first and sorts the whole backlog).
const CANDIDATES: &str = "SELECT d.id, d.event_id, d.endpoint_id, d.attempts, d.round_start \
     FROM deliveries d CROSS JOIN endpoints e \
     WHERE d.state = 'pending' AND d.next_attempt_at <= ?1 \
       AND e.id = d.endpoint_id AND e.enabled = 1 \
       AND d.endpoint_id NOT IN (SELECT value FROM json_each(?2)) \
     ORDER BY d.next_attempt_at LIMIT ?3";

#[derive(sqlx::FromRow)]
struct Candidate {
    id: String,
    event_id: String,
    endpoint_id: String,
    attempts: i64,
    round_start: i64,
}

const LEASE: &str = "UPDATE deliveries SET lease_token = ?1, lease_until = ?2, \
     next_attempt_at = ?2, updated_at = ?3 WHERE id IN (SELECT value FROM json_each(?4))";

const CLAIMED_EVENTS: &str = "SELECT id, event_type, payload, created_at FROM events \
     WHERE id IN (SELECT value FROM json_each(?1))";

#[derive(sqlx::FromRow)]
struct ClaimedEvent {
    id: String,
    event_type: String,
    payload: Option<Vec<u8>>,
    created_at: i64,
}

const CLAIMED_ENDPOINTS: &str = concat!(
    "SELECT ",
    endpoint_columns!(),
    " FROM endpoints WHERE id IN (SELECT value FROM json_each(?1))"
);

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
    let candidates: Vec<Candidate> = sqlx::query_as(CANDIDATES)
        .bind(req.now.ms())
        .bind(exclude)
        .bind(look_at)
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;

    let mut per_endpoint: HashMap<&str, u32> = HashMap::new();
    let mut chosen: Vec<&Candidate> = Vec::with_capacity(candidates.len().min(req.max as usize));
    for c in &candidates {
        if chosen.len() >= req.max as usize {
            break;
        }
        let n = per_endpoint.entry(c.endpoint_id.as_str()).or_insert(0);
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
        .bind(json_list(chosen.iter().map(|c| c.id.as_str()))?)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    s.commit(tx).await?;

    let mut event_ids: Vec<&str> = chosen.iter().map(|c| c.event_id.as_str()).collect();
    event_ids.sort_unstable();
    event_ids.dedup();
    let endpoint_ids: Vec<&str> = per_endpoint.keys().copied().collect();
    s.tick(2);
    let (events, endpoints) = futures::try_join!(
        sqlx::query_as::<_, ClaimedEvent>(CLAIMED_EVENTS)
            .bind(json_list(event_ids)?)
            .fetch_all(&s.readers),
        sqlx::query_as::<_, EndpointRow>(CLAIMED_ENDPOINTS)
            .bind(json_list(endpoint_ids)?)
            .fetch_all(&s.readers),
    )
    .map_err(classify)?;

    let mut events_by_id: HashMap<String, (EventType, Option<Payload>, Timestamp)> = HashMap::new();
    for ev in events {
        let ty = EventType::parse(&ev.event_type)
            .map_err(|_| Error::Internal(format!("stored event type {:?}", ev.event_type)))?;
        let payload = ev.payload.map(|p| Payload::from_trusted(Bytes::from(p)));
        events_by_id.insert(ev.id, (ty, payload, Timestamp::from_ms(ev.created_at)));
    }
    let mut endpoints_by_id: HashMap<String, Endpoint> = HashMap::new();
    for row in endpoints {
        let ep = Endpoint::try_from(row)?;
        endpoints_by_id.insert(ep.id.as_str().to_owned(), ep);
    }

    let mut claims = Vec::with_capacity(chosen.len());
    for c in chosen {
        // Both can only be missing if the endpoint or merchant was deleted since the commit (the
        // delivery went with it), or a payload was purged under a pending delivery (purge skips
        // those); either way there is nothing to send, and the lease simply lapses.
        let (Some((ty, Some(payload), created)), Some(endpoint)) =
            (events_by_id.get(&c.event_id), endpoints_by_id.get(&c.endpoint_id))
        else {
            tracing::warn!(delivery = %c.id, "claimed delivery lost its event payload or endpoint");
            continue;
        };
        let attempts = to_u32(c.attempts, "attempts")?;
        let round_start = to_u32(c.round_start, "round start")?;
        claims.push(Claim {
            delivery_id: DeliveryId::from_trusted(c.id.clone()),
            lease: token,
            attempt: attempts.saturating_add(1),
            round_attempt: attempts.saturating_sub(round_start).saturating_add(1),
            event_id: EventId::from_trusted(c.event_id.clone()),
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
const RENEW: &str = "UPDATE deliveries SET lease_until = ?2, next_attempt_at = ?2 \
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

// Applies every completion whose token still holds, in one statement, and says which applied.
// `[[id, token, state, next_attempt_at, status], ...]`.
const APPLY: &str = "UPDATE deliveries SET state = c.state, attempts = attempts + 1, \
     next_attempt_at = c.next_at, last_status = c.status, lease_token = NULL, \
     lease_until = NULL, updated_at = ?2 \
     FROM (SELECT value ->> 0 AS id, value ->> 1 AS token, value ->> 2 AS state, \
                  value ->> 3 AS next_at, value ->> 4 AS status FROM json_each(?1)) AS c \
     WHERE deliveries.id = c.id AND deliveries.lease_token = c.token \
       AND deliveries.state = 'pending' \
     RETURNING deliveries.id, deliveries.endpoint_id";

const DISABLE_ENDPOINT: &str =
    "UPDATE endpoints SET enabled = 0, disabled_reason = ?2, updated_at = ?3 WHERE id = ?1";

/// One transaction of BEGIN, the state update, one attempt INSERT per 256 applied completions,
/// COMMIT (plus one UPDATE per endpoint disabled). Stale completions are filtered by the update
/// itself, so their attempts are never logged.
pub(super) async fn finish(s: &SqliteStore, done: &[Completion], now: Timestamp) -> Result<u32, Error> {
    if done.is_empty() {
        return Ok(0);
    }
    // A delivery completed twice in one batch: only the first counts.
    let mut first: HashMap<&str, &Completion> = HashMap::with_capacity(done.len());
    for c in done {
        first.entry(c.delivery_id.as_str()).or_insert(c);
    }
    let mut rows = Vec::with_capacity(first.len());
    for c in first.values() {
        let (state, next_at) = match c.next {
            Next::Succeeded => (DeliveryState::Succeeded, None),
            Next::RetryAt(t) => (DeliveryState::Pending, Some(t.ms())),
            Next::GiveUp | Next::DisableEndpoint => (DeliveryState::Failed, None),
        };
        rows.push((c.delivery_id.as_str(), c.lease.0, state.as_str(), next_at, c.attempt.status));
    }
    let rows = serde_json::to_string(&rows).map_err(|e| Error::Internal(e.to_string()))?;

    let mut tx = s.begin().await?;
    s.tick(1);
    let applied: Vec<(String, String)> =
        sqlx::query_as(APPLY).bind(rows).bind(now.ms()).fetch_all(&mut *tx).await.map_err(classify)?;
    if applied.is_empty() {
        return Ok(0);
    }
    let mut logged: Vec<(&Completion, &str)> = Vec::with_capacity(applied.len());
    for (id, endpoint_id) in &applied {
        if let Some(c) = first.get(id.as_str()) {
            logged.push((c, endpoint_id.as_str()));
        }
    }
    insert_attempts(s, &mut tx, &logged).await?;
    for (c, endpoint_id) in &logged {
        if c.next == Next::DisableEndpoint {
            let reason = c.disable_reason.clone().unwrap_or_else(|| {
                format!("410 Gone on attempt {} of {}", c.attempt.number, c.delivery_id)
            });
            s.tick(1);
            sqlx::query(DISABLE_ENDPOINT)
                .bind(*endpoint_id)
                .bind(reason)
                .bind(now.ms())
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
    }
    s.commit(tx).await?;
    Ok(u32::try_from(logged.len()).unwrap_or(u32::MAX))
}

/// Multi-row INSERT of attempt records, in [`chunks`].
async fn insert_attempts(
    s: &SqliteStore,
    conn: &mut SqliteConnection,
    logged: &[(&Completion, &str)],
) -> Result<(), Error> {
    // Encode the JSON columns up front: the row closure below cannot fail.
    let mut encoded = Vec::with_capacity(logged.len());
    for (c, endpoint_id) in logged {
        let a = &c.attempt;
        encoded.push((a, *endpoint_id, pairs_json(&a.request_headers)?, pairs_json(&a.response_headers)?));
    }
    for chunk in chunks(&encoded) {
        let mut q: QueryBuilder<'_, Sqlite> = QueryBuilder::new(
            "INSERT INTO attempts (id, delivery_id, endpoint_id, number, started_at, url, \
             request_headers, status, response_headers, response_body, response_truncated, \
             latency_ms, error, error_detail) ",
        );
        q.push_values(chunk, |mut row, (a, endpoint_id, req_headers, resp_headers)| {
            row.push_bind(a.id.as_str())
                .push_bind(a.delivery_id.as_str())
                .push_bind(*endpoint_id)
                .push_bind(i64::from(a.number))
                .push_bind(a.started_at.ms())
                .push_bind(a.url.as_str())
                .push_bind(req_headers.as_str())
                .push_bind(a.status.map(i64::from))
                .push_bind(resp_headers.as_str())
                .push_bind(a.response_body.as_ref())
                .push_bind(a.response_truncated)
                .push_bind(i64::from(a.latency_ms))
                .push_bind(a.error.map(|e| e.as_str()))
                .push_bind(a.error_detail.as_deref());
        });
        s.tick(1);
        q.build().execute(&mut *conn).await.map_err(classify)?;
    }
    Ok(())
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
