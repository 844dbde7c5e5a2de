//! Events: the [`Events`] impl.
//!
//! Ingest: a batch of events and their fan-out in one round trip, whatever the batch size, once
//! the batch's merchants are known to the process.
//!
//! 1. The fan-out targets of every merchant of the batch (its enabled endpoints) come from the
//!    process's cache (`targets`), or from `LOAD` for a merchant it has not seen lately. The
//!    fan-out (which endpoint wants which event) is decided here in Rust, where delivery ids are
//!    generated like every other id.
//! 2. `STORE` is one statement, hence one transaction (composed with only the parts the batch
//!    needs, see `StoreShape`): it inserts the events (array-bound,
//!    `ON CONFLICT DO NOTHING` on the idempotency key), the deliveries of the events actually
//!    inserted, and issues the `pg_notify` that wakes other processes at commit. It stores
//!    nothing if a cached merchant's `targets_revision` moved since it was read (another process
//!    or an operator changed its status or endpoints); the targets are then read again and the
//!    batch stored with them.
//!
//! An idempotency key that already names a different event (another type, other payload bytes)
//! refuses the whole batch: repeats inside the batch are found here before any statement, and
//! repeats of committed events by `STORE` itself (its `clash` CTE keeps it from inserting
//! anything). Only a key committed by a concurrent ingest after the statement's snapshot is
//! found after the commit; a batch's other events are then stored (a single publish stores
//! nothing either way).
//!
//! The hand-off (`ingest_and_claim`) is the same ingest without its `NOTIFY`, whose `STORE` inserts
//! the batch's unordered deliveries already leased (built into claims from the endpoints the
//! targets hold whole); a claim statement follows only for what that left due. See its doc and
//! "The hand-off on PostgreSQL" in docs/decisions.md.
//!
//! A merchant suspended or an endpoint disabled after `STORE`'s snapshot (or, for a merchant read
//! fresh, after `LOAD`'s) is treated as if the change came just after the ingest, which is
//! indistinguishable to anyone outside.
//!
//! Reading what happened: events, their deliveries and attempts, and the per-endpoint views
//! (backlog, health). Every query is scoped by merchant; another merchant's ids read exactly like
//! unknown ones.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use blockhook_core::{
    AttemptRecord, Claim, ClaimRequest, DeadLetter, Delivery, DeliveryId, DeliveryState,
    EndpointActivity, EndpointBacklog, EndpointHealth, EndpointId, Error, Event, EventId,
    EventQuery, Events, Ingested, MerchantId, NewEvent, OrderingKey, Page, Queue, Timestamp,
};

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::db::{PgStore, overfetch};
use super::listen::CHANNEL;
use super::rows::{
    AttemptRow, DeliveryRow, EventRow, NextWhileLeased, count, filter_matches, to_u32,
};
use super::targets::{self, MerchantTargets};
use crate::classify;
use crate::lease_plan::{LeasePlan, rest_of};

/// The fan-out targets of a batch's merchants, by merchant id (borrowed from the batch).
type ByMerchant<'e> = HashMap<&'e str, Arc<MerchantTargets>>;

#[derive(sqlx::FromRow)]
struct StoredRow {
    id: String,
    stored: bool,
    earlier_id: Option<String>,
    /// Whether `earlier_id`'s event has the same type and payload bytes.
    same: Option<bool>,
    deliveries: Option<i64>,
    /// A revision given in `$25` is no longer its merchant's: nothing was stored.
    stale: bool,
}

// `input` keeps the batch order (ORDINALITY), so within one batch the first use of a key wins.
// `fanned` only inserts deliveries of events `stored` really inserted (not idempotent repeats).
// `woke` notifies only when a delivery was created; it is referenced (scalar subquery) because
// an unreferenced plain CTE would not run. `earlier` finds the original of a repeated key among
// committed events; a repeat of a key used earlier in the same batch, or committed concurrently
// after this statement's snapshot, is resolved by the caller. `clash` and `earlier` look keys up
// through LATERAL subqueries with LIMIT 1, which PostgreSQL can only run as index probes of
// `events_idempotency`: as plain joins they were planned as hash joins over a sequential scan of
// `events` while the table's statistics were young (measured: one scan of the whole table per
// ingest until autovacuum's first analyze, BENCHMARKS.md).
//
// Ordered deliveries (`$14` key, `$15` rank: 1, 2, ... per (endpoint, key) in batch order; NULL for
// unordered ones): `wanted` counts the numbers each key needs, `counted` takes them from the key's
// counter row (`ON CONFLICT DO UPDATE` row-locks it until commit, so concurrent ingests of one key
// serialise there, in a fixed lock order, and commit in the order of their numbers), and each
// delivery's number is the counter's value before the batch plus its rank. Idempotent repeats
// leave gaps, which order nothing differently.
//
// `woke` runs only with `$20`: an ingest that hands its deliveries to its own dispatcher wakes other
// processes itself, and only for what it did not take (`ingest_and_claim`).
//
// `stale` keeps the statement from storing anything when a merchant's `targets_revision` is no
// longer the one its fan-out was decided with (`$24` merchants, `$25` revisions: the targets
// came from the process's cache, see `targets`); a merchant deleted since counts as changed.
//
// A delivery flagged in `$21` is inserted leased, as a claim would leave it: token `$22`, due
// again when the lease `$23` expires. Only the hand-off flags any, and only unordered ones.
//
// `searched` stores the search keys (`$16`..`$19`) of the events `stored` inserted; a
// data-modifying CTE runs to completion whether or not it is referenced.
//
// Decision: the statement comes in eight shapes (`StoreShape`), with the idempotency parts
// (`clash`, `earlier`) only when the batch carries a key, the ordering parts (`wanted`,
// `counted` and their joins) only when it has an ordered delivery, and `woke` only when it
// notifies. Without them, they found or did nothing, but PostgreSQL still set up their plan
// nodes for every execution (executor start-up was a fifth of its CPU per everyday event),
// opened `ordering_counters` and its index, and probed `events_idempotency` twice per event
// (BENCHMARKS.md, "A leaner ingest statement on PostgreSQL"). Every shape takes the same
// parameters, so the code that fills them is one: a shape without `woke` still names `$12` and
// `$20`, in a column nobody reads, because PostgreSQL must infer every parameter's type.

