//! One endpoint's console page in a fixed number of read statements: deliveries per hour by
//! state, the endpoint's queue, its failure streak and its newest deliveries; and the count a
//! recovery would re-queue (its preview).

use blockhook_core::{EndpointActivity, EndpointId, Error, FailureStreak, MerchantId, Timestamp};

use super::db::PgStore;
use super::rows::{DeliveryRow, NextWhileLeased, count};
use crate::classify;
use crate::rows::ActivityRows;

const ENDPOINT_EXISTS: &str =
    "SELECT EXISTS (SELECT 1 FROM endpoints WHERE id = $1 AND merchant_id = $2)";
// Through deliveries_by_endpoint (endpoint_id, state, created_at).
const PER_HOUR: &str = "SELECT (created_at - $2) / 3600000 AS h, \
       count(*) FILTER (WHERE state = 'succeeded'), count(*) FILTER (WHERE state = 'failed'), \
       count(*) FILTER (WHERE state = 'pending') \
     FROM deliveries WHERE endpoint_id = $1 AND created_at >= $2 GROUP BY h ORDER BY h";
// A leased delivery's next_attempt_at is its lease expiry: "due" counts expired leases only.
const QUEUE: &str = "SELECT count(*) FILTER (WHERE next_attempt_at <= $2), \
       count(*) FILTER (WHERE next_attempt_at > $2 AND (lease_until IS NULL OR lease_until <= $2)), \
       count(*) FILTER (WHERE lease_until > $2), \
       min(next_attempt_at) FILTER (WHERE next_attempt_at <= $2) \
     FROM deliveries WHERE endpoint_id = $1 AND state = 'pending'";
// Walks attempts_by_endpoint backwards and stops at the newest success.
const LAST_SUCCESS: &str = "SELECT started_at FROM attempts \
     WHERE endpoint_id = $1 AND error IS NULL ORDER BY started_at DESC LIMIT 1";
const FAILED_SINCE: &str = "SELECT count(*), min(started_at) FROM ( \
       SELECT started_at FROM attempts WHERE endpoint_id = $1 AND started_at > $2 LIMIT $3) AS s";
const RECENT: &str = "SELECT id, event_id, endpoint_id, merchant_id, state, origin, \
       attempts, next_attempt_at, lease_until, last_status, created_at, updated_at \
     FROM deliveries WHERE endpoint_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2";
// Recover's own conditions (postgres/queue.rs), counted instead of applied.
const RECOVERABLE: &str = "SELECT count(*) FROM deliveries d \
     WHERE d.endpoint_id = $1 AND d.merchant_id = $2 AND d.state = 'failed' AND d.created_at >= $3 \
       AND EXISTS (SELECT 1 FROM events e WHERE e.id = d.event_id AND e.payload IS NOT NULL)";

impl PgStore {
    async fn check_endpoint(&self, merchant: &MerchantId, id: &EndpointId) -> Result<(), Error> {
        let exists: bool = sqlx::query_scalar(ENDPOINT_EXISTS)
            .bind(id.as_str())
            .bind(merchant.as_str())
            .fetch_one(self.db())
            .await
            .map_err(classify)?;
        if exists {
            Ok(())
        } else {
            Err(Error::NotFound("endpoint"))
        }
    }

    pub(super) async fn activity(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
        since: Timestamp,
        now: Timestamp,
        recent: u32,
    ) -> Result<EndpointActivity, Error> {
        self.check_endpoint(merchant, endpoint).await?;
        let id = endpoint.as_str();
        let (hours, queue, last_success, recent) = futures::try_join!(
            sqlx::query_as::<_, (i64, i64, i64, i64)>(PER_HOUR)
                .bind(id)
                .bind(since.ms())
                .fetch_all(self.db()),
            sqlx::query_as::<_, (i64, i64, i64, Option<i64>)>(QUEUE)
                .bind(id)
                .bind(now.ms())
                .fetch_one(self.db()),
            sqlx::query_scalar::<_, i64>(LAST_SUCCESS)
                .bind(id)
                .fetch_optional(self.db()),
            sqlx::query_as::<_, DeliveryRow>(RECENT)
                .bind(id)
                .bind(i64::from(recent))
                .fetch_all(self.db()),
        )
        .map_err(classify)?;
        let failed_since: (i64, Option<i64>) = sqlx::query_as(FAILED_SINCE)
            .bind(id)
            .bind(last_success.unwrap_or(i64::MIN))
            .bind(i64::try_from(FailureStreak::CAP).unwrap_or(i64::MAX))
            .fetch_one(self.db())
            .await
            .map_err(classify)?;
        let recent = recent
            .into_iter()
            .map(|r| r.at(now, NextWhileLeased::Nothing))
            .collect::<Result<_, _>>()?;
        Ok(crate::rows::endpoint_activity(
            since,
            ActivityRows {
                hours,
                queue,
                last_success,
                failed_since,
                recent,
            },
        ))
    }

    pub(super) async fn count_recoverable(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
        since: Timestamp,
    ) -> Result<u64, Error> {
        self.check_endpoint(merchant, endpoint).await?;
        let n: i64 = sqlx::query_scalar(RECOVERABLE)
            .bind(endpoint.as_str())
            .bind(merchant.as_str())
            .bind(since.ms())
            .fetch_one(self.db())
            .await
            .map_err(classify)?;
        Ok(count(n))
    }
}
