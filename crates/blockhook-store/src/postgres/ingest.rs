//! Ingest: a batch of events and their fan-out in two round trips, whatever the batch size.
//!
//! 1. [`LOAD`] reads every merchant of the batch with its enabled endpoints (once per merchant,
//!    not per event), and the fan-out (which endpoint wants which event) is decided here in Rust,
//!    where delivery ids are generated like every other id.
//! 2. [`STORE`] is one statement, hence one transaction: it inserts the events (array-bound,
//!    `ON CONFLICT DO NOTHING` on the idempotency key), the deliveries of the events actually
//!    inserted, and issues the `pg_notify` that wakes other processes at commit.
//!
//! An idempotency key that already names a different event (another type, other payload bytes)
//! refuses the whole batch: repeats inside the batch are found here before any statement, and
//! repeats of committed events by [`STORE`] itself (its `clash` CTE keeps it from inserting
//! anything). Only a key committed by a concurrent ingest after the statement's snapshot is
//! found after the commit; a batch's other events are then stored (a single publish stores
//! nothing either way).
//!
//! A merchant suspended or an endpoint disabled between the two steps is treated as if the change
//! came just after the ingest, which is indistinguishable to anyone outside.

use std::collections::HashMap;

use blockhook_core::{DeliveryId, Error, EventId, Ingested, NewEvent};

use super::listen::CHANNEL;
use super::rows::{filter_matches, filter_types};
use super::store::PgStore;
use crate::classify;

#[derive(sqlx::FromRow)]
struct TargetRow {
    merchant_id: String,
    status: String,
    endpoint_id: Option<String>,
    event_types: Option<String>,
}

const LOAD: &str = "SELECT m.id AS merchant_id, m.status, e.id AS endpoint_id, e.event_types \
     FROM merchants m LEFT JOIN endpoints e ON e.merchant_id = m.id AND e.enabled \
     WHERE m.id = ANY($1) ORDER BY m.id, e.id";

#[derive(sqlx::FromRow)]
struct StoredRow {
    id: String,
    stored: bool,
    earlier_id: Option<String>,
    /// Whether `earlier_id`'s event has the same type and payload bytes.
    same: Option<bool>,
    deliveries: Option<i64>,
}

// `input` keeps the batch order (ORDINALITY), so within one batch the first use of a key wins.
// `fanned` only inserts deliveries of events `stored` really inserted (not idempotent repeats).
// `woke` notifies only when a delivery was created; it is referenced (scalar subquery) because
// an unreferenced plain CTE would not run. `earlier` finds the original of a repeated key among
// committed events; a repeat of a key used earlier in the same batch, or committed concurrently
// after this statement's snapshot, is resolved by the caller.
const STORE: &str = "WITH input AS ( \
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::int8[]) \
            WITH ORDINALITY AS i(id, merchant_id, event_type, payload, idempotency_key, created_at, ord) \
     ), clash AS ( \
        SELECT 1 FROM input i JOIN events e \
            ON e.merchant_id = i.merchant_id AND e.idempotency_key = i.idempotency_key \
        WHERE e.event_type <> i.event_type OR e.payload <> i.payload LIMIT 1 \
     ), stored AS ( \
        INSERT INTO events (id, merchant_id, event_type, payload, idempotency_key, created_at) \
        SELECT id, merchant_id, event_type, payload, idempotency_key, created_at FROM input \
        WHERE NOT EXISTS (SELECT 1 FROM clash) ORDER BY ord \
        ON CONFLICT (merchant_id, idempotency_key) DO NOTHING \
        RETURNING id \
     ), fanned AS ( \
        INSERT INTO deliveries (id, event_id, endpoint_id, merchant_id, state, origin, \
            next_attempt_at, created_at, updated_at) \
        SELECT d.id, d.event_id, d.endpoint_id, d.merchant_id, 'pending', 'initial', d.due, d.due, d.due \
        FROM unnest($7::text[], $8::text[], $9::text[], $10::text[], $11::int8[]) \
            AS d(id, event_id, endpoint_id, merchant_id, due) \
        WHERE d.event_id IN (SELECT id FROM stored) \
        RETURNING event_id \
     ), woke AS ( \
        SELECT pg_notify($12, current_schema()) FROM (SELECT 1 FROM fanned LIMIT 1) AS any_delivery \
     ) \
     SELECT i.id, s.id IS NOT NULL AS stored, earlier.id AS earlier_id, \
        (earlier.event_type = i.event_type AND earlier.payload = i.payload) AS same, \
        f.n AS deliveries, \
        (SELECT count(*) FROM woke) AS woke \
     FROM input i \
     LEFT JOIN stored s ON s.id = i.id \
     LEFT JOIN (SELECT event_id, count(*) AS n FROM fanned GROUP BY event_id) f ON f.event_id = i.id \
     LEFT JOIN events earlier \
        ON earlier.merchant_id = i.merchant_id AND earlier.idempotency_key = i.idempotency_key \
     ORDER BY i.ord";

