//! Manual actions on deliveries: resending an event and recovering an endpoint's failures.

use blockhook_core::{
    DeliveryId, DeliveryOrigin, EndpointId, Error, EventId, MerchantId, ResendLimits, ResendScope,
    Timestamp,
};

use rusqlite::{Connection, OptionalExtension, params};

use super::db::Db;
use super::events::{NewDelivery, insert_deliveries};
use super::writer::{Cx, Durability};
use crate::{classify, classify_sqlite};

const RESEND_EVENT: &str = "SELECT created_at, resend_count, payload IS NOT NULL AS has_payload \
     FROM events WHERE id = ?1 AND merchant_id = ?2";

// Every endpoint the event was delivered to (deliveries cascade away with their endpoint, so
// these all still exist).
const PAST_TARGETS: &str = "SELECT DISTINCT endpoint_id FROM deliveries WHERE event_id = ?1";

const OWN_ENDPOINT: &str = "SELECT id FROM endpoints WHERE id = ?1 AND merchant_id = ?2";

const COUNT_RESEND: &str = "UPDATE events SET resend_count = resend_count + 1 WHERE id = ?1";

/// Checks the event, the scope, then the limits, and creates the deliveries, all in one write
/// transaction (on the writer thread) so two concurrent resends cannot both pass the count check.
pub(super) async fn resend(
    s: &Db,
    merchant: &MerchantId,
    event: &EventId,
    scope: &ResendScope,
    limits: &ResendLimits,
    now: Timestamp,
) -> Result<Vec<DeliveryId>, Error> {
    let (merchant, event, scope, limits) =
        (merchant.clone(), event.clone(), scope.clone(), *limits);
    s.thread
        .run(Durability::Durable, move |conn, cx| {
            resend_in(cx, conn, &merchant, &event, &scope, &limits, now)
        })
        .await
}

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
    let ev: Option<(i64, i64, bool)> = conn
        .prepare_cached(RESEND_EVENT)
        .and_then(|mut stmt| {
            stmt.query_row(params![event.as_str(), merchant.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
        })
        .map_err(classify_sqlite)?;
    let (created_at, resend_count, has_payload) = ev.ok_or(Error::NotFound("event"))?;

    cx.tick(1);
    let targets: Vec<String> = match scope {
        ResendScope::All => conn.prepare_cached(PAST_TARGETS).and_then(|mut stmt| {
            stmt.query_map([event.as_str()], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()
        }),
        ResendScope::Endpoint(id) => conn.prepare_cached(OWN_ENDPOINT).and_then(|mut stmt| {
            stmt.query_map([id.as_str(), merchant.as_str()], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()
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

    let deliveries: Vec<NewDelivery<'_>> = targets
        .iter()
        .map(|endpoint_id| NewDelivery {
            id: DeliveryId::generate(),
            event_id: event.as_str(),
            endpoint_id,
            merchant_id: merchant.as_str(),
            at: now,
        })
        .collect();
    insert_deliveries(cx, conn, &deliveries, DeliveryOrigin::Resend)?;
    cx.tick(1);
    conn.prepare_cached(COUNT_RESEND)
        .and_then(|mut stmt| stmt.execute([event.as_str()]))
        .map_err(classify_sqlite)?;
    Ok(deliveries.into_iter().map(|d| d.id).collect())
}

// A fresh round: `round_start = attempts`, so the next claim's round attempt is 1 again.
// Deliveries whose event payload retention already removed cannot be sent and stay failed.
const RECOVER: &str = "UPDATE deliveries SET state = 'pending', next_attempt_at = ?4, \
     round_start = attempts, lease_token = NULL, lease_until = NULL, updated_at = ?4 \
     WHERE endpoint_id = ?1 AND merchant_id = ?2 AND state = 'failed' AND created_at >= ?3 \
       AND EXISTS (SELECT 1 FROM events e WHERE e.id = deliveries.event_id \
                   AND e.payload IS NOT NULL)";

const ENDPOINT_EXISTS: &str = "SELECT 1 FROM endpoints WHERE id = ?1 AND merchant_id = ?2";

/// One statement when something is recovered; a second one tells "nothing failed" from "not
/// yours".
pub(super) async fn recover(
    s: &Db,
    merchant: &MerchantId,
    endpoint: &EndpointId,
    since: Timestamp,
    now: Timestamp,
) -> Result<u64, Error> {
    s.tick(1);
    let done = sqlx::query(RECOVER)
        .bind(endpoint.as_str())
        .bind(merchant.as_str())
        .bind(since.ms())
        .bind(now.ms())
        .execute(&mut *s.write().await?)
        .await
        .map_err(classify)?;
    if done.rows_affected() == 0 {
        s.tick(1);
        let exists = sqlx::query(ENDPOINT_EXISTS)
            .bind(endpoint.as_str())
            .bind(merchant.as_str())
            .fetch_optional(&s.readers)
            .await
            .map_err(classify)?;
        if exists.is_none() {
            return Err(Error::NotFound("endpoint"));
        }
    }
    Ok(done.rows_affected())
}
