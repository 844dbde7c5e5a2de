//! The gateway side of the PostgreSQL transactional outbox: the table a payment gateway creates
//! in **its own** database and fills in the same transaction as the payment, and the SQL
//! blockhook runs there to relay it.
//!
//! This crate is the only one that speaks SQL, so the DDL ([`schema_sql`]) and every statement
//! on the gateway's database live here; `blockhook-server`'s relay drives them. One relay pass is
//! one gateway transaction: [`Gateway::claim`] locks the oldest rows (`FOR UPDATE SKIP LOCKED`,
//! so several blockhook processes share one outbox without waiting on each other), the caller
//! stores them in blockhook's own store, and only after that commit [`Claimed::finish`] deletes
//! the relayed rows, moves the refused ones to `<table>_dead_letter` with a reason, and commits.
//! A crash in between rolls the gateway transaction back; the rows are relayed again and the
//! idempotency key de-duplicates them.

use std::str::FromStr;
use std::time::Duration;

use blockhook_core::Error;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use crate::classify;

/// Longest name part: `<name>_dead_letter` must still fit PostgreSQL's 63-byte identifiers.
const MAX_PART: usize = 63 - "_dead_letter".len();

/// A validated outbox table name, `name` or `schema.name`, each part `[a-z_][a-z0-9_]*`.
///
/// Names are spliced into SQL (DDL and table names take no bind parameters), so only names that
/// never need quoting are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxTable {
    schema: Option<String>,
    name: String,
}

impl OutboxTable {
    /// Parses `name` or `schema.name`.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let bad = || {
            Error::invalid(
                "table",
                format!(
                    "{raw:?} is not a plain table name: use `name` or `schema.name`, each \
                     [a-z_][a-z0-9_]*, at most {MAX_PART} characters"
                ),
            )
        };
        let part_ok = |p: &str| {
            !p.is_empty()
                && p.len() <= MAX_PART
                && p.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        let (schema, name) = match raw.split_once('.') {
            Some((s, n)) => (Some(s), n),
            None => (None, raw),
        };
        // The whole name is also the NOTIFY channel, itself an identifier of at most 63 bytes.
        if !part_ok(name) || schema.is_some_and(|s| !part_ok(s)) || raw.len() > 63 {
            return Err(bad());
        }
        Ok(Self {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        })
    }

    /// The name as given (`schema.name` or `name`); also the NOTIFY channel and metric label.
    pub fn qualified(&self) -> String {
        self.with_suffix("")
    }

    /// The dead-letter table, `<table>_dead_letter` in the same schema.
    pub fn dead_letter(&self) -> String {
        self.with_suffix("_dead_letter")
    }

    fn with_suffix(&self, suffix: &str) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}{suffix}", self.name),
            None => format!("{}{suffix}", self.name),
        }
    }
}

impl std::fmt::Display for OutboxTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.qualified())
    }
}

/// The type of the outbox's `payload` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadColumn {
    /// `text`: the bytes are kept exactly as the gateway wrote them (what `raw` signatures need).
    #[default]
    Text,
    /// `jsonb`: checked by PostgreSQL on insert, but normalised (key order, spacing).
    Jsonb,
}

impl FromStr for PayloadColumn {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "text" => Ok(Self::Text),
            "jsonb" => Ok(Self::Jsonb),
            _ => Err(Error::invalid("payload", "text or jsonb")),
        }
    }
}

