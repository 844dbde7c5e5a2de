//! The NATS JetStream source: one task per `[[sources.nats]]` entry reads a stream through a
//! durable pull consumer and stores each message as an event, so a gateway can publish to its
//! broker instead of calling `POST /v1/events` inside a payment.
//!
//! A message is either the body of `POST /v1/events` (`merchant_id`, `event_type`, `payload`,
//! optional `ordering_key` and `idempotency_key`), or, when it carries a `Blockhook-Merchant`
//! header, the raw payload with `Blockhook-Event-Type` (and optional `Blockhook-Ordering-Key`,
//! `Blockhook-Idempotency-Key`) headers. It is checked exactly as the API checks a request.
//!
//! Exactly one event per message:
//! - a message is acknowledged only after the event is committed in blockhook's store, through
//!   the same group-committing ingest the API uses;
//! - its idempotency key is its own, or else `nats:<stream>:<stream sequence>`, so a redelivery
//!   (the ack lost, blockhook killed between commit and ack) is answered as a duplicate;
//! - a message that can never be stored (not JSON, unknown merchant, bad type...) is recorded
//!   in the store's dead letters with the reason and terminated; so is a message delivered more
//!   than `max_deliver` times without being stored (one that keeps killing its reader);
//! - while the store is unavailable, messages are negatively acknowledged with a delay and the
//!   relay backs off, logging the outage once at WARN and the recovery at INFO.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::message::{AckKind, Message};
use bytes::Bytes;
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use blockhook_core::{DeadLetter, Error, NewEvent, Publication, StoreRef};

use crate::config::NatsSource;
use crate::metrics::Stream;
use crate::outbox::{RelayCx, reason_of, refused};

/// First and longest wait after a failure.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long one fetch waits for messages before asking again.
const FETCH_WAIT: Duration = Duration::from_secs(1);
/// How long JetStream waits for an acknowledgement before delivering a message again.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// When a message could not be stored for now, JetStream sends it again after this long.
const NAK_DELAY: Duration = Duration::from_secs(1);

/// The message headers of the raw-payload form.
const MERCHANT: &str = "Blockhook-Merchant";
const EVENT_TYPE: &str = "Blockhook-Event-Type";
const ORDERING_KEY: &str = "Blockhook-Ordering-Key";
const IDEMPOTENCY_KEY: &str = "Blockhook-Idempotency-Key";

/// Reads `source` until `stop` is cancelled; `store` keeps the dead letters.
#[tracing::instrument(skip_all, fields(stream = %source.stream, consumer = %source.consumer))]
pub async fn run(source: NatsSource, cx: RelayCx, store: StoreRef, stop: CancellationToken) {
    let label = Stream {
        stream: source.stream.clone(),
    };
    tracing::info!(url = %source.redacted_url(), batch = source.batch, "reading the NATS stream");
    let mut backoff = BACKOFF_MIN;
    let mut down = false;
    while !stop.is_cancelled() {
        let consumer = match consumer(&source).await {
            Ok(c) => c,
            Err(e) => {
                failed(&mut down, &format!("NATS: {e}"));
                wait(&stop, &mut backoff).await;
                continue;
            }
        };
        loop {
            let fetched = tokio::select! {
                () = stop.cancelled() => return,
                fetched = fetch(&consumer, source.batch) => fetched,
            };
            let messages = match fetched {
                Ok(m) => m,
                Err(e) => {
                    failed(&mut down, &format!("NATS: {e}"));
                    break;
                }
            };
            match pass(&source, messages, &cx, &store, &label).await {
                Ok(()) => {
                    if down {
                        tracing::info!("NATS source recovered: the stream and the store answer");
                        down = false;
                    }
                    backoff = BACKOFF_MIN;
                }
                Err(e) => {
                    failed(&mut down, &format!("blockhook's store: {e}"));
                    wait(&stop, &mut backoff).await;
                }
            }
        }
        wait(&stop, &mut backoff).await;
    }
}

