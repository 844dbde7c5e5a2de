//! Read-only views for operations (backlog, queue stats, endpoint health) and retention.

use blockhook_core::{
    EndpointBacklog, EndpointHealth, EndpointId, Error, MerchantId, QueueStats, Timestamp,
};

use super::db::Db;
use super::rows::{count, to_u32};
use crate::classify;

// Pending work from the due index (all pending deliveries; small unless receivers are down;
// INDEXED BY, or the planner walks the whole table in endpoint order to save a sort), failed
// work from the partial index of failed deliveries, merged per endpoint.
const BACKLOG: &str = "SELECT endpoint_id, SUM(pending) AS pending, SUM(failed) AS failed, \
       MIN(oldest) AS oldest FROM ( \
       SELECT endpoint_id, COUNT(*) AS pending, 0 AS failed, MIN(created_at) AS oldest \
       FROM deliveries INDEXED BY deliveries_due \
       WHERE state = 'pending' AND merchant_id = ?1 GROUP BY endpoint_id \
       UNION ALL \
       SELECT d.endpoint_id, 0, COUNT(*), MIN(d.created_at) \
       FROM endpoints e CROSS JOIN deliveries d \
       WHERE e.merchant_id = ?1 AND d.endpoint_id = e.id AND d.state = 'failed' \
       GROUP BY d.endpoint_id) \
     GROUP BY endpoint_id ORDER BY endpoint_id";

#[derive(sqlx::FromRow)]
struct BacklogRow {
    endpoint_id: String,
    pending: i64,
    failed: i64,
    oldest: Option<i64>,
}

