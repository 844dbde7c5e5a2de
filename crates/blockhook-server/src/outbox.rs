//! The PostgreSQL transactional outbox relay: one task per `[[sources.postgres_outbox]]` entry
//! moves the rows a gateway committed into its own outbox table into blockhook's store.
//!
//! One pass is one gateway transaction (the SQL is in `blockhook_store::outbox`):
//! 1. lock up to `batch` of the oldest rows (`FOR UPDATE SKIP LOCKED`: several processes share
//!    an outbox, each row is locked by one of them);
//! 2. check each row exactly as `POST /v1/events` checks a request (merchant id, event type,
//!    payload a JSON object kept byte for byte, ordering and idempotency keys); the idempotency
//!    key is the row's own or else `outbox:<table>:<id>`;
//! 3. store them through the same group-committing [`Ingestor`] the API uses (so deliveries,
//!    ordering and metrics behave the same);
//! 4. only after that commit: delete the relayed rows, move the refused ones to
//!    `<table>_dead_letter` with the reason, and commit the gateway transaction.
//!
//! A crash between 3 and 4 rolls the gateway transaction back; the rows are relayed again and
//! the idempotency key answers them as duplicates, so each row becomes exactly one event. A row
//! that can never be stored is dead-lettered in the same transaction, never dropped silently and
//! never in the way of the rows behind it. When either database is unavailable the relay backs
//! off and retries, logging the outage once at WARN and the recovery at INFO.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use blockhook_core::{Clock, Error, NewEvent, Publication};
use blockhook_store::outbox::{Claimed, Gateway, OutboxRow, OutboxTable};

use crate::config::PostgresOutboxSource;
use crate::ingest::Ingestor;
use crate::metrics::{Metrics, Table};

/// First and longest wait after a failed pass.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What a relay needs besides its source.
#[derive(Clone)]
pub struct RelayCx {
    /// The ingest path the API uses.
    pub ingest: Ingestor,
    /// Time source (the events' `created_at`).
    pub clock: Arc<dyn Clock>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// How long to wait for a gateway connection.
    pub acquire_timeout: Duration,
}

/// Why a pass failed: which database, and its error (each rolls the gateway transaction back).
#[derive(Debug)]
pub enum Failure {
    /// The gateway's database (the outbox).
    Gateway(Error),
    /// blockhook's own store.
    Store(Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Gateway(e) => write!(f, "gateway database: {e}"),
            Self::Store(e) => write!(f, "blockhook's store: {e}"),
        }
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Rows locked and read.
    pub read: usize,
    /// Rows stored (or found already stored) and deleted.
    pub ingested: usize,
    /// Rows moved to the dead-letter table.
    pub dead_lettered: usize,
}

