//! Failure alerts: the endpoint watch's reads of the attempt log (failure windows, exhausted
//! deliveries), its alert rows and cursor, and auto-disabling. The [`Alerts`] impl.
//!
//! The window reads start from `endpoints` and reach each endpoint's attempts through
//! `attempts_by_endpoint`, so a pass costs one probe per endpoint and the attempts of its window
//! (there is no index on `started_at` alone: it would cost every attempt's insert).

use blockhook_core::{
    Alerts, EndpointAlert, EndpointId, Error, ExhaustedDelivery, FailureWindow, MerchantId,
    Timestamp,
};

use super::db::PgStore;
use crate::classify;
use crate::rows::{AlertRow, ExhaustedRow, WindowRow};

// Per endpoint with attempts in the window (an error without detail is named with its HTTP
// status): the latest success, the failures after it (all of
// them without one), the first of those, and the latest failure with its error. Endpoints with
// neither a failure in the window nor an alert row are left out.
const WINDOWS: &str = "WITH w AS ( \
       SELECT a.endpoint_id, e.merchant_id, a.started_at, a.error, \
         COALESCE(a.error_detail, a.error || ': HTTP ' || a.status::TEXT, a.error) AS error_detail \
       FROM endpoints e JOIN attempts a ON a.endpoint_id = e.id \
       WHERE a.started_at > $1 AND a.started_at <= $2 \
     ), ok AS ( \
       SELECT endpoint_id, MAX(started_at) AS last_ok FROM w WHERE error IS NULL GROUP BY endpoint_id \
     ), bad AS ( \
       SELECT DISTINCT ON (endpoint_id) endpoint_id, started_at AS last_bad, \
         error_detail AS last_error \
       FROM w WHERE error IS NOT NULL ORDER BY endpoint_id, started_at DESC \
     ) \
     SELECT w.endpoint_id::TEXT, MAX(w.merchant_id)::TEXT, MAX(ok.last_ok), \
       COUNT(*) FILTER (WHERE w.error IS NOT NULL AND w.started_at > COALESCE(ok.last_ok, -1)), \
       MIN(w.started_at) FILTER (WHERE w.error IS NOT NULL AND w.started_at > COALESCE(ok.last_ok, -1)), \
       MAX(bad.last_bad), MAX(bad.last_error) \
     FROM w LEFT JOIN ok ON ok.endpoint_id = w.endpoint_id \
       LEFT JOIN bad ON bad.endpoint_id = w.endpoint_id \
     GROUP BY w.endpoint_id \
     HAVING MAX(bad.last_bad) IS NOT NULL \
       OR EXISTS (SELECT 1 FROM endpoint_alerts x WHERE x.endpoint_id = w.endpoint_id) \
     ORDER BY w.endpoint_id";

// A delivery is exhausted when it is `failed` and its last attempt (number = attempts) is the
// failed attempt found in the window.
const EXHAUSTED: &str = "SELECT d.id::TEXT, d.event_id::TEXT, ev.event_type, d.endpoint_id::TEXT, \
       d.merchant_id::TEXT, d.attempts::BIGINT, d.last_status, a.started_at \
     FROM endpoints e \
     JOIN attempts a ON a.endpoint_id = e.id AND a.started_at > $1 AND a.started_at <= $2 \
       AND a.error IS NOT NULL \
     JOIN deliveries d ON d.id = a.delivery_id AND d.state = 'failed' AND d.attempts = a.number \
     JOIN events ev ON ev.id = d.event_id \
     ORDER BY a.started_at, d.id";

const ALERTS: &str = "SELECT endpoint_id, merchant_id, state, streak, failing_since, \
       last_failure_at, last_error, updated_at FROM endpoint_alerts \
     WHERE $1::TEXT IS NULL OR merchant_id = $1 ORDER BY endpoint_id";

