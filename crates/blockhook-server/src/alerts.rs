//! The endpoint watch: failure alerts as operational webhooks.
//!
//! Every `alerts.interval`, one process at a time (the store's job lock, as retention) reads the
//! attempt log since its cursor, folds it into each endpoint's alert state (failure streak, first
//! failure since the last success), and publishes operational events through the ordinary
//! ingest path, so they are signed, retried and logged like every other event:
//! - `endpoint.failing` once per streak, when it reaches `alerts.failure_streak`;
//! - `endpoint.recovered` on the first success after `failing` (or after an auto-disable);
//! - `endpoint.disabled` when an endpoint had no success for `alerts.disable_after` since its
//!   first failure; the watch disables it, with the reason;
//! - `delivery.exhausted` for every delivery that ended `failed` after its last retry.
//!
//! Why a periodic job and not the dispatcher: finishing deliveries is the hot path, and a
//! per-delivery write to a per-endpoint row would be a contended write on every attempt. The
//! watch reads what `Queue::finish` wrote anyway, `settle` behind the clock (an attempt is logged
//! when it finishes, up to a request timeout plus a lease after it started).
//!
//! No storms: operational events go only to endpoints that name them (`EventFilter::matches`),
//! and such alert endpoints are not watched, so an alert endpoint's failures never make alerts,
//! and no endpoint is ever told about itself. Each event has an idempotency key made of what it
//! is about, so a pass repeated after a crash publishes nothing twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use blockhook_core::{
    AlertState, Clock, Endpoint, EndpointAlert, EndpointId, Error, EventId, EventType,
    ExhaustedDelivery, IdempotencyKey, JobLock, MerchantId, NewEvent, Payload, StoreRef, Timestamp,
};

use crate::config::AlertsSettings;
use crate::ingest::Ingestor;
use crate::ui::html::iso;

/// The job lock's name.
const JOB: &str = "endpoint-watch";

/// How the reason of an endpoint the watch disabled starts.
const AUTO_DISABLED: &str = "disabled automatically";

/// What the watch needs.
pub(crate) struct WatchCx {
    /// The store.
    pub(crate) store: StoreRef,
    /// Time source.
    pub(crate) clock: Arc<dyn Clock>,
    /// Where operational events are published (the same path as the API's).
    pub(crate) ingest: Ingestor,
    /// `[alerts]`.
    pub(crate) cfg: AlertsSettings,
    /// How far behind the clock the watch reads the attempt log.
    pub(crate) settle: Duration,
}

/// Runs one pass every `cfg.interval` until `stop`, whenever this process holds the job lock.
pub(crate) async fn run(cx: WatchCx, stop: CancellationToken) {
    let mut lock: Option<Box<dyn JobLock>> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(cx.cfg.interval) => {}
            () = stop.cancelled() => return,
        }
        if let Some(held) = lock.as_mut() {
            if !held.held().await {
                tracing::warn!("lost the endpoint watch lock; another process may take over");
                lock = None;
            }
        }
        if lock.is_none() {
            match cx.store.try_job_lock(JOB).await {
                Ok(Some(got)) => {
                    tracing::info!("this process runs the endpoint watch");
                    lock = Some(got);
                }
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "endpoint watch lock unavailable");
                    continue;
                }
            }
        }
        if let Err(e) = pass(&cx).await {
            // Nothing was saved: the next pass reads the same window again (the events it
            // already published are recognised by their idempotency keys).
            tracing::warn!(error = %e, "endpoint watch pass failed");
        }
    }
}

/// Endpoints read during one pass (`None`: deleted).
struct Endpoints<'a> {
    store: &'a StoreRef,
    seen: HashMap<String, Option<Endpoint>>,
}

impl Endpoints<'_> {
    async fn get(&mut self, m: &MerchantId, id: &EndpointId) -> Result<Option<Endpoint>, Error> {
        if let Some(ep) = self.seen.get(id.as_str()) {
            return Ok(ep.clone());
        }
        let ep = match self.store.get_endpoint(m, id).await {
            Ok(ep) => Some(ep),
            Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        self.seen.insert(id.as_str().to_owned(), ep.clone());
        Ok(ep)
    }
}

