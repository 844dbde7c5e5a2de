//! The dispatcher's side of the queue: claiming due deliveries under leases, renewing leases,
//! recording finished attempts, and telling when work falls due next.
//!
//! A lease is `lease_token` + `lease_until`, and claiming also moves `next_attempt_at` to
//! `lease_until`: an expired lease is then simply due again, found by the same index scan as any
//! due delivery, and a crashed worker's claims come back without a separate sweep.
//!
//! Manual actions on deliveries: resending an event and recovering an endpoint's failures.
//!
//! The [`Queue`] impl.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use blockhook_core::{
    Claim, ClaimRequest, Completion, DeliveryId, DeliveryOrigin, DeliveryState, Endpoint,
    EndpointId, Error, EventId, EventType, HeldKey, Ingested, LeaseToken, MerchantId, NewEvent,
    Next, Ordering, OrderingKey, Payload, Queue, ResendLimits, ResendScope, Timestamp,
};
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::cache::CachedEvent;
use super::db::SqliteStore;
use super::endpoints;
use super::events::{NewDelivery, insert_deliveries};
use super::rows::{json_list, padded_chunks, pairs_json, placeholders, to_u32};
use super::writer::{Bind, Cx, Durability, Joined, NULL, blob, int, text};
use crate::{classify, classify_sqlite};

/// The subquery that keeps an ordered delivery `d` from being claimed: a sibling of the same
/// (endpoint, key) that is earlier in the key's queue and not done, that is in flight (a live
/// lease, whatever its place: a recovered head behind a running delivery waits for it), or that
/// holds the key. `$now` is the claim's time parameter. Probes `deliveries_ordering` (its partial
/// condition is repeated word for word so the planner can use it); unordered rows never get here.
macro_rules! blocked_by_sibling {
    ($now:literal) => {
        concat!(
            "SELECT 1 FROM deliveries s WHERE s.endpoint_id = d.endpoint_id \
               AND s.ordering_key = d.ordering_key \
               AND (s.state = 'pending' OR s.ordering_held = 1) AND s.id <> d.id \
               AND (s.ordering_seq < d.ordering_seq OR s.ordering_held = 1 \
                    OR s.lease_until > ",
            $now,
            ")"
        )
    };
}

// Walks the partial index `deliveries_due` in due order (`d` is the outer loop: CROSS JOIN pins
// the join order, so the planner never scans endpoints first and sorts the whole backlog). The
// rows come back aggregated into ONE JSON array: sqlx hands every result row across a thread
// boundary, which costs more than the row itself, so hot-path reads return a single row.
const CANDIDATES: &str = concat!(
    "SELECT json_group_array(json_array(id, event_id, endpoint_id, \
       attempts, round_start, next_attempt_at, version)) FROM ( \
     SELECT d.id, d.event_id, d.endpoint_id, d.attempts, d.round_start, d.next_attempt_at, \
       e.version FROM deliveries d CROSS JOIN endpoints e \
     WHERE d.state = 'pending' AND d.next_attempt_at <= ?1 \
       AND e.id = d.endpoint_id AND e.enabled = 1 \
       AND d.endpoint_id NOT IN (SELECT value FROM json_each(?2)) \
       AND (d.ordering_key IS NULL OR NOT EXISTS (",
    blocked_by_sibling!("?1"),
    ")) \
     ORDER BY d.next_attempt_at LIMIT ?3)"
);

// The second pass of a claim whose oldest-due window was filled by a few endpoints: walks the
// endpoints that have pending deliveries (one probe of `deliveries_endpoint_due` each, from
// `?1`, at most `?2` of them) and takes up to `?5` due deliveries of each, oldest first. Returns
// the candidates (as `CANDIDATES`), the last endpoint walked and how many were walked.
const SPREAD: &str = concat!(
    "WITH RECURSIVE walked(id, n) AS ( \
       SELECT (SELECT endpoint_id FROM deliveries WHERE state = 'pending' AND endpoint_id > ?1 \
               ORDER BY endpoint_id LIMIT 1), 1 \
       UNION ALL \
       SELECT (SELECT endpoint_id FROM deliveries WHERE state = 'pending' \
                 AND endpoint_id > walked.id ORDER BY endpoint_id LIMIT 1), n + 1 \
       FROM walked WHERE walked.id IS NOT NULL AND n < ?2) \
     SELECT (SELECT json_group_array(json_array(c.id, c.event_id, c.endpoint_id, c.attempts, \
               c.round_start, c.next_attempt_at, e.version)) \
             FROM walked w CROSS JOIN endpoints e CROSS JOIN deliveries c \
             WHERE e.id = w.id AND e.enabled = 1 \
               AND w.id NOT IN (SELECT value FROM json_each(?4)) \
               AND c.id IN (SELECT d.id FROM deliveries d \
                 WHERE d.endpoint_id = w.id AND d.state = 'pending' AND d.next_attempt_at <= ?3 \
                   AND (d.ordering_key IS NULL OR NOT EXISTS (",
    blocked_by_sibling!("?3"),
    ")) \
                 ORDER BY d.next_attempt_at LIMIT ?5)), \
       (SELECT max(id) FROM walked), (SELECT count(id) FROM walked)"
);