/// Which optional parts of `STORE` a batch needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StoreShape {
    /// Some event carries an idempotency key: look for earlier uses of it.
    keys: bool,
    /// Some delivery is ordered: number it from its key's counter.
    ordered: bool,
    /// Other processes are woken (`NOTIFY`) when a delivery was created.
    notify: bool,
}

impl StoreShape {
    /// How many shapes there are.
    const COUNT: usize = 8;

    /// Shape number `i` (below [`Self::COUNT`]): its parts are the bits of `i`.
    fn nth(i: usize) -> Self {
        Self {
            keys: i & 1 != 0,
            ordered: i & 2 != 0,
            notify: i & 4 != 0,
        }
    }

    /// This shape's number: the inverse of [`Self::nth`].
    fn index(self) -> usize {
        usize::from(self.keys) | usize::from(self.ordered) << 1 | usize::from(self.notify) << 2
    }

    /// The statement of this shape, composed once per process.
    fn sql(self) -> &'static str {
        static SHAPES: std::sync::LazyLock<[String; StoreShape::COUNT]> =
            std::sync::LazyLock::new(|| std::array::from_fn(|i| store_sql(StoreShape::nth(i))));
        &SHAPES[self.index()]
    }
}

/// Composes `STORE` for `shape` (see the comment above `StoreShape`).
fn store_sql(shape: StoreShape) -> String {
    let clash = if shape.keys {
        "clash AS ( \
            SELECT 1 FROM input i CROSS JOIN LATERAL ( \
                SELECT e.event_type, e.payload FROM events e \
                WHERE e.merchant_id = i.merchant_id AND e.idempotency_key = i.idempotency_key \
                LIMIT 1 \
            ) e \
            WHERE e.event_type <> i.event_type OR e.payload <> i.payload LIMIT 1 \
         ), "
    } else {
        ""
    };
    let no_clash = if shape.keys {
        "NOT EXISTS (SELECT 1 FROM clash) AND "
    } else {
        ""
    };
    let counters = if shape.ordered {
        "wanted AS ( \
            SELECT endpoint_id, ordering_key, max(rank) AS taken FROM dl \
            WHERE ordering_key IS NOT NULL GROUP BY endpoint_id, ordering_key \
         ), counted AS ( \
            INSERT INTO ordering_counters (endpoint_id, ordering_key, last_seq) \
            SELECT endpoint_id, ordering_key, taken FROM wanted ORDER BY endpoint_id, ordering_key \
            ON CONFLICT (endpoint_id, ordering_key) \
                DO UPDATE SET last_seq = ordering_counters.last_seq + EXCLUDED.last_seq \
            RETURNING endpoint_id, ordering_key, last_seq \
         ), "
    } else {
        ""
    };
    let (seq, numbered) = if shape.ordered {
        (
            "c.last_seq - w.taken + d.rank",
            "LEFT JOIN wanted w ON w.endpoint_id = d.endpoint_id AND w.ordering_key = d.ordering_key \
             LEFT JOIN counted c ON c.endpoint_id = d.endpoint_id AND c.ordering_key = d.ordering_key ",
        )
    } else {
        ("NULL::int8", "")
    };
    let (woke, woke_column) = if shape.notify {
        (
            ", woke AS ( \
                SELECT pg_notify($12, current_schema()) \
                FROM (SELECT 1 FROM fanned LIMIT 1) AS any_delivery \
                WHERE $20::bool \
             ) ",
            "(SELECT count(*) FROM woke)",
        )
    } else {
        (" ", "CASE WHEN $20::bool THEN $12::text END")
    };
    let (earlier, earlier_join) = if shape.keys {
        (
            "earlier.id AS earlier_id, \
             (earlier.event_type = i.event_type AND earlier.payload = i.payload) AS same, ",
            "LEFT JOIN LATERAL ( \
                SELECT e.id, e.event_type, e.payload FROM events e \
                WHERE e.merchant_id = i.merchant_id AND e.idempotency_key = i.idempotency_key \
                LIMIT 1 \
             ) earlier ON true ",
        )
    } else {
        ("NULL::text AS earlier_id, NULL::bool AS same, ", "")
    };
    format!(
        "WITH input AS ( \
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[], \
                $6::int8[], $13::text[]) \
                WITH ORDINALITY AS i(id, merchant_id, event_type, payload, idempotency_key, \
                    created_at, ordering_key, ord) \
         ), {clash}stale AS ( \
            SELECT 1 FROM unnest($24::text[], $25::int8[]) AS c(id, revision) \
            LEFT JOIN merchants m ON m.id = c.id \
            WHERE m.targets_revision IS DISTINCT FROM c.revision LIMIT 1 \
         ), stored AS ( \
            INSERT INTO events (id, merchant_id, event_type, payload, idempotency_key, created_at, \
                ordering_key) \
            SELECT id, merchant_id, event_type, payload, idempotency_key, created_at, ordering_key \
            FROM input \
            WHERE {no_clash}NOT EXISTS (SELECT 1 FROM stale) ORDER BY ord \
            ON CONFLICT (merchant_id, idempotency_key) DO NOTHING \
            RETURNING id \
         ), dl AS ( \
            SELECT * FROM unnest($7::text[], $8::text[], $9::text[], $10::text[], $11::int8[], \
                $14::text[], $15::int8[], $21::bool[]) \
                AS d(id, event_id, endpoint_id, merchant_id, due, ordering_key, rank, leased) \
            WHERE d.event_id IN (SELECT id FROM stored) \
         ), {counters}fanned AS ( \
            INSERT INTO deliveries (id, event_id, endpoint_id, merchant_id, state, origin, \
                next_attempt_at, created_at, updated_at, ordering_key, ordering_seq, lease_token, \
                lease_until) \
            SELECT d.id, d.event_id, d.endpoint_id, d.merchant_id, 'pending', 'initial', \
                CASE WHEN d.leased THEN $23::int8 ELSE d.due END, d.due, d.due, \
                d.ordering_key, {seq}, \
                CASE WHEN d.leased THEN $22::int8 END, CASE WHEN d.leased THEN $23::int8 END \
            FROM dl d {numbered}\
            RETURNING event_id \
         ), searched AS ( \
            INSERT INTO event_search (merchant_id, field, value, event_id) \
            SELECT k.merchant_id, k.field, k.value, k.event_id \
            FROM unnest($16::text[], $17::text[], $18::text[], $19::text[]) \
                AS k(merchant_id, field, value, event_id) \
            WHERE k.event_id IN (SELECT id FROM stored) \
            ON CONFLICT DO NOTHING \
         ){woke}\
         SELECT i.id, s.id IS NOT NULL AS stored, {earlier}\
            f.n AS deliveries, \
            {woke_column} AS woke, EXISTS (SELECT 1 FROM stale) AS stale \
         FROM input i \
         LEFT JOIN stored s ON s.id = i.id \
         LEFT JOIN (SELECT event_id, count(*) AS n FROM fanned GROUP BY event_id) f \
            ON f.event_id = i.id \
         {earlier_join}\
         ORDER BY i.ord"
    )
}

