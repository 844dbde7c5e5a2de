//! Events: ingest (the write path every event takes), reading events back, the delivery and
//! attempt logs, and the per-endpoint views built from them (backlog, health). The [`Events`]
//! impl.

use std::collections::HashMap;

use blockhook_core::{
    AttemptRecord, Claim, ClaimRequest, DeadLetter, Delivery, DeliveryId, DeliveryOrigin,
    DeliveryState, EndpointActivity, EndpointBacklog, EndpointHealth, EndpointId, Error, Event,
    EventFilter, EventId, EventQuery, Events, Ingested, LeaseToken, MerchantId, NewEvent, Ordering,
    OrderingKey, Page, Timestamp,
};
use rusqlite::{Connection, params_from_iter};
use sqlx::{QueryBuilder, Sqlite};

use super::cache::CachedEvent;
use super::db::SqliteStore;
use super::rows::{
    AttemptRow, DeliveryRow, EventRow, MAX_ROWS, NextWhileLeased, count, filter_from_json,
    json_list, padded_chunks, page_limit, placeholders, to_u32,
};
use super::writer::{Batch, Bind, Cx, NULL, Stored, blob, int, text};
use crate::lease_plan::{LeasePlan, rest_of};
use crate::{classify, classify_sqlite};

// One statement answers for every merchant of the batch: whether it exists, its status, and its
// enabled endpoints with their filters (a merchant without endpoints comes back once with NULLs).
const TARGETS: &str = "SELECT m.id AS merchant_id, m.status, e.id AS endpoint_id, e.event_types, \
     e.ordering, e.version \
     FROM merchants m LEFT JOIN endpoints e ON e.merchant_id = m.id AND e.enabled = 1 \
     WHERE m.id IN (SELECT value FROM json_each(?1))";

// The batch's (merchant, key) pairs that are already taken, looked up through the unique index,
// with what the key's event is, so that a different event under the same key is refused.
const TAKEN_KEYS: &str = "SELECT e.merchant_id, e.idempotency_key, e.id, e.event_type, e.payload \
     FROM json_each(?1) AS j \
     JOIN events e ON e.merchant_id = j.value ->> 0 AND e.idempotency_key = j.value ->> 1";

/// A delivery about to be inserted.
pub(super) struct NewDelivery<'a> {
    pub(super) id: DeliveryId,
    pub(super) event_id: &'a str,
    pub(super) endpoint_id: &'a str,
    pub(super) merchant_id: &'a str,
    /// Due time and creation time.
    pub(super) at: Timestamp,
    /// The ordering key (ordered endpoints only); its sequence number is assigned at insert.
    pub(super) ordering_key: Option<OrderingKey>,
    /// Inserted leased, as a claim would leave it (the hand-off): the token, and when the lease
    /// expires (the delivery is due again then).
    pub(super) lease: Option<(LeaseToken, Timestamp)>,
}

