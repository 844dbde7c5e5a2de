//! Operating the database: the [`Maintenance`] impl.
//!
//! Operations: queue depth for metrics and status, and retention.
//!
//! What the master key touches: the key check value and, for re-sealing, every sealed secret.
//!
//! Periodic jobs in one process at a time: a session-level advisory lock, held on a connection
//! of its own (outside the pool) for as long as this process runs the job.
//!
//! Why a session lock and not a lease row: it is released by PostgreSQL itself when the holder's
//! session ends (crash, `kill -9`, network loss), so no expiry has to be tuned, and the next
//! process to try takes over at once. The key names the schema, because advisory locks are per
//! database and several blockhook installations (or test schemas) may share one.

use std::sync::atomic::Ordering;

use blockhook_core::{
    EndpointId, Error, JobLock, Maintenance, QueueStats, SealedSecret, SecretSlot, Timestamp,
};
use sqlx::{Connection, PgConnection};

use super::db::PgStore;
use super::rows::count;
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

#[async_trait::async_trait]
impl Maintenance for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<(), Error> {
        const PING: &str = "SELECT 1";
        sqlx::query(PING)
            .execute(self.db())
            .await
            .map_err(classify)?;
        Ok(())
    }

    fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    async fn queue_stats(&self, now: Timestamp) -> Result<QueueStats, Error> {
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

        let r: StatsRow = sqlx::query_as(STATS)
            .bind(now.ms())
            .fetch_one(self.db())
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

    async fn purge_before(&self, before: Timestamp, batch: u32) -> Result<u64, Error> {
        // Both halves in one statement, each bounded by `$2`. Payloads still needed by a pending
        // delivery stay; the event rows stay (only the bytes go). Rows locked by a concurrent writer are
        // skipped and picked up by the next call. Old attempts are found per endpoint through
        // `attempts_by_endpoint`, so no index on `started_at` alone is kept up on the hot insert
        // path (migration 10); every attempt's endpoint exists (deleting an endpoint deletes its
        // deliveries and its attempts, see `delete_endpoint`).
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
                DELETE FROM attempts WHERE (delivery_id, id) IN ( \
                    SELECT a.delivery_id, a.id FROM endpoints e CROSS JOIN LATERAL ( \
                        SELECT delivery_id, id FROM attempts \
                        WHERE endpoint_id = e.id AND started_at < $1 LIMIT $2 \
                        FOR UPDATE SKIP LOCKED) a \
                    LIMIT $2) \
                RETURNING 1 \
             ) \
             SELECT (SELECT count(*) FROM emptied) + (SELECT count(*) FROM dropped)";

        if batch == 0 {
            return Ok(0);
        }
        let n: i64 = sqlx::query_scalar(PURGE)
            .bind(before.ms())
            .bind(i64::from(batch))
            .fetch_one(self.db())
            .await
            .map_err(classify)?;
        Ok(count(n))
    }

    async fn key_check(&self) -> Result<Option<Vec<u8>>, Error> {
        const GET_CHECK: &str = "SELECT sealed FROM key_check WHERE id = 1";

        sqlx::query_scalar(GET_CHECK)
            .fetch_optional(self.db())
            .await
            .map_err(classify)
    }

    async fn init_key_check(&self, sealed: &[u8]) -> Result<Vec<u8>, Error> {
        // One statement: the inserted row, or the one another process inserted first.
        const INIT_CHECK: &str = "WITH ins AS ( \
                INSERT INTO key_check (id, sealed) VALUES (1, $1) ON CONFLICT (id) DO NOTHING \
                RETURNING sealed) \
             SELECT sealed FROM ins UNION ALL SELECT sealed FROM key_check WHERE id = 1 LIMIT 1";

        sqlx::query_scalar(INIT_CHECK)
            .bind(sealed)
            .fetch_one(self.db())
            .await
            .map_err(classify)
    }

    async fn replace_key_check(&self, expected: &[u8], new: &[u8]) -> Result<bool, Error> {
        const REPLACE_CHECK: &str = "UPDATE key_check SET sealed = $2 WHERE id = 1 AND sealed = $1";

        let done = sqlx::query(REPLACE_CHECK)
            .bind(expected)
            .bind(new)
            .execute(self.db())
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() == 1)
    }

    async fn sealed_secrets(
        &self,
        after: Option<&EndpointId>,
        limit: u32,
    ) -> Result<Vec<(EndpointId, SecretSlot, SealedSecret)>, Error> {
        const SEALED: &str = "SELECT id, secret, previous_secret FROM endpoints WHERE id > $1 \
             ORDER BY id LIMIT $2";

        let rows: Vec<(String, Vec<u8>, Option<Vec<u8>>)> = sqlx::query_as(SEALED)
            .bind(after.map_or("", |id| id.as_str()))
            .bind(i64::from(limit))
            .fetch_all(self.db())
            .await
            .map_err(classify)?;
        Ok(crate::rows::sealed_secrets(rows))
    }

    async fn reseal_secret(
        &self,
        id: &EndpointId,
        slot: SecretSlot,
        expected: &SealedSecret,
        new: &SealedSecret,
    ) -> Result<bool, Error> {
        // The version bump tells every process's endpoint cache the row changed.
        const RESEAL: &str =
            "UPDATE endpoints SET secret = $3, version = version + 1 WHERE id = $1 AND secret = $2";
        const RESEAL_PREVIOUS: &str = "UPDATE endpoints SET previous_secret = $3, \
             version = version + 1 WHERE id = $1 AND previous_secret = $2";

        let statement = match slot {
            SecretSlot::Current => RESEAL,
            SecretSlot::Previous => RESEAL_PREVIOUS,
        };
        let done = sqlx::query(statement)
            .bind(id.as_str())
            .bind(expected.as_stored())
            .bind(new.as_stored())
            .execute(self.db())
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() == 1)
    }

    async fn try_job_lock(&self, job: &str) -> Result<Option<Box<dyn JobLock>>, Error> {
        const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))";

        let mut conn = PgConnection::connect_with(&self.connect)
            .await
            .map_err(classify)?;
        let key = format!("blockhook:{}:{job}", self.schema);
        let got: bool = sqlx::query_scalar(TRY_LOCK)
            .bind(&key)
            .fetch_one(&mut conn)
            .await
            .map_err(classify)?;
        if got {
            Ok(Some(Box::new(SessionLock { conn })))
        } else {
            // Closing the session drops nothing else: it held no lock.
            let _ = conn.close().await;
            Ok(None)
        }
    }
}

/// The lock of one job, held by this session.
struct SessionLock {
    conn: PgConnection,
}

#[async_trait::async_trait]
impl JobLock for SessionLock {
    async fn held(&mut self) -> bool {
        // The lock lives exactly as long as the session: a session that answers still holds it.
        self.conn.ping().await.is_ok()
    }
}