/// The DDL the gateway runs in its own database: the outbox, its dead-letter table, and a
/// statement trigger that notifies channel `<table>` on insert (delivered at commit), so a relay
/// wakes at once instead of at its next poll.
pub fn schema_sql(table: &OutboxTable, payload: PayloadColumn) -> String {
    let t = table.qualified();
    let dl = table.dead_letter();
    let func = table.with_suffix("_notify");
    let trigger = format!("{}_notify", table.name);
    let ty = match payload {
        PayloadColumn::Text => "text",
        PayloadColumn::Jsonb => "jsonb",
    };
    format!(
        "-- blockhook transactional outbox: insert into {t} in the same transaction as the payment.
CREATE TABLE IF NOT EXISTS {t} (
    id              bigserial   PRIMARY KEY,
    merchant_id     text        NOT NULL,
    event_type      text        NOT NULL,
    payload         {ty}        NOT NULL,
    ordering_key    text        NULL,
    idempotency_key text        NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Rows blockhook could not ingest (unknown merchant, invalid payload, ...), with the reason.
CREATE TABLE IF NOT EXISTS {dl} (
    id              bigint      PRIMARY KEY,
    merchant_id     text        NOT NULL,
    event_type      text        NOT NULL,
    payload         {ty}        NOT NULL,
    ordering_key    text        NULL,
    idempotency_key text        NULL,
    created_at      timestamptz NOT NULL,
    reason          text        NOT NULL,
    failed_at       timestamptz NOT NULL DEFAULT now()
);

-- Wakes blockhook when inserted rows commit (LISTEN \"{t}\").
CREATE OR REPLACE FUNCTION {func}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{t}', '');
    RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS {trigger} ON {t};
CREATE TRIGGER {trigger} AFTER INSERT ON {t}
    FOR EACH STATEMENT EXECUTE FUNCTION {func}();
"
    )
}

/// One outbox row as read, not yet validated (the relay checks it as `POST /v1/events` would).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    /// The row id (the relay order).
    pub id: i64,
    /// `mch_…`.
    pub merchant_id: String,
    /// The event type.
    pub event_type: String,
    /// The payload, as text (a `jsonb` column is read as its text form).
    pub payload: String,
    /// Optional ordering key.
    pub ordering_key: Option<String>,
    /// Optional idempotency key.
    pub idempotency_key: Option<String>,
}

/// A connection pool to the gateway's database, for one outbox table.
#[derive(Debug, Clone)]
pub struct Gateway {
    pool: PgPool,
    connect: PgConnectOptions,
    table: OutboxTable,
}

impl Gateway {
    /// A small lazy pool (nothing connects until used, so a gateway database that is down at
    /// start is retried by the relay rather than failing the start).
    pub fn new(url: &str, table: OutboxTable, acquire_timeout: Duration) -> Result<Self, Error> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|_| Error::invalid("url", "not a postgres:// URL"))?
            .application_name("blockhook-outbox");
        let pool = PgPoolOptions::new()
            // One relay transaction and one lag query at a time; LISTEN has its own connection.
            .max_connections(2)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(connect.clone());
        Ok(Self {
            pool,
            connect,
            table,
        })
    }

    /// The table relayed.
    pub fn table(&self) -> &OutboxTable {
        &self.table
    }

    /// Begins a gateway transaction and locks up to `limit` of the oldest rows no other relay
    /// holds. The rows stay locked (and in the table) until [`Claimed::finish`] or a drop.
    pub async fn claim(&self, limit: u32) -> Result<Claimed, Error> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let sql = format!(
            "SELECT id, merchant_id, event_type, payload::text AS payload, ordering_key, \
             idempotency_key FROM {} ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            self.table.qualified()
        );
        let rows: Vec<OutboxRow> = sqlx::query_as(&sql)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
        Ok(Claimed {
            tx,
            rows,
            table: self.table.clone(),
        })
    }

    /// Age in seconds of the oldest row still in the outbox (locked ones included: they are not
    /// relayed until their transaction commits); 0 when it is empty.
    pub async fn lag_seconds(&self) -> Result<f64, Error> {
        let sql = format!(
            "SELECT COALESCE(EXTRACT(EPOCH FROM now() - (SELECT created_at FROM {} ORDER BY id \
             LIMIT 1))::float8, 0)",
            self.table.qualified()
        );
        let lag: f64 = sqlx::query_scalar(&sql)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        Ok(lag.max(0.0))
    }

    /// A `LISTEN` on the table's channel, on a connection of its own.
    pub async fn listen(&self) -> Result<OutboxListener, Error> {
        let mut listener = PgListener::connect_with(
            &PgPoolOptions::new()
                .max_connections(1)
                .connect_lazy_with(self.connect.clone()),
        )
        .await
        .map_err(classify)?;
        listener
            .listen(&self.table.qualified())
            .await
            .map_err(classify)?;
        Ok(OutboxListener(listener))
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A subscription to an outbox's inserts.
#[derive(Debug)]
pub struct OutboxListener(PgListener);

impl OutboxListener {
    /// Waits for the next notification. `Ok(false)`: the connection dropped and was re-made, so
    /// notifications may have been missed (look anyway).
    pub async fn next(&mut self) -> Result<bool, Error> {
        match self.0.try_recv().await.map_err(classify)? {
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }
}

/// Rows locked by an open gateway transaction.
#[derive(Debug)]
pub struct Claimed {
    tx: Transaction<'static, Postgres>,
    /// The rows, in id order.
    pub rows: Vec<OutboxRow>,
    table: OutboxTable,
}

impl Claimed {
    /// Deletes `relayed` rows, moves `dead` rows (id, reason) into the dead-letter table, and
    /// commits. Call only once blockhook's own store has committed the relayed events.
    pub async fn finish(mut self, relayed: &[i64], dead: &[(i64, String)]) -> Result<(), Error> {
        if !dead.is_empty() {
            let (ids, reasons): (Vec<i64>, Vec<String>) = dead.iter().cloned().unzip();
            let sql = format!(
                "INSERT INTO {dl} (id, merchant_id, event_type, payload, ordering_key, \
                 idempotency_key, created_at, reason) \
                 SELECT o.id, o.merchant_id, o.event_type, o.payload, o.ordering_key, \
                 o.idempotency_key, o.created_at, d.reason \
                 FROM {t} o JOIN unnest($1::bigint[], $2::text[]) AS d(id, reason) ON d.id = o.id \
                 ON CONFLICT (id) DO UPDATE SET reason = EXCLUDED.reason, failed_at = now()",
                dl = self.table.dead_letter(),
                t = self.table.qualified(),
            );
            sqlx::query(&sql)
                .bind(&ids)
                .bind(&reasons)
                .execute(&mut *self.tx)
                .await
                .map_err(classify)?;
        }
        let all: Vec<i64> = relayed
            .iter()
            .copied()
            .chain(dead.iter().map(|(id, _)| *id))
            .collect();
        if !all.is_empty() {
            let sql = format!(
                "DELETE FROM {} WHERE id = ANY($1::bigint[])",
                self.table.qualified()
            );
            sqlx::query(&sql)
                .bind(&all)
                .execute(&mut *self.tx)
                .await
                .map_err(classify)?;
        }
        self.tx.commit().await.map_err(classify)
    }
}

/// A row for [`insert`]: what a gateway writes (tools and tests; a gateway uses its own SQL).
#[derive(Debug, Clone)]
pub struct InsertRow {
    /// `mch_…`.
    pub merchant_id: String,
    /// The event type.
    pub event_type: String,
    /// The payload text.
    pub payload: String,
    /// Optional ordering key.
    pub ordering_key: Option<String>,
    /// Optional idempotency key.
    pub idempotency_key: Option<String>,
}

/// Runs `sql` (several statements allowed, e.g. [`schema_sql`]) on the database at `url`.
pub async fn execute(url: &str, sql: &str) -> Result<(), Error> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.map_err(classify)?;
    let done = sqlx::raw_sql(sql)
        .execute(&mut conn)
        .await
        .map_err(classify);
    let _ = conn.close().await;
    done.map(|_| ())
}

/// A gateway's side for tools (`blockhook bench`): inserts rows as a gateway would, over a pool.
#[derive(Debug, Clone)]
pub struct Writer(PgPool);

impl Writer {
    /// A pool of up to `connections` connections to the gateway database at `url`.
    pub async fn connect(url: &str, connections: u32) -> Result<Self, Error> {
        let pool = PgPoolOptions::new()
            .max_connections(connections.max(1))
            .connect(url)
            .await
            .map_err(classify)?;
        Ok(Self(pool))
    }

    /// Inserts `rows` into `table` in one transaction (one statement).
    pub async fn insert(&self, table: &OutboxTable, rows: &[InsertRow]) -> Result<(), Error> {
        let sql = format!(
            "INSERT INTO {} (merchant_id, event_type, payload, ordering_key, idempotency_key) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])",
            table.qualified()
        );
        let col = |f: fn(&InsertRow) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
        sqlx::query(&sql)
            .bind(col(|r| Some(r.merchant_id.clone())))
            .bind(col(|r| Some(r.event_type.clone())))
            .bind(col(|r| Some(r.payload.clone())))
            .bind(col(|r| r.ordering_key.clone()))
            .bind(col(|r| r.idempotency_key.clone()))
            .execute(&self.0)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.0.close().await;
    }
}

/// Rows left in `table` (tools and tests).
pub async fn count(url: &str, table: &str) -> Result<i64, Error> {
    use sqlx::Connection;
    let table = OutboxTable::parse(table)?;
    let mut conn = sqlx::PgConnection::connect(url).await.map_err(classify)?;
    let n = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", table.qualified()))
        .fetch_one(&mut conn)
        .await
        .map_err(classify);
    let _ = conn.close().await;
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_identifiers() {
        for ok in ["outbox", "_o1", "gw.outbox", "payments.blockhook_outbox"] {
            assert_eq!(
                OutboxTable::parse(ok).map(|t| t.qualified()).ok(),
                Some(ok.to_owned())
            );
        }
        for bad in [
            "",
            "Outbox",
            "1outbox",
            "out box",
            "a.b.c",
            "out-box",
            "o;drop",
            ".x",
            "x.",
            "\"x\"",
            "a".repeat(52).as_str(),
        ] {
            assert!(OutboxTable::parse(bad).is_err(), "{bad}");
        }
        let t = OutboxTable::parse("gw.outbox").ok();
        assert_eq!(
            t.map(|t| t.dead_letter()),
            Some("gw.outbox_dead_letter".to_owned())
        );
    }

    #[test]
    fn the_ddl_names_every_part() {
        let Ok(t) = OutboxTable::parse("gw.outbox") else {
            panic!("valid name refused");
        };
        let sql = schema_sql(&t, PayloadColumn::Jsonb);
        for part in [
            "CREATE TABLE IF NOT EXISTS gw.outbox (",
            "payload         jsonb",
            "CREATE TABLE IF NOT EXISTS gw.outbox_dead_letter (",
            "pg_notify('gw.outbox', '')",
            "CREATE TRIGGER outbox_notify AFTER INSERT ON gw.outbox",
        ] {
            assert!(sql.contains(part), "{part}\n{sql}");
        }
    }
}