/// One pass: fold the window, apply the standing rules, publish, save. Public to the crate so
/// tests of the server can drive it.
pub(crate) async fn pass(cx: &WatchCx) -> Result<(), Error> {
    let now = cx.clock.now();
    let to = now - cx.settle;
    // The very first pass looks back one `disable_after` (a day when it is 0): enough to see
    // endpoints already failing when alerts are turned on, without reading the whole log.
    let first_look = if cx.cfg.disable_after > Duration::ZERO {
        cx.cfg.disable_after
    } else {
        Duration::from_secs(86_400)
    };
    let from = cx.store.watch_cursor().await?.unwrap_or(to - first_look);
    let (windows, exhausted, cursor) = if to > from {
        let w = cx.store.failure_windows(from, to).await?;
        let e = cx.store.exhausted_deliveries(from, to).await?;
        (w, e, to)
    } else {
        // The clock stood still or went back: nothing new to read.
        (Vec::new(), Vec::new(), from)
    };

    let mut rows: BTreeMap<String, EndpointAlert> = cx
        .store
        .endpoint_alerts(None)
        .await?
        .into_iter()
        .map(|r| (r.endpoint_id.as_str().to_owned(), r))
        .collect();
    let mut eps = Endpoints {
        store: &cx.store,
        seen: HashMap::new(),
    };
    let mut publish: Vec<NewEvent> = Vec::new();
    let mut cleared: Vec<EndpointId> = Vec::new();
    let mut changed: Vec<String> = Vec::new();

    for w in windows {
        let Some(ep) = eps.get(&w.merchant_id, &w.endpoint_id).await? else {
            continue;
        };
        if ep.filter.wants_operational() {
            continue;
        }
        let key = w.endpoint_id.as_str().to_owned();
        let prev = rows.remove(&key).unwrap_or_else(|| {
            EndpointAlert::ok(w.endpoint_id.clone(), w.merchant_id.clone(), now)
        });
        let mut next = prev.clone();
        if let Some(ok_at) = w.last_ok {
            if prev.state != AlertState::Ok {
                let body = alert_body(&ep, &prev, now, json!({ "recovered_at": iso(ok_at) }));
                let id = format!("{}:{}", ep.id.as_str(), since_ms(&prev));
                publish.extend(events(
                    cx,
                    &ep.merchant_id,
                    blockhook_core::ENDPOINT_RECOVERED,
                    &id,
                    &body,
                    now,
                ));
            }
            next.state = AlertState::Ok;
            next.streak = w.failures;
            next.failing_since = w.first_failure;
        } else {
            next.streak = prev.streak.saturating_add(w.failures);
            next.failing_since = prev.failing_since.or(w.first_failure);
        }
        if w.last_failure_at.is_some() {
            next.last_failure_at = w.last_failure_at;
            next.last_error = w.last_error.clone();
        }
        if next.state == AlertState::Ok && next.streak >= cx.cfg.failure_streak {
            next.state = AlertState::Failing;
            let body = alert_body(&ep, &next, now, json!({}));
            let id = format!("{}:{}", ep.id.as_str(), since_ms(&next));
            publish.extend(events(
                cx,
                &ep.merchant_id,
                blockhook_core::ENDPOINT_FAILING,
                &id,
                &body,
                now,
            ));
        }
        if next != prev {
            next.updated_at = now;
            changed.push(key.clone());
        }
        rows.insert(key, next);
    }

    // Standing rules, whether or not the endpoint had attempts in this window.
    for (key, row) in &mut rows {
        let Some(ep) = eps.get(&row.merchant_id, &row.endpoint_id).await? else {
            continue;
        };
        if ep.filter.wants_operational() {
            // It became an alert endpoint: no longer watched.
            cleared.push(row.endpoint_id.clone());
            continue;
        }
        if row.state == AlertState::Disabled && ep.enabled {
            // Re-enabled by its merchant: a fresh period before it can be disabled again, and
            // its first success will say `endpoint.recovered`.
            row.state = AlertState::Failing;
            row.streak = 0;
            row.failing_since = Some(now);
            row.updated_at = now;
            changed.push(key.clone());
        }
        if row.state != AlertState::Disabled
            && !ep.enabled
            && ep
                .disabled_reason
                .as_deref()
                .is_some_and(|r| r.starts_with(AUTO_DISABLED))
        {
            // Disabled by an earlier pass that could not save its rows (the event went out
            // before the disable, so only the row is behind).
            row.state = AlertState::Disabled;
            row.updated_at = ep.updated_at;
            changed.push(key.clone());
        }
        let due = row.failing_since.is_some_and(|since| {
            cx.cfg.disable_after > Duration::ZERO && now >= since + cx.cfg.disable_after
        });
        if row.state != AlertState::Disabled && ep.enabled && due {
            let since = row.failing_since.unwrap_or(now);
            let reason = format!(
                "{AUTO_DISABLED}: no successful delivery for {} since {}",
                humantime::format_duration(cx.cfg.disable_after),
                iso(since)
            );
            let mut disabled = row.clone();
            disabled.state = AlertState::Disabled;
            let body = alert_body(&ep, &disabled, now, json!({ "disabled_reason": reason }));
            let id = format!("{}:{}", ep.id.as_str(), since.ms());
            // Published before the endpoint is disabled: a crash in between publishes it again
            // (the same key, ignored) and disables on the next pass.
            let evs = events(
                cx,
                &ep.merchant_id,
                blockhook_core::ENDPOINT_DISABLED,
                &id,
                &body,
                now,
            );
            submit(cx, evs).await?;
            if cx
                .store
                .auto_disable(&ep.merchant_id, &ep.id, &reason, now)
                .await?
            {
                tracing::warn!(endpoint = %ep.id, merchant = %ep.merchant_id, %reason, "endpoint disabled by the endpoint watch");
                *row = disabled;
                row.updated_at = now;
                changed.push(key.clone());
            }
        }
    }

    for ex in &exhausted {
        if blockhook_core::is_operational(&ex.event_type) {
            continue;
        }
        let Some(ep) = eps.get(&ex.merchant_id, &ex.endpoint_id).await? else {
            continue;
        };
        if ep.filter.wants_operational() {
            continue;
        }
        let body = exhausted_body(&ep, ex, now);
        let id = format!("{}:{}", ex.delivery_id.as_str(), ex.attempts);
        publish.extend(events(
            cx,
            &ep.merchant_id,
            blockhook_core::DELIVERY_EXHAUSTED,
            &id,
            &body,
            now,
        ));
    }

    submit(cx, publish).await?;

    let mut save = Vec::new();
    changed.sort_unstable();
    changed.dedup();
    for key in changed {
        let Some(row) = rows.get(&key) else { continue };
        if row.state == AlertState::Ok && row.streak == 0 {
            cleared.push(row.endpoint_id.clone());
        } else {
            save.push(row.clone());
        }
    }
    cx.store.save_watch(&save, &cleared, cursor).await
}

