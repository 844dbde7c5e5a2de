//! The queue: the [`Queue`] impl.
//!
//! Dispatch: claiming due deliveries under leases, renewing them, and recording finished attempts.
//!
//! Each verb is ONE statement, hence one implicit transaction and one round trip, whatever the
//! batch size: the claim locks, leases and returns everything a worker needs (payload and
//! endpoint included); `finish` logs a whole batch of attempts and applies their outcomes.
//!
//! Why several processes never lease one delivery twice: `CLAIM` locks its candidates
//! `FOR UPDATE OF d SKIP LOCKED`, so concurrent claimers pass over each other's rows instead of
//! waiting; and a row another claimer leased and committed after this statement's snapshot is
//! re-checked on the locked, current version (READ COMMITTED re-evaluates the WHERE clause), where
//! its `next_attempt_at` has moved to the lease's expiry, so it no longer qualifies.
//!
//! Operator and merchant actions: manual resend and recovery of failed deliveries. Both make work
//! due now, so both notify other processes (at commit, like ingest).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use blockhook_core::{
    Claim, ClaimRequest, Completion, DeliveryId, Endpoint, EndpointId, Error, EventId, EventType,
    HeldKey, LeaseToken, MerchantId, Next, Ordering, OrderingKey, Payload, Queue, ResendLimits,
    ResendScope, Timestamp,
};
use bytes::Bytes;

use super::db::PgStore;
use super::listen::CHANNEL;
use super::rows::{EndpointRow, endpoint_columns, pairs_json, to_u32};
use crate::classify;

#[derive(sqlx::FromRow)]
struct ClaimRow {
    delivery_id: String,
    attempts: i32,
    round_start: i32,
    event_id: String,
    event_type: String,
    event_created_at: i64,
    payload: Option<Vec<u8>>,
    #[sqlx(flatten)]
    endpoint: EndpointRow,
    /// How many candidates the claim looked at (the same on every row).
    pool: i64,
}

/// The subquery that keeps an ordered delivery `d` from being claimed: a sibling of the same
/// (endpoint, key) that is earlier in the key's queue and not done, that is in flight (a live
/// lease, whatever its place: a recovered head behind a running delivery waits for it), or that
/// holds the key. `$now` is the claim's time. Probes `deliveries_ordering` (its partial condition
/// is repeated for the planner); unordered rows never get here.
///
/// Why two processes never run two deliveries of one key: only a key's head passes this test,
/// and the head is one row, which `FOR UPDATE SKIP LOCKED` lets one claimer lease. A claimer whose
/// snapshot predates a lease sees the head still pending, so its siblings stay blocked.
macro_rules! blocked_by_sibling {
    ($now:literal) => {
        concat!(
            "SELECT 1 FROM deliveries s WHERE s.endpoint_id = d.endpoint_id \
               AND s.ordering_key = d.ordering_key \
               AND (s.state = 'pending' OR s.ordering_held) AND s.id <> d.id \
               AND (s.ordering_seq < d.ordering_seq OR s.ordering_held \
                    OR s.lease_until > ",
            $now,
            ")"
        )
    };
}

// 1. `candidates` (the claim's first part, below): the deliveries that may be leased, locked
//    (skipping rows other claimers hold).
// 2. `picked`: at most `per_endpoint_max` per endpoint, then `max` in all, oldest due first.
// 3. `leased`: sets the lease; `next_attempt_at` moves to the lease's expiry, so an expired lease
//    is simply due again. Candidates not picked are unlocked when the statement ends.
// 4. The events and endpoints are joined in the same round trip. A payload is sent once per event
//    (the first of its claims), and the caller shares those bytes across the event's claims.
macro_rules! lease_candidates {
    () => {
        concat!(
            "picked AS ( \
                SELECT id, next_attempt_at FROM ( \
                    SELECT id, next_attempt_at, \
                        row_number() OVER (PARTITION BY endpoint_id ORDER BY next_attempt_at, id) AS nth \
                    FROM candidates \
                ) ranked \
                WHERE nth <= $6 \
                ORDER BY next_attempt_at, id \
                LIMIT $3 \
             ), leased AS ( \
                UPDATE deliveries d SET lease_token = $7, lease_until = $2, next_attempt_at = $2 \
                FROM picked p WHERE d.id = p.id \
                RETURNING d.id, d.event_id, d.endpoint_id, d.attempts, d.round_start, \
                    p.next_attempt_at AS due_at \
             ) \
             SELECT l.id AS delivery_id, l.attempts, l.round_start, l.event_id, \
                ev.event_type, ev.created_at AS event_created_at, \
                CASE WHEN row_number() OVER (PARTITION BY l.event_id ORDER BY l.id) = 1 \
                    THEN ev.payload END AS payload, ",
            endpoint_columns!(),
            ", (SELECT count(*) FROM candidates) AS pool \
             FROM leased l \
             JOIN events ev ON ev.id = l.event_id \
             JOIN endpoints e ON e.id = l.endpoint_id \
             ORDER BY l.due_at, l.id"
        )
    };
}

