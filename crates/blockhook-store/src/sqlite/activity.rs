//! One endpoint's console page in a fixed number of read statements: deliveries per hour by
//! state, the endpoint's queue, its failure streak and its newest deliveries; and the count a
//! recovery would re-queue (its preview).

use blockhook_core::{EndpointActivity, EndpointId, Error, FailureStreak, MerchantId, Timestamp};

use super::db::SqliteStore;
use super::rows::{DeliveryRow, NextWhileLeased, count};
use crate::classify;
use crate::rows::ActivityRows;

const ENDPOINT_EXISTS: &str = "SELECT 1 FROM endpoints WHERE id = ?1 AND merchant_id = ?2";
// Through deliveries_endpoint (endpoint_id, created_at); each row's state from the table.
const PER_HOUR: &str = "SELECT (created_at - ?2) / 3600000 AS h, \
       COALESCE(SUM(state = 'succeeded'), 0), COALESCE(SUM(state = 'failed'), 0), \
       COALESCE(SUM(state = 'pending'), 0) \
     FROM deliveries WHERE endpoint_id = ?1 AND created_at >= ?2 GROUP BY h ORDER BY h";
// From the partial due index, like the queue-wide statistics (while leased, next_attempt_at =
// lease_until, so "due" counts expired leases and not live ones).
const QUEUE: &str = "SELECT COALESCE(SUM(next_attempt_at <= ?2), 0), \
       COALESCE(SUM(next_attempt_at > ?2 AND (lease_until IS NULL OR lease_until <= ?2)), 0), \
       COALESCE(SUM(lease_until > ?2), 0), \
       MIN(CASE WHEN next_attempt_at <= ?2 THEN next_attempt_at END) \
     FROM deliveries INDEXED BY deliveries_due WHERE state = 'pending' AND endpoint_id = ?1";
// Walks attempts_endpoint backwards and stops at the newest success.
const LAST_SUCCESS: &str = "SELECT started_at FROM attempts \
     WHERE endpoint_id = ?1 AND error IS NULL ORDER BY started_at DESC LIMIT 1";
const FAILED_SINCE: &str = "SELECT COUNT(*), MIN(started_at) FROM ( \
       SELECT started_at FROM attempts WHERE endpoint_id = ?1 AND started_at > ?2 LIMIT ?3)";
const RECENT: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM deliveries WHERE endpoint_id = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2"
);
// Recover's own conditions (sqlite/queue.rs), counted instead of applied.
const RECOVERABLE: &str = "SELECT COUNT(*) FROM deliveries d \
     WHERE d.endpoint_id = ?1 AND d.merchant_id = ?2 AND d.state = 'failed' AND d.created_at >= ?3 \
       AND EXISTS (SELECT 1 FROM events e WHERE e.id = d.event_id AND e.payload IS NOT NULL)";

impl SqliteStore {
    async fn check_endpoint(&self, merchant: &MerchantId, id: &EndpointId) -> Result<(), Error> {
        self.db.tick(1);
        sqlx::query(ENDPOINT_EXISTS)
            .bind(id.as_str())
            .bind(merchant.as_str())
            .fetch_optional(&self.db.readers)
            .await
            .map_err(classify)?
            .map(|_| ())
            .ok_or(Error::NotFound("endpoint"))
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
        self.db.tick(5);
        let (hours, queue, last_success, recent) = futures::try_join!(
            sqlx::query_as::<_, (i64, i64, i64, i64)>(PER_HOUR)
                .bind(id)
                .bind(since.ms())
                .fetch_all(&self.db.readers),
            sqlx::query_as::<_, (i64, i64, i64, Option<i64>)>(QUEUE)
                .bind(id)
                .bind(now.ms())
                .fetch_one(&self.db.readers),
            sqlx::query_scalar::<_, i64>(LAST_SUCCESS)
                .bind(id)
                .fetch_optional(&self.db.readers),
            sqlx::query_as::<_, DeliveryRow>(RECENT)
                .bind(id)
                .bind(i64::from(recent))
                .fetch_all(&self.db.readers),
        )
        .map_err(classify)?;
        let failed_since: (i64, Option<i64>) = sqlx::query_as(FAILED_SINCE)
            .bind(id)
            .bind(last_success.unwrap_or(i64::MIN))
            .bind(i64::try_from(FailureStreak::CAP).unwrap_or(i64::MAX))
            .fetch_one(&self.db.readers)
            .await
            .map_err(classify)?;
        let recent = recent
            .into_iter()
            .map(|r| r.at(now, NextWhileLeased::LeaseExpiry))
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
        self.db.tick(1);
        let n: i64 = sqlx::query_scalar(RECOVERABLE)
            .bind(endpoint.as_str())
            .bind(merchant.as_str())
            .bind(since.ms())
            .fetch_one(&self.db.readers)
            .await
            .map_err(classify)?;
        Ok(count(n))
    }
}
