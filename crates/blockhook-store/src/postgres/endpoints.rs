//! A merchant's webhook endpoints: the [`Endpoints`] impl.

use blockhook_core::{Cursor, Endpoint, EndpointId, Endpoints, Error, MerchantId, Page};
use sqlx::Postgres;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;

use super::db::{PgStore, cursor, insert_error, overfetch};
use super::rows::{EndpointJson, EndpointRow, endpoint_columns};
use crate::classify;

/// Binds an endpoint's id, merchant and every mutable column as `$1` to `$15`, in the order
/// of the table; the statements of create and update both start with these parameters.
fn bind_endpoint<'q>(
    q: Query<'q, Postgres, PgArguments>,
    ep: &'q Endpoint,
) -> Result<Query<'q, Postgres, PgArguments>, Error> {
    let json = EndpointJson::of(ep)?;
    Ok(q.bind(ep.id.as_str())
        .bind(ep.merchant_id.as_str())
        .bind(ep.url.as_str())
        .bind(ep.description.as_deref())
        .bind(json.event_types)
        .bind(ep.signing_mode.as_str())
        .bind(ep.success_policy.as_str())
        .bind(json.headers)
        .bind(ep.rate_limit.map(i64::from))
        .bind(ep.label.as_ref().map(|l| l.as_str()))
        .bind(ep.enabled)
        .bind(ep.disabled_reason.as_deref())
        .bind(ep.secret.as_stored())
        .bind(ep.previous_secret.as_ref().map(|p| p.secret.as_stored()))
        .bind(ep.previous_secret.as_ref().map(|p| p.until.ms())))
}

#[async_trait::async_trait]
impl Endpoints for PgStore {
    async fn create_endpoint(&self, ep: &Endpoint) -> Result<(), Error> {
        const CREATE: &str = "INSERT INTO endpoints (id, merchant_id, url, description, event_types, \
             signing_mode, success_policy, headers, rate_limit, label, enabled, disabled_reason, secret, \
             previous_secret, previous_secret_until, created_at, updated_at, ordering) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)";

        bind_endpoint(sqlx::query(CREATE), ep)?
            .bind(ep.created_at.ms())
            .bind(ep.updated_at.ms())
            .bind(ep.ordering.to_stored()?)
            .execute(self.db())
            .await
            .map_err(|e| insert_error(e, "merchant", "endpoint"))?;
        Ok(())
    }

    async fn get_endpoint(
        &self,
        merchant: &MerchantId,
        id: &EndpointId,
    ) -> Result<Endpoint, Error> {
        const GET: &str = concat!(
            "SELECT ",
            endpoint_columns!(),
            " FROM endpoints e WHERE e.id = $1 AND e.merchant_id = $2"
        );

        let row: Option<EndpointRow> = sqlx::query_as(GET)
            .bind(id.as_str())
            .bind(merchant.as_str())
            .fetch_optional(self.db())
            .await
            .map_err(classify)?;
        row.ok_or(Error::NotFound("endpoint"))?.try_into()
    }

    async fn list_endpoints(
        &self,
        merchant: &MerchantId,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Endpoint>, Error> {
        const LIST: &str = concat!(
            "SELECT ",
            endpoint_columns!(),
            " FROM endpoints e WHERE e.merchant_id = $1 AND e.id < $2 \
             ORDER BY e.id DESC LIMIT $3"
        );

        let rows: Vec<EndpointRow> = sqlx::query_as(LIST)
            .bind(merchant.as_str())
            .bind(cursor(after))
            .bind(overfetch(limit))
            .fetch_all(self.db())
            .await
            .map_err(classify)?;
        let eps = rows
            .into_iter()
            .map(Endpoint::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(eps, limit.max(1) as usize, |e| {
            e.id.to_string()
        }))
    }

    async fn update_endpoint(&self, ep: &Endpoint) -> Result<(), Error> {
        // The merchant in the WHERE clause (never in SET) keeps an endpoint from being moved to, or
        // edited by, another merchant.
        const UPDATE: &str = "UPDATE endpoints SET url = $3, description = $4, event_types = $5, \
             signing_mode = $6, success_policy = $7, headers = $8, rate_limit = $9, label = $10, \
             enabled = $11, disabled_reason = $12, secret = $13, previous_secret = $14, \
             previous_secret_until = $15, updated_at = $16, \
             version = version + 1, ordering = $17 WHERE id = $1 AND merchant_id = $2";

        let done = bind_endpoint(sqlx::query(UPDATE), ep)?
            .bind(ep.updated_at.ms())
            .bind(ep.ordering.to_stored()?)
            .execute(self.db())
            .await
            .map_err(classify)?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound("endpoint"));
        }
        Ok(())
    }

    async fn delete_endpoint(&self, merchant: &MerchantId, id: &EndpointId) -> Result<(), Error> {
        // Deliveries cascade from the endpoint; attempts have no foreign key (migration 12), so
        // they go by their endpoint, in a second statement: the first waits for any finish that
        // holds one of the endpoint's deliveries locked, and the second's fresh snapshot (READ
        // COMMITTED) then sees the attempt that finish logged. A finish after the first finds
        // no delivery and logs nothing.
        const DELETE: &str = "DELETE FROM endpoints WHERE id = $1 AND merchant_id = $2";
        const DELETE_ATTEMPTS: &str = "DELETE FROM attempts WHERE endpoint_id = $1";

        let mut tx = self.begin().await?;
        let done = sqlx::query(DELETE)
            .bind(id.as_str())
            .bind(merchant.as_str())
            .execute(self.on(&mut tx))
            .await
            .map_err(classify)?;
        if done.rows_affected() == 0 {
            // Dropping the transaction rolls it back.
            return Err(Error::NotFound("endpoint"));
        }
        sqlx::query(DELETE_ATTEMPTS)
            .bind(id.as_str())
            .execute(self.on(&mut tx))
            .await
            .map_err(classify)?;
        self.commit(tx).await
    }
}