/// The end of a claim's candidate query over deliveries `d` already filtered to due ones: only
/// ordering heads, oldest due first, at most `$limit`, locked (skipping rows other claimers hold).
macro_rules! claimable_oldest {
    ($limit:literal) => {
        concat!(
            " AND (d.ordering_key IS NULL OR NOT EXISTS (",
            blocked_by_sibling!("$1"),
            ")) ORDER BY d.next_attempt_at, d.id LIMIT ",
            $limit,
            " FOR UPDATE OF d SKIP LOCKED"
        )
    };
}

// The first pass: the oldest due pending deliveries of enabled, non-excluded endpoints, walked
// in due order on the partial index. The pool (`$4`) is larger than `max` when a per-endpoint
// cap applies, so one busy endpoint at the head of the queue does not crowd out the others.
const CLAIM: &str = concat!(
    "WITH candidates AS ( \
        SELECT d.id, d.endpoint_id, d.next_attempt_at \
        FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id \
        WHERE d.state = 'pending' AND d.next_attempt_at <= $1 AND e.enabled \
          AND d.endpoint_id <> ALL ($5::text[])",
    claimable_oldest!("$4"),
    "), ",
    lease_candidates!()
);

// The second pass, when the first one's pool was full and the claim is not: a backlog of a few
// endpoints fills the head of the queue (after an outage, a recovered endpoint's deliveries are
// all due at once). `WALK` lists the next endpoints that have pending deliveries after `$1` (one
// probe of `deliveries_endpoint_due` each, at most `$2` of them); `SPREAD` takes up to `$6` due
// deliveries of each (`$4`), so the claim fills from many endpoints instead of waiting for one
// endpoint's slots.
const WALK: &str = "WITH RECURSIVE walked(id, n) AS ( \
        SELECT (SELECT endpoint_id FROM deliveries WHERE state = 'pending' AND endpoint_id > $1 \
                ORDER BY endpoint_id LIMIT 1), 1 \
        UNION ALL \
        SELECT (SELECT endpoint_id FROM deliveries WHERE state = 'pending' \
                  AND endpoint_id > w.id ORDER BY endpoint_id LIMIT 1), w.n + 1 \
        FROM walked w WHERE w.id IS NOT NULL AND w.n < $2 \
     ) SELECT id FROM walked WHERE id IS NOT NULL ORDER BY n";

const SPREAD: &str = concat!(
    "WITH candidates AS ( \
        SELECT c.id, c.endpoint_id, c.next_attempt_at \
        FROM unnest($4::text[]) AS w(id) JOIN endpoints e ON e.id = w.id AND e.enabled \
        CROSS JOIN LATERAL ( \
            SELECT d.id, d.endpoint_id, d.next_attempt_at FROM deliveries d \
            WHERE d.endpoint_id = w.id AND d.state = 'pending' AND d.next_attempt_at <= $1",
    claimable_oldest!("$6"),
    ") c \
        WHERE w.id <> ALL ($5::text[]) \
     ), ",
    lease_candidates!()
);

