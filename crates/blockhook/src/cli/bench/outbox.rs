//! `bench --source outbox`: the events come through a PostgreSQL transactional outbox instead of
//! `POST /v1/events`. A "gateway" schema with the outbox table (the DDL `blockhook outbox
//! schema` prints) is created in `--database-url`, the blockhook under test relays it
//! (`[[sources.postgres_outbox]]`), and the load generator inserts the rows as a gateway would:
//! `--batch` rows per transaction (1 with `--batch 0`: one payment, one transaction), from
//! `--concurrency` connections (at most 16). The relay rate is measured from the first insert
//! until the outbox is empty.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::task::JoinSet;

use blockhook_store::outbox::{InsertRow, OutboxTable, PayloadColumn, Writer, schema_sql};

use super::load::{Load, payload};
use super::now_us;

/// Most gateway connections inserting at once.
const MAX_CONNECTIONS: usize = 16;

/// A fresh gateway schema holding the outbox; dropped after the run.
pub struct GatewayOutbox {
    /// The gateway's database.
    pub base: String,
    schema: String,
    /// `<schema>.outbox`.
    pub table: String,
}

impl GatewayOutbox {
    pub async fn create(base: &str) -> anyhow::Result<Self> {
        let schema = format!("bh_bench_gw_{}", uuid::Uuid::new_v4().simple());
        blockhook_store::postgres::schema::create(base, &schema)
            .await
            .context("creating the gateway schema in PostgreSQL")?;
        let table = format!("{schema}.outbox");
        let parsed = OutboxTable::parse(&table)?;
        blockhook_store::outbox::execute(base, &schema_sql(&parsed, PayloadColumn::Text))
            .await
            .context("creating the outbox table")?;
        Ok(Self {
            base: base.to_owned(),
            schema,
            table,
        })
    }

    pub async fn drop_it(self) {
        if let Err(e) = blockhook_store::postgres::schema::drop(&self.base, &self.schema).await {
            eprintln!("could not drop schema {}: {e}", self.schema);
        }
    }

    /// Rows still in the outbox.
    pub async fn left(&self) -> anyhow::Result<i64> {
        Ok(blockhook_store::outbox::count(&self.base, &self.table).await?)
    }
}

/// Inserts `events` rows (event `seq` for merchant `seq % merchants`), `per_tx` rows per
/// transaction from `concurrency` connections; returns the seconds until the last commit.
pub async fn fill(
    gw: &GatewayOutbox,
    merchants: Arc<Vec<String>>,
    events: u64,
    per_tx: u64,
    concurrency: usize,
    load: &Load,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let table = Arc::new(OutboxTable::parse(&gw.table)?);
    let connections = concurrency.clamp(1, MAX_CONNECTIONS);
    let writer = Writer::connect(&gw.base, u32::try_from(connections).unwrap_or(1)).await?;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        let (writer, table, next, merchants, load) = (
            writer.clone(),
            table.clone(),
            next.clone(),
            merchants.clone(),
            load.clone(),
        );
        tasks.spawn(async move {
            loop {
                let first = next.fetch_add(per_tx, Ordering::Relaxed);
                if first >= events {
                    return anyhow::Ok(());
                }
                let rows: Vec<InsertRow> = (first..(first + per_tx).min(events))
                    .map(|seq| InsertRow {
                        merchant_id: merchants[usize::try_from(seq).unwrap_or(0) % merchants.len()]
                            .clone(),
                        event_type: "Payment".to_owned(),
                        payload: payload(seq, now_us()),
                        ordering_key: None,
                        idempotency_key: None,
                    })
                    .collect();
                let n = rows.len() as u64;
                let mut wait = Duration::from_millis(50);
                loop {
                    match writer.insert(&table, &rows).await {
                        Ok(()) => break,
                        Err(e) if wait < Duration::from_secs(2) => {
                            eprintln!("gateway insert failed: {e}; retrying");
                            tokio::time::sleep(wait).await;
                            wait *= 2;
                        }
                        Err(e) => {
                            load.errors.fetch_add(1, Ordering::Relaxed);
                            return Err(e.into());
                        }
                    }
                }
                load.acked.fetch_add(n, Ordering::Relaxed);
            }
        });
    }
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done.map_err(anyhow::Error::from).and_then(|r| r) {
            result = Err(e);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    writer.close().await;
    result.map(|()| secs)
}