impl PgStore {
    /// `ingest`, notifying other processes of the new deliveries at commit or not (`notify`),
    /// and with `lease`, inserting the deliveries that request may take already leased: the
    /// batch's unordered deliveries due by its time, in batch order, at most its `max` and its
    /// `per_endpoint_max`, none to an excluded endpoint. Returns their claims beside the answers.
    async fn store_events(
        &self,
        events: &[NewEvent],
        notify: bool,
        lease: Option<&ClaimRequest>,
    ) -> Result<(Vec<Ingested>, Vec<Claim>), Error> {
        if events.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        if let Some(clash) = repeated_in_batch(events) {
            return Err(clash);
        }
        let mut merchants: Vec<&str> = events.iter().map(|e| e.merchant_id.as_str()).collect();
        merchants.sort_unstable();
        merchants.dedup();

        // One checkout for every statement: no transaction needs to span them.
        let mut conn = self.warm().await?;
        let mut targets = ByMerchant::new();
        // Only what came from the cache needs its revision checked; a fresh read is as good as
        // the `LOAD` every ingest used to make.
        let mut checked = Vec::new();
        let mut unknown = Vec::new();
        for m in &merchants {
            match self.targets.get(m) {
                Some(cached) => {
                    checked.push((*m, cached.revision));
                    targets.insert(m, cached);
                }
                None => unknown.push(*m),
            }
        }
        if !unknown.is_empty() {
            self.load_targets(&mut conn, &unknown, &mut targets).await?;
        }
        let stored = match self
            .fan_out_and_store(&mut conn, events, &targets, &checked, notify, lease)
            .await?
        {
            Some(stored) => stored,
            None => {
                // A cached merchant changed since it was read: read them all again.
                self.targets.forget(merchants.iter().copied());
                let mut targets = ByMerchant::new();
                self.load_targets(&mut conn, &merchants, &mut targets)
                    .await?;
                self.fan_out_and_store(&mut conn, events, &targets, &[], notify, lease)
                    .await?
                    .ok_or_else(|| Error::Internal("ingest: fresh targets found stale".into()))?
            }
        };
        conn.keep();
        let Stored {
            rows,
            deliveries,
            plan,
        } = stored;
        // Only an event `STORE` really inserted has deliveries, leased or not. Should `resolve`
        // fail after this commit, the leased deliveries are not handed: they wait out their
        // lease and are claimed then, late but not lost.
        let inserted: Vec<bool> = rows.iter().map(|r| r.stored).collect();
        let ingested = resolve(self, events, rows).await?;
        let claims = match plan {
            Some(plan) => plan.claims(
                events,
                |n| DeliveryId::from_trusted(deliveries[n].clone()),
                |i| inserted.get(i).copied().unwrap_or(false),
            ),
            None => Vec::new(),
        };
        Ok((ingested, claims))
    }