/// How many due rows one claim may lock to pick `max` under a per-endpoint cap.
fn candidate_pool(req: &ClaimRequest) -> i64 {
    let max = i64::from(req.max);
    if req.per_endpoint_max >= req.max {
        max
    } else {
        max.saturating_mul(4)
    }
}

impl PgStore {
    /// Runs `CLAIM` or `SPREAD` for at most `max` deliveries; `fourth` is their `$4` (the pool
    /// size, or the endpoints walked).
    async fn lease_rows<'q, P>(
        &self,
        sql: &'static str,
        req: &'q ClaimRequest,
        max: u32,
        fourth: P,
        exclude: &'q Vec<&'q str>,
        lease: LeaseToken,
    ) -> Result<Vec<ClaimRow>, Error>
    where
        P: 'q + Send + sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        sqlx::query_as(sql)
            .bind(req.now.ms())
            .bind(req.lease_until.ms())
            .bind(i64::from(max))
            .bind(fourth)
            .bind(exclude)
            .bind(i64::from(req.per_endpoint_max))
            .bind(lease.0)
            .fetch_all(self.db())
            .await
            .map_err(classify)
    }
}

#[async_trait::async_trait]
impl Queue for PgStore {
    async fn wait_for_work(&self, max: Duration) {
        // Elapsing is the normal way out when nothing was notified.
        let _ = tokio::time::timeout(max, self.wake.notified()).await;
    }

    async fn claim_due(&self, req: &ClaimRequest) -> Result<Vec<Claim>, Error> {
        if req.max == 0 || req.per_endpoint_max == 0 {
            return Ok(Vec::new());
        }
        let lease = LeaseToken::generate();
        let exclude: Vec<&str> = req.exclude.iter().map(|e| e.as_str()).collect();
        let pool = candidate_pool(req);
        let mut rows = self
            .lease_rows(CLAIM, req, req.max, pool, &exclude, lease)
            .await?;
        let window_full = rows.first().is_some_and(|r| r.pool >= pool);
        if window_full && rows.len() < req.max as usize {
            // Endpoints of the first pass are left out, so none exceeds its share of the claim.
            let mut exclude = exclude;
            exclude.extend(rows.iter().map(|r| r.endpoint.id()));
            exclude.sort_unstable();
            exclude.dedup();
            let missing = req.max - rows.len() as u32;
            let from = self
                .claim_cursor
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_default();
            let walk = crate::spread_walk(missing, req.per_endpoint_max);
            let walked: Vec<String> = sqlx::query_scalar(WALK)
                .bind(from)
                .bind(walk)
                .fetch_all(self.db())
                .await
                .map_err(classify)?;
            // The walk ran out of endpoints: the next one starts from the first again.
            let next = match walked.last() {
                Some(last) if walked.len() as i64 >= walk => Some(last.clone()),
                _ => None,
            };
            *self.claim_cursor.lock().unwrap_or_else(|p| p.into_inner()) = next;
            if !walked.is_empty() {
                let more = self
                    .lease_rows(SPREAD, req, missing, &walked, &exclude, lease)
                    .await?;
                rows.extend(more);
            }
        }
        claims_from(rows, lease)
    }