/// `[id, event_id, endpoint_id, attempts, round_start, next_attempt_at, endpoint version]`.
type Candidate = (String, String, String, i64, i64, i64, i64);

/// What a claim's transaction hands back: the token, the leased candidates, and their endpoints
/// as they are in that transaction.
pub(super) struct Leased {
    token: LeaseToken,
    chosen: Vec<Candidate>,
    endpoints: HashMap<String, Arc<Endpoint>>,
}

// `OR IGNORE`: a statement that cannot abort needs no statement journal.
const LEASE: &str = "UPDATE OR IGNORE deliveries SET lease_token = ?1, lease_until = ?2, \
     next_attempt_at = ?2, updated_at = ?3 WHERE id IN (SELECT value FROM json_each(?4))";

#[derive(sqlx::FromRow)]
struct ClaimedEvent {
    id: String,
    event_type: String,
    payload: Option<Vec<u8>>,
    created_at: i64,
}

fn decode<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> Result<T, Error> {
    serde_json::from_str(json).map_err(|e| Error::Internal(format!("decode {what}: {e}")))
}

/// Inside the claim's transaction: picks the candidates (oldest due first, at most
/// `per_endpoint_max` per endpoint), leases them under one fresh token, and reads their
/// endpoints (from the endpoint cache when it holds the version the candidates saw). `None`:
/// nothing due.
pub(super) fn lease_due(
    cx: &Cx,
    conn: &Connection,
    req: &ClaimRequest,
) -> Result<Option<Leased>, Error> {
    /// The most candidate rows one claim looks at when `per_endpoint_max` may reject some.
    const MAX_CANDIDATES: i64 = 10_000;
    if req.max == 0 || req.per_endpoint_max == 0 {
        return Ok(None);
    }
    let look_at = if req.per_endpoint_max < req.max {
        (i64::from(req.max) * 4).min(MAX_CANDIDATES)
    } else {
        i64::from(req.max)
    };
    let exclude = json_list(req.exclude.iter().map(EndpointId::as_str))?;
    cx.tick(1);
    let json: String = conn
        .prepare_cached(CANDIDATES)
        .and_then(|mut stmt| stmt.query_row(params![req.now.ms(), exclude, look_at], |r| r.get(0)))
        .map_err(classify_sqlite)?;
    let mut candidates: Vec<Candidate> = decode(&json, "claim candidates")?;
    let window_full = candidates.len() as i64 >= look_at;
    // Oldest due first (the aggregate's input order is not guaranteed to survive).
    candidates.sort_by_key(|c| c.5);

    let mut per_endpoint: HashMap<String, u32> = HashMap::new();
    let mut chosen: Vec<Candidate> = Vec::with_capacity(candidates.len().min(req.max as usize));
    let mut choose = |candidates: Vec<Candidate>, chosen: &mut Vec<Candidate>| {
        for c in candidates {
            if chosen.len() >= req.max as usize {
                break;
            }
            let n = per_endpoint.entry(c.2.clone()).or_insert(0);
            if *n < req.per_endpoint_max {
                *n += 1;
                chosen.push(c);
            }
        }
    };
    choose(candidates, &mut chosen);
    // The window was full yet the claim is not: a few endpoints' backlogs fill the head of the
    // queue. Other endpoints' due deliveries come from a second pass.
    if window_full && chosen.len() < req.max as usize {
        let missing = req.max - chosen.len() as u32;
        let taken: HashSet<&str> = chosen.iter().map(|c| c.0.as_str()).collect();
        let mut more = spread(cx, conn, req, missing, &exclude)?;
        more.retain(|c| !taken.contains(c.0.as_str()));
        more.sort_by_key(|c| c.5);
        choose(more, &mut chosen);
    }
    if chosen.is_empty() {
        return Ok(None);
    }

    let token = LeaseToken::generate();
    let ids = json_list(chosen.iter().map(|c| c.0.as_str()))?;
    cx.tick(1);
    conn.prepare_cached(LEASE)
        .and_then(|mut stmt| {
            stmt.execute(params![token.0, req.lease_until.ms(), req.now.ms(), ids])
        })
        .map_err(classify_sqlite)?;
    let wanted: Vec<(&str, i64)> = chosen.iter().map(|c| (c.2.as_str(), c.6)).collect();
    let endpoints = endpoints::current(cx, conn, &wanted)?;
    Ok(Some(Leased {
        token,
        chosen,
        endpoints,
    }))
}