/// After the commit of [`ingest_group`]: events with deliveries are about to be claimed, so
/// what a claim needs is kept at hand.
pub(super) fn remember_ingested(cx: &Cx, batches: &[Batch<'_>], results: &[Result<Stored, Error>]) {
    for (batch, result) in batches.iter().zip(results) {
        let Ok(stored) = result else { continue };
        let fresh = batch
            .events
            .iter()
            .zip(&stored.answers)
            .filter(|(_, d)| !d.duplicate && d.deliveries > 0);
        cx.events.put_all(fresh.map(|(ev, _)| {
            let cached = CachedEvent {
                event_type: ev.event_type.clone(),
                payload: ev.payload.clone(),
                created_at: ev.created_at,
            };
            (ev.id.as_str().to_owned(), cached)
        }));
    }
}

/// Stores several callers' batches inside the writer's transaction (see `writer`: they share
/// one commit) and answers each. A fixed number of statements (plus one per 256 rows): targets,
/// taken keys (only if any event has a key), events, deliveries. A batch naming an unknown or
/// suspended merchant fails alone before anything is written; an `Err` fails the whole
/// transaction, and the writer then retries each batch alone, so one bad batch cannot fail
/// others.
///
/// A hand-off's batch (`Batch::lease`) whose request says the dispatcher has room for any backlog
/// (`ClaimRequest::new_first`) has its unordered deliveries inserted already leased, as a claim
/// would leave them, within the request's limits (`LeasePlan`), and their claims built from the
/// events in hand: no claim statement, and no second write of the rows. What that leaves (ordered
/// deliveries, endpoints at their cap), or the whole request when it is not `new_first`, is the
/// batch's `rest`, claimed oldest due first by the work joining the transaction.
pub(super) fn ingest_group(
    cx: &Cx,
    conn: &Connection,
    batches: &[Batch<'_>],
) -> Result<Vec<Result<Stored, Error>>, Error> {
    let all = || batches.iter().flat_map(|b| b.events.iter());
    let mut merchants: Vec<&str> = all().map(|e| e.merchant_id.as_str()).collect();
    merchants.sort_unstable();
    merchants.dedup();

    // Merchant -> (active, its enabled endpoints with their filters, ordering and version).
    type Target = (String, EventFilter, Ordering, i64);
    let mut targets: HashMap<String, (bool, Vec<Target>)> = HashMap::new();
    cx.tick(1);
    {
        let mut stmt = conn.prepare_cached(TARGETS).map_err(classify_sqlite)?;
        let mut rows = stmt
            .query([json_list(merchants.iter().copied())?])
            .map_err(classify_sqlite)?;
        while let Some(r) = rows.next().map_err(classify_sqlite)? {
            let merchant_id: String = r.get(0).map_err(classify_sqlite)?;
            let status: String = r.get(1).map_err(classify_sqlite)?;
            let endpoint_id: Option<String> = r.get(2).map_err(classify_sqlite)?;
            let event_types: Option<String> = r.get(3).map_err(classify_sqlite)?;
            let ordering: Option<String> = r.get(4).map_err(classify_sqlite)?;
            let version: Option<i64> = r.get(5).map_err(classify_sqlite)?;
            let entry = targets
                .entry(merchant_id)
                .or_insert_with(|| (status == "active", Vec::new()));
            if let (Some(id), Some(types), Some(version)) = (endpoint_id, event_types, version) {
                let ordering = Ordering::from_stored(ordering.as_deref())?;
                entry
                    .1
                    .push((id, filter_from_json(&types)?, ordering, version));
            }
        }
    }
    // A batch naming an unknown or suspended merchant is refused whole, before any write.
    let verdicts: Vec<Result<(), Error>> = batches
        .iter()
        .map(|batch| {
            for ev in batch.events {
                match targets.get(ev.merchant_id.as_str()) {
                    None => return Err(Error::NotFound("merchant")),
                    Some((false, _)) => {
                        return Err(Error::Conflict(format!(
                            "merchant {} is suspended",
                            ev.merchant_id
                        )));
                    }
                    Some((true, _)) => {}
                }
            }
            Ok(())
        })
        .collect();
    let accepted = || {
        batches
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| v.is_ok())
            .flat_map(|(b, _)| b.events.iter())
    };

    // (merchant, key) -> the event that owns it: stored ones first, then the batches' own, in
    // order, so a key repeated by a later batch of the group answers like a later call would.
    let keyed: Vec<(&str, &str)> = accepted()
        .filter_map(|e| {
            e.idempotency_key
                .as_ref()
                .map(|k| (e.merchant_id.as_str(), k.as_str()))
        })
        .collect();
    let mut taken: Vec<(String, String, String, String, Vec<u8>)> = Vec::new();
    if !keyed.is_empty() {
        let pairs = serde_json::to_string(&keyed).map_err(|e| Error::Internal(e.to_string()))?;
        cx.tick(1);
        let mut stmt = conn.prepare_cached(TAKEN_KEYS).map_err(classify_sqlite)?;
        let rows = stmt
            .query_map([pairs], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(classify_sqlite)?;
        for row in rows {
            taken.push(row.map_err(classify_sqlite)?);
        }
    }
    // (merchant, key) -> (its event, that event's type and payload bytes).
    let mut owners: HashMap<(&str, &str), (EventId, &str, &[u8])> = HashMap::new();
    for (merchant_id, key, id, event_type, payload) in &taken {
        owners.insert(
            (merchant_id.as_str(), key.as_str()),
            (
                EventId::from_trusted(id.clone()),
                event_type.as_str(),
                payload.as_slice(),
            ),
        );
    }

    // The endpoints a lease at insert may hand, read in this transaction (from the endpoint
    // cache when it holds their current version): only those of the merchants of batches that
    // lease at insert, each merchant once.
    let mut leasing: Vec<&str> = batches
        .iter()
        .zip(&verdicts)
        .filter(|(b, v)| v.is_ok() && b.lease.is_some_and(|r| r.new_first))
        .flat_map(|(b, _)| b.events.iter().map(|ev| ev.merchant_id.as_str()))
        .collect();
    leasing.sort_unstable();
    leasing.dedup();
    let wanted: Vec<(&str, i64)> = leasing
        .iter()
        .filter_map(|m| targets.get(*m))
        .flat_map(|(_, eps)| eps.iter().map(|t| (t.0.as_str(), t.3)))
        .collect();
    let handed = match wanted.is_empty() {
        true => HashMap::new(),
        false => super::endpoints::current(cx, conn, &wanted)?,
    };

    let mut results = Vec::with_capacity(batches.len());
    let mut fresh: Vec<&NewEvent> = Vec::new();
    let mut deliveries: Vec<NewDelivery<'_>> = Vec::new();
    for (batch, verdict) in batches.iter().zip(verdicts) {
        if let Err(e) = verdict {
            results.push(Err(e));
            continue;
        }
        if let Some(clash) = idempotency_clash(batch.events, &owners) {
            results.push(Err(clash));
            continue;
        }
        let mut plan = batch.lease.filter(|r| r.new_first).map(LeasePlan::new);
        let first = deliveries.len();
        let mut answers = Vec::with_capacity(batch.events.len());
        for (index, ev) in batch.events.iter().enumerate() {
            if let Some(key) = &ev.idempotency_key {
                let slot = (ev.merchant_id.as_str(), key.as_str());
                if let Some((original, _, _)) = owners.get(&slot) {
                    answers.push(Ingested {
                        event_id: original.clone(),
                        duplicate: true,
                        deliveries: 0,
                    });
                    continue;
                }
                owners.insert(
                    slot,
                    (
                        ev.id.clone(),
                        ev.event_type.as_str(),
                        ev.payload.bytes().as_ref(),
                    ),
                );
            }
            let before = deliveries.len();
            let endpoints = targets
                .get(ev.merchant_id.as_str())
                .map(|(_, eps)| eps.as_slice());
            for (endpoint_id, filter, ordering, _) in endpoints.unwrap_or_default() {
                if !filter.matches(&ev.event_type) {
                    continue;
                }
                let ordering_key = ordering.key_for(ev.ordering_key.as_ref(), &ev.payload);
                let lease = match (&mut plan, handed.get(endpoint_id.as_str())) {
                    (Some(plan), Some(endpoint)) if ordering_key.is_none() => plan
                        .take(index, ev, endpoint, deliveries.len())
                        .then(|| (plan.token, plan.lease_until())),
                    _ => None,
                };
                deliveries.push(NewDelivery {
                    id: DeliveryId::generate(),
                    event_id: ev.id.as_str(),
                    endpoint_id,
                    merchant_id: ev.merchant_id.as_str(),
                    at: ev.created_at,
                    ordering_key,
                    lease,
                });
            }
            let made = u32::try_from(deliveries.len() - before).unwrap_or(u32::MAX);
            answers.push(Ingested {
                event_id: ev.id.clone(),
                duplicate: false,
                deliveries: made,
            });
            fresh.push(ev);
        }
        // Every event that fanned out is inserted: a repeat of a key made no deliveries.
        let claims = match plan {
            Some(plan) => plan.claims(batch.events, |n| deliveries[n].id.clone(), |_| true),
            None => Vec::new(),
        };
        let rest = match batch.lease {
            Some(request) if request.new_first => {
                (claims.len() < deliveries.len() - first).then(|| rest_of(request, &claims))
            }
            Some(request) => Some(request.clone()),
            None => None,
        };
        results.push(Ok(Stored {
            answers,
            claims,
            rest,
        }));
    }

    insert_events(cx, conn, &fresh)?;
    insert_search_keys(cx, conn, &fresh)?;
    insert_deliveries(cx, conn, &deliveries, DeliveryOrigin::Initial)?;
    Ok(results)
}

/// The first event of `batch` whose key already names a different event (stored, earlier in the
/// group, or earlier in this batch), as the error that refuses the whole batch.
fn idempotency_clash<'a>(
    batch: &'a [NewEvent],
    owners: &HashMap<(&'a str, &'a str), (EventId, &'a str, &'a [u8])>,
) -> Option<Error> {
    let mut own: HashMap<(&str, &str), (&EventId, &str, &[u8])> = HashMap::new();
    for (index, ev) in batch.iter().enumerate() {
        let Some(key) = &ev.idempotency_key else {
            continue;
        };
        let slot = (ev.merchant_id.as_str(), key.as_str());
        let owner = owners
            .get(&slot)
            .map(|(id, t, p)| (id, *t, *p))
            .or_else(|| own.get(&slot).copied());
        match owner {
            Some((id, t, p)) if t != ev.event_type.as_str() || p != ev.payload.bytes().as_ref() => {
                return Some(Error::IdempotencyConflict {
                    key: key.as_str().to_owned(),
                    original: id.clone(),
                    index,
                });
            }
            Some(_) => {}
            None => {
                own.insert(
                    slot,
                    (&ev.id, ev.event_type.as_str(), ev.payload.bytes().as_ref()),
                );
            }
        }
    }
    None
}

const INSERT_EVENTS: (&str, &str) = (
    "INSERT OR IGNORE INTO events (id, merchant_id, event_type, payload, idempotency_key, \
     created_at, ordering_key) SELECT * FROM (VALUES ",
    ") WHERE column1 IS NOT NULL",
);

/// Multi-row INSERT of events, one statement per 256 (see `rows::padded_chunks`). `OR IGNORE`
/// plus a row count check instead of failing mid-statement: a statement that cannot abort needs
/// no statement journal (see the migration's notes).
fn insert_events(cx: &Cx, conn: &Connection, events: &[&NewEvent]) -> Result<(), Error> {
    for (chunk, rows) in padded_chunks(events) {
        let sql = format!(
            "{}{}{}",
            INSERT_EVENTS.0,
            placeholders(rows, 7),
            INSERT_EVENTS.1
        );
        let mut values: Vec<Bind<'_>> = Vec::with_capacity(rows * 7);
        for ev in chunk {
            values.push(text(ev.id.as_str()));
            values.push(text(ev.merchant_id.as_str()));
            values.push(text(ev.event_type.as_str()));
            values.push(blob(ev.payload.bytes()));
            values.push(
                ev.idempotency_key
                    .as_ref()
                    .map_or(NULL, |k| text(k.as_str())),
            );
            values.push(int(ev.created_at.ms()));
            values.push(ev.ordering_key.as_ref().map_or(NULL, |k| text(k.as_str())));
        }
        values.resize(rows * 7, NULL);
        cx.tick(1);
        let done = conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.execute(params_from_iter(values)))
            .map_err(classify_sqlite)?;
        if done != chunk.len() {
            // OR IGNORE skipped a row: its id (or idempotency key) is taken. The caller rolls
            // the whole batch back.
            return Err(Error::Conflict(
                "an event with this id already exists".to_owned(),
            ));
        }
    }
    Ok(())
}