    async fn renew_leases(
        &self,
        leases: &[(DeliveryId, LeaseToken)],
        until: Timestamp,
    ) -> Result<(), Error> {
        // Only the holder of the current token extends its lease (and with it the time the delivery
        // becomes claimable again).
        const RENEW: &str = "UPDATE deliveries d SET lease_until = $3, next_attempt_at = $3 \
             FROM unnest($1::text[], $2::int8[]) AS l(id, token) \
             WHERE d.id = l.id AND d.lease_token = l.token AND d.state = 'pending'";

        if leases.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = leases.iter().map(|(id, _)| id.as_str()).collect();
        let tokens: Vec<i64> = leases.iter().map(|(_, t)| t.0).collect();
        sqlx::query(RENEW)
            .bind(&ids)
            .bind(&tokens)
            .bind(until.ms())
            .execute(self.db())
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn finish(&self, done: Arc<[Completion]>, now: Timestamp) -> Result<u32, Error> {
        // One row per completion in `input`. `applied` updates only deliveries still leased with the
        // completion's token, so a stale completion matches nothing; the attempt log and the endpoint
        // switch-off join `applied`, so a stale completion logs nothing either. An endpoint already
        // disabled keeps the reason it was disabled with.
        const FINISH: &str = "WITH input AS ( \
                SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::int8[], $5::bool[], $6::text[], \
                    $7::text[], $8::int4[], $9::int8[], $10::text[], $11::text[], $12::int4[], $13::text[], \
                    $14::bytea[], $15::bool[], $16::int8[], $17::text[], $18::text[]) \
                AS c(delivery_id, lease, state, next_at, disable, reason, \
                    attempt_id, number, started_at, url, request_headers, status, response_headers, \
                    response_body, response_truncated, latency_ms, error, error_detail) \
             ), applied AS ( \
                UPDATE deliveries d SET state = c.state, attempts = d.attempts + 1, \
                    next_attempt_at = c.next_at, lease_token = NULL, lease_until = NULL, \
                    last_status = c.status, updated_at = $19, \
                    ordering_held = CASE WHEN d.ordering_key IS NULL OR c.state <> 'failed' THEN false \
                        ELSE EXISTS (SELECT 1 FROM endpoints oe WHERE oe.id = d.endpoint_id \
                            AND oe.ordering::jsonb ->> 'on_final_failure' = 'hold') END \
                FROM input c \
                WHERE d.id = c.delivery_id AND d.lease_token = c.lease AND d.state = 'pending' \
                RETURNING d.id, d.endpoint_id \
             ), logged AS ( \
                INSERT INTO attempts (id, delivery_id, endpoint_id, number, started_at, url, \
                    request_headers, status, response_headers, response_body, response_truncated, \
                    latency_ms, error, error_detail) \
                SELECT c.attempt_id, c.delivery_id, a.endpoint_id, c.number, c.started_at, c.url, \
                    c.request_headers, c.status, c.response_headers, c.response_body, \
                    c.response_truncated, c.latency_ms, c.error, c.error_detail \
                FROM input c JOIN applied a ON a.id = c.delivery_id \
                RETURNING 1 \
             ), switched_off AS ( \
                UPDATE endpoints e SET enabled = false, disabled_reason = c.reason, updated_at = $19, \
                    version = e.version + 1 \
                FROM input c JOIN applied a ON a.id = c.delivery_id \
                WHERE c.disable AND e.id = a.endpoint_id AND e.enabled \
                RETURNING 1 \
             ) \
             SELECT count(*) FROM applied";

        if done.is_empty() {
            return Ok(0);
        }
        let mut c = Completions::default();
        for d in done.iter() {
            c.push(d)?;
        }
        let mut conn = self.warm().await?;
        let applied: i64 = sqlx::query_scalar(FINISH)
            .bind(&c.delivery)
            .bind(&c.lease)
            .bind(&c.state)
            .bind(&c.next_at)
            .bind(&c.disable)
            .bind(&c.reason)
            .bind(&c.attempt_id)
            .bind(&c.number)
            .bind(&c.started_at)
            .bind(&c.url)
            .bind(&c.request_headers)
            .bind(&c.status)
            .bind(&c.response_headers)
            .bind(&c.response_body)
            .bind(&c.response_truncated)
            .bind(&c.latency_ms)
            .bind(&c.error)
            .bind(&c.error_detail)
            .bind(now.ms())
            .fetch_one(self.on(&mut conn))
            .await
            .map_err(classify)?;
        conn.keep();
        Ok(u32::try_from(applied).unwrap_or(u32::MAX))
    }

    async fn next_due_at(&self) -> Result<Option<Timestamp>, Error> {
        // Disabled endpoints are left out: their deliveries wait, and counting them would make an idle
        // dispatcher wake for work it may not claim.
        // Ordered deliveries waiting behind their key's head are left out too: the head's own
        // due time (or lease expiry) is what they wait for. (A live lease is judged against the
        // candidate's due time: this query has no clock.)
        const NEXT_DUE: &str = concat!(
            "SELECT d.next_attempt_at FROM deliveries d \
             JOIN endpoints e ON e.id = d.endpoint_id \
             WHERE d.state = 'pending' AND e.enabled \
               AND (d.ordering_key IS NULL OR NOT EXISTS (",
            blocked_by_sibling!("d.next_attempt_at"),
            ")) ORDER BY d.next_attempt_at LIMIT 1"
        );

        let at: Option<Option<i64>> = sqlx::query_scalar(NEXT_DUE)
            .fetch_optional(self.db())
            .await
            .map_err(classify)?;
        Ok(at.flatten().map(Timestamp::from_ms))
    }

    /// Refused resends (limits, unknown endpoint) change and count nothing.
    async fn resend(
        &self,
        merchant: &MerchantId,
        event: &EventId,
        scope: &ResendScope,
        limits: &ResendLimits,
        now: Timestamp,
    ) -> Result<Vec<DeliveryId>, Error> {
        // Locks the event: concurrent resends of one event queue here, so the limit holds.
        const LOCK_EVENT: &str = "SELECT created_at, resend_count, payload, ordering_key \
             FROM events WHERE id = $1 AND merchant_id = $2 FOR UPDATE";
        // Every endpoint the event had a delivery to (deleted endpoints took their deliveries
        // along), with its ordering setting.
        const PAST_TARGETS: &str = "SELECT e.id, e.ordering FROM endpoints e \
             WHERE e.id IN (SELECT endpoint_id FROM deliveries WHERE event_id = $1) ORDER BY e.id";
        const ONE_TARGET: &str =
            "SELECT id, ordering FROM endpoints WHERE id = $1 AND merchant_id = $2";
        // The next number of an (endpoint, key): the resent delivery goes to the back of its
        // key's queue.
        const TAKE_SEQ: &str = "INSERT INTO ordering_counters (endpoint_id, ordering_key, last_seq) \
             VALUES ($1, $2, 1) ON CONFLICT (endpoint_id, ordering_key) \
             DO UPDATE SET last_seq = ordering_counters.last_seq + 1 RETURNING last_seq";
        // The plain final SELECT runs `pg_notify` exactly once; the data-modifying CTEs always run.
        // A resend also releases the key the event's failed delivery held on each target.
        const CREATE: &str = "WITH created AS ( \
                INSERT INTO deliveries (id, event_id, endpoint_id, merchant_id, state, origin, \
                    next_attempt_at, created_at, updated_at, ordering_key, ordering_seq) \
                SELECT d.id, $2, d.endpoint_id, $3, 'pending', 'resend', $4, $4, $4, d.key, d.seq \
                FROM unnest($1::text[], $5::text[], $7::text[], $8::int8[]) AS d(id, endpoint_id, key, seq) \
                RETURNING 1 \
             ), released AS ( \
                UPDATE deliveries SET ordering_held = false \
                WHERE event_id = $2 AND endpoint_id = ANY ($5::text[]) AND ordering_held \
                RETURNING 1 \
             ), counted AS ( \
                UPDATE events SET resend_count = resend_count + 1 WHERE id = $2 RETURNING 1 \
             ) \
             SELECT pg_notify($6, current_schema())";

        let mut tx = self.begin().await?;
        let ev: Option<ResendEventRow> = sqlx::query_as(LOCK_EVENT)
            .bind(event.as_str())
            .bind(merchant.as_str())
            .fetch_optional(self.on(&mut tx))
            .await
            .map_err(classify)?;
        let ev = ev.ok_or(Error::NotFound("event"))?;
        let window_ms = i64::try_from(limits.window.as_millis()).unwrap_or(i64::MAX);
        if now.ms().saturating_sub(ev.created_at) >= window_ms {
            return Err(Error::Conflict(format!(
                "resend window of {}s has passed for this event",
                limits.window.as_secs()
            )));
        }
        if i64::from(ev.resend_count) >= i64::from(limits.max_per_event) {
            return Err(Error::Conflict(format!(
                "resend limit reached: max_per_event is {}",
                limits.max_per_event
            )));
        }
        let Some(payload) = ev.payload else {
            return Err(Error::Conflict(
                "the event's payload was removed by retention".to_owned(),
            ));
        };

        let targets: Vec<(String, Option<String>)> = match scope {
            ResendScope::All => sqlx::query_as(PAST_TARGETS)
                .bind(event.as_str())
                .fetch_all(self.on(&mut tx))
                .await
                .map_err(classify)?,
            ResendScope::Endpoint(id) => {
                let found: Option<(String, Option<String>)> = sqlx::query_as(ONE_TARGET)
                    .bind(id.as_str())
                    .bind(merchant.as_str())
                    .fetch_optional(self.on(&mut tx))
                    .await
                    .map_err(classify)?;
                vec![found.ok_or(Error::NotFound("endpoint"))?]
            }
        };
        if targets.is_empty() {
            // Nothing was ever delivered: nothing to resend, and no resend spent.
            return Ok(Vec::new());
        }
        let ids: Vec<DeliveryId> = targets.iter().map(|_| DeliveryId::generate()).collect();
        let id_strs: Vec<&str> = ids.iter().map(|i| i.as_str()).collect();
        let payload = Payload::from_trusted(Bytes::from(payload));
        let explicit = ev.ordering_key.map(OrderingKey::from_trusted);
        let (mut endpoints, mut keys, mut seqs) = (Vec::new(), Vec::new(), Vec::new());
        for (endpoint_id, ordering) in &targets {
            let ordering = Ordering::from_stored(ordering.as_deref())?;
            let key = ordering.key_for(explicit.as_ref(), &payload);
            let seq: Option<i64> = match &key {
                None => None,
                Some(k) => Some(
                    sqlx::query_scalar(TAKE_SEQ)
                        .bind(endpoint_id.as_str())
                        .bind(k.as_str())
                        .fetch_one(self.on(&mut tx))
                        .await
                        .map_err(classify)?,
                ),
            };
            endpoints.push(endpoint_id.as_str());
            keys.push(key.map(String::from));
            seqs.push(seq);
        }
        sqlx::query(CREATE)
            .bind(&id_strs)
            .bind(event.as_str())
            .bind(merchant.as_str())
            .bind(now.ms())
            .bind(&endpoints)
            .bind(CHANNEL)
            .bind(&keys)
            .bind(&seqs)
            .execute(self.on(&mut tx))
            .await
            .map_err(classify)?;
        self.commit(tx).await?;
        Ok(ids)
    }

    async fn recover(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
        since: Timestamp,
        now: Timestamp,
    ) -> Result<u64, Error> {
        // One statement: the endpoint check, the re-queue and the notification. Ordered
        // deliveries keep their sequence numbers, so they go again in publish order, ahead of
        // later ones of their keys; a recovered held head no longer holds its key. A new round starts
        // (`round_start = attempts`), so the retry schedule applies afresh while `attempts` keeps
        // counting. Deliveries whose event lost its payload to retention cannot be sent and stay failed.
        const RECOVER: &str = "WITH ep AS ( \
                SELECT id FROM endpoints WHERE id = $1 AND merchant_id = $2 \
             ), requeued AS ( \
                UPDATE deliveries d SET state = 'pending', next_attempt_at = $4, round_start = d.attempts, \
                    lease_token = NULL, lease_until = NULL, updated_at = $4, ordering_held = false \
                WHERE d.endpoint_id IN (SELECT id FROM ep) AND d.state = 'failed' AND d.created_at >= $3 \
                  AND EXISTS (SELECT 1 FROM events ev WHERE ev.id = d.event_id AND ev.payload IS NOT NULL) \
                RETURNING 1 \
             ), woke AS ( \
                SELECT pg_notify($5, current_schema()) FROM (SELECT 1 FROM requeued LIMIT 1) AS any_row \
             ) \
             SELECT EXISTS (SELECT 1 FROM ep) AS found, (SELECT count(*) FROM requeued) AS requeued, \
                (SELECT count(*) FROM woke) AS woke";

        let row: RecoverRow = sqlx::query_as(RECOVER)
            .bind(endpoint.as_str())
            .bind(merchant.as_str())
            .bind(since.ms())
            .bind(now.ms())
            .bind(CHANNEL)
            .fetch_one(self.db())
            .await
            .map_err(classify)?;
        if !row.found {
            return Err(Error::NotFound("endpoint"));
        }
        Ok(u64::try_from(row.requeued).unwrap_or(0))
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
        // Through `deliveries_ordering` (its partial condition repeated for the planner). The
        // endpoint row comes back (with no key) even when nothing is held, to tell "none held"
        // from "not yours".
        const HELD: &str = "SELECT h.ordering_key, h.id, h.updated_at, \
               (SELECT count(*) FROM deliveries w WHERE w.endpoint_id = h.endpoint_id \
                  AND w.ordering_key = h.ordering_key AND (w.state = 'pending' OR w.ordering_held) \
                  AND w.ordering_seq > h.ordering_seq) AS waiting \
             FROM endpoints e LEFT JOIN deliveries h ON h.endpoint_id = e.id \
               AND h.ordering_key IS NOT NULL AND (h.state = 'pending' OR h.ordering_held) \
               AND h.ordering_held \
             WHERE e.id = $1 AND e.merchant_id = $2 \
             ORDER BY h.updated_at, h.id";

        let rows: Vec<HeldRow> = sqlx::query_as(HELD)
            .bind(endpoint.as_str())
            .bind(merchant.as_str())
            .fetch_all(self.db())
            .await
            .map_err(classify)?;
        if rows.is_empty() {
            return Err(Error::NotFound("endpoint"));
        }
        let mut held = Vec::new();
        for r in rows {
            let (Some(key), Some(id), Some(since)) = (r.ordering_key, r.id, r.updated_at) else {
                continue;
            };
            held.push(HeldKey {
                key: OrderingKey::from_trusted(key),
                delivery_id: DeliveryId::from_trusted(id),
                since: Timestamp::from_ms(since),
                waiting: u64::try_from(r.waiting.unwrap_or(0)).unwrap_or(0),
            });
        }
        Ok(held)
    }

    async fn release_key(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
        key: &OrderingKey,
    ) -> Result<(), Error> {
        // The key's next delivery is already due (it waited since its own due time): the
        // notification lets other processes claim it now.
        const RELEASE: &str = "WITH ep AS ( \
                SELECT id FROM endpoints WHERE id = $1 AND merchant_id = $2 \
             ), released AS ( \
                UPDATE deliveries SET ordering_held = false \
                WHERE endpoint_id IN (SELECT id FROM ep) AND ordering_key = $3 AND ordering_held \
                RETURNING 1 \
             ), woke AS ( \
                SELECT pg_notify($4, current_schema()) FROM (SELECT 1 FROM released LIMIT 1) AS any_row \
             ) \
             SELECT EXISTS (SELECT 1 FROM ep) AS found, (SELECT count(*) FROM released) AS requeued, \
                (SELECT count(*) FROM woke) AS woke";

        let row: RecoverRow = sqlx::query_as(RELEASE)
            .bind(endpoint.as_str())
            .bind(merchant.as_str())
            .bind(key.as_str())
            .bind(CHANNEL)
            .fetch_one(self.db())
            .await
            .map_err(classify)?;
        if !row.found {
            return Err(Error::NotFound("endpoint"));
        }
        if row.requeued == 0 {
            return Err(Error::NotFound("held key"));
        }
        Ok(())
    }
}

/// Builds the claims, sharing one payload and one parsed endpoint across the rows that repeat
/// them.
fn claims_from(mut rows: Vec<ClaimRow>, lease: LeaseToken) -> Result<Vec<Claim>, Error> {
    let mut payloads: HashMap<String, Payload> = HashMap::new();
    for r in &mut rows {
        if let Some(p) = r.payload.take() {
            payloads.insert(r.event_id.clone(), Payload::from_trusted(Bytes::from(p)));
        }
    }
    let mut endpoints: HashMap<String, Arc<Endpoint>> = HashMap::new();
    let mut claims = Vec::with_capacity(rows.len());
    for r in rows {
        let Some(payload) = payloads.get(&r.event_id).cloned() else {
            // Retention never removes the payload of an event with pending deliveries, so this
            // is a hand-edited database. Leave the lease to expire rather than send a wrong body.
            tracing::error!(delivery = %r.delivery_id, event = %r.event_id, "claimed delivery has no payload");
            continue;
        };
        let endpoint = match endpoints.get(r.endpoint.id()) {
            Some(ep) => ep.clone(),
            None => {
                let ep = Arc::new(Endpoint::try_from(r.endpoint)?);
                endpoints.insert(ep.id.to_string(), ep.clone());
                ep
            }
        };
        let attempts = to_u32(i64::from(r.attempts), "attempts")?;
        let round_start = to_u32(i64::from(r.round_start), "round start")?;
        claims.push(Claim {
            delivery_id: DeliveryId::from_trusted(r.delivery_id),
            lease,
            attempt: attempts + 1,
            round_attempt: attempts.saturating_sub(round_start) + 1,
            event_id: EventId::from_trusted(r.event_id),
            event_type: EventType::parse(&r.event_type)
                .map_err(|e| Error::Internal(format!("stored event type: {e}")))?,
            payload,
            event_created_at: Timestamp::from_ms(r.event_created_at),
            endpoint,
        });
    }
    Ok(claims)
}

/// The completions of a batch as parallel arrays.
#[derive(Default)]
struct Completions<'a> {
    delivery: Vec<&'a str>,
    lease: Vec<i64>,
    state: Vec<&'static str>,
    next_at: Vec<Option<i64>>,
    disable: Vec<bool>,
    reason: Vec<&'a str>,
    attempt_id: Vec<&'a str>,
    number: Vec<i32>,
    started_at: Vec<i64>,
    url: Vec<&'a str>,
    request_headers: Vec<String>,
    status: Vec<Option<i32>>,
    response_headers: Vec<String>,
    response_body: Vec<&'a [u8]>,
    response_truncated: Vec<bool>,
    latency_ms: Vec<i64>,
    error: Vec<Option<&'static str>>,
    error_detail: Vec<Option<&'a str>>,
}