/// The second pass of a claim (`SPREAD`): up to `per_endpoint_max` due deliveries from each of
/// the next endpoints with pending work, walked round-robin from where the last pass stopped so
/// every endpoint gets its turn.
fn spread(
    cx: &Cx,
    conn: &Connection,
    req: &ClaimRequest,
    missing: u32,
    exclude: &str,
) -> Result<Vec<Candidate>, Error> {
    let walk = crate::spread_walk(missing, req.per_endpoint_max);
    let from = cx.claim_cursor().unwrap_or_default();
    cx.tick(1);
    let (json, last, walked): (Option<String>, Option<String>, i64) = conn
        .prepare_cached(SPREAD)
        .and_then(|mut stmt| {
            stmt.query_row(
                params![from, walk, req.now.ms(), exclude, req.per_endpoint_max],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
        })
        .map_err(classify_sqlite)?;
    // The walk ran out of endpoints: the next one starts from the first again.
    cx.set_claim_cursor(if walked < walk { None } else { last });
    match json {
        Some(json) => decode(&json, "spread candidates"),
        None => Ok(Vec::new()),
    }
}

impl SqliteStore {
    /// `Events::ingest_and_claim`, in the ingest's own transaction. With `lease.new_first` the
    /// batch's unordered deliveries are inserted already leased, within the request's limits,
    /// and their claims built from the events in hand; what that leaves is claimed after the
    /// group's writes by the same query as a claim (so ordering, caps and exclusions hold as for
    /// `claim_due`). Without it the whole request is such a claim, oldest due first. Only the
    /// payloads the event cache lacks are read after the commit: for fresh events, none. A claim
    /// that fails leaves the ingest standing, with the claims leased at insert.
    pub(super) async fn ingest_and_lease(
        &self,
        events: &[NewEvent],
        lease: &ClaimRequest,
    ) -> Result<(Vec<Ingested>, Vec<Claim>), Error> {
        let (tx, leased) = tokio::sync::oneshot::channel();
        let joined: Joined = Box::new(move |conn, cx, rest| {
            let leased = match rest {
                Some(rest) => lease_due(cx, conn, rest),
                None => Ok(None),
            };
            Box::new(move |committed| {
                let _ = tx.send(leased.map(|l| l.filter(|_| committed)));
            })
        });
        let (ingested, mut claims) = self
            .db
            .thread
            .ingest(events, Some(lease.clone()), Some(joined))
            .await?;
        match leased.await {
            Ok(Ok(Some(leased))) => claims.extend(self.claims(leased).await?),
            Ok(Ok(None)) | Err(_) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "leasing at ingest failed; the deliveries stay due");
            }
        }
        Ok((ingested, claims))
    }

    /// The claims of a committed lease: each event's payload is one shared `Bytes` for all its
    /// claims (from the event cache, or read once for the events it lacks), each endpoint one
    /// shared `Arc`.
    pub(super) async fn claims(&self, leased: Leased) -> Result<Vec<Claim>, Error> {
        // Only for events the cache does not hold (see `cache`).
        const CLAIMED_EVENTS: &str = "SELECT id, event_type, payload, created_at FROM events \
             WHERE id IN (SELECT value FROM json_each(?1))";

        let Leased {
            token,
            chosen,
            endpoints: endpoints_by_id,
        } = leased;
        let mut event_ids: Vec<&str> = chosen.iter().map(|c| c.1.as_str()).collect();
        event_ids.sort_unstable();
        event_ids.dedup();
        let (cached, missing) = self.db.events.get_all(event_ids);
        let mut fetched: HashMap<String, CachedEvent> = HashMap::new();
        if !missing.is_empty() {
            self.db.tick(1);
            let rows = sqlx::query_as::<_, ClaimedEvent>(CLAIMED_EVENTS)
                .bind(json_list(missing)?)
                .fetch_all(&self.db.readers)
                .await
                .map_err(classify)?;
            for ev in rows {
                let Some(payload) = ev.payload else { continue };
                let event_type = EventType::parse(&ev.event_type).map_err(|_| {
                    Error::Internal(format!("stored event type {:?}", ev.event_type))
                })?;
                let cached = CachedEvent {
                    event_type,
                    // One `Bytes` per event, shared by all its claims.
                    payload: Payload::from_trusted(Bytes::from(payload)),
                    created_at: Timestamp::from_ms(ev.created_at),
                };
                fetched.insert(ev.id, cached);
            }
        }

        let mut claims = Vec::with_capacity(chosen.len());
        for (id, event_id, endpoint_id, attempts, round_start, _, _) in &chosen {
            // Both can only be missing if the endpoint or merchant was deleted since the commit (the
            // delivery went with it), or a payload was purged under a pending delivery (purge skips
            // those); either way there is nothing to send, and the lease simply lapses.
            let ev = cached
                .get(event_id.as_str())
                .or_else(|| fetched.get(event_id));
            let (Some(ev), Some(endpoint)) = (ev, endpoints_by_id.get(endpoint_id)) else {
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
                event_type: ev.event_type.clone(),
                payload: ev.payload.clone(),
                event_created_at: ev.created_at,
                endpoint: endpoint.clone(),
            });
        }
        Ok(claims)
    }
}