fn since_ms(row: &EndpointAlert) -> i64 {
    row.failing_since.map_or(0, Timestamp::ms)
}

/// The payload of `endpoint.failing`, `.recovered` and `.disabled`: the endpoint and its state,
/// plus `extra`.
fn alert_body(
    ep: &Endpoint,
    row: &EndpointAlert,
    now: Timestamp,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut body = json!({
        "merchant_id": ep.merchant_id.as_str(),
        "endpoint_id": ep.id.as_str(),
        "url": ep.url.as_str(),
        "label": ep.label.as_ref().map(|l| l.as_str()),
        "state": row.state.as_str(),
        "streak": row.streak,
        "failing_since": row.failing_since.map(iso),
        "last_failure_at": row.last_failure_at.map(iso),
        "last_error": row.last_error,
        "at": iso(now),
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

/// The payload of `delivery.exhausted`.
fn exhausted_body(ep: &Endpoint, ex: &ExhaustedDelivery, now: Timestamp) -> serde_json::Value {
    json!({
        "merchant_id": ep.merchant_id.as_str(),
        "endpoint_id": ep.id.as_str(),
        "url": ep.url.as_str(),
        "label": ep.label.as_ref().map(|l| l.as_str()),
        "delivery_id": ex.delivery_id.as_str(),
        "event_id": ex.event_id.as_str(),
        "event_type": ex.event_type.as_str(),
        "attempts": ex.attempts,
        "last_status": ex.last_status,
        "failed_at": iso(ex.failed_at),
        "at": iso(now),
    })
}

/// The event for the merchant and, when an operator merchant is configured (and is another
/// merchant), its copy for the operator.
fn events(
    cx: &WatchCx,
    merchant: &MerchantId,
    event_type: &str,
    about: &str,
    body: &serde_json::Value,
    now: Timestamp,
) -> Vec<NewEvent> {
    let mut to = vec![merchant.clone()];
    if !cx.cfg.operator_merchant.is_empty() && cx.cfg.operator_merchant != merchant.as_str() {
        to.push(MerchantId::from_trusted(cx.cfg.operator_merchant.clone()));
    }
    let bytes = Bytes::from(body.to_string());
    to.into_iter()
        .filter_map(|m| {
            let ev = NewEvent {
                id: EventId::generate(),
                merchant_id: m,
                event_type: EventType::parse(event_type).ok()?,
                payload: Payload::from_trusted(bytes.clone()),
                idempotency_key: IdempotencyKey::parse(&format!("blockhook:{event_type}:{about}"))
                    .ok(),
                ordering_key: None,
                created_at: now,
                // Operational payloads name an endpoint, not an order: nothing to index.
                search_keys: Vec::new(),
            };
            Some(ev)
        })
        .collect()
}

/// Publishes each event on its own, so that an unknown or suspended merchant (the operator's
/// merchant misconfigured, say) only loses its own alerts. An unavailable store fails the pass.
async fn submit(cx: &WatchCx, events: Vec<NewEvent>) -> Result<(), Error> {
    for ev in events {
        let (merchant, event_type) = (ev.merchant_id.clone(), ev.event_type.clone());
        match cx.ingest.submit(vec![ev]).await {
            Ok(done) => {
                if done.iter().any(|d| !d.duplicate) {
                    tracing::info!(%merchant, event_type = event_type.as_str(), "operational event published");
                }
            }
            Err(e @ (Error::NotFound(_) | Error::Conflict(_))) => {
                tracing::warn!(%merchant, event_type = event_type.as_str(), error = %e, "operational event not published");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