/// Relays `source` until `stop` is cancelled.
#[tracing::instrument(skip_all, fields(table = %source.table))]
pub async fn run(source: PostgresOutboxSource, cx: RelayCx, stop: CancellationToken) {
    // Validated when the settings were loaded; a failure here is reported, not a panic.
    let gateway = match OutboxTable::parse(&source.table)
        .and_then(|t| Gateway::new(&source.url, t, cx.acquire_timeout))
    {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(error = %e, url = %source.redacted_url(), "outbox source not started");
            return;
        }
    };
    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(listen(gateway.clone(), wake.clone(), stop.clone()));
    let label = Table {
        table: gateway.table().qualified(),
    };
    tracing::info!(url = %source.redacted_url(), batch = source.batch, poll = ?source.poll,
        "relaying the outbox");
    let mut backoff = BACKOFF_MIN;
    let mut down = false;
    loop {
        if stop.is_cancelled() {
            break;
        }
        match pass(&gateway, source.batch, &cx, &label).await {
            Ok(done) => {
                if down {
                    tracing::info!("outbox relay recovered: both databases reachable again");
                    down = false;
                }
                backoff = BACKOFF_MIN;
                // A full batch: more rows are probably waiting, go on at once.
                if done.read >= source.batch as usize {
                    continue;
                }
                update_lag(&gateway, &cx.metrics, &label).await;
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(source.poll) => {}
                    () = stop.cancelled() => break,
                }
            }
            Err(e) => {
                if down {
                    tracing::debug!(error = %e, "outbox relay still failing");
                } else {
                    tracing::warn!(error = %e, "outbox relay failed; retrying with backoff");
                    down = true;
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => break,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    listener.abort();
    gateway.close().await;
}

/// Keeps a LISTEN on the table's channel and wakes the relay on each notification; after a
/// reconnection it wakes it once (notifications sent meanwhile are lost). Without it the relay
/// still polls, so a listener that cannot connect delays rows by at most `poll`.
async fn listen(gateway: Gateway, wake: Arc<Notify>, stop: CancellationToken) {
    let mut backoff = BACKOFF_MIN;
    while !stop.is_cancelled() {
        let mut listener = match gateway.listen().await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "outbox LISTEN failed; polling meanwhile");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        wake.notify_one();
        loop {
            match listener.next().await {
                Ok(_) => wake.notify_one(),
                Err(e) => {
                    tracing::debug!(error = %e, "outbox LISTEN connection lost");
                    break;
                }
            }
        }
    }
}

async fn update_lag(gateway: &Gateway, metrics: &Metrics, label: &Table) {
    match gateway.lag_seconds().await {
        Ok(lag) => {
            metrics.outbox_lag_seconds.get_or_create(label).set(lag);
        }
        Err(e) => tracing::debug!(error = %e, "outbox lag not read"),
    }
}

/// One gateway transaction: lock, check, ingest, then delete and dead-letter, commit.
pub async fn pass(
    gateway: &Gateway,
    batch: u32,
    cx: &RelayCx,
    label: &Table,
) -> Result<Pass, Failure> {
    let claimed: Claimed = gateway.claim(batch).await.map_err(Failure::Gateway)?;
    let read = claimed.rows.len();
    if read == 0 {
        return Ok(Pass::default());
    }
    cx.metrics
        .outbox_rows_read
        .get_or_create(label)
        .inc_by(read as u64);
    let table = gateway.table().qualified();
    let mut dead: Vec<(i64, String)> = Vec::new();
    let mut valid: Vec<(i64, NewEvent)> = Vec::with_capacity(read);
    for row in &claimed.rows {
        match to_event(row, &table, &*cx.clock) {
            Ok(ev) => valid.push((row.id, ev)),
            Err(reason) => dead.push((row.id, reason)),
        }
    }
    let mut relayed: Vec<i64> = Vec::with_capacity(valid.len());
    if !valid.is_empty() {
        let events: Vec<NewEvent> = valid.iter().map(|(_, e)| e.clone()).collect();
        match cx.ingest.submit(events).await {
            Ok(_) => relayed.extend(valid.iter().map(|(id, _)| *id)),
            // One refused row refuses the whole batch: store them one by one, so only the
            // refused rows are dead-lettered.
            Err(e) if refused(&e) => {
                for (id, ev) in valid {
                    match cx.ingest.submit(vec![ev]).await {
                        Ok(_) => relayed.push(id),
                        Err(e) if refused(&e) => dead.push((id, reason_of(&e))),
                        // Unavailable: the gateway transaction rolls back when `claimed` is
                        // dropped; what was stored is found as duplicates next time.
                        Err(e) => return Err(Failure::Store(e)),
                    }
                }
            }
            Err(e) => return Err(Failure::Store(e)),
        }
    }
    let done = Pass {
        read,
        ingested: relayed.len(),
        dead_lettered: dead.len(),
    };
    if !dead.is_empty() {
        tracing::warn!(
            rows = dead.len(),
            first_id = dead[0].0,
            reason = %dead[0].1,
            "outbox rows moved to the dead-letter table"
        );
    }
    claimed
        .finish(&relayed, &dead)
        .await
        .map_err(Failure::Gateway)?;
    cx.metrics
        .outbox_rows_ingested
        .get_or_create(label)
        .inc_by(done.ingested as u64);
    cx.metrics
        .outbox_rows_dead_lettered
        .get_or_create(label)
        .inc_by(done.dead_lettered as u64);
    Ok(done)
}

/// Whether `e` refuses the event for good (a client error of `POST /v1/events`), as opposed to
/// a store that is unavailable now.
pub(crate) fn refused(e: &Error) -> bool {
    matches!(
        e,
        Error::NotFound(_)
            | Error::Conflict(_)
            | Error::Invalid { .. }
            | Error::IdempotencyConflict { .. }
    )
}

/// The dead-letter reason of a refusal, in the words `POST /v1/events` would use.
pub(crate) fn reason_of(e: &Error) -> String {
    match e {
        Error::NotFound("merchant") => "merchant_id: no such merchant".to_owned(),
        Error::Conflict(why) => format!("merchant_id: {why}"),
        Error::IdempotencyConflict { key, original, .. } => format!(
            "idempotency_key: {key:?} already names event {original}, which has another event \
             type or payload"
        ),
        other => other.to_string(),
    }
}

/// The outbox's own idempotency key of a row without one: the row id is unique in the table,
/// and the table in this blockhook's configuration.
pub fn derived_key(table: &str, id: i64) -> String {
    format!("outbox:{table}:{id}")
}

/// Checks a row as `POST /v1/events` checks a request; `Err` is the dead-letter reason.
fn to_event(row: &OutboxRow, table: &str, clock: &dyn Clock) -> Result<NewEvent, String> {
    let key = match &row.idempotency_key {
        Some(k) => k.clone(),
        None => derived_key(table, row.id),
    };
    let publication = Publication {
        merchant_id: &row.merchant_id,
        event_type: &row.event_type,
        payload: bytes::Bytes::from(row.payload.clone().into_bytes()),
        idempotency_key: Some(&key),
        ordering_key: row.ordering_key.as_deref(),
    };
    NewEvent::check(publication, clock.now()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockhook_core::{MerchantId, SystemClock};

    fn row(merchant: &str, ty: &str, payload: &str) -> OutboxRow {
        OutboxRow {
            id: 7,
            merchant_id: merchant.into(),
            event_type: ty.into(),
            payload: payload.into(),
            ordering_key: None,
            idempotency_key: None,
        }
    }

    #[test]
    fn rows_are_checked_like_published_events() {
        let m = MerchantId::generate().to_string();
        let ok = to_event(&row(&m, "Payment", "{\"a\": 1}"), "gw.outbox", &SystemClock);
        let ev = ok.as_ref().map_err(Clone::clone);
        assert!(ev.is_ok(), "{ok:?}");
        if let Ok(ev) = ok {
            assert_eq!(
                ev.idempotency_key.as_ref().map(|k| k.as_str()),
                Some("outbox:gw.outbox:7")
            );
            assert_eq!(&ev.payload.bytes()[..], b"{\"a\": 1}");
        }
        for (r, field) in [
            (row("nope", "Payment", "{}"), "merchant_id"),
            (row(&m, "bad type", "{}"), "event_type"),
            (row(&m, "Payment", "[1]"), "payload"),
            (row(&m, "Payment", "{\"a\":"), "payload"),
        ] {
            let got = to_event(&r, "gw.outbox", &SystemClock);
            assert!(
                matches!(&got, Err(reason) if reason.starts_with(field)),
                "{field}: {got:?}"
            );
        }
    }
}