#[async_trait::async_trait]
impl Queue for SqliteStore {
    async fn wait_for_work(&self, max: Duration) {
        // One process uses the file, and its dispatcher is woken directly on ingest.
        tokio::time::sleep(max).await;
    }

    async fn finish(&self, done: Arc<[Completion]>, now: Timestamp) -> Result<u32, Error> {
        self.db.thread.finish(done, now).await
    }

    fn gathers_finishes(&self) -> bool {
        true
    }

    /// A fixed number of statements whatever the batch size: candidates, lease and (only for
    /// endpoints the cache lacks at their current version) endpoints in one short write
    /// transaction, then, after the commit and on readers, only the events the cache lacks (see
    /// [`SqliteStore::claims`]).
    async fn claim_due(&self, req: &ClaimRequest) -> Result<Vec<Claim>, Error> {
        if req.max == 0 || req.per_endpoint_max == 0 {
            return Ok(Vec::new());
        }
        // Only leases are written: see `Durability::Relaxed` for why they need no fsync.
        let owned = req.clone();
        let leased = self
            .db
            .thread
            .run(Durability::Relaxed, move |conn, cx| {
                lease_due(cx, conn, &owned)
            })
            .await?;
        match leased {
            Some(leased) => self.claims(leased).await,
            None => Ok(Vec::new()),
        }
    }

    /// One transaction on the writer thread; one statement per 256 leases.
    async fn renew_leases(
        &self,
        leases: &[(DeliveryId, LeaseToken)],
        until: Timestamp,
    ) -> Result<(), Error> {
        // The leases to extend, as `VALUES` joined to the table by primary key; only rows still holding
        // the token move. (Padding rows are all NULL and match nothing.)
        const RENEW: (&str, &str) = (
            "WITH r(id, token) AS (VALUES ",
            ") UPDATE OR IGNORE deliveries SET lease_until = ?, next_attempt_at = ? FROM r \
             WHERE deliveries.id = r.id AND deliveries.lease_token = r.token \
               AND deliveries.state = 'pending'",
        );

        let leases = leases.to_vec();
        self.db
            .thread
            .run(Durability::Relaxed, move |conn, cx| {
                for (chunk, rows) in padded_chunks(&leases) {
                    let sql = format!("{}{}{}", RENEW.0, placeholders(rows, 2), RENEW.1);
                    let mut values: Vec<Bind<'_>> = Vec::with_capacity(rows * 2 + 2);
                    for (id, token) in chunk {
                        values.push(text(id.as_str()));
                        values.push(int(token.0));
                    }
                    values.resize(rows * 2, NULL);
                    values.push(int(until.ms()));
                    values.push(int(until.ms()));
                    cx.tick(1);
                    conn.prepare_cached(&sql)
                        .and_then(|mut stmt| stmt.execute(params_from_iter(values)))
                        .map_err(classify_sqlite)?;
                }
                Ok(())
            })
            .await
    }

    async fn next_due_at(&self) -> Result<Option<Timestamp>, Error> {
        // The head of the due index among enabled endpoints (a disabled endpoint's deliveries wait and
        // must not make the dispatcher spin on work it cannot claim).
        // Ordered deliveries waiting behind their key's head are left out for the same reason:
        // the head's own due time (or lease expiry) is what they wait for. A waiting delivery
        // released by a finish is found by the wake that finish gives the dispatcher. (A live
        // lease is judged against the candidate's due time: this query has no clock.)
        const NEXT_DUE: &str = concat!(
            "SELECT d.next_attempt_at FROM deliveries d CROSS JOIN endpoints e \
             WHERE d.state = 'pending' AND e.id = d.endpoint_id AND e.enabled = 1 \
               AND (d.ordering_key IS NULL OR NOT EXISTS (",
            blocked_by_sibling!("d.next_attempt_at"),
            ")) ORDER BY d.next_attempt_at LIMIT 1"
        );

        self.db.tick(1);
        let row: Option<(Option<i64>,)> = sqlx::query_as(NEXT_DUE)
            .fetch_optional(&self.db.readers)
            .await
            .map_err(classify)?;
        Ok(row.and_then(|(t,)| t).map(Timestamp::from_ms))
    }