const INSERT_SEARCH_KEYS: (&str, &str) = (
    "INSERT OR IGNORE INTO event_search (merchant_id, field, value, event_id) \
     SELECT * FROM (VALUES ",
    ") WHERE column1 IS NOT NULL",
);

/// Multi-row INSERT of the events' search keys, one statement per 256 keys, none when no event
/// has one: the same transaction as the events, so an acknowledged event is findable.
fn insert_search_keys(cx: &Cx, conn: &Connection, events: &[&NewEvent]) -> Result<(), Error> {
    let keys: Vec<(&NewEvent, &blockhook_core::SearchKey)> = events
        .iter()
        .flat_map(|ev| ev.search_keys.iter().map(move |k| (*ev, k)))
        .collect();
    for (chunk, rows) in padded_chunks(&keys) {
        let sql = format!(
            "{}{}{}",
            INSERT_SEARCH_KEYS.0,
            placeholders(rows, 4),
            INSERT_SEARCH_KEYS.1
        );
        let mut values: Vec<Bind<'_>> = Vec::with_capacity(rows * 4);
        for (ev, k) in chunk {
            values.push(text(ev.merchant_id.as_str()));
            values.push(text(k.field.as_str()));
            values.push(text(k.value.as_str()));
            values.push(text(ev.id.as_str()));
        }
        values.resize(rows * 4, NULL);
        cx.tick(1);
        conn.prepare_cached(&sql)
            .and_then(|mut stmt| stmt.execute(params_from_iter(values)))
            .map_err(classify_sqlite)?;
    }
    Ok(())
}