/// Stores `events` and their deliveries; see the module doc.
pub(super) async fn ingest(db: &PgStore, events: &[NewEvent]) -> Result<Vec<Ingested>, Error> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(clash) = repeated_in_batch(events) {
        return Err(clash);
    }
    let mut merchants: Vec<&str> = events.iter().map(|e| e.merchant_id.as_str()).collect();
    merchants.sort_unstable();
    merchants.dedup();

    // One checkout for both statements: no transaction needs to span them.
    let mut conn = db.conn().await?;
    let rows: Vec<TargetRow> = sqlx::query_as(LOAD)
        .bind(&merchants)
        .fetch_all(db.on(&mut conn))
        .await
        .map_err(classify)?;
    let targets = targets_by_merchant(rows)?;

    let mut ev = EventArrays::with_capacity(events.len());
    let mut dl = DeliveryArrays::default();
    for e in events {
        let endpoints = targets
            .get(e.merchant_id.as_str())
            .ok_or(Error::NotFound("merchant"))?;
        ev.push(e);
        for t in endpoints {
            if filter_matches(&t.types, &e.event_type) {
                dl.push(e, &t.endpoint_id);
            }
        }
    }

    let rows: Vec<StoredRow> = sqlx::query_as(STORE)
        .bind(&ev.ids)
        .bind(&ev.merchants)
        .bind(&ev.types)
        .bind(&ev.payloads)
        .bind(&ev.keys)
        .bind(&ev.created)
        .bind(&dl.ids)
        .bind(&dl.events)
        .bind(&dl.endpoints)
        .bind(&dl.merchants)
        .bind(&dl.due)
        .bind(CHANNEL)
        .fetch_all(db.on(&mut conn))
        .await
        .map_err(store_error)?;
    drop(conn);
    resolve(db, events, rows).await
}

/// The first event whose key an earlier event of the same batch used for a different event.
fn repeated_in_batch(events: &[NewEvent]) -> Option<Error> {
    let mut first: HashMap<(&str, &str), &NewEvent> = HashMap::new();
    for (index, e) in events.iter().enumerate() {
        let Some(key) = &e.idempotency_key else {
            continue;
        };
        let slot = (e.merchant_id.as_str(), key.as_str());
        match first.get(&slot) {
            Some(f) if f.event_type != e.event_type || f.payload.bytes() != e.payload.bytes() => {
                return Some(Error::IdempotencyConflict {
                    key: key.as_str().to_owned(),
                    original: f.id.clone(),
                    index,
                });
            }
            Some(_) => {}
            None => {
                first.insert(slot, e);
            }
        }
    }
    None
}

/// An enabled endpoint an event may fan out to.
struct Target {
    endpoint_id: String,
    /// Its filter's event types (empty = every type).
    types: Vec<String>,
}

/// Each merchant's enabled endpoints, by merchant id.
type Targets = HashMap<String, Vec<Target>>;

/// Groups [`LOAD`]'s rows by merchant; refuses the batch if a merchant is suspended (an unknown
/// one is simply absent, and the caller answers `NotFound`).
fn targets_by_merchant(rows: Vec<TargetRow>) -> Result<Targets, Error> {
    let mut targets = Targets::new();
    for r in rows {
        if r.status != "active" {
            return Err(Error::Conflict(format!(
                "merchant {} is suspended",
                r.merchant_id
            )));
        }
        let endpoints = targets.entry(r.merchant_id).or_default();
        if let (Some(endpoint_id), Some(types)) = (r.endpoint_id, r.event_types) {
            endpoints.push(Target {
                endpoint_id,
                types: filter_types(&types)?,
            });
        }
    }
    Ok(targets)
}

/// The events of a batch as parallel arrays (bound once each, whatever the batch size).
struct EventArrays<'a> {
    ids: Vec<&'a str>,
    merchants: Vec<&'a str>,
    types: Vec<&'a str>,
    payloads: Vec<&'a [u8]>,
    keys: Vec<Option<&'a str>>,
    created: Vec<i64>,
}

impl<'a> EventArrays<'a> {
    fn with_capacity(n: usize) -> Self {
        Self {
            ids: Vec::with_capacity(n),
            merchants: Vec::with_capacity(n),
            types: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            keys: Vec::with_capacity(n),
            created: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, e: &'a NewEvent) {
        self.ids.push(e.id.as_str());
        self.merchants.push(e.merchant_id.as_str());
        self.types.push(e.event_type.as_str());
        self.payloads.push(e.payload.bytes().as_ref());
        self.keys
            .push(e.idempotency_key.as_ref().map(|k| k.as_str()));
        self.created.push(e.created_at.ms());
    }
}

/// The deliveries of a batch as parallel arrays.
#[derive(Default)]
struct DeliveryArrays<'a> {
    ids: Vec<String>,
    events: Vec<&'a str>,
    endpoints: Vec<&'a str>,
    merchants: Vec<&'a str>,
    due: Vec<i64>,
}

impl<'a> DeliveryArrays<'a> {
    fn push(&mut self, e: &'a NewEvent, endpoint_id: &'a str) {
        self.ids.push(DeliveryId::generate().to_string());
        self.events.push(e.id.as_str());
        self.endpoints.push(endpoint_id);
        self.merchants.push(e.merchant_id.as_str());
        // Due at once: at the event's own time.
        self.due.push(e.created_at.ms());
    }
}

