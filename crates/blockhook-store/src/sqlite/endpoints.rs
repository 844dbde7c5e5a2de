//! A merchant's webhook endpoints.

use blockhook_core::{Cursor, Endpoint, EndpointId, Error, MerchantId, Page};

use super::db::Db;
use super::rows::{EndpointRow, filter_json, page_limit, pairs_json};
use crate::classify;

// Inserts only when the merchant exists, so an unknown one is `NotFound("merchant")` rather than
// an anonymous foreign key failure.
const CREATE: &str = "INSERT INTO endpoints (id, merchant_id, url, description, event_types, \
     signing_mode, success_policy, headers, rate_limit, label, enabled, disabled_reason, secret, \
     created_at, updated_at) \
     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15 \
     WHERE EXISTS (SELECT 1 FROM merchants WHERE id = ?2)";

pub(super) async fn create(s: &Db, ep: &Endpoint) -> Result<(), Error> {
    s.tick(1);
    let done = sqlx::query(CREATE)
        .bind(ep.id.as_str())
        .bind(ep.merchant_id.as_str())
        .bind(ep.url.as_str())
        .bind(ep.description.as_deref())
        .bind(filter_json(&ep.filter)?)
        .bind(ep.signing_mode.as_str())
        .bind(ep.success_policy.as_str())
        .bind(pairs_json(ep.headers.pairs())?)
        .bind(ep.rate_limit.map(i64::from))
        .bind(ep.label.as_ref().map(|l| l.as_str()))
        .bind(ep.enabled)
        .bind(ep.disabled_reason.as_deref())
        .bind(ep.secret.0.as_slice())
        .bind(ep.created_at.ms())
        .bind(ep.updated_at.ms())
        .execute(&mut *s.write().await?)
        .await
        .map_err(classify)?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound("merchant"));
    }
    Ok(())
}

const GET: &str = concat!(
    "SELECT ",
    endpoint_columns!(),
    " FROM endpoints WHERE id = ?1 AND merchant_id = ?2"
);

pub(super) async fn get(s: &Db, merchant: &MerchantId, id: &EndpointId) -> Result<Endpoint, Error> {
    s.tick(1);
    let row: Option<EndpointRow> = sqlx::query_as(GET)
        .bind(id.as_str())
        .bind(merchant.as_str())
        .fetch_optional(&s.readers)
        .await
        .map_err(classify)?;
    row.ok_or(Error::NotFound("endpoint"))?.try_into()
}

// Ids are UUIDv7, so "newest first" is id order and the cursor is the last id returned.
const LIST: &str = concat!(
    "SELECT ",
    endpoint_columns!(),
    " FROM endpoints WHERE merchant_id = ?1 AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3"
);

pub(super) async fn list(
    s: &Db,
    merchant: &MerchantId,
    after: Option<&Cursor>,
    limit: u32,
) -> Result<Page<Endpoint>, Error> {
    let (limit, fetch) = page_limit(limit);
    s.tick(1);
    let rows: Vec<EndpointRow> = sqlx::query_as(LIST)
        .bind(merchant.as_str())
        .bind(after.map(|c| c.0.as_str()))
        .bind(fetch)
        .fetch_all(&s.readers)
        .await
        .map_err(classify)?;
    let eps = rows
        .into_iter()
        .map(Endpoint::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_overfetch(eps, limit, |e| e.id.to_string()))
}

const UPDATE: &str = "UPDATE endpoints SET url = ?3, description = ?4, event_types = ?5, \
     signing_mode = ?6, success_policy = ?7, headers = ?8, rate_limit = ?9, label = ?10, \
     enabled = ?11, disabled_reason = ?12, secret = ?13, updated_at = ?14 \
     WHERE id = ?1 AND merchant_id = ?2";

pub(super) async fn update(s: &Db, ep: &Endpoint) -> Result<(), Error> {
    s.tick(1);
    let done = sqlx::query(UPDATE)
        .bind(ep.id.as_str())
        .bind(ep.merchant_id.as_str())
        .bind(ep.url.as_str())
        .bind(ep.description.as_deref())
        .bind(filter_json(&ep.filter)?)
        .bind(ep.signing_mode.as_str())
        .bind(ep.success_policy.as_str())
        .bind(pairs_json(ep.headers.pairs())?)
        .bind(ep.rate_limit.map(i64::from))
        .bind(ep.label.as_ref().map(|l| l.as_str()))
        .bind(ep.enabled)
        .bind(ep.disabled_reason.as_deref())
        .bind(ep.secret.0.as_slice())
        .bind(ep.updated_at.ms())
        .execute(&mut *s.write().await?)
        .await
        .map_err(classify)?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound("endpoint"));
    }
    Ok(())
}

const DELETE: &str = "DELETE FROM endpoints WHERE id = ?1 AND merchant_id = ?2";

// Deliveries and attempts carry no foreign keys (see the migration), so they go explicitly,
// through their endpoint indexes, in the same transaction.
const DELETE_ATTEMPTS: &str = "DELETE FROM attempts WHERE endpoint_id = ?1";
const DELETE_DELIVERIES: &str = "DELETE FROM deliveries WHERE endpoint_id = ?1";

pub(super) async fn delete(s: &Db, merchant: &MerchantId, id: &EndpointId) -> Result<(), Error> {
    let mut tx = s.begin().await?;
    let result: Result<_, Error> = async {
        s.tick(1);
        let done = sqlx::query(DELETE)
            .bind(id.as_str())
            .bind(merchant.as_str())
            .execute(tx.conn())
            .await
            .map_err(classify)?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound("endpoint"));
        }
        for sql in [DELETE_ATTEMPTS, DELETE_DELIVERIES] {
            s.tick(1);
            sqlx::query(sql)
                .bind(id.as_str())
                .execute(tx.conn())
                .await
                .map_err(classify)?;
        }
        Ok(())
    }
    .await;
    tx.end(s, result).await
}