pub(super) async fn backlog(s: &Db, merchant: &MerchantId) -> Result<Vec<EndpointBacklog>, Error> {
    s.tick(1);
    let rows: Vec<BacklogRow> = sqlx::query_as(BACKLOG)
        .bind(merchant.as_str())
        .fetch_all(&s.readers)
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

const ENDPOINT_EXISTS: &str = "SELECT 1 FROM endpoints WHERE id = ?1 AND merchant_id = ?2";

const HEALTH_TOTALS: &str = "SELECT COUNT(*) AS attempts, \
       COALESCE(SUM(error IS NULL), 0) AS succeeded \
     FROM attempts WHERE endpoint_id = ?1 AND started_at >= ?2";

// The most recent 10,000, returned oldest first.
const HEALTH_LATENCIES: &str = "SELECT started_at, latency_ms FROM ( \
       SELECT started_at, latency_ms, id FROM attempts \
       WHERE endpoint_id = ?1 AND started_at >= ?2 \
       ORDER BY started_at DESC, id DESC LIMIT 10000) \
     ORDER BY started_at, id";

pub(super) async fn endpoint_health(
    s: &Db,
    merchant: &MerchantId,
    endpoint: &EndpointId,
    since: Timestamp,
) -> Result<EndpointHealth, Error> {
    s.tick(1);
    sqlx::query(ENDPOINT_EXISTS)
        .bind(endpoint.as_str())
        .bind(merchant.as_str())
        .fetch_optional(&s.readers)
        .await
        .map_err(classify)?
        .ok_or(Error::NotFound("endpoint"))?;
    s.tick(2);
    let ((attempts, succeeded), latencies) = futures::try_join!(
        sqlx::query_as::<_, (i64, i64)>(HEALTH_TOTALS)
            .bind(endpoint.as_str())
            .bind(since.ms())
            .fetch_one(&s.readers),
        sqlx::query_as::<_, (i64, i64)>(HEALTH_LATENCIES)
            .bind(endpoint.as_str())
            .bind(since.ms())
            .fetch_all(&s.readers),
    )
    .map_err(classify)?;
    Ok(EndpointHealth {
        attempts: count(attempts),
        succeeded: count(succeeded),
        latencies: latencies
            .into_iter()
            .map(|(at, ms)| Ok((Timestamp::from_ms(at), to_u32(ms, "latency")?)))
            .collect::<Result<_, Error>>()?,
    })
}

// One statement, so every number comes from the same snapshot. Pending work comes from the
// partial due index alone (it carries lease_until): while leased, next_attempt_at = lease_until,
// so "due" includes expired leases and excludes live ones. Finals are counted without an index
// on state: total (SQLite counts the smallest index) minus pending minus failed (partial index).
const QUEUE_STATS: &str = "SELECT \
       (SELECT COUNT(*) FROM deliveries) AS total, \
       (SELECT COUNT(*) FROM deliveries WHERE state = 'failed') AS failed, \
       p.pending, p.due, p.scheduled, p.in_flight, p.oldest_due_at \
     FROM (SELECT COUNT(*) AS pending, \
       COALESCE(SUM(next_attempt_at <= ?1), 0) AS due, \
       COALESCE(SUM(next_attempt_at > ?1 AND (lease_until IS NULL OR lease_until <= ?1)), 0) \
         AS scheduled, \
       COALESCE(SUM(lease_until > ?1), 0) AS in_flight, \
       MIN(CASE WHEN next_attempt_at <= ?1 THEN next_attempt_at END) AS oldest_due_at \
       FROM deliveries WHERE state = 'pending') AS p";

#[derive(sqlx::FromRow)]
struct StatsRow {
    total: i64,
    failed: i64,
    pending: i64,
    due: i64,
    scheduled: i64,
    in_flight: i64,
    oldest_due_at: Option<i64>,
}

pub(super) async fn queue_stats(s: &Db, now: Timestamp) -> Result<QueueStats, Error> {
    s.tick(1);
    let r: StatsRow = sqlx::query_as(QUEUE_STATS)
        .bind(now.ms())
        .fetch_one(&s.readers)
        .await
        .map_err(classify)?;
    Ok(QueueStats {
        due: count(r.due),
        scheduled: count(r.scheduled),
        in_flight: count(r.in_flight),
        succeeded: count(r.total - r.pending - r.failed),
        failed: count(r.failed),
        oldest_due_at: r.oldest_due_at.map(Timestamp::from_ms),
    })
}

// Old payloads, oldest first through the partial index of events still holding one; an event
// with a pending delivery keeps its payload (it is still to be sent).
const PURGE_PAYLOADS: &str = "UPDATE events SET payload = NULL WHERE id IN ( \
       SELECT e.id FROM events e \
       WHERE e.payload IS NOT NULL AND e.created_at < ?1 \
         AND NOT EXISTS (SELECT 1 FROM deliveries d \
                         WHERE d.event_id = e.id AND d.state = 'pending') \
       ORDER BY e.created_at LIMIT ?2)";

// Old attempts, found per endpoint through the (endpoint_id, started_at) index, so no index on
// started_at alone has to be maintained on the hot insert path. Every attempt's endpoint exists:
// deleting an endpoint deletes its attempts.
const PURGE_ATTEMPTS: &str = "DELETE FROM attempts WHERE rowid IN ( \
       SELECT a.rowid FROM endpoints e CROSS JOIN attempts a \
       WHERE a.endpoint_id = e.id AND a.started_at < ?1 LIMIT ?2)";

/// Two bounded statements, each its own short write: retention runs beside live traffic and
/// must not hold the writer for long.
pub(super) async fn purge_before(s: &Db, before: Timestamp, batch: u32) -> Result<u64, Error> {
    let batch = i64::from(batch);
    s.tick(1);
    let payloads = sqlx::query(PURGE_PAYLOADS)
        .bind(before.ms())
        .bind(batch)
        .execute(&mut *s.write().await?)
        .await
        .map_err(classify)?
        .rows_affected();
    s.tick(1);
    let attempts = sqlx::query(PURGE_ATTEMPTS)
        .bind(before.ms())
        .bind(batch)
        .execute(&mut *s.write().await?)
        .await
        .map_err(classify)?
        .rows_affected();
    Ok(payloads + attempts)
}
