//! Manual actions on deliveries: resending an event and recovering an endpoint's failures.

use blockhook_core::{
    DeliveryId, DeliveryOrigin, EndpointId, Error, EventId, MerchantId, ResendLimits, ResendScope,
    Timestamp,
};

use super::db::{Db, Durability};
use super::events::{NewDelivery, insert_deliveries};
use crate::classify;

const RESEND_EVENT: &str = "SELECT created_at, resend_count, payload IS NOT NULL AS has_payload \
     FROM events WHERE id = ?1 AND merchant_id = ?2";

#[derive(sqlx::FromRow)]
struct ResendEvent {
    created_at: i64,
    resend_count: i64,
    has_payload: bool,
}

// Every endpoint the event was delivered to (deliveries cascade away with their endpoint, so
// these all still exist).
const PAST_TARGETS: &str = "SELECT DISTINCT endpoint_id FROM deliveries WHERE event_id = ?1";

const OWN_ENDPOINT: &str = "SELECT id FROM endpoints WHERE id = ?1 AND merchant_id = ?2";

const COUNT_RESEND: &str = "UPDATE events SET resend_count = resend_count + 1 WHERE id = ?1";

/// Checks the event, the scope, then the limits, and creates the deliveries, all in one write
/// transaction so two concurrent resends cannot both pass the count check.
pub(super) async fn resend(
    s: &Db,
    merchant: &MerchantId,
    event: &EventId,
    scope: &ResendScope,
    limits: &ResendLimits,
    now: Timestamp,
) -> Result<Vec<DeliveryId>, Error> {
    let mut tx = s.begin().await?;
    let result: Result<_, Error> = async {
        s.tick(1);
        let ev: ResendEvent = sqlx::query_as(RESEND_EVENT)
            .bind(event.as_str())
            .bind(merchant.as_str())
            .fetch_optional(tx.conn())
            .await
            .map_err(classify)?
            .ok_or(Error::NotFound("event"))?;

        s.tick(1);
        let targets: Vec<String> = match scope {
            ResendScope::All => {
                sqlx::query_scalar(PAST_TARGETS)
                    .bind(event.as_str())
                    .fetch_all(tx.conn())
                    .await
            }
            ResendScope::Endpoint(id) => {
                sqlx::query_scalar(OWN_ENDPOINT)
                    .bind(id.as_str())
                    .bind(merchant.as_str())
                    .fetch_all(tx.conn())
                    .await
            }
        }
        .map_err(classify)?;
        if targets.is_empty() && matches!(scope, ResendScope::Endpoint(_)) {
            return Err(Error::NotFound("endpoint"));
        }

        let age = now.since(Timestamp::from_ms(ev.created_at));
        if age >= limits.window {
            return Err(Error::Conflict(format!(
                "resend window passed: events can be resent for {}s after they arrive",
                limits.window.as_secs()
            )));
        }
        if ev.resend_count >= i64::from(limits.max_per_event) {
            return Err(Error::Conflict(format!(
                "resend limit reached: max_per_event is {}",
                limits.max_per_event
            )));
        }
        if !ev.has_payload {
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
        insert_deliveries(s, tx.conn(), &deliveries, DeliveryOrigin::Resend).await?;
        s.tick(1);
        sqlx::query(COUNT_RESEND)
            .bind(event.as_str())
            .execute(tx.conn())
            .await
            .map_err(classify)?;
        Ok(deliveries.into_iter().map(|d| d.id).collect())
    }
    .await;
    tx.end(s, result).await
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
        .execute(&mut *s.write(Durability::Durable).await?)
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
