//! Operations: queue depth for metrics and status, and retention.

use blockhook_core::{Error, QueueStats, Timestamp};

use super::rows::count;
use super::store::PgStore;
use crate::classify;

#[derive(sqlx::FromRow)]
struct StatsRow {
    due: i64,
    scheduled: i64,
    in_flight: i64,
    succeeded: i64,
    failed: i64,
    oldest_due_at: Option<i64>,
}

// One pass over the table. A leased delivery's next_attempt_at is its lease expiry, so "due"
// (next_attempt_at <= now) already includes expired leases and excludes live ones.
const STATS: &str = "SELECT \
        count(*) FILTER (WHERE state = 'pending' AND next_attempt_at <= $1) AS due, \
        count(*) FILTER (WHERE state = 'pending' AND next_attempt_at > $1 \
            AND (lease_until IS NULL OR lease_until <= $1)) AS scheduled, \
        count(*) FILTER (WHERE state = 'pending' AND lease_until > $1) AS in_flight, \
        count(*) FILTER (WHERE state = 'succeeded') AS succeeded, \
        count(*) FILTER (WHERE state = 'failed') AS failed, \
        min(next_attempt_at) FILTER (WHERE state = 'pending' AND next_attempt_at <= $1) \
            AS oldest_due_at \
     FROM deliveries";

/// See `Store::queue_stats`.
pub(super) async fn queue_stats(db: &PgStore, now: Timestamp) -> Result<QueueStats, Error> {
    let r: StatsRow = sqlx::query_as(STATS)
        .bind(now.ms())
        .fetch_one(db.db())
        .await
        .map_err(classify)?;
    Ok(QueueStats {
        due: count(r.due),
        scheduled: count(r.scheduled),
        in_flight: count(r.in_flight),
        succeeded: count(r.succeeded),
        failed: count(r.failed),
        oldest_due_at: r.oldest_due_at.map(Timestamp::from_ms),
    })
}

// Both halves in one statement, each bounded by `$2`. Payloads still needed by a pending
// delivery stay; the event rows stay (only the bytes go). Rows locked by a concurrent writer are
// skipped and picked up by the next call.
const PURGE: &str = "WITH emptied AS ( \
        UPDATE events SET payload = NULL WHERE id IN ( \
            SELECT ev.id FROM events ev \
            WHERE ev.payload IS NOT NULL AND ev.created_at < $1 \
              AND NOT EXISTS (SELECT 1 FROM deliveries d \
                  WHERE d.event_id = ev.id AND d.state = 'pending') \
            ORDER BY ev.created_at LIMIT $2 \
            FOR UPDATE SKIP LOCKED) \
        RETURNING 1 \
     ), dropped AS ( \
        DELETE FROM attempts WHERE id IN ( \
            SELECT id FROM attempts WHERE started_at < $1 ORDER BY started_at LIMIT $2 \
            FOR UPDATE SKIP LOCKED) \
        RETURNING 1 \
     ) \
     SELECT (SELECT count(*) FROM emptied) + (SELECT count(*) FROM dropped)";

/// See `Store::purge_before`.
pub(super) async fn purge_before(
    db: &PgStore,
    before: Timestamp,
    batch: u32,
) -> Result<u64, Error> {
    if batch == 0 {
        return Ok(0);
    }
    let n: i64 = sqlx::query_scalar(PURGE)
        .bind(before.ms())
        .bind(i64::from(batch))
        .fetch_one(db.db())
        .await
        .map_err(classify)?;
    Ok(count(n))
}