    /// Checks the event, the scope, then the limits, and creates the deliveries, all in one write
    /// transaction (on the writer thread) so two concurrent resends cannot both pass the count check.
    async fn resend(
        &self,
        merchant: &MerchantId,
        event: &EventId,
        scope: &ResendScope,
        limits: &ResendLimits,
        now: Timestamp,
    ) -> Result<Vec<DeliveryId>, Error> {
        let (merchant, event, scope, limits) =
            (merchant.clone(), event.clone(), scope.clone(), *limits);
        self.db
            .thread
            .run(Durability::Durable, move |conn, cx| {
                resend_in(cx, conn, &merchant, &event, &scope, &limits, now)
            })
            .await
    }

    /// One statement when something is recovered; a second one tells "nothing failed" from "not
    /// yours".
    async fn recover(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
        since: Timestamp,
        now: Timestamp,
    ) -> Result<u64, Error> {
        // A fresh round: `round_start = attempts`, so the next claim's round attempt is 1 again.
        // Deliveries whose event payload retention already removed cannot be sent and stay failed.
        // Ordered deliveries keep their sequence numbers: recovered ones go back to their places
        // in their keys' queues, so they are sent again in publish order, ahead of later ones;
        // a recovered held head no longer holds its key (it is its key's head again).
        const RECOVER: &str = "UPDATE deliveries SET state = 'pending', next_attempt_at = ?4, \
             round_start = attempts, lease_token = NULL, lease_until = NULL, updated_at = ?4, \
             ordering_held = 0 \
             WHERE endpoint_id = ?1 AND merchant_id = ?2 AND state = 'failed' AND created_at >= ?3 \
               AND EXISTS (SELECT 1 FROM events e WHERE e.id = deliveries.event_id \
                           AND e.payload IS NOT NULL)";
        const ENDPOINT_EXISTS: &str = "SELECT 1 FROM endpoints WHERE id = ?1 AND merchant_id = ?2";

        self.db.tick(1);
        let done = sqlx::query(RECOVER)
            .bind(endpoint.as_str())
            .bind(merchant.as_str())
            .bind(since.ms())
            .bind(now.ms())
            .execute(&mut *self.db.write().await?)
            .await
            .map_err(classify)?;
        if done.rows_affected() == 0 {
            self.db.tick(1);
            let exists = sqlx::query(ENDPOINT_EXISTS)
                .bind(endpoint.as_str())
                .bind(merchant.as_str())
                .fetch_optional(&self.db.readers)
                .await
                .map_err(classify)?;
            if exists.is_none() {
                return Err(Error::NotFound("endpoint"));
            }
        }
        Ok(done.rows_affected())
    }

    async fn recoverable(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
        since: Timestamp,
    ) -> Result<u64, Error> {
        self.count_recoverable(merchant, endpoint, since).await
    }

    async fn held_keys(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
    ) -> Result<Vec<HeldKey>, Error> {
        // Through `deliveries_ordering` (its partial condition repeated for the planner).
        const HELD: &str = "SELECT h.ordering_key, h.id, h.updated_at, \
               (SELECT COUNT(*) FROM deliveries w WHERE w.endpoint_id = h.endpoint_id \
                  AND w.ordering_key = h.ordering_key \
                  AND (w.state = 'pending' OR w.ordering_held = 1) \
                  AND w.ordering_seq > h.ordering_seq) AS waiting \
             FROM deliveries h WHERE h.endpoint_id = ?1 AND h.ordering_key IS NOT NULL \
               AND (h.state = 'pending' OR h.ordering_held = 1) AND h.ordering_held = 1 \
             ORDER BY h.updated_at, h.id";

        self.own_endpoint(merchant, endpoint).await?;
        self.db.tick(1);
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(HELD)
            .bind(endpoint.as_str())
            .fetch_all(&self.db.readers)
            .await
            .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(|(key, id, since, waiting)| HeldKey {
                key: OrderingKey::from_trusted(key),
                delivery_id: DeliveryId::from_trusted(id),
                since: Timestamp::from_ms(since),
                waiting: u64::try_from(waiting).unwrap_or(0),
            })
            .collect())
    }

    async fn release_key(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
        key: &OrderingKey,
    ) -> Result<(), Error> {
        const RELEASE: &str = "UPDATE deliveries SET ordering_held = 0 \
             WHERE endpoint_id = ?1 AND ordering_key = ?2 AND ordering_held = 1 \
               AND merchant_id = ?3";

        self.db.tick(1);
        let done = sqlx::query(RELEASE)
            .bind(endpoint.as_str())
            .bind(key.as_str())
            .bind(merchant.as_str())
            .execute(&mut *self.db.write().await?)
            .await
            .map_err(classify)?;
        if done.rows_affected() == 0 {
            self.own_endpoint(merchant, endpoint).await?;
            return Err(Error::NotFound("held key"));
        }
        Ok(())
    }
}