/// Logs a failure: at WARN when the source was working, then at DEBUG until it recovers.
fn failed(down: &mut bool, what: &str) {
    if *down {
        tracing::debug!(error = %what, "NATS source still failing");
    } else {
        tracing::warn!(error = %what, "NATS source failed; retrying with backoff");
        *down = true;
    }
}

async fn wait(stop: &CancellationToken, backoff: &mut Duration) {
    tokio::select! {
        () = tokio::time::sleep(*backoff) => {}
        () = stop.cancelled() => {}
    }
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
}

/// Connects and finds (or creates) the durable consumer.
async fn consumer(source: &NatsSource) -> Result<PullConsumer, String> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(source.url.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_stream(&source.stream)
        .await
        .map_err(|e| format!("stream {:?}: {e}", source.stream))?;
    stream
        .get_or_create_consumer(
            &source.consumer,
            pull::Config {
                durable_name: Some(source.consumer.clone()),
                filter_subject: source.subject.clone(),
                ack_policy: AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                // blockhook counts deliveries itself and dead-letters: JetStream must not drop
                // a message silently after its own limit.
                max_deliver: -1,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("consumer {:?}: {e}", source.consumer))
}

/// Up to `batch` messages, waiting at most [`FETCH_WAIT`] for the first.
async fn fetch(consumer: &PullConsumer, batch: u32) -> Result<Vec<Message>, String> {
    let mut messages = consumer
        .fetch()
        .max_messages(batch as usize)
        .expires(FETCH_WAIT)
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(batch as usize);
    while let Some(m) = messages.next().await {
        out.push(m.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// A fetched message and what to do with it.
struct Fetched {
    message: Message,
    /// The stream sequence: the message's id in the stream.
    sequence: u64,
    /// The event, or why there can be none.
    event: Result<NewEvent, String>,
}

/// Stores the fetched messages, then acknowledges, dead-letters or negatively acknowledges each.
/// `Err` when the store is unavailable (every message not yet settled is redelivered later).
async fn pass(
    source: &NatsSource,
    messages: Vec<Message>,
    cx: &RelayCx,
    store: &StoreRef,
    label: &Stream,
) -> Result<(), Error> {
    if messages.is_empty() {
        return Ok(());
    }
    cx.metrics
        .nats_messages_read
        .get_or_create(label)
        .inc_by(messages.len() as u64);
    let mut fetched = Vec::with_capacity(messages.len());
    for message in messages {
        let (sequence, delivered, pending) = match message.info() {
            Ok(info) => (info.stream_sequence, info.delivered, info.pending),
            // Not a JetStream message (cannot happen on a pull consumer): nothing to settle.
            Err(_) => continue,
        };
        cx.metrics
            .nats_pending_messages
            .get_or_create(label)
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        let event = if delivered > i64::from(source.max_deliver) {
            Err(format!(
                "delivered {delivered} times without being stored (sources.nats.max_deliver = {})",
                source.max_deliver
            ))
        } else {
            to_event(&message, &source.stream, sequence, cx)
        };
        fetched.push(Fetched {
            message,
            sequence,
            event,
        });
    }
    let valid: Vec<NewEvent> = fetched
        .iter()
        .filter_map(|f| f.event.as_ref().ok().cloned())
        .collect();
    // The verdict per message: `Ok` stored, `Err` dead-letter with the reason.
    let mut verdicts: Vec<Result<(), String>> = Vec::with_capacity(fetched.len());
    let all_stored = if valid.is_empty() {
        true
    } else {
        match cx.ingest.submit(valid).await {
            Ok(_) => true,
            Err(e) if refused(&e) => false,
            Err(e) => {
                nak_all(&fetched).await;
                return Err(e);
            }
        }
    };
    for f in &fetched {
        let verdict = match &f.event {
            Err(reason) => Err(reason.clone()),
            Ok(_) if all_stored => Ok(()),
            // One refused event refuses the whole batch: store them one by one.
            Ok(event) => match cx.ingest.submit(vec![event.clone()]).await {
                Ok(_) => Ok(()),
                Err(e) if refused(&e) => Err(reason_of(&e)),
                Err(e) => {
                    nak_all(&fetched).await;
                    return Err(e);
                }
            },
        };
        verdicts.push(verdict);
    }
    let (mut ingested, mut dead) = (0u64, 0u64);
    for (f, verdict) in fetched.iter().zip(verdicts) {
        match verdict {
            Ok(()) => {
                ingested += 1;
                // A lost ack is a redelivery, which the idempotency key answers.
                if let Err(e) = f.message.ack().await {
                    tracing::debug!(sequence = f.sequence, error = %e, "ack not sent");
                }
            }
            Err(reason) => {
                let letter = DeadLetter {
                    source: format!("nats:{}", source.stream),
                    reference: f.sequence.to_string(),
                    reason: reason.clone(),
                    body: dead_letter_body(&f.message),
                    at: cx.clock.now(),
                };
                store.dead_letter(&letter).await?;
                dead += 1;
                tracing::warn!(sequence = f.sequence, %reason, "NATS message dead-lettered");
                if let Err(e) = f.message.ack_with(AckKind::Term).await {
                    tracing::debug!(sequence = f.sequence, error = %e, "term not sent");
                }
            }
        }
    }
    cx.metrics
        .nats_messages_ingested
        .get_or_create(label)
        .inc_by(ingested);
    cx.metrics
        .nats_messages_dead_lettered
        .get_or_create(label)
        .inc_by(dead);
    Ok(())
}

/// Sends every message back for later: the store could not take them now.
async fn nak_all(fetched: &[Fetched]) {
    for f in fetched {
        let _ = f.message.ack_with(AckKind::Nak(Some(NAK_DELAY))).await;
    }
}

/// What a dead letter keeps: the payload, preceded by the headers of the raw-payload form so
/// the operator sees what was sent.
fn dead_letter_body(message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(headers) = &message.headers {
        for (name, values) in headers.iter() {
            for value in values {
                out.extend_from_slice(format!("{name}: {value}\n").as_bytes());
            }
        }
        if !out.is_empty() {
            out.push(b'\n');
        }
    }
    out.extend_from_slice(&message.payload);
    out
}

/// The JSON form of a message: `POST /v1/events`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    merchant_id: String,
    event_type: String,
    #[serde(borrow)]
    payload: &'a RawValue,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    ordering_key: Option<String>,
}

/// The message's event, or why it has none (the dead-letter reason).
fn to_event(
    message: &Message,
    stream: &str,
    sequence: u64,
    cx: &RelayCx,
) -> Result<NewEvent, String> {
    let header = |name: &str| {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    let body: &Bytes = &message.payload;
    let (merchant, event_type, payload, idempotency_key, ordering_key) = match header(MERCHANT) {
        Some(merchant) => (
            merchant,
            header(EVENT_TYPE).ok_or_else(|| format!("event_type: no {EVENT_TYPE} header"))?,
            body.clone(),
            header(IDEMPOTENCY_KEY),
            header(ORDERING_KEY),
        ),
        None => {
            let e: Envelope<'_> = serde_json::from_slice(body).map_err(|e| {
                format!(
                    "not an event: {e} (send the body of POST /v1/events, or the payload with \
                     {MERCHANT} and {EVENT_TYPE} headers)"
                )
            })?;
            (
                e.merchant_id,
                e.event_type,
                body.slice_ref(e.payload.get().as_bytes()),
                e.idempotency_key,
                e.ordering_key,
            )
        }
    };
    let key = idempotency_key.unwrap_or_else(|| derived_key(stream, sequence));
    let publication = Publication {
        merchant_id: &merchant,
        event_type: &event_type,
        payload,
        idempotency_key: Some(&key),
        ordering_key: ordering_key.as_deref(),
    };
    NewEvent::check(publication, cx.clock.now()).map_err(|e| e.to_string())
}

/// The idempotency key of a message without one: its sequence is unique in the stream.
pub fn derived_key(stream: &str, sequence: u64) -> String {
    format!("nats:{stream}:{sequence}")
}
