//! A merchant's endpoints.

use blockhook_core::{Cursor, Endpoint, EndpointId, Error, MerchantId, Page};

use super::rows::{EndpointJson, EndpointRow, endpoint_columns};
use super::store::{PgStore, cursor, insert_error, overfetch};
use crate::classify;

const CREATE: &str = "INSERT INTO endpoints (id, merchant_id, url, description, event_types, \
     signing_mode, success_policy, headers, rate_limit, label, enabled, disabled_reason, secret, \
     created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

pub(super) async fn create(db: &PgStore, ep: &Endpoint) -> Result<(), Error> {
    let json = EndpointJson::of(ep)?;
    sqlx::query(CREATE)
        .bind(ep.id.as_str())
        .bind(ep.merchant_id.as_str())
        .bind(ep.url.as_str())
        .bind(ep.description.as_deref())
        .bind(&json.event_types)
        .bind(ep.signing_mode.as_str())
        .bind(ep.success_policy.as_str())
        .bind(&json.headers)
        .bind(ep.rate_limit.map(i64::from))
        .bind(ep.label.as_ref().map(|l| l.as_str()))
        .bind(ep.enabled)
        .bind(ep.disabled_reason.as_deref())
        .bind(&ep.secret.0)
        .bind(ep.created_at.ms())
        .bind(ep.updated_at.ms())
        .execute(db.db())
        .await
        .map_err(|e| insert_error(e, "merchant", "endpoint"))?;
    Ok(())
}

const GET: &str = concat!(
    "SELECT ",
    endpoint_columns!(),
    " FROM endpoints e WHERE e.id = $1 AND e.merchant_id = $2"
);

pub(super) async fn get(
    db: &PgStore,
    merchant: &MerchantId,
    id: &EndpointId,
) -> Result<Endpoint, Error> {
    let row: Option<EndpointRow> = sqlx::query_as(GET)
        .bind(id.as_str())
        .bind(merchant.as_str())
        .fetch_optional(db.db())
        .await
        .map_err(classify)?;
    row.ok_or(Error::NotFound("endpoint"))?.try_into()
}

const LIST: &str = concat!(
    "SELECT ",
    endpoint_columns!(),
    " FROM endpoints e WHERE e.merchant_id = $1 AND e.id < $2 \
     ORDER BY e.id DESC LIMIT $3"
);

pub(super) async fn list(
    db: &PgStore,
    merchant: &MerchantId,
    after: Option<&Cursor>,
    limit: u32,
) -> Result<Page<Endpoint>, Error> {
    let rows: Vec<EndpointRow> = sqlx::query_as(LIST)
        .bind(merchant.as_str())
        .bind(cursor(after))
        .bind(overfetch(limit))
        .fetch_all(db.db())
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

// The merchant in the WHERE clause (never in SET) keeps an endpoint from being moved to, or
// edited by, another merchant.
const UPDATE: &str = "UPDATE endpoints SET url = $3, description = $4, event_types = $5, \
     signing_mode = $6, success_policy = $7, headers = $8, rate_limit = $9, label = $10, \
     enabled = $11, disabled_reason = $12, secret = $13, updated_at = $14, \
     version = version + 1 WHERE id = $1 AND merchant_id = $2";

pub(super) async fn update(db: &PgStore, ep: &Endpoint) -> Result<(), Error> {
    let json = EndpointJson::of(ep)?;
    let done = sqlx::query(UPDATE)
        .bind(ep.id.as_str())
        .bind(ep.merchant_id.as_str())
        .bind(ep.url.as_str())
        .bind(ep.description.as_deref())
        .bind(&json.event_types)
        .bind(ep.signing_mode.as_str())
        .bind(ep.success_policy.as_str())
        .bind(&json.headers)
        .bind(ep.rate_limit.map(i64::from))
        .bind(ep.label.as_ref().map(|l| l.as_str()))
        .bind(ep.enabled)
        .bind(ep.disabled_reason.as_deref())
        .bind(&ep.secret.0)
        .bind(ep.updated_at.ms())
        .execute(db.db())
        .await
        .map_err(classify)?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound("endpoint"));
    }
    Ok(())
}

// Deliveries cascade, and their attempts with them.
const DELETE: &str = "DELETE FROM endpoints WHERE id = $1 AND merchant_id = $2";

pub(super) async fn delete(
    db: &PgStore,
    merchant: &MerchantId,
    id: &EndpointId,
) -> Result<(), Error> {
    let done = sqlx::query(DELETE)
        .bind(id.as_str())
        .bind(merchant.as_str())
        .execute(db.db())
        .await
        .map_err(classify)?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound("endpoint"));
    }
    Ok(())
}