/// A merchant deleted between the two statements is `NotFound`, like one that never existed; an
/// endpoint deleted in between makes the batch fail as a conflict the caller may retry.
fn store_error(e: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &e {
        if db.is_foreign_key_violation() {
            return if db.constraint().is_some_and(|c| c.starts_with("events_")) {
                Error::NotFound("merchant")
            } else {
                Error::Conflict("an endpoint was deleted during ingest; retry".to_owned())
            };
        }
        if db.is_unique_violation() {
            return Error::Conflict("event already exists".to_owned());
        }
    }
    classify(e)
}

#[derive(sqlx::FromRow)]
struct OriginalRow {
    id: String,
    merchant_id: String,
    idempotency_key: String,
    event_type: String,
    payload: Vec<u8>,
}

const ORIGINALS: &str = "SELECT id, merchant_id, idempotency_key, event_type, payload FROM events \
     WHERE (merchant_id, idempotency_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))";

/// Turns [`STORE`]'s rows into answers, finding the original event of each repeated key.
async fn resolve(
    db: &PgStore,
    events: &[NewEvent],
    rows: Vec<StoredRow>,
) -> Result<Vec<Ingested>, Error> {
    if rows.len() != events.len() {
        return Err(Error::Internal(format!(
            "ingest: {} answers for {} events",
            rows.len(),
            events.len()
        )));
    }
    // A key of a committed event that names another event: the statement stored nothing.
    for (index, (e, r)) in events.iter().zip(&rows).enumerate() {
        if let (Some(id), Some(false)) = (&r.earlier_id, r.same) {
            return Err(Error::IdempotencyConflict {
                key: e
                    .idempotency_key
                    .as_ref()
                    .map(|k| k.as_str().to_owned())
                    .unwrap_or_default(),
                original: EventId::from_trusted(id.clone()),
                index,
            });
        }
    }
    // Keys first used in this very batch: the statement's snapshot cannot see those rows.
    let mut in_batch: HashMap<(&str, &str), &str> = HashMap::new();
    for (e, r) in events.iter().zip(&rows) {
        if let (true, Some(k)) = (r.stored, &e.idempotency_key) {
            in_batch.insert((e.merchant_id.as_str(), k.as_str()), e.id.as_str());
        }
    }
    let mut out = Vec::with_capacity(events.len());
    let mut unresolved = Vec::new();
    for (i, (e, r)) in events.iter().zip(&rows).enumerate() {
        if r.id != e.id.as_str() {
            return Err(Error::Internal("ingest: answers out of order".to_owned()));
        }
        if r.stored {
            let deliveries = u32::try_from(r.deliveries.unwrap_or(0)).unwrap_or(u32::MAX);
            out.push(Ingested {
                event_id: e.id.clone(),
                duplicate: false,
                deliveries,
            });
            continue;
        }
        let key = e
            .idempotency_key
            .as_ref()
            .map(|k| k.as_str())
            .ok_or_else(|| {
                Error::Internal("ingest: an event without a key was not stored".to_owned())
            })?;
        let original = match (&r.earlier_id, in_batch.get(&(e.merchant_id.as_str(), key))) {
            (Some(id), _) => Some(EventId::from_trusted(id.clone())),
            (None, Some(id)) => Some(EventId::from_trusted((*id).to_owned())),
            (None, None) => None,
        };
        if original.is_none() {
            unresolved.push(i);
        }
        out.push(Ingested {
            event_id: original.unwrap_or_else(|| e.id.clone()),
            duplicate: true,
            deliveries: 0,
        });
    }
    if !unresolved.is_empty() {
        // A concurrent ingest committed the key after our snapshot: read it now (one more round
        // trip, only in that race).
        let merchants: Vec<&str> = unresolved
            .iter()
            .map(|&i| events[i].merchant_id.as_str())
            .collect();
        let keys: Vec<&str> = unresolved
            .iter()
            .filter_map(|&i| events[i].idempotency_key.as_ref().map(|k| k.as_str()))
            .collect();
        let found: Vec<OriginalRow> = sqlx::query_as(ORIGINALS)
            .bind(&merchants)
            .bind(&keys)
            .fetch_all(db.db())
            .await
            .map_err(classify)?;
        for &i in &unresolved {
            let e = &events[i];
            let key = e.idempotency_key.as_ref().map(|k| k.as_str());
            let hit = found
                .iter()
                .find(|f| {
                    f.merchant_id == e.merchant_id.as_str()
                        && Some(f.idempotency_key.as_str()) == key
                })
                .ok_or_else(|| {
                    Error::Internal("ingest: repeated key without an original".to_owned())
                })?;
            if hit.event_type != e.event_type.as_str() || hit.payload != e.payload.bytes().as_ref()
            {
                return Err(Error::IdempotencyConflict {
                    key: key.unwrap_or_default().to_owned(),
                    original: EventId::from_trusted(hit.id.clone()),
                    index: i,
                });
            }
            out[i].event_id = EventId::from_trusted(hit.id.clone());
        }
    }
    Ok(out)
}