    /// Reads the targets of `merchants` (`LOAD`) into `into`, and keeps them for the next
    /// ingests. A merchant that does not exist is left out.
    async fn load_targets<'e>(
        &self,
        conn: &mut PgConnection,
        merchants: &[&'e str],
        into: &mut ByMerchant<'e>,
    ) -> Result<(), Error> {
        let rows: Vec<PgRow> = sqlx::query(targets::LOAD)
            .bind(merchants)
            .fetch_all(self.on(conn))
            .await
            .map_err(classify)?;
        let read = targets::from_rows(&rows)?;
        self.targets.put(&read);
        for m in merchants {
            if let Some(t) = read.get(*m) {
                into.insert(m, t.clone());
            }
        }
        Ok(())
    }

    /// Fans `events` out to `targets` and runs `STORE`; `None` if a revision in `checked` was
    /// stale, in which case nothing was stored.
    async fn fan_out_and_store<'r>(
        &self,
        conn: &mut PgConnection,
        events: &[NewEvent],
        targets: &ByMerchant<'_>,
        checked: &[(&str, i64)],
        notify: bool,
        lease: Option<&'r ClaimRequest>,
    ) -> Result<Option<Stored<'r>>, Error> {
        let mut ev = EventArrays::with_capacity(events.len());
        let mut dl = DeliveryArrays::default();
        let mut plan = lease.map(LeasePlan::new);
        for (index, e) in events.iter().enumerate() {
            let merchant = targets
                .get(e.merchant_id.as_str())
                .ok_or(Error::NotFound("merchant"))?;
            ev.push(e);
            for t in &merchant.endpoints {
                if filter_matches(&t.types, &e.event_type) {
                    let key = t.ordering.key_for(e.ordering_key.as_ref(), &e.payload);
                    let leased = match (&mut plan, &t.endpoint) {
                        (Some(plan), Some(endpoint)) if key.is_none() => {
                            plan.take(index, e, endpoint, dl.ids.len())
                        }
                        _ => false,
                    };
                    dl.push(e, &t.endpoint_id, key, leased);
                }
            }
        }

        let dl_keys: Vec<Option<&str>> = dl
            .ordering_keys
            .iter()
            .map(|k| k.as_ref().map(OrderingKey::as_str))
            .collect();
        let (checked_ids, revisions): (Vec<&str>, Vec<i64>) = checked.iter().copied().unzip();
        let shape = StoreShape {
            keys: ev.keys.iter().any(Option::is_some),
            ordered: dl.ranks.iter().any(Option::is_some),
            notify,
        };
        let rows: Vec<StoredRow> = sqlx::query_as(shape.sql())
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
            .bind(&ev.ordering_keys)
            .bind(&dl_keys)
            .bind(&dl.ranks)
            .bind(&ev.search[0])
            .bind(&ev.search[1])
            .bind(&ev.search[2])
            .bind(&ev.search[3])
            .bind(notify)
            .bind(&dl.leased)
            .bind(plan.as_ref().map(|p| p.token.0))
            .bind(lease.map(|r| r.lease_until.ms()))
            .bind(&checked_ids)
            .bind(&revisions)
            .fetch_all(self.on(conn))
            .await
            .map_err(store_error)?;
        if rows.iter().any(|r| r.stale) {
            return Ok(None);
        }
        Ok(Some(Stored {
            rows,
            deliveries: dl.ids,
            plan,
        }))
    }

    /// Wakes every process's dispatcher (`LISTEN`), best effort: a process not woken finds the
    /// deliveries at its next look at the queue.
    async fn announce_due(&self) {
        const ANNOUNCE: &str = "SELECT pg_notify($1, current_schema())";
        if let Err(e) = sqlx::query(ANNOUNCE).bind(CHANNEL).execute(self.db()).await {
            tracing::warn!(error = %e, "could not announce due deliveries");
        }
    }
}

#[async_trait::async_trait]
impl Events for PgStore {
    /// Stores `events` and their deliveries; see the module doc.
    async fn ingest(&self, events: &[NewEvent]) -> Result<Vec<Ingested>, Error> {
        Ok(self.store_events(events, true, None).await?.0)
    }