// Only for an endpoint that still exists (one deleted since the pass read it is dropped).
const UPSERT: &str = "INSERT INTO endpoint_alerts (endpoint_id, merchant_id, state, streak, \
       failing_since, last_failure_at, last_error, updated_at) \
     SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM endpoints WHERE id = $1) \
     ON CONFLICT (endpoint_id) DO UPDATE SET state = excluded.state, streak = excluded.streak, \
       failing_since = excluded.failing_since, last_failure_at = excluded.last_failure_at, \
       last_error = excluded.last_error, updated_at = excluded.updated_at";

const CLEAR: &str = "DELETE FROM endpoint_alerts WHERE endpoint_id = $1";

const CURSOR: &str = "INSERT INTO alert_watch (id, watched_until) VALUES (1, $1) \
     ON CONFLICT (id) DO UPDATE SET watched_until = excluded.watched_until";

#[async_trait::async_trait]
impl Alerts for PgStore {
    async fn watch_cursor(&self) -> Result<Option<Timestamp>, Error> {
        const GET: &str = "SELECT watched_until FROM alert_watch WHERE id = 1";

        let at: Option<i64> = sqlx::query_scalar(GET)
            .fetch_optional(self.db())
            .await
            .map_err(classify)?;
        Ok(at.map(Timestamp::from_ms))
    }

    async fn failure_windows(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<FailureWindow>, Error> {
        let rows: Vec<WindowRow> = sqlx::query_as(WINDOWS)
            .bind(from.ms())
            .bind(to.ms())
            .fetch_all(self.db())
            .await
            .map_err(classify)?;
        rows.into_iter().map(crate::rows::failure_window).collect()
    }

    async fn exhausted_deliveries(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<ExhaustedDelivery>, Error> {
        let rows: Vec<ExhaustedRow> = sqlx::query_as(EXHAUSTED)
            .bind(from.ms())
            .bind(to.ms())
            .fetch_all(self.db())
            .await
            .map_err(classify)?;
        rows.into_iter()
            .map(crate::rows::exhausted_delivery)
            .collect()
    }

    async fn endpoint_alerts(
        &self,
        merchant: Option<&MerchantId>,
    ) -> Result<Vec<EndpointAlert>, Error> {
        let rows: Vec<AlertRow> = sqlx::query_as(ALERTS)
            .bind(merchant.map(|m| m.as_str()))
            .fetch_all(self.db())
            .await
            .map_err(classify)?;
        rows.into_iter().map(crate::rows::endpoint_alert).collect()
    }

    async fn save_watch(
        &self,
        rows: &[EndpointAlert],
        cleared: &[EndpointId],
        cursor: Timestamp,
    ) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        for r in rows {
            sqlx::query(UPSERT)
                .bind(r.endpoint_id.as_str())
                .bind(r.merchant_id.as_str())
                .bind(r.state.as_str())
                .bind(i64::from(r.streak))
                .bind(r.failing_since.map(Timestamp::ms))
                .bind(r.last_failure_at.map(Timestamp::ms))
                .bind(r.last_error.as_deref())
                .bind(r.updated_at.ms())
                .execute(self.on(&mut tx))
                .await
                .map_err(classify)?;
        }
        for id in cleared {
            sqlx::query(CLEAR)
                .bind(id.as_str())
                .execute(self.on(&mut tx))
                .await
                .map_err(classify)?;
        }
        sqlx::query(CURSOR)
            .bind(cursor.ms())
            .execute(self.on(&mut tx))
            .await
            .map_err(classify)?;
        self.commit(tx).await
    }

    async fn auto_disable(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
        reason: &str,
        at: Timestamp,
    ) -> Result<bool, Error> {
        const DISABLE: &str = "UPDATE endpoints SET enabled = false, disabled_reason = $3, \
             updated_at = $4, version = version + 1 \
             WHERE id = $1 AND merchant_id = $2 AND enabled";

        let done = sqlx::query(DISABLE)
            .bind(endpoint.as_str())
            .bind(merchant.as_str())
            .bind(reason)
            .bind(at.ms())
            .execute(self.db())
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() == 1)
    }
}