impl SqliteStore {
    /// `NotFound("endpoint")` unless `endpoint` is the merchant's.
    async fn own_endpoint(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
    ) -> Result<(), Error> {
        const ENDPOINT_EXISTS: &str = "SELECT 1 FROM endpoints WHERE id = ?1 AND merchant_id = ?2";

        self.db.tick(1);
        let exists: Option<(i64,)> = sqlx::query_as(ENDPOINT_EXISTS)
            .bind(endpoint.as_str())
            .bind(merchant.as_str())
            .fetch_optional(&self.db.readers)
            .await
            .map_err(classify)?;
        exists.map(|_| ()).ok_or(Error::NotFound("endpoint"))
    }
}

// Logs the attempt of every completion whose lease token still holds: the join with the live
// delivery row is the token check, and it supplies endpoint_id.
const LOG_ATTEMPTS: (&str, &str) = (
    "WITH c(delivery_id, token, id, number, started_at, url, request_headers, status, \
       response_headers, response_body, response_truncated, latency_ms, error, error_detail) \
     AS (VALUES ",
    ") INSERT OR IGNORE INTO attempts (id, delivery_id, endpoint_id, number, started_at, url, \
       request_headers, status, response_headers, response_body, response_truncated, \
       latency_ms, error, error_detail) \
     SELECT c.id, d.id, d.endpoint_id, c.number, c.started_at, c.url, c.request_headers, \
       c.status, c.response_headers, c.response_body, c.response_truncated, c.latency_ms, \
       c.error, c.error_detail \
     FROM c CROSS JOIN deliveries d \
     WHERE d.id = c.delivery_id AND d.lease_token = c.token AND d.state = 'pending'",
);

// Before APPLY releases the lease: the token check is the same.
const DISABLE_ENDPOINT: &str = "UPDATE endpoints SET enabled = 0, disabled_reason = ?3, \
     updated_at = ?4, version = version + 1 WHERE id = (SELECT endpoint_id FROM deliveries \
       WHERE id = ?1 AND lease_token = ?2 AND state = 'pending')";

// Applies every completion whose token still holds; its row count is the number applied. Each
// row carries its caller's `now` (completions of several callers share a statement).
const APPLY: (&str, &str) = (
    "WITH c(id, token, state, next_at, status, now) AS (VALUES ",
    ") UPDATE OR IGNORE deliveries SET state = c.state, attempts = attempts + 1, \
       next_attempt_at = c.next_at, last_status = c.status, lease_token = NULL, \
       lease_until = NULL, updated_at = c.now, \
       ordering_held = CASE WHEN deliveries.ordering_key IS NULL OR c.state <> 'failed' THEN 0 \
         ELSE EXISTS (SELECT 1 FROM endpoints e WHERE e.id = deliveries.endpoint_id \
           AND e.ordering ->> '$.on_final_failure' = 'hold') END \
     FROM c WHERE deliveries.id = c.id AND deliveries.lease_token = c.token \
       AND deliveries.state = 'pending'",
);

// Which of a group's completions still hold their lease, as one JSON row `[[id, token], ...]`:
// only needed to tell each caller of a group how many of its own applied.
const LIVE: (&str, &str) = (
    "WITH c(id, token) AS (VALUES ",
    ") SELECT json_group_array(json_array(d.id, d.lease_token)) \
     FROM c CROSS JOIN deliveries d \
     WHERE d.id = c.id AND d.lease_token = c.token AND d.state = 'pending'",
);

/// One completion to apply, with what it needs bound.
struct Row<'a> {
    done: &'a Completion,
    /// Index of the caller it came from.
    job: usize,
    now: Timestamp,
    request_headers: String,
    response_headers: String,
}

/// Finishes several callers' completions (`(completions, now)` each) inside the writer's
/// transaction (see `writer`: they share one commit), and says how many of each applied. Stale
/// completions fail the token join of every statement, so they change nothing and log nothing.
/// For a group of several callers, which leases are live is read first; then the attempts are
/// logged and the states applied: those statements once per 256 completions, whatever the
/// callers, plus one per endpoint disabled. An `Err` fails the whole transaction, and the writer
/// then retries each caller alone, so one bad batch cannot fail the others.
pub(super) fn finish_group(
    cx: &Cx,
    conn: &Connection,
    jobs: &[(&[Completion], Timestamp)],
) -> Result<Vec<u32>, Error> {
    let mut rows = Vec::new();
    // Within one caller, a delivery completed twice: only the first counts. Across callers,
    // only the first of identical (delivery, lease) pairs: the order of calls decides.
    let mut across: HashSet<(&str, i64)> = HashSet::new();
    for (job, (done, now)) in jobs.iter().enumerate() {
        let mut within: HashSet<&str> = HashSet::with_capacity(done.len());
        for c in *done {
            let id = c.delivery_id.as_str();
            if within.insert(id) && across.insert((id, c.lease.0)) {
                rows.push(Row {
                    done: c,
                    job,
                    now: *now,
                    request_headers: pairs_json(&c.attempt.request_headers)?,
                    response_headers: pairs_json(&c.attempt.response_headers)?,
                });
            }
        }
    }
    let mut counts = vec![0u32; jobs.len()];
    if rows.is_empty() {
        return Ok(counts);
    }
    if jobs.len() == 1 {
        counts[0] = apply_rows(cx, conn, &rows)?;
        return Ok(counts);
    }
    let live = live_leases(cx, conn, &rows)?;
    let applied = apply_rows(cx, conn, &rows)?;
    for r in &rows {
        if live.get(r.done.delivery_id.as_str()) == Some(&r.done.lease.0) {
            counts[r.job] += 1;
        }
    }
    if counts.iter().sum::<u32>() != applied {
        return Err(Error::Internal(
            "finish: live leases and applied rows disagree".into(),
        ));
    }
    Ok(counts)
}