    /// The hand-off on this backend: `STORE` without its notification, inserting the batch's
    /// unordered deliveries already leased under `lease` (due by its time, in batch order, within
    /// its caps and exclusions), so an everyday event costs one statement before its first
    /// attempt (its merchant's targets are cached). What that left due (ordered deliveries,
    /// whose place in their key's queue only a claim can judge; endpoints at their cap; more
    /// than `max`) is offered to a claim with the rest of the request, and announced to every
    /// process if still left.
    ///
    /// Unlike a claim, the insert does not look at older due deliveries first: they are the
    /// dispatcher loop's, which claims them at their due time. The hand-off is only asked with
    /// `lease.new_first` (see `Handoff`), when no backlog waits for it, so every request is read
    /// as one.
    ///
    /// A claim that fails leaves the ingest standing, its deliveries due and announced.
    async fn ingest_and_claim(
        &self,
        events: &[NewEvent],
        lease: &ClaimRequest,
    ) -> Result<(Vec<Ingested>, Vec<Claim>), Error> {
        let (ingested, mut claims) = self.store_events(events, false, Some(lease)).await?;
        // A duplicate's `deliveries` is 0: it stored none.
        let fresh: usize = ingested.iter().map(|i| i.deliveries as usize).sum();
        if claims.len() >= fresh {
            return Ok((ingested, claims));
        }
        let taken_at_insert = claims.len();
        let rest = rest_of(lease, &claims);
        if rest.max > 0 {
            let more = self.claim_due(&rest).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "claiming at ingest failed; the deliveries stay due");
                Vec::new()
            });
            claims.extend(more);
        }
        let batch: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
        let taken = taken_at_insert
            + claims[taken_at_insert..]
                .iter()
                .filter(|c| batch.contains(c.event_id.as_str()))
                .count();
        if taken < fresh {
            self.announce_due().await;
        }
        Ok((ingested, claims))
    }

    async fn dead_letter(&self, letter: &DeadLetter) -> Result<bool, Error> {
        const DEAD_LETTER: &str = "INSERT INTO dead_letters (source, reference, reason, body, \
             created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source, reference) DO NOTHING";

        let done = sqlx::query(DEAD_LETTER)
            .bind(&letter.source)
            .bind(&letter.reference)
            .bind(&letter.reason)
            .bind(&letter.body)
            .bind(letter.at.ms())
            .execute(self.db())
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() == 1)
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, Error> {
        const DEAD_LETTERS: &str = "SELECT source, reference, reason, body, created_at \
             FROM dead_letters ORDER BY id DESC LIMIT $1";

        let rows: Vec<crate::rows::DeadLetterRow> = sqlx::query_as(DEAD_LETTERS)
            .bind(i64::from(limit.clamp(1, 1000)))
            .fetch_all(self.db())
            .await
            .map_err(classify)?;
        Ok(rows.into_iter().map(crate::rows::dead_letter).collect())
    }

    async fn get_event(&self, merchant: &MerchantId, id: &EventId) -> Result<Event, Error> {
        const GET_EVENT: &str = "SELECT id, merchant_id, event_type, payload, idempotency_key, created_at, \
             resend_count FROM events WHERE id = $1 AND merchant_id = $2";

        let row: Option<EventRow> = sqlx::query_as(GET_EVENT)
            .bind(id.as_str())
            .bind(merchant.as_str())
            .fetch_optional(self.db())
            .await
            .map_err(classify)?;
        row.ok_or(Error::NotFound("event"))?.try_into()
    }

    /// Newest first by id, strictly after (or before) the cursor, so rows inserted while paging
    /// (newer ids) never shift a page. The SQL is assembled from the filters present.
    async fn list_events(
        &self,
        merchant: &MerchantId,
        q: &EventQuery,
    ) -> Result<Page<Event>, Error> {
        let mut sql: QueryBuilder<'_, Postgres> = QueryBuilder::new(
            "SELECT ev.id, ev.merchant_id, ev.event_type, ev.payload, ev.idempotency_key, \
             ev.created_at, ev.resend_count FROM events ev",
        );
        push_event_filters(&mut sql, merchant, q);
        if let Some(after) = &q.after {
            sql.push(" AND ev.id < ").push_bind(after.0.as_str());
        }
        let backwards = q.before.is_some();
        if let Some(before) = &q.before {
            // Backwards: the rows just newer than the cursor, oldest first, turned by the page.
            sql.push(" AND ev.id > ").push_bind(before.0.as_str());
            sql.push(" ORDER BY ev.id ASC LIMIT ")
                .push_bind(overfetch(q.limit));
        } else {
            sql.push(" ORDER BY ev.id DESC LIMIT ")
                .push_bind(overfetch(q.limit));
        }
        let rows: Vec<EventRow> = sql
            .build_query_as()
            .fetch_all(self.db())
            .await
            .map_err(classify)?;
        let events = rows
            .into_iter()
            .map(Event::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let from_cursor = q.after.is_some() || backwards;
        Ok(Page::both_ways(
            events,
            q.limit.max(1) as usize,
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
        let mut sql: QueryBuilder<'_, Postgres> =
            QueryBuilder::new("SELECT count(*) FROM (SELECT 1 FROM events ev");
        push_event_filters(&mut sql, merchant, q);
        sql.push(" LIMIT ")
            .push_bind(i64::try_from(cap.saturating_add(1)).unwrap_or(i64::MAX))
            .push(") AS matching");
        let n: i64 = sql
            .build_query_scalar()
            .fetch_one(self.db())
            .await
            .map_err(classify)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn list_deliveries(
        &self,
        merchant: &MerchantId,
        event: &EventId,
        now: Timestamp,
    ) -> Result<Vec<Delivery>, Error> {
        const LIST_DELIVERIES: &str = "SELECT id, event_id, endpoint_id, merchant_id, state, origin, \
             attempts, next_attempt_at, lease_until, last_status, created_at, updated_at \
             FROM deliveries WHERE event_id = $1 AND merchant_id = $2 ORDER BY created_at, id";
        // Only asked when an event has no delivery at all, to tell "none" from "no such event".
        const EVENT_EXISTS: &str =
            "SELECT EXISTS (SELECT 1 FROM events WHERE id = $1 AND merchant_id = $2)";

        let rows: Vec<DeliveryRow> = sqlx::query_as(LIST_DELIVERIES)
            .bind(event.as_str())
            .bind(merchant.as_str())
            .fetch_all(self.db())
            .await
            .map_err(classify)?;
        if rows.is_empty() {
            let exists: bool = sqlx::query_scalar(EVENT_EXISTS)
                .bind(event.as_str())
                .bind(merchant.as_str())
                .fetch_one(self.db())
                .await
                .map_err(classify)?;
            if !exists {
                return Err(Error::NotFound("event"));
            }
        }
        rows.into_iter()
            .map(|r| r.at(now, NextWhileLeased::Nothing))
            .collect()
    }

    async fn list_deliveries_of_events(
        &self,
        merchant: &MerchantId,
        events: &[EventId],
        now: Timestamp,
    ) -> Result<Vec<Delivery>, Error> {
        const DELIVERIES_OF_EVENTS: &str = "SELECT id, event_id, endpoint_id, merchant_id, state, \
             origin, attempts, next_attempt_at, lease_until, last_status, created_at, updated_at \
             FROM deliveries WHERE event_id = ANY($1) AND merchant_id = $2 \
             ORDER BY event_id, created_at, id";

        if events.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = events.iter().map(EventId::as_str).collect();
        let rows: Vec<DeliveryRow> = sqlx::query_as(DELIVERIES_OF_EVENTS)
            .bind(&ids)
            .bind(merchant.as_str())
            .fetch_all(self.db())
            .await
            .map_err(classify)?;
        rows.into_iter()
            .map(|r| r.at(now, NextWhileLeased::Nothing))
            .collect()
    }

    async fn get_delivery(
        &self,
        merchant: &MerchantId,
        id: &DeliveryId,
        now: Timestamp,
    ) -> Result<Delivery, Error> {
        const GET_DELIVERY: &str = "SELECT id, event_id, endpoint_id, merchant_id, state, origin, \
             attempts, next_attempt_at, lease_until, last_status, created_at, updated_at \
             FROM deliveries WHERE id = $1 AND merchant_id = $2";

        let row: Option<DeliveryRow> = sqlx::query_as(GET_DELIVERY)
            .bind(id.as_str())
            .bind(merchant.as_str())
            .fetch_optional(self.db())
            .await
            .map_err(classify)?;
        row.ok_or(Error::NotFound("delivery"))?
            .at(now, NextWhileLeased::Nothing)
    }

    async fn list_attempts(
        &self,
        merchant: &MerchantId,
        delivery: &DeliveryId,
    ) -> Result<Vec<AttemptRecord>, Error> {
        const LIST_ATTEMPTS: &str = "SELECT a.id, a.delivery_id, a.number, a.started_at, a.url, \
             a.request_headers, a.status, a.response_headers, a.response_body, a.response_truncated, \
             a.latency_ms, a.error, a.error_detail \
             FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
             WHERE a.delivery_id = $1 AND d.merchant_id = $2 \
             ORDER BY a.number, a.started_at, a.id";
        const DELIVERY_EXISTS: &str =
            "SELECT EXISTS (SELECT 1 FROM deliveries WHERE id = $1 AND merchant_id = $2)";

        let rows: Vec<AttemptRow> = sqlx::query_as(LIST_ATTEMPTS)
            .bind(delivery.as_str())
            .bind(merchant.as_str())
            .fetch_all(self.db())
            .await
            .map_err(classify)?;
        if rows.is_empty() {
            let exists: bool = sqlx::query_scalar(DELIVERY_EXISTS)
                .bind(delivery.as_str())
                .bind(merchant.as_str())
                .fetch_one(self.db())
                .await
                .map_err(classify)?;
            if !exists {
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
        const ATTEMPTS_OF_EVENT: &str = "SELECT a.id, a.delivery_id, a.number, a.started_at, \
             a.url, a.request_headers, a.status, a.response_headers, a.response_body, \
             a.response_truncated, a.latency_ms, a.error, a.error_detail \
             FROM deliveries d JOIN attempts a ON a.delivery_id = d.id \
             WHERE d.event_id = $1 AND d.merchant_id = $2 \
             ORDER BY a.delivery_id, a.number, a.started_at, a.id";

        let rows: Vec<AttemptRow> = sqlx::query_as(ATTEMPTS_OF_EVENT)
            .bind(event.as_str())
            .bind(merchant.as_str())
            .fetch_all(self.db())
            .await
            .map_err(classify)?;
        rows.into_iter().map(AttemptRecord::try_from).collect()
    }

    async fn backlog(&self, merchant: &MerchantId) -> Result<Vec<EndpointBacklog>, Error> {
        // Through the merchant's endpoints, so the (endpoint_id, state, ...) index serves each one.
        const BACKLOG: &str = "SELECT d.endpoint_id, \
                count(*) FILTER (WHERE d.state = 'pending') AS pending, \
                count(*) FILTER (WHERE d.state = 'failed') AS failed, \
                min(d.created_at) AS oldest \
             FROM endpoints e JOIN deliveries d ON d.endpoint_id = e.id \
             WHERE e.merchant_id = $1 AND d.state IN ('pending', 'failed') \
             GROUP BY d.endpoint_id ORDER BY d.endpoint_id";

        let rows: Vec<BacklogRow> = sqlx::query_as(BACKLOG)
            .bind(merchant.as_str())
            .fetch_all(self.db())
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
        /// At most this many latencies (the most recent) come back.
        const MAX_LATENCIES: i64 = 10_000;
        // The totals are window functions over the whole window, computed before the LIMIT keeps the
        // most recent latencies; so one statement answers all three. An acknowledged attempt is one
        // logged without an error class.
        const HEALTH: &str = "SELECT a.started_at, a.latency_ms, \
                count(*) OVER () AS attempts, \
                count(*) FILTER (WHERE a.error IS NULL) OVER () AS succeeded \
             FROM attempts a JOIN endpoints e ON e.id = a.endpoint_id \
             WHERE a.endpoint_id = $1 AND e.merchant_id = $2 AND a.started_at >= $3 \
             ORDER BY a.started_at DESC, a.id DESC LIMIT $4";
        const ENDPOINT_EXISTS: &str =
            "SELECT EXISTS (SELECT 1 FROM endpoints WHERE id = $1 AND merchant_id = $2)";

        let rows: Vec<HealthRow> = sqlx::query_as(HEALTH)
            .bind(endpoint.as_str())
            .bind(merchant.as_str())
            .bind(since.ms())
            .bind(MAX_LATENCIES)
            .fetch_all(self.db())
            .await
            .map_err(classify)?;
        let Some(first) = rows.first() else {
            let exists: bool = sqlx::query_scalar(ENDPOINT_EXISTS)
                .bind(endpoint.as_str())
                .bind(merchant.as_str())
                .fetch_one(self.db())
                .await
                .map_err(classify)?;
            return if exists {
                Ok(EndpointHealth::default())
            } else {
                Err(Error::NotFound("endpoint"))
            };
        };
        let (attempts, succeeded) = (count(first.attempts), count(first.succeeded));
        let mut latencies = rows
            .iter()
            .map(|r| {
                Ok((
                    Timestamp::from_ms(r.started_at),
                    to_u32(r.latency_ms, "latency")?,
                ))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        latencies.reverse(); // oldest first
        Ok(EndpointHealth {
            attempts,
            succeeded,
            latencies,
        })
    }

    async fn endpoints_health(
        &self,
        merchant: &MerchantId,
        endpoints: &[EndpointId],
        since: Timestamp,
    ) -> Result<Vec<(EndpointId, EndpointHealth)>, Error> {
        // One statement: every asked endpoint of the merchant once with its totals (NULL
        // latency columns when it has no attempt in the window), then its most recent 10,000
        // latencies, oldest first within an endpoint. The totals are window functions over all
        // of the endpoint's attempts in the window, computed before the rank cut.
        const HEALTH_OF: &str = "SELECT e.id AS endpoint_id, r.started_at, r.latency_ms, \
                COALESCE(r.attempts, 0) AS attempts, COALESCE(r.succeeded, 0) AS succeeded \
             FROM endpoints e LEFT JOIN ( \
                SELECT a.endpoint_id, a.started_at, a.latency_ms, a.id, \
                    row_number() OVER (PARTITION BY a.endpoint_id \
                        ORDER BY a.started_at DESC, a.id DESC) AS n, \
                    count(*) OVER (PARTITION BY a.endpoint_id) AS attempts, \
                    count(*) FILTER (WHERE a.error IS NULL) \
                        OVER (PARTITION BY a.endpoint_id) AS succeeded \
                FROM attempts a \
                WHERE a.endpoint_id = ANY($1) AND a.started_at >= $3 \
             ) r ON r.endpoint_id = e.id AND r.n <= 10000 \
             WHERE e.id = ANY($1) AND e.merchant_id = $2 \
             ORDER BY e.id, r.started_at, r.id";

        if endpoints.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = endpoints.iter().map(EndpointId::as_str).collect();
        let rows: Vec<HealthOfRow> = sqlx::query_as(HEALTH_OF)
            .bind(&ids)
            .bind(merchant.as_str())
            .bind(since.ms())
            .fetch_all(self.db())
            .await
            .map_err(classify)?;
        let mut found: HashMap<String, EndpointHealth> = HashMap::new();
        for r in rows {
            let health = found
                .entry(r.endpoint_id)
                .or_insert_with(|| EndpointHealth {
                    attempts: count(r.attempts),
                    succeeded: count(r.succeeded),
                    latencies: Vec::new(),
                });
            if let (Some(at), Some(ms)) = (r.started_at, r.latency_ms) {
                health
                    .latencies
                    .push((Timestamp::from_ms(at), to_u32(ms, "latency")?));
            }
        }
        Ok(endpoints
            .iter()
            .filter_map(|id| found.remove(id.as_str()).map(|h| (id.clone(), h)))
            .collect())
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

/// What `STORE` answered, with the ids of the deliveries it was given and the hand-off's plan.
struct Stored<'r> {
    rows: Vec<StoredRow>,
    deliveries: Vec<String>,
    plan: Option<LeasePlan<'r>>,
}

/// The events of a batch as parallel arrays (bound once each, whatever the batch size).
struct EventArrays<'a> {
    ids: Vec<&'a str>,
    merchants: Vec<&'a str>,
    types: Vec<&'a str>,
    payloads: Vec<&'a [u8]>,
    keys: Vec<Option<&'a str>>,
    created: Vec<i64>,
    ordering_keys: Vec<Option<&'a str>>,
    /// The search keys, one entry per key: merchant, field, value, event.
    search: [Vec<&'a str>; 4],
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
            ordering_keys: Vec::with_capacity(n),
            search: Default::default(),
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
        self.ordering_keys
            .push(e.ordering_key.as_ref().map(|k| k.as_str()));
        for k in &e.search_keys {
            self.search[0].push(e.merchant_id.as_str());
            self.search[1].push(k.field.as_str());
            self.search[2].push(k.value.as_str());
            self.search[3].push(e.id.as_str());
        }
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
    ordering_keys: Vec<Option<OrderingKey>>,
    /// 1, 2, ... per (endpoint, key), in batch order; `None` for unordered deliveries.
    ranks: Vec<Option<i64>>,
    /// Inserted leased (`LeasePlan`).
    leased: Vec<bool>,
    seen: HashMap<(&'a str, OrderingKey), i64>,
}

impl<'a> DeliveryArrays<'a> {
    fn push(
        &mut self,
        e: &'a NewEvent,
        endpoint_id: &'a str,
        key: Option<OrderingKey>,
        leased: bool,
    ) {
        self.ids.push(DeliveryId::generate().to_string());
        self.leased.push(leased);
        self.events.push(e.id.as_str());
        self.endpoints.push(endpoint_id);
        self.merchants.push(e.merchant_id.as_str());
        // Due at once: at the event's own time.
        self.due.push(e.created_at.ms());
        let rank = key.as_ref().map(|k| {
            let n = self.seen.entry((endpoint_id, k.clone())).or_default();
            *n += 1;
            *n
        });
        self.ranks.push(rank);
        self.ordering_keys.push(key);
    }
}

/// A merchant deleted between reading its targets and `STORE` is `NotFound`, like one that never
/// existed; an endpoint deleted in between makes the batch fail as a conflict the caller may
/// retry.
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

/// Turns `STORE`'s rows into answers, finding the original event of each repeated key.
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

#[derive(sqlx::FromRow)]
struct BacklogRow {
    endpoint_id: String,
    pending: i64,
    failed: i64,
    oldest: Option<i64>,
}

/// A row of `endpoints_health`: an endpoint's totals, with one of its latencies if any.
#[derive(sqlx::FromRow)]
struct HealthOfRow {
    endpoint_id: String,
    started_at: Option<i64>,
    latency_ms: Option<i64>,
    attempts: i64,
    succeeded: i64,
}

#[derive(sqlx::FromRow)]
struct HealthRow {
    started_at: i64,
    latency_ms: i64,
    attempts: i64,
    succeeded: i64,
}

/// The `WHERE` of an event listing or count over `events ev`: the merchant and every filter of
/// `q` present (cursors and limit are the caller's).
fn push_event_filters<'a>(
    sql: &mut QueryBuilder<'a, Postgres>,
    merchant: &'a MerchantId,
    q: &'a EventQuery,
) {
    sql.push(" WHERE ev.merchant_id = ")
        .push_bind(merchant.as_str());
    if let Some(id) = &q.event_id {
        sql.push(" AND ev.id = ").push_bind(id.as_str());
    }
    if let Some(key) = &q.key {
        // The index lookup: the merchant's events stored with this (field, value).
        sql.push(" AND ev.id IN (SELECT event_id FROM event_search WHERE merchant_id = ")
            .push_bind(merchant.as_str())
            .push(" AND field = ")
            .push_bind(key.field.as_str())
            .push(" AND value = ")
            .push_bind(key.value.as_str())
            .push(")");
    }
    if let Some(t) = &q.event_type {
        sql.push(" AND lower(ev.event_type) = lower(")
            .push_bind(t.as_str())
            .push(")");
    }
    if let Some(since) = q.since {
        sql.push(" AND ev.created_at >= ").push_bind(since.ms());
    }
    if let Some(until) = q.until {
        sql.push(" AND ev.created_at < ").push_bind(until.ms());
    }
    if q.state.is_some() || q.endpoint.is_some() {
        // One delivery must match both: "a failed delivery to this endpoint". The query has no
        // `now` to compare leases with, so "in flight" means "claimed and not yet finished" (a
        // lease token is set), and `Pending` matches every undelivered delivery, leased or not.
        sql.push(" AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = ev.id");
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

#[cfg(test)]
mod tests {
    use super::StoreShape;

    /// All of them, each checked to be the shape its number names.
    fn shapes() -> impl Iterator<Item = StoreShape> {
        (0..StoreShape::COUNT).map(|i| {
            let shape = StoreShape::nth(i);
            assert_eq!(shape.index(), i);
            shape
        })
    }

    /// PostgreSQL must infer every parameter's type from the statement, so a shape that left one
    /// out would fail to prepare: each shape uses all 25, and only them.
    #[test]
    fn every_shape_binds_the_same_parameters() {
        for shape in shapes() {
            let sql = shape.sql();
            for n in 1..=25 {
                let used = sql
                    .match_indices(&format!("${n}"))
                    .any(|(at, p)| !sql[at + p.len()..].starts_with(|c: char| c.is_ascii_digit()));
                assert!(used, "{shape:?} does not use ${n}");
            }
            assert!(!sql.contains("$26"), "{shape:?}");
        }
    }

    /// The optional parts are in exactly the shapes that need them.
    #[test]
    fn each_shape_has_only_the_parts_it_needs() {
        for shape in shapes() {
            let sql = shape.sql();
            assert_eq!(sql.contains("clash AS"), shape.keys, "{shape:?}");
            assert_eq!(sql.contains("earlier ON true"), shape.keys, "{shape:?}");
            assert_eq!(
                sql.contains("ordering_counters"),
                shape.ordered,
                "{shape:?}"
            );
            assert_eq!(sql.contains("counted c ON"), shape.ordered, "{shape:?}");
            assert_eq!(sql.contains("pg_notify"), shape.notify, "{shape:?}");
            for always in [
                "INSERT INTO events",
                "INSERT INTO deliveries",
                "event_search",
                "stale AS",
            ] {
                assert!(sql.contains(always), "{shape:?} lacks {always}");
            }
        }
    }
}