// A leased row (`column9` token, `column10` expiry) is due again when its lease expires, as a
// claim leaves it.
const INSERT_DELIVERIES: (&str, &str) = (
    "INSERT OR IGNORE INTO deliveries (id, event_id, endpoint_id, merchant_id, state, origin, \
     next_attempt_at, created_at, updated_at, ordering_key, ordering_seq, lease_token, \
     lease_until) \
     SELECT column1, column2, column3, column4, 'pending', column5, coalesce(column10, column6), \
       column6, column6, column7, column8, column9, column10 \
     FROM (VALUES ",
    ") WHERE column1 IS NOT NULL",
);

// Takes `n` sequence numbers for each (endpoint, key) of a JSON list `[[endpoint, key, n], ...]`
// and returns the last one taken per pair. The caller's writer transaction serialises it.
const TAKE_SEQ: &str = "INSERT INTO ordering_counters (endpoint_id, ordering_key, last_seq) \
     SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1) WHERE true \
     ON CONFLICT (endpoint_id, ordering_key) DO UPDATE SET last_seq = last_seq + excluded.last_seq \
     RETURNING endpoint_id, ordering_key, last_seq";

/// The sequence numbers of the ordered ones among `deliveries`, in order (`None` for
/// unordered ones): each (endpoint, key) numbers its deliveries in the order given, after every
/// number it gave before. One statement, and none when nothing is ordered.
fn sequence(
    cx: &Cx,
    conn: &Connection,
    deliveries: &[NewDelivery<'_>],
) -> Result<Vec<Option<i64>>, Error> {
    let mut counts: HashMap<(&str, &str), i64> = HashMap::new();
    for d in deliveries {
        if let Some(key) = &d.ordering_key {
            *counts.entry((d.endpoint_id, key.as_str())).or_default() += 1;
        }
    }
    if counts.is_empty() {
        return Ok(vec![None; deliveries.len()]);
    }
    let list: Vec<(&str, &str, i64)> = counts.iter().map(|((e, k), n)| (*e, *k, *n)).collect();
    let list = serde_json::to_string(&list).map_err(|e| Error::Internal(e.to_string()))?;
    // (endpoint, key) -> the next number to give in this batch.
    let mut next: HashMap<(String, String), i64> = HashMap::with_capacity(counts.len());
    cx.tick(1);
    {
        let mut stmt = conn.prepare_cached(TAKE_SEQ).map_err(classify_sqlite)?;
        let mut rows = stmt.query([list]).map_err(classify_sqlite)?;
        while let Some(r) = rows.next().map_err(classify_sqlite)? {
            let endpoint: String = r.get(0).map_err(classify_sqlite)?;
            let key: String = r.get(1).map_err(classify_sqlite)?;
            let last: i64 = r.get(2).map_err(classify_sqlite)?;
            let n = counts
                .get(&(endpoint.as_str(), key.as_str()))
                .copied()
                .unwrap_or(0);
            next.insert((endpoint, key), last - n + 1);
        }
    }
    deliveries
        .iter()
        .map(|d| {
            let Some(key) = &d.ordering_key else {
                return Ok(None);
            };
            let slot = next
                .get_mut(&(d.endpoint_id.to_owned(), key.as_str().to_owned()))
                .ok_or_else(|| Error::Internal("no sequence number for an ordering key".into()))?;
            let seq = *slot;
            *slot += 1;
            Ok(Some(seq))
        })
        .collect()
}

/// Multi-row INSERT of pending deliveries, due at their creation time (or leased), one
/// statement per 256; ordered ones take their key's next sequence numbers first.
pub(super) fn insert_deliveries(
    cx: &Cx,
    conn: &Connection,
    deliveries: &[NewDelivery<'_>],
    origin: DeliveryOrigin,
) -> Result<(), Error> {
    let seqs = sequence(cx, conn, deliveries)?;
    for (n, (chunk, rows)) in padded_chunks(deliveries).enumerate() {
        let sql = format!(
            "{}{}{}",
            INSERT_DELIVERIES.0,
            placeholders(rows, 10),
            INSERT_DELIVERIES.1
        );
        let seqs = &seqs[n * MAX_ROWS..];
        let mut values: Vec<Bind<'_>> = Vec::with_capacity(rows * 10);
        for (d, seq) in chunk.iter().zip(seqs) {
            values.push(text(d.id.as_str()));
            values.push(text(d.event_id));
            values.push(text(d.endpoint_id));
            values.push(text(d.merchant_id));
            values.push(text(origin.as_str()));
            values.push(int(d.at.ms()));
            values.push(d.ordering_key.as_ref().map_or(NULL, |k| text(k.as_str())));
            values.push(seq.map_or(NULL, int));
            values.push(d.lease.map_or(NULL, |(token, _)| int(token.0)));
            values.push(d.lease.map_or(NULL, |(_, until)| int(until.ms())));
        }
        values.resize(rows * 10, NULL);
        cx.tick(1);
        let done = conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.execute(params_from_iter(values)))
            .map_err(classify_sqlite)?;
        if done != chunk.len() {
            return Err(Error::Conflict(
                "a delivery with this id already exists".to_owned(),
            ));
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Events for SqliteStore {
    async fn ingest(&self, events: &[NewEvent]) -> Result<Vec<Ingested>, Error> {
        Ok(self.db.thread.ingest(events, None, None).await?.0)
    }

    /// See [`SqliteStore::ingest_and_lease`].
    async fn ingest_and_claim(
        &self,
        events: &[NewEvent],
        lease: &ClaimRequest,
    ) -> Result<(Vec<Ingested>, Vec<Claim>), Error> {
        self.ingest_and_lease(events, lease).await
    }

    fn claims_within_ingest(&self) -> bool {
        true
    }

    async fn dead_letter(&self, letter: &DeadLetter) -> Result<bool, Error> {
        const DEAD_LETTER: &str = "INSERT INTO dead_letters (source, reference, reason, body, \
             created_at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (source, reference) DO NOTHING";

        self.db.tick(1);
        let done = sqlx::query(DEAD_LETTER)
            .bind(&letter.source)
            .bind(&letter.reference)
            .bind(&letter.reason)
            .bind(&letter.body)
            .bind(letter.at.ms())
            .execute(&mut *self.db.write().await?)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() == 1)
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, Error> {
        const DEAD_LETTERS: &str = "SELECT source, reference, reason, body, created_at \
             FROM dead_letters ORDER BY id DESC LIMIT ?1";

        self.db.tick(1);
        let rows: Vec<crate::rows::DeadLetterRow> = sqlx::query_as(DEAD_LETTERS)
            .bind(i64::from(limit.clamp(1, 1000)))
            .fetch_all(&self.db.readers)
            .await
            .map_err(classify)?;
        Ok(rows.into_iter().map(crate::rows::dead_letter).collect())
    }

    async fn get_event(&self, merchant: &MerchantId, id: &EventId) -> Result<Event, Error> {
        const GET: &str = concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE id = ?1 AND merchant_id = ?2"
        );

        self.db.tick(1);
        let row: Option<EventRow> = sqlx::query_as(GET)
            .bind(id.as_str())
            .bind(merchant.as_str())
            .fetch_optional(&self.db.readers)
            .await
            .map_err(classify)?;
        row.ok_or(Error::NotFound("event"))?.try_into()
    }

    /// Newest first (ids are UUIDv7), resuming strictly after (or before) the cursor id, so rows
    /// inserted while paging never shift a page. The SQL is assembled from the filters present,
    /// so each combination gets its own plan using `events_merchant` (or `event_search`'s key).
    async fn list_events(
        &self,
        merchant: &MerchantId,
        q: &EventQuery,
    ) -> Result<Page<Event>, Error> {
        let (limit, fetch) = page_limit(q.limit);
        let mut sql: QueryBuilder<'_, Sqlite> =
            QueryBuilder::new(concat!("SELECT ", event_columns!(), " FROM events"));
        push_event_filters(&mut sql, merchant, q);
        if let Some(after) = &q.after {
            sql.push(" AND id < ").push_bind(after.0.as_str());
        }
        let backwards = q.before.is_some();
        if let Some(before) = &q.before {
            // Backwards: the rows just newer than the cursor, oldest first, turned by the page.
            sql.push(" AND id > ").push_bind(before.0.as_str());
            sql.push(" ORDER BY id ASC LIMIT ").push_bind(fetch);
        } else {
            sql.push(" ORDER BY id DESC LIMIT ").push_bind(fetch);
        }
        self.db.tick(1);
        let rows: Vec<EventRow> = sql
            .build_query_as()
            .fetch_all(&self.db.readers)
            .await
            .map_err(classify)?;
        let events = rows
            .into_iter()
            .map(Event::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let from_cursor = q.after.is_some() || backwards;
        Ok(Page::both_ways(
            events,
            limit,
            from_cursor,
            backwards,
            |e| e.id.to_string(),
        ))
    }

    /// One statement, stopping at `cap + 1` rows.
    async fn count_events(
        &self,
        merchant: &MerchantId,
        q: &EventQuery,
        cap: u64,
    ) -> Result<u64, Error> {
        let mut sql: QueryBuilder<'_, Sqlite> =
            QueryBuilder::new("SELECT count(*) FROM (SELECT 1 FROM events");
        push_event_filters(&mut sql, merchant, q);
        sql.push(" LIMIT ")
            .push_bind(i64::try_from(cap.saturating_add(1)).unwrap_or(i64::MAX))
            .push(")");
        self.db.tick(1);
        let n: i64 = sql
            .build_query_scalar()
            .fetch_one(&self.db.readers)
            .await
            .map_err(classify)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// One statement when the event has deliveries; a second one tells "none" from "not yours".
    async fn list_deliveries(
        &self,
        merchant: &MerchantId,
        event: &EventId,
        now: Timestamp,
    ) -> Result<Vec<Delivery>, Error> {
        const EVENT_EXISTS: &str = "SELECT 1 FROM events WHERE id = ?1 AND merchant_id = ?2";
        const DELIVERIES_OF_EVENT: &str = concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM deliveries WHERE event_id = ?1 AND merchant_id = ?2 ORDER BY created_at, id"
        );

        self.db.tick(1);
        let rows: Vec<DeliveryRow> = sqlx::query_as(DELIVERIES_OF_EVENT)
            .bind(event.as_str())
            .bind(merchant.as_str())
            .fetch_all(&self.db.readers)
            .await
            .map_err(classify)?;
        if rows.is_empty() {
            self.db.tick(1);
            let exists = sqlx::query(EVENT_EXISTS)
                .bind(event.as_str())
                .bind(merchant.as_str())
                .fetch_optional(&self.db.readers)
                .await
                .map_err(classify)?;
            if exists.is_none() {
                return Err(Error::NotFound("event"));
            }
        }
        rows.into_iter()
            .map(|r| r.at(now, NextWhileLeased::LeaseExpiry))
            .collect()
    }

    async fn list_deliveries_of_events(
        &self,
        merchant: &MerchantId,
        events: &[EventId],
        now: Timestamp,
    ) -> Result<Vec<Delivery>, Error> {
        const DELIVERIES_OF_EVENTS: &str = concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM deliveries WHERE event_id IN (SELECT value FROM json_each(?1)) \
             AND merchant_id = ?2 ORDER BY event_id, created_at, id"
        );

        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.db.tick(1);
        let rows: Vec<DeliveryRow> = sqlx::query_as(DELIVERIES_OF_EVENTS)
            .bind(json_list(events.iter().map(EventId::as_str))?)
            .bind(merchant.as_str())
            .fetch_all(&self.db.readers)
            .await
            .map_err(classify)?;
        rows.into_iter()
            .map(|r| r.at(now, NextWhileLeased::LeaseExpiry))
            .collect()
    }

    async fn get_delivery(
        &self,
        merchant: &MerchantId,
        id: &DeliveryId,
        now: Timestamp,
    ) -> Result<Delivery, Error> {
        const GET_DELIVERY: &str = concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM deliveries WHERE id = ?1 AND merchant_id = ?2"
        );

        self.db.tick(1);
        let row: Option<DeliveryRow> = sqlx::query_as(GET_DELIVERY)
            .bind(id.as_str())
            .bind(merchant.as_str())
            .fetch_optional(&self.db.readers)
            .await
            .map_err(classify)?;
        row.ok_or(Error::NotFound("delivery"))?
            .at(now, NextWhileLeased::LeaseExpiry)
    }

    async fn list_attempts(
        &self,
        merchant: &MerchantId,
        delivery: &DeliveryId,
    ) -> Result<Vec<AttemptRecord>, Error> {
        const DELIVERY_EXISTS: &str = "SELECT 1 FROM deliveries WHERE id = ?1 AND merchant_id = ?2";
        const ATTEMPTS_OF_DELIVERY: &str = concat!(
            "SELECT ",
            attempt_columns!(),
            " FROM attempts WHERE delivery_id = ?1 \
             AND EXISTS (SELECT 1 FROM deliveries WHERE id = ?1 AND merchant_id = ?2) \
             ORDER BY number, started_at, id"
        );

        self.db.tick(1);
        let rows: Vec<AttemptRow> = sqlx::query_as(ATTEMPTS_OF_DELIVERY)
            .bind(delivery.as_str())
            .bind(merchant.as_str())
            .fetch_all(&self.db.readers)
            .await
            .map_err(classify)?;
        if rows.is_empty() {
            self.db.tick(1);
            let exists = sqlx::query(DELIVERY_EXISTS)
                .bind(delivery.as_str())
                .bind(merchant.as_str())
                .fetch_optional(&self.db.readers)
                .await
                .map_err(classify)?;
            if exists.is_none() {
                return Err(Error::NotFound("delivery"));
            }
        }
        rows.into_iter().map(AttemptRecord::try_from).collect()
    }

    async fn list_attempts_of_event(
        &self,
        merchant: &MerchantId,
        event: &EventId,
    ) -> Result<Vec<AttemptRecord>, Error> {
        // The event's deliveries through their event index, then each one's attempts.
        const ATTEMPTS_OF_EVENT: &str = concat!(
            "SELECT ",
            attempt_columns!(),
            " FROM attempts WHERE delivery_id IN \
             (SELECT id FROM deliveries WHERE event_id = ?1 AND merchant_id = ?2) \
             ORDER BY delivery_id, number, started_at, id"
        );

        self.db.tick(1);
        let rows: Vec<AttemptRow> = sqlx::query_as(ATTEMPTS_OF_EVENT)
            .bind(event.as_str())
            .bind(merchant.as_str())
            .fetch_all(&self.db.readers)
            .await
            .map_err(classify)?;
        rows.into_iter().map(AttemptRecord::try_from).collect()
    }

    async fn backlog(&self, merchant: &MerchantId) -> Result<Vec<EndpointBacklog>, Error> {
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

        self.db.tick(1);
        let rows: Vec<BacklogRow> = sqlx::query_as(BACKLOG)
            .bind(merchant.as_str())
            .fetch_all(&self.db.readers)
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

    async fn endpoint_health(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
        since: Timestamp,
    ) -> Result<EndpointHealth, Error> {
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

        self.db.tick(1);
        sqlx::query(ENDPOINT_EXISTS)
            .bind(endpoint.as_str())
            .bind(merchant.as_str())
            .fetch_optional(&self.db.readers)
            .await
            .map_err(classify)?
            .ok_or(Error::NotFound("endpoint"))?;
        self.db.tick(2);
        let ((attempts, succeeded), latencies) = futures::try_join!(
            sqlx::query_as::<_, (i64, i64)>(HEALTH_TOTALS)
                .bind(endpoint.as_str())
                .bind(since.ms())
                .fetch_one(&self.db.readers),
            sqlx::query_as::<_, (i64, i64)>(HEALTH_LATENCIES)
                .bind(endpoint.as_str())
                .bind(since.ms())
                .fetch_all(&self.db.readers),
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

    async fn endpoints_health(
        &self,
        merchant: &MerchantId,
        endpoints: &[EndpointId],
        since: Timestamp,
    ) -> Result<Vec<(EndpointId, EndpointHealth)>, Error> {
        // Every asked endpoint of the merchant, with its totals (zero without attempts: the
        // outer join keeps it, and only joined rows are counted).
        const HEALTH_TOTALS_OF: &str = "SELECT e.id, COUNT(a.id), \
               COALESCE(SUM(a.id IS NOT NULL AND a.error IS NULL), 0) \
             FROM endpoints e LEFT JOIN attempts a ON a.endpoint_id = e.id AND a.started_at >= ?3 \
             WHERE e.merchant_id = ?2 AND e.id IN (SELECT value FROM json_each(?1)) \
             GROUP BY e.id";
        // The most recent 10,000 of each endpoint, returned oldest first.
        const HEALTH_LATENCIES_OF: &str = "SELECT endpoint_id, started_at, latency_ms FROM ( \
               SELECT a.endpoint_id, a.started_at, a.latency_ms, a.id, ROW_NUMBER() OVER ( \
                 PARTITION BY a.endpoint_id ORDER BY a.started_at DESC, a.id DESC) AS n \
               FROM endpoints e JOIN attempts a ON a.endpoint_id = e.id \
               WHERE e.merchant_id = ?2 AND e.id IN (SELECT value FROM json_each(?1)) \
                 AND a.started_at >= ?3) \
             WHERE n <= 10000 ORDER BY endpoint_id, started_at, id";

        if endpoints.is_empty() {
            return Ok(Vec::new());
        }
        let ids = json_list(endpoints.iter().map(EndpointId::as_str))?;
        self.db.tick(2);
        let (totals, latencies) = futures::try_join!(
            sqlx::query_as::<_, (String, i64, i64)>(HEALTH_TOTALS_OF)
                .bind(&ids)
                .bind(merchant.as_str())
                .bind(since.ms())
                .fetch_all(&self.db.readers),
            sqlx::query_as::<_, (String, i64, i64)>(HEALTH_LATENCIES_OF)
                .bind(&ids)
                .bind(merchant.as_str())
                .bind(since.ms())
                .fetch_all(&self.db.readers),
        )
        .map_err(classify)?;
        health_in_order(endpoints, totals, latencies)
    }

    async fn endpoint_activity(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
        since: Timestamp,
        now: Timestamp,
        recent: u32,
    ) -> Result<EndpointActivity, Error> {
        self.activity(merchant, endpoint, since, now, recent).await
    }
}

#[derive(sqlx::FromRow)]
struct BacklogRow {
    endpoint_id: String,
    pending: i64,
    failed: i64,
    oldest: Option<i64>,
}

/// Per-endpoint health from the rows of a batch read: `totals` as (endpoint, attempts,
/// succeeded) for every endpoint found, `latencies` as (endpoint, started, ms) oldest first
/// within an endpoint; answered in the order `asked`, each endpoint once.
fn health_in_order(
    asked: &[EndpointId],
    totals: Vec<(String, i64, i64)>,
    latencies: Vec<(String, i64, i64)>,
) -> Result<Vec<(EndpointId, EndpointHealth)>, Error> {
    let mut found: HashMap<String, EndpointHealth> = totals
        .into_iter()
        .map(|(id, attempts, succeeded)| {
            let health = EndpointHealth {
                attempts: count(attempts),
                succeeded: count(succeeded),
                latencies: Vec::new(),
            };
            (id, health)
        })
        .collect();
    for (id, at, ms) in latencies {
        if let Some(health) = found.get_mut(&id) {
            health
                .latencies
                .push((Timestamp::from_ms(at), to_u32(ms, "latency")?));
        }
    }
    Ok(asked
        .iter()
        .filter_map(|id| found.remove(id.as_str()).map(|h| (id.clone(), h)))
        .collect())
}

/// The `WHERE` of an event listing or count: the merchant and every filter of `q` present
/// (cursors and limit are the caller's).
fn push_event_filters<'a>(
    sql: &mut QueryBuilder<'a, Sqlite>,
    merchant: &'a MerchantId,
    q: &'a EventQuery,
) {
    sql.push(" WHERE merchant_id = ")
        .push_bind(merchant.as_str());
    if let Some(id) = &q.event_id {
        sql.push(" AND id = ").push_bind(id.as_str());
    }
    if let Some(key) = &q.key {
        // The index lookup: the merchant's events stored with this (field, value).
        sql.push(" AND id IN (SELECT event_id FROM event_search WHERE merchant_id = ")
            .push_bind(merchant.as_str())
            .push(" AND field = ")
            .push_bind(key.field.as_str())
            .push(" AND value = ")
            .push_bind(key.value.as_str())
            .push(")");
    }
    if let Some(t) = &q.event_type {
        // Event types are ASCII, so NOCASE is exactly the contract's case-insensitive compare.
        sql.push(" AND event_type = ")
            .push_bind(t.as_str())
            .push(" COLLATE NOCASE");
    }
    if let Some(since) = q.since {
        sql.push(" AND created_at >= ").push_bind(since.ms());
    }
    if let Some(until) = q.until {
        sql.push(" AND created_at < ").push_bind(until.ms());
    }
    if q.state.is_some() || q.endpoint.is_some() {
        // One delivery must match both: "a failed delivery to this endpoint". No clock here:
        // "in flight" is a pending delivery holding a lease token (finish and recovery clear
        // it); "pending" is any undelivered one, leased or not.
        sql.push(" AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id");
        if let Some(state) = q.state {
            let cond = match state {
                DeliveryState::Pending => " AND d.state = 'pending'",
                DeliveryState::InFlight => " AND d.state = 'pending' AND d.lease_token IS NOT NULL",
                DeliveryState::Succeeded => " AND d.state = 'succeeded'",
                DeliveryState::Failed => " AND d.state = 'failed'",
            };
            sql.push(cond);
        }
        if let Some(endpoint) = &q.endpoint {
            sql.push(" AND d.endpoint_id = ")
                .push_bind(endpoint.as_str());
        }
        sql.push(")");
    }
}