/// The live leases among `rows`: delivery id -> token.
fn live_leases(
    cx: &Cx,
    conn: &Connection,
    rows: &[Row<'_>],
) -> Result<HashMap<String, i64>, Error> {
    let mut live = HashMap::with_capacity(rows.len());
    for (chunk, n) in padded_chunks(rows) {
        let sql = format!("{}{}{}", LIVE.0, placeholders(n, 2), LIVE.1);
        let mut values: Vec<Bind<'_>> = Vec::with_capacity(n * 2);
        for r in chunk {
            values.push(text(r.done.delivery_id.as_str()));
            values.push(int(r.done.lease.0));
        }
        values.resize(n * 2, NULL);
        cx.tick(1);
        let json: String = conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.query_row(params_from_iter(values), |r| r.get(0)))
            .map_err(classify_sqlite)?;
        let pairs: Vec<(String, i64)> = decode(&json, "live leases")?;
        live.extend(pairs);
    }
    Ok(live)
}

/// Per 256 completions: log the attempts, disable endpoints, apply the states. Returns how many
/// applied.
fn apply_rows(cx: &Cx, conn: &Connection, all: &[Row<'_>]) -> Result<u32, Error> {
    let mut applied_total = 0;
    for (chunk, n) in padded_chunks(all) {
        let sql = format!(
            "{}{}{}",
            LOG_ATTEMPTS.0,
            placeholders(n, 14),
            LOG_ATTEMPTS.1
        );
        let mut values: Vec<Bind<'_>> = Vec::with_capacity(n * 14);
        for r in chunk {
            let (c, a) = (r.done, &r.done.attempt);
            values.push(text(c.delivery_id.as_str()));
            values.push(int(c.lease.0));
            values.push(text(a.id.as_str()));
            values.push(int(i64::from(a.number)));
            values.push(int(a.started_at.ms()));
            values.push(text(a.url.as_str()));
            values.push(text(r.request_headers.as_str()));
            values.push(a.status.map_or(NULL, |v| int(i64::from(v))));
            values.push(text(r.response_headers.as_str()));
            values.push(blob(a.response_body.as_ref()));
            values.push(int(i64::from(a.response_truncated)));
            values.push(int(i64::from(a.latency_ms)));
            values.push(a.error.map_or(NULL, |e| text(e.as_str())));
            values.push(a.error_detail.as_deref().map_or(NULL, text));
        }
        values.resize(n * 14, NULL);
        cx.tick(1);
        let logged = conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.execute(params_from_iter(values)))
            .map_err(classify_sqlite)?;

        for r in chunk
            .iter()
            .filter(|r| r.done.next == Next::DisableEndpoint)
        {
            let c = r.done;
            let reason = c.disable_reason.clone().unwrap_or_else(|| {
                format!(
                    "410 Gone on attempt {} of {}",
                    c.attempt.number, c.delivery_id
                )
            });
            cx.tick(1);
            conn.prepare_cached(DISABLE_ENDPOINT)
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        c.delivery_id.as_str(),
                        c.lease.0,
                        reason,
                        r.now.ms()
                    ])
                })
                .map_err(classify_sqlite)?;
        }

        let sql = format!("{}{}{}", APPLY.0, placeholders(n, 6), APPLY.1);
        let mut values: Vec<Bind<'_>> = Vec::with_capacity(n * 6);
        for r in chunk {
            let c = r.done;
            let (state, next_at) = match c.next {
                Next::Succeeded => (DeliveryState::Succeeded, None),
                Next::RetryAt(t) => (DeliveryState::Pending, Some(t.ms())),
                Next::GiveUp | Next::DisableEndpoint => (DeliveryState::Failed, None),
            };
            values.push(text(c.delivery_id.as_str()));
            values.push(int(c.lease.0));
            values.push(text(state.as_str()));
            values.push(next_at.map_or(NULL, int));
            values.push(c.attempt.status.map_or(NULL, |v| int(i64::from(v))));
            values.push(int(r.now.ms()));
        }
        values.resize(n * 6, NULL);
        cx.tick(1);
        let applied = conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.execute(params_from_iter(values)))
            .map_err(classify_sqlite)?;
        if applied != logged {
            // Only possible if an attempt id was reused (OR IGNORE skipped its row).
            return Err(Error::Conflict(
                "an attempt with this id already exists".to_owned(),
            ));
        }
        applied_total += applied;
    }
    Ok(u32::try_from(applied_total).unwrap_or(u32::MAX))
}

