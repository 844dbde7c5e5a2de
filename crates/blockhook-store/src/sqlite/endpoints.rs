//! A merchant's webhook endpoints. The [`Endpoints`] impl, and the endpoints a writer-thread
//! transaction reads (through the endpoint cache).

use std::collections::HashMap;
use std::sync::Arc;

use blockhook_core::{Cursor, Endpoint, EndpointId, Endpoints, Error, MerchantId, Page};
use rusqlite::Connection;
use sqlx::Sqlite;
use sqlx::query::Query;
use sqlx::sqlite::SqliteArguments;

use super::db::SqliteStore;
use super::rows::{EndpointRow, filter_json, json_list, page_limit, pairs_json};
use super::writer::Cx;
use crate::{classify, classify_sqlite};

/// Binds an endpoint's id, merchant and every mutable column as `?1` to `?15`, in the order
/// of the table; the statements of create and update both start with these parameters.
fn bind_endpoint<'q>(
    q: Query<'q, Sqlite, SqliteArguments<'q>>,
    ep: &'q Endpoint,
) -> Result<Query<'q, Sqlite, SqliteArguments<'q>>, Error> {
    Ok(q.bind(ep.id.as_str())
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
        .bind(ep.secret.as_stored())
        .bind(ep.previous_secret.as_ref().map(|p| p.secret.as_stored()))
        .bind(ep.previous_secret.as_ref().map(|p| p.until.ms())))
}

#[async_trait::async_trait]
impl Endpoints for SqliteStore {
    async fn create_endpoint(&self, ep: &Endpoint) -> Result<(), Error> {
        // Inserts only when the merchant exists, so an unknown one is `NotFound("merchant")` rather than
        // an anonymous foreign key failure.
        const CREATE: &str = "INSERT INTO endpoints (id, merchant_id, url, description, event_types, \
             signing_mode, success_policy, headers, rate_limit, label, enabled, disabled_reason, secret, \
             previous_secret, previous_secret_until, created_at, updated_at, ordering) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18 \
             WHERE EXISTS (SELECT 1 FROM merchants WHERE id = ?2)";

        self.db.tick(1);
        let done = bind_endpoint(sqlx::query(CREATE), ep)?
            .bind(ep.created_at.ms())
            .bind(ep.updated_at.ms())
            .bind(ep.ordering.to_stored()?)
            .execute(&mut *self.db.write().await?)
            .await
            .map_err(classify)?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound("merchant"));
        }
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
            " FROM endpoints WHERE id = ?1 AND merchant_id = ?2"
        );

        self.db.tick(1);
        let row: Option<EndpointRow> = sqlx::query_as(GET)
            .bind(id.as_str())
            .bind(merchant.as_str())
            .fetch_optional(&self.db.readers)
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
        // Ids are UUIDv7, so "newest first" is id order and the cursor is the last id returned.
        const LIST: &str = concat!(
            "SELECT ",
            endpoint_columns!(),
            " FROM endpoints WHERE merchant_id = ?1 AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3"
        );

        let (limit, fetch) = page_limit(limit);
        self.db.tick(1);
        let rows: Vec<EndpointRow> = sqlx::query_as(LIST)
            .bind(merchant.as_str())
            .bind(after.map(|c| c.0.as_str()))
            .bind(fetch)
            .fetch_all(&self.db.readers)
            .await
            .map_err(classify)?;
        let eps = rows
            .into_iter()
            .map(Endpoint::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(eps, limit, |e| e.id.to_string()))
    }

    async fn update_endpoint(&self, ep: &Endpoint) -> Result<(), Error> {
        const UPDATE: &str = "UPDATE endpoints SET url = ?3, description = ?4, event_types = ?5, \
             signing_mode = ?6, success_policy = ?7, headers = ?8, rate_limit = ?9, label = ?10, \
             enabled = ?11, disabled_reason = ?12, secret = ?13, previous_secret = ?14, \
             previous_secret_until = ?15, updated_at = ?16, \
             version = version + 1, ordering = ?17 WHERE id = ?1 AND merchant_id = ?2";

        self.db.tick(1);
        let done = bind_endpoint(sqlx::query(UPDATE), ep)?
            .bind(ep.updated_at.ms())
            .bind(ep.ordering.to_stored()?)
            .execute(&mut *self.db.write().await?)
            .await
            .map_err(classify)?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound("endpoint"));
        }
        Ok(())
    }

    async fn delete_endpoint(&self, merchant: &MerchantId, id: &EndpointId) -> Result<(), Error> {
        // Deliveries and attempts carry no foreign keys (see the migration), so they go explicitly,
        // through their endpoint indexes, in the same transaction.
        const DELETE_ATTEMPTS: &str = "DELETE FROM attempts WHERE endpoint_id = ?1";
        const DELETE_DELIVERIES: &str = "DELETE FROM deliveries WHERE endpoint_id = ?1";

        let mut tx = self.db.begin().await?;
        let result: Result<_, Error> = async {
            self.db.tick(1);
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
                self.db.tick(1);
                sqlx::query(sql)
                    .bind(id.as_str())
                    .execute(tx.conn())
                    .await
                    .map_err(classify)?;
            }
            Ok(())
        }
        .await;
        tx.end(&self.db, result).await
    }
}

const DELETE: &str = "DELETE FROM endpoints WHERE id = ?1 AND merchant_id = ?2";

const AT_VERSION: &str = concat!(
    "SELECT ",
    endpoint_columns!(),
    ", version FROM endpoints WHERE id IN (SELECT value FROM json_each(?1))"
);

/// Inside a writer-thread transaction: the endpoints `wanted` as `(id, version)` pairs, read in
/// the same transaction, from the cache when it holds exactly that version, else read (one
/// statement for all misses) and cached. An endpoint deleted meanwhile is simply absent.
pub(super) fn current(
    cx: &Cx,
    conn: &Connection,
    wanted: &[(&str, i64)],
) -> Result<HashMap<String, Arc<Endpoint>>, Error> {
    let mut found = HashMap::with_capacity(wanted.len());
    let mut missing = Vec::new();
    for &(id, version) in wanted {
        if found.contains_key(id) {
            continue;
        }
        match cx.endpoints.get(id, version) {
            Some(ep) => {
                found.insert(id.to_owned(), ep);
            }
            None => missing.push(id),
        }
    }
    if missing.is_empty() {
        return Ok(found);
    }
    missing.sort_unstable();
    missing.dedup();
    cx.tick(1);
    let mut stmt = conn.prepare_cached(AT_VERSION).map_err(classify_sqlite)?;
    let rows = stmt
        .query_map([json_list(missing)?], |r| {
            Ok((EndpointRow::from_rusqlite(r)?, r.get::<_, i64>(16)?))
        })
        .map_err(classify_sqlite)?;
    for row in rows {
        let (row, version) = row.map_err(classify_sqlite)?;
        let ep = Arc::new(Endpoint::try_from(row)?);
        cx.endpoints.put(version, ep.clone());
        found.insert(ep.id.as_str().to_owned(), ep);
    }
    Ok(found)
}
