//! Operating the database: queue statistics, retention, and what the master key touches (the
//! key check value and, for re-sealing, every sealed secret). The [`Maintenance`] impl.

use blockhook_core::{
    EndpointId, Error, Maintenance, QueueStats, SealedSecret, SecretSlot, Timestamp,
};

use super::db::SqliteStore;
use super::files;
use super::rows::count;
use crate::classify;

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

#[async_trait::async_trait]
impl Maintenance for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), Error> {
        self.db.tick(1);
        sqlx::query("SELECT 1")
            .execute(&self.db.readers)
            .await
            .map_err(classify)?;
        Ok(())
    }

    fn statements(&self) -> u64 {
        self.db.statements()
    }

    async fn checkpoint(&self) -> Result<(), Error> {
        files::checkpoint(&self.db.writer).await
    }

    async fn queue_stats(&self, now: Timestamp) -> Result<QueueStats, Error> {
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

        self.db.tick(1);
        let r: StatsRow = sqlx::query_as(QUEUE_STATS)
            .bind(now.ms())
            .fetch_one(&self.db.readers)
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

    /// Two bounded statements, each its own short write: retention runs beside live traffic and
    /// must not hold the writer for long.
    async fn purge_before(&self, before: Timestamp, batch: u32) -> Result<u64, Error> {
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

        let batch = i64::from(batch);
        self.db.tick(1);
        let payloads = sqlx::query(PURGE_PAYLOADS)
            .bind(before.ms())
            .bind(batch)
            .execute(&mut *self.db.write().await?)
            .await
            .map_err(classify)?
            .rows_affected();
        self.db.tick(1);
        let attempts = sqlx::query(PURGE_ATTEMPTS)
            .bind(before.ms())
            .bind(batch)
            .execute(&mut *self.db.write().await?)
            .await
            .map_err(classify)?
            .rows_affected();
        Ok(payloads + attempts)
    }

    async fn key_check(&self) -> Result<Option<Vec<u8>>, Error> {
        self.db.tick(1);
        sqlx::query_scalar(GET_CHECK)
            .fetch_optional(&self.db.readers)
            .await
            .map_err(classify)
    }

    async fn init_key_check(&self, sealed: &[u8]) -> Result<Vec<u8>, Error> {
        const INIT_CHECK: &str =
            "INSERT INTO key_check (id, sealed) VALUES (1, ?1) ON CONFLICT (id) DO NOTHING";

        self.db.tick(2);
        let mut conn = self.db.write().await?;
        sqlx::query(INIT_CHECK)
            .bind(sealed)
            .execute(&mut *conn)
            .await
            .map_err(classify)?;
        sqlx::query_scalar(GET_CHECK)
            .fetch_one(&mut *conn)
            .await
            .map_err(classify)
    }

    async fn replace_key_check(&self, expected: &[u8], new: &[u8]) -> Result<bool, Error> {
        const REPLACE_CHECK: &str = "UPDATE key_check SET sealed = ?2 WHERE id = 1 AND sealed = ?1";

        self.db.tick(1);
        let done = sqlx::query(REPLACE_CHECK)
            .bind(expected)
            .bind(new)
            .execute(&mut *self.db.write().await?)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() == 1)
    }

    async fn sealed_secrets(
        &self,
        after: Option<&EndpointId>,
        limit: u32,
    ) -> Result<Vec<(EndpointId, SecretSlot, SealedSecret)>, Error> {
        const SEALED: &str = "SELECT id, secret, previous_secret FROM endpoints WHERE id > ?1 \
             ORDER BY id LIMIT ?2";

        self.db.tick(1);
        let rows: Vec<(String, Vec<u8>, Option<Vec<u8>>)> = sqlx::query_as(SEALED)
            .bind(after.map_or("", |id| id.as_str()))
            .bind(i64::from(limit))
            .fetch_all(&self.db.readers)
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
        // The version bump tells the endpoint cache the row changed.
        const RESEAL: &str =
            "UPDATE endpoints SET secret = ?3, version = version + 1 WHERE id = ?1 AND secret = ?2";
        const RESEAL_PREVIOUS: &str = "UPDATE endpoints SET previous_secret = ?3, \
             version = version + 1 WHERE id = ?1 AND previous_secret = ?2";

        self.db.tick(1);
        let statement = match slot {
            SecretSlot::Current => RESEAL,
            SecretSlot::Previous => RESEAL_PREVIOUS,
        };
        let done = sqlx::query(statement)
            .bind(id.as_str())
            .bind(expected.as_stored())
            .bind(new.as_stored())
            .execute(&mut *self.db.write().await?)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() == 1)
    }
}

const GET_CHECK: &str = "SELECT sealed FROM key_check WHERE id = 1";