const RESEND_EVENT: &str = "SELECT created_at, resend_count, payload, ordering_key \
     FROM events WHERE id = ?1 AND merchant_id = ?2";

// Every endpoint the event was delivered to (deliveries go with their endpoint, so these all
// still exist), with its ordering setting.
const PAST_TARGETS: &str = "SELECT e.id, e.ordering FROM endpoints e \
     WHERE e.id IN (SELECT DISTINCT endpoint_id FROM deliveries WHERE event_id = ?1)";

const OWN_ENDPOINT: &str = "SELECT id, ordering FROM endpoints WHERE id = ?1 AND merchant_id = ?2";

// A resend releases the key its event's failed delivery holds (the resent delivery itself goes
// to the back of the key's queue).
const RELEASE_RESENT: &str = "UPDATE deliveries SET ordering_held = 0 \
     WHERE event_id = ?1 AND endpoint_id = ?2 AND ordering_held = 1";

const COUNT_RESEND: &str = "UPDATE events SET resend_count = resend_count + 1 WHERE id = ?1";

fn resend_in(
    cx: &Cx,
    conn: &Connection,
    merchant: &MerchantId,
    event: &EventId,
    scope: &ResendScope,
    limits: &ResendLimits,
    now: Timestamp,
) -> Result<Vec<DeliveryId>, Error> {
    cx.tick(1);
    type ResendEvent = (i64, i64, Option<Vec<u8>>, Option<String>);
    let ev: Option<ResendEvent> = conn
        .prepare_cached(RESEND_EVENT)
        .and_then(|mut stmt| {
            stmt.query_row(params![event.as_str(), merchant.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
        })
        .map_err(classify_sqlite)?;
    let (created_at, resend_count, payload, ordering_key) = ev.ok_or(Error::NotFound("event"))?;
    let has_payload = payload.is_some();

    cx.tick(1);
    let targets: Vec<(String, Option<String>)> = match scope {
        ResendScope::All => conn.prepare_cached(PAST_TARGETS).and_then(|mut stmt| {
            stmt.query_map([event.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()
        }),
        ResendScope::Endpoint(id) => conn.prepare_cached(OWN_ENDPOINT).and_then(|mut stmt| {
            stmt.query_map([id.as_str(), merchant.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()
        }),
    }
    .map_err(classify_sqlite)?;
    if targets.is_empty() && matches!(scope, ResendScope::Endpoint(_)) {
        return Err(Error::NotFound("endpoint"));
    }

    let age = now.since(Timestamp::from_ms(created_at));
    if age >= limits.window {
        return Err(Error::Conflict(format!(
            "resend window passed: events can be resent for {}s after they arrive",
            limits.window.as_secs()
        )));
    }
    if resend_count >= i64::from(limits.max_per_event) {
        return Err(Error::Conflict(format!(
            "resend limit reached: max_per_event is {}",
            limits.max_per_event
        )));
    }
    if !has_payload {
        return Err(Error::Conflict(
            "the event's payload is no longer retained".to_owned(),
        ));
    }

    // The key under the endpoint's current setting; a fresh sequence number puts the resent
    // delivery at the back of its key's queue.
    let payload = Payload::from_trusted(Bytes::from(payload.unwrap_or_default()));
    let explicit = ordering_key.map(OrderingKey::from_trusted);
    let mut deliveries: Vec<NewDelivery<'_>> = Vec::with_capacity(targets.len());
    for (endpoint_id, ordering) in &targets {
        let ordering = Ordering::from_stored(ordering.as_deref())?;
        deliveries.push(NewDelivery {
            id: DeliveryId::generate(),
            event_id: event.as_str(),
            endpoint_id,
            merchant_id: merchant.as_str(),
            at: now,
            ordering_key: ordering.key_for(explicit.as_ref(), &payload),
            lease: None,
        });
    }
    for (endpoint_id, _) in &targets {
        cx.tick(1);
        conn.prepare_cached(RELEASE_RESENT)
            .and_then(|mut stmt| stmt.execute([event.as_str(), endpoint_id.as_str()]))
            .map_err(classify_sqlite)?;
    }
    insert_deliveries(cx, conn, &deliveries, DeliveryOrigin::Resend)?;
    cx.tick(1);
    conn.prepare_cached(COUNT_RESEND)
        .and_then(|mut stmt| stmt.execute([event.as_str()]))
        .map_err(classify_sqlite)?;
    Ok(deliveries.into_iter().map(|d| d.id).collect())
}