impl<'a> Completions<'a> {
    fn push(&mut self, c: &'a Completion) -> Result<(), Error> {
        let (state, next_at, disable) = match c.next {
            Next::Succeeded => ("succeeded", None, false),
            Next::RetryAt(at) => ("pending", Some(at.ms()), false),
            Next::GiveUp => ("failed", None, false),
            Next::DisableEndpoint => ("failed", None, true),
        };
        let a = &c.attempt;
        self.delivery.push(c.delivery_id.as_str());
        self.lease.push(c.lease.0);
        self.state.push(state);
        self.next_at.push(next_at);
        self.disable.push(disable);
        // Only read with `disable`; the reason the worker gave, or the one rule that disables.
        self.reason
            .push(c.disable_reason.as_deref().unwrap_or("410 Gone"));
        self.attempt_id.push(a.id.as_str());
        self.number
            .push(i32::try_from(a.number).unwrap_or(i32::MAX));
        self.started_at.push(a.started_at.ms());
        self.url.push(&a.url);
        self.request_headers.push(pairs_json(&a.request_headers)?);
        self.status.push(a.status.map(i32::from));
        self.response_headers.push(pairs_json(&a.response_headers)?);
        self.response_body.push(a.response_body.as_ref());
        self.response_truncated.push(a.response_truncated);
        self.latency_ms.push(i64::from(a.latency_ms));
        self.error.push(a.error.map(|e| e.as_str()));
        self.error_detail.push(a.error_detail.as_deref());
        Ok(())
    }
}

#[derive(sqlx::FromRow)]
struct ResendEventRow {
    created_at: i64,
    resend_count: i32,
    payload: Option<Vec<u8>>,
    ordering_key: Option<String>,
}

#[derive(sqlx::FromRow)]
struct RecoverRow {
    found: bool,
    requeued: i64,
}

#[derive(sqlx::FromRow)]
struct HeldRow {
    ordering_key: Option<String>,
    id: Option<String>,
    updated_at: Option<i64>,
    waiting: Option<i64>,
}
