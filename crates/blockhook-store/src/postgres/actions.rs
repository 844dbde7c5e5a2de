//! Operator and merchant actions: manual resend and recovery of failed deliveries. Both make work
//! due now, so both notify other processes (at commit, like ingest).

use blockhook_core::{
    DeliveryId, EndpointId, Error, EventId, MerchantId, ResendLimits, ResendScope, Timestamp,
};

use super::listen::CHANNEL;
use super::store::PgStore;
use crate::classify;

#[derive(sqlx::FromRow)]
struct ResendEventRow {
    created_at: i64,
    resend_count: i32,
    has_payload: bool,
}

// Locks the event: concurrent resends of one event queue here, so the limit holds.
const LOCK_EVENT: &str = "SELECT created_at, resend_count, payload IS NOT NULL AS has_payload \
     FROM events WHERE id = $1 AND merchant_id = $2 FOR UPDATE";

// Every endpoint the event had a delivery to; deleted endpoints took their deliveries along.
const PAST_TARGETS: &str =
    "SELECT DISTINCT endpoint_id FROM deliveries WHERE event_id = $1 ORDER BY endpoint_id";

const ONE_TARGET: &str = "SELECT id FROM endpoints WHERE id = $1 AND merchant_id = $2";

// The plain final SELECT runs `pg_notify` exactly once; the data-modifying CTEs always run.
const CREATE: &str = "WITH created AS ( \
        INSERT INTO deliveries (id, event_id, endpoint_id, merchant_id, state, origin, \
            next_attempt_at, created_at, updated_at) \
        SELECT d.id, $2, d.endpoint_id, $3, 'pending', 'resend', $4, $4, $4 \
        FROM unnest($1::text[], $5::text[]) AS d(id, endpoint_id) \
        RETURNING 1 \
     ), counted AS ( \
        UPDATE events SET resend_count = resend_count + 1 WHERE id = $2 RETURNING 1 \
     ) \
     SELECT pg_notify($6, current_schema())";

/// See `Store::resend`. Refused resends (limits, unknown endpoint) change and count nothing.
pub(super) async fn resend(
    db: &PgStore,
    merchant: &MerchantId,
    event: &EventId,
    scope: &ResendScope,
    limits: &ResendLimits,
    now: Timestamp,
) -> Result<Vec<DeliveryId>, Error> {
    let mut tx = db.begin().await?;
    let ev: Option<ResendEventRow> = sqlx::query_as(LOCK_EVENT)
        .bind(event.as_str())
        .bind(merchant.as_str())
        .fetch_optional(db.on(&mut tx))
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
    if !ev.has_payload {
        return Err(Error::Conflict(
            "the event's payload was removed by retention".to_owned(),
        ));
    }

    let targets: Vec<String> = match scope {
        ResendScope::All => sqlx::query_scalar(PAST_TARGETS)
            .bind(event.as_str())
            .fetch_all(db.on(&mut tx))
            .await
            .map_err(classify)?,
        ResendScope::Endpoint(id) => {
            let found: Option<String> = sqlx::query_scalar(ONE_TARGET)
                .bind(id.as_str())
                .bind(merchant.as_str())
                .fetch_optional(db.on(&mut tx))
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
    sqlx::query(CREATE)
        .bind(&id_strs)
        .bind(event.as_str())
        .bind(merchant.as_str())
        .bind(now.ms())
        .bind(&targets)
        .bind(CHANNEL)
        .execute(db.on(&mut tx))
        .await
        .map_err(classify)?;
    db.commit(tx).await?;
    Ok(ids)
}

#[derive(sqlx::FromRow)]
struct RecoverRow {
    found: bool,
    requeued: i64,
}

// One statement: the endpoint check, the re-queue and the notification. A new round starts
// (`round_start = attempts`), so the retry schedule applies afresh while `attempts` keeps
// counting. Deliveries whose event lost its payload to retention cannot be sent and stay failed.
const RECOVER: &str = "WITH ep AS ( \
        SELECT id FROM endpoints WHERE id = $1 AND merchant_id = $2 \
     ), requeued AS ( \
        UPDATE deliveries d SET state = 'pending', next_attempt_at = $4, round_start = d.attempts, \
            lease_token = NULL, lease_until = NULL, updated_at = $4 \
        WHERE d.endpoint_id IN (SELECT id FROM ep) AND d.state = 'failed' AND d.created_at >= $3 \
          AND EXISTS (SELECT 1 FROM events ev WHERE ev.id = d.event_id AND ev.payload IS NOT NULL) \
        RETURNING 1 \
     ), woke AS ( \
        SELECT pg_notify($5, current_schema()) FROM (SELECT 1 FROM requeued LIMIT 1) AS any_row \
     ) \
     SELECT EXISTS (SELECT 1 FROM ep) AS found, (SELECT count(*) FROM requeued) AS requeued, \
        (SELECT count(*) FROM woke) AS woke";

/// See `Store::recover`.
pub(super) async fn recover(
    db: &PgStore,
    merchant: &MerchantId,
    endpoint: &EndpointId,
    since: Timestamp,
    now: Timestamp,
) -> Result<u64, Error> {
    let row: RecoverRow = sqlx::query_as(RECOVER)
        .bind(endpoint.as_str())
        .bind(merchant.as_str())
        .bind(since.ms())
        .bind(now.ms())
        .bind(CHANNEL)
        .fetch_one(db.db())
        .await
        .map_err(classify)?;
    if !row.found {
        return Err(Error::NotFound("endpoint"));
    }
    Ok(u64::try_from(row.requeued).unwrap_or(0))
}
