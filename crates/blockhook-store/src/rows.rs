//! Rows as both backends return them, and their conversion into domain values: one definition
//! of each row type and of the decoding of its enum, JSON and integer columns, read by SQLite
//! and PostgreSQL alike (`sqlx::FromRow` is generic over the database). Integer columns that are
//! `INTEGER` (32-bit) in PostgreSQL are `i32` here; SQLite decodes them with a range check.
//!
//! Stored values were validated when written, so they are rebuilt with the `from_trusted`
//! constructors; a value that no longer parses means the database was edited by hand or a
//! migration went wrong, and surfaces as `Internal` instead of being silently patched.
//!
//! What differs per backend stays in `sqlite/rows.rs` (multi-row statement shapes, JSON id
//! lists, the writer thread's rusqlite decoding) and `postgres/rows.rs` (column lists with table
//! aliases, filter matching at ingest).

use blockhook_core::{
    ApiKey, ApiKeyId, AttemptId, AttemptRecord, DeadLetter, Delivery, DeliveryId, DeliveryOrigin,
    DeliveryState, Endpoint, EndpointId, EndpointUrl, Error, ErrorClass, Event, EventFilter,
    EventId, EventType, ExtraHeaders, IdempotencyKey, Label, Merchant, MerchantId, MerchantStatus,
    Ordering, Payload, PreviousSecret, SealedSecret, SecretSlot, SigningMode, SuccessPolicy,
    Timestamp,
};
use bytes::Bytes;

/// A stored count or number that must fit the domain's `u32`.
pub(crate) fn to_u32(v: i64, what: &str) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::Internal(format!("stored {what} out of range: {v}")))
}

/// A stored HTTP status.
pub(crate) fn to_status(v: Option<i32>) -> Result<Option<u16>, Error> {
    v.map(|s| u16::try_from(s).map_err(|_| Error::Internal(format!("stored status {s}"))))
        .transpose()
}

/// A `COUNT`/`SUM` result as a domain count.
pub(crate) fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Header pairs as the JSON text stored in headers columns.
pub(crate) fn pairs_json(pairs: &[(String, String)]) -> Result<String, Error> {
    serde_json::to_string(pairs).map_err(|e| Error::Internal(format!("encode headers: {e}")))
}

fn pairs_from_json(text: &str) -> Result<Vec<(String, String)>, Error> {
    serde_json::from_str(text).map_err(|e| Error::Internal(format!("stored headers: {e}")))
}

/// An event filter as stored in `endpoints.event_types`.
pub(crate) fn filter_json(filter: &EventFilter) -> Result<String, Error> {
    serde_json::to_string(filter).map_err(|e| Error::Internal(format!("encode event types: {e}")))
}

/// An event filter read back from `endpoints.event_types`.
pub(crate) fn filter_from_json(text: &str) -> Result<EventFilter, Error> {
    serde_json::from_str(text).map_err(|e| Error::Internal(format!("stored event types: {e}")))
}

fn corrupt(what: &str, value: &str) -> Error {
    Error::Internal(format!("stored {what} {value:?} does not parse"))
}

#[derive(sqlx::FromRow)]
pub(crate) struct MerchantRow {
    id: String,
    name: String,
    status: String,
    created_at: i64,
}

impl TryFrom<MerchantRow> for Merchant {
    type Error = Error;
    fn try_from(r: MerchantRow) -> Result<Self, Error> {
        Ok(Merchant {
            status: MerchantStatus::parse(&r.status)
                .map_err(|_| corrupt("merchant status", &r.status))?,
            id: MerchantId::from_trusted(r.id),
            name: r.name,
            created_at: Timestamp::from_ms(r.created_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ApiKeyRow {
    id: String,
    merchant_id: String,
    prefix: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl From<ApiKeyRow> for ApiKey {
    fn from(r: ApiKeyRow) -> Self {
        ApiKey {
            id: ApiKeyId::from_trusted(r.id),
            merchant_id: MerchantId::from_trusted(r.merchant_id),
            prefix: r.prefix,
            created_at: Timestamp::from_ms(r.created_at),
            revoked_at: r.revoked_at.map(Timestamp::from_ms),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct EndpointRow {
    pub(crate) id: String,
    pub(crate) merchant_id: String,
    pub(crate) url: String,
    pub(crate) description: Option<String>,
    pub(crate) event_types: String,
    pub(crate) signing_mode: String,
    pub(crate) success_policy: String,
    pub(crate) headers: String,
    pub(crate) rate_limit: Option<i64>,
    pub(crate) label: Option<String>,
    pub(crate) enabled: bool,
    pub(crate) disabled_reason: Option<String>,
    pub(crate) secret: Vec<u8>,
    pub(crate) previous_secret: Option<Vec<u8>>,
    pub(crate) previous_secret_until: Option<i64>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    /// `Ordering` as JSON; NULL for mode `none`.
    pub(crate) ordering: Option<String>,
}

impl EndpointRow {
    /// The endpoint's id, before conversion.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

impl TryFrom<EndpointRow> for Endpoint {
    type Error = Error;
    fn try_from(r: EndpointRow) -> Result<Self, Error> {
        // Serde, not `ExtraHeaders::parse`: the pairs were validated when written.
        let headers: ExtraHeaders = serde_json::from_str(&r.headers)
            .map_err(|_| corrupt("endpoint headers", &r.headers))?;
        Ok(Endpoint {
            url: EndpointUrl::from_trusted(&r.url)?,
            filter: filter_from_json(&r.event_types)?,
            signing_mode: SigningMode::parse(&r.signing_mode)
                .map_err(|_| corrupt("signing mode", &r.signing_mode))?,
            success_policy: SuccessPolicy::parse(&r.success_policy)
                .map_err(|_| corrupt("success policy", &r.success_policy))?,
            headers,
            rate_limit: r.rate_limit.map(|v| to_u32(v, "rate limit")).transpose()?,
            label: r
                .label
                .map(|l| Label::parse(&l).map_err(|_| corrupt("label", &l)))
                .transpose()?,
            id: EndpointId::from_trusted(r.id),
            merchant_id: MerchantId::from_trusted(r.merchant_id),
            description: r.description,
            enabled: r.enabled,
            disabled_reason: r.disabled_reason,
            secret: SealedSecret::from_stored(r.secret),
            // Both columns or neither: a half-written pair means no overlap.
            previous_secret: r.previous_secret.zip(r.previous_secret_until).map(
                |(sealed, until)| PreviousSecret {
                    secret: SealedSecret::from_stored(sealed),
                    until: Timestamp::from_ms(until),
                },
            ),
            created_at: Timestamp::from_ms(r.created_at),
            updated_at: Timestamp::from_ms(r.updated_at),
            ordering: Ordering::from_stored(r.ordering.as_deref())?,
        })
    }
}

/// `(id, secret, previous_secret)` rows as [`Maintenance::sealed_secrets`] lists them: the current
/// secret, then the previous one when there is one.
///
/// [`Maintenance::sealed_secrets`]: blockhook_core::Maintenance::sealed_secrets
pub(crate) fn sealed_secrets(
    rows: Vec<(String, Vec<u8>, Option<Vec<u8>>)>,
) -> Vec<(EndpointId, SecretSlot, SealedSecret)> {
    let mut out = Vec::with_capacity(rows.len());
    for (id, current, previous) in rows {
        let id = EndpointId::from_trusted(id);
        if let Some(previous) = previous {
            out.push((
                id.clone(),
                SecretSlot::Current,
                SealedSecret::from_stored(current),
            ));
            out.push((
                id,
                SecretSlot::Previous,
                SealedSecret::from_stored(previous),
            ));
        } else {
            out.push((id, SecretSlot::Current, SealedSecret::from_stored(current)));
        }
    }
    out
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    id: String,
    merchant_id: String,
    event_type: String,
    payload: Option<Vec<u8>>,
    idempotency_key: Option<String>,
    created_at: i64,
    resend_count: i32,
}

impl TryFrom<EventRow> for Event {
    type Error = Error;
    fn try_from(r: EventRow) -> Result<Self, Error> {
        Ok(Event {
            event_type: EventType::parse(&r.event_type)
                .map_err(|_| corrupt("event type", &r.event_type))?,
            idempotency_key: r
                .idempotency_key
                .map(|k| IdempotencyKey::parse(&k).map_err(|_| corrupt("idempotency key", &k)))
                .transpose()?,
            id: EventId::from_trusted(r.id),
            merchant_id: MerchantId::from_trusted(r.merchant_id),
            payload: r.payload.map(|p| Payload::from_trusted(Bytes::from(p))),
            created_at: Timestamp::from_ms(r.created_at),
            resend_count: to_u32(i64::from(r.resend_count), "resend count")?,
        })
    }
}

/// What an in-flight delivery reports as its next attempt time (see [`DeliveryRow::at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NextWhileLeased {
    /// The lease expiry (SQLite).
    LeaseExpiry,
    /// None (PostgreSQL).
    Nothing,
}

#[derive(sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    id: String,
    event_id: String,
    endpoint_id: String,
    merchant_id: String,
    state: String,
    origin: String,
    attempts: i32,
    next_attempt_at: Option<i64>,
    lease_until: Option<i64>,
    last_status: Option<i32>,
    created_at: i64,
    updated_at: i64,
}

impl DeliveryRow {
    /// The delivery as seen at `now`: a pending one under a live lease is `InFlight`.
    ///
    /// `while_leased` says what an in-flight delivery reports as `next_attempt_at`. The backends
    /// differed here before their rows were shared, and this move keeps each as it was (see
    /// `docs/decisions.md`, "Store traits per concern"): SQLite reports the lease expiry (when it
    /// is due again should the attempt never finish), PostgreSQL none.
    pub(crate) fn at(
        self,
        now: Timestamp,
        while_leased: NextWhileLeased,
    ) -> Result<Delivery, Error> {
        let stored = match self.state.as_str() {
            "pending" | "succeeded" | "failed" => DeliveryState::parse(&self.state)
                .map_err(|_| corrupt("delivery state", &self.state))?,
            _ => return Err(corrupt("delivery state", &self.state)),
        };
        let leased = self.lease_until.is_some_and(|until| until > now.ms());
        let state = if stored == DeliveryState::Pending && leased {
            DeliveryState::InFlight
        } else {
            stored
        };
        Ok(Delivery {
            id: DeliveryId::from_trusted(self.id),
            event_id: EventId::from_trusted(self.event_id),
            endpoint_id: EndpointId::from_trusted(self.endpoint_id),
            merchant_id: MerchantId::from_trusted(self.merchant_id),
            state,
            origin: DeliveryOrigin::parse(&self.origin)?,
            attempts: to_u32(i64::from(self.attempts), "attempts")?,
            next_attempt_at: if state == DeliveryState::Pending
                || (state == DeliveryState::InFlight
                    && while_leased == NextWhileLeased::LeaseExpiry)
            {
                self.next_attempt_at.map(Timestamp::from_ms)
            } else {
                None
            },
            last_status: to_status(self.last_status)?,
            created_at: Timestamp::from_ms(self.created_at),
            updated_at: Timestamp::from_ms(self.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AttemptRow {
    id: String,
    delivery_id: String,
    number: i32,
    started_at: i64,
    url: String,
    request_headers: String,
    status: Option<i32>,
    response_headers: String,
    response_body: Vec<u8>,
    response_truncated: bool,
    latency_ms: i64,
    error: Option<String>,
    error_detail: Option<String>,
}

impl TryFrom<AttemptRow> for AttemptRecord {
    type Error = Error;
    fn try_from(r: AttemptRow) -> Result<Self, Error> {
        Ok(AttemptRecord {
            id: AttemptId::from_trusted(r.id),
            delivery_id: DeliveryId::from_trusted(r.delivery_id),
            number: to_u32(i64::from(r.number), "attempt number")?,
            started_at: Timestamp::from_ms(r.started_at),
            url: r.url,
            request_headers: pairs_from_json(&r.request_headers)?,
            status: to_status(r.status)?,
            response_headers: pairs_from_json(&r.response_headers)?,
            response_body: Bytes::from(r.response_body),
            response_truncated: r.response_truncated,
            latency_ms: to_u32(r.latency_ms, "latency")?,
            error: r.error.as_deref().map(ErrorClass::parse).transpose()?,
            error_detail: r.error_detail,
        })
    }
}

/// A `dead_letters` row: source, reference, reason, body, created_at.
pub(crate) type DeadLetterRow = (String, String, String, Vec<u8>, i64);

/// The dead letter of a row.
pub(crate) fn dead_letter((source, reference, reason, body, at): DeadLetterRow) -> DeadLetter {
    DeadLetter {
        source,
        reference,
        reason,
        body,
        at: Timestamp::from_ms(at),
    }
}

/// An `endpoint_alerts` row: endpoint_id, merchant_id, state, streak, failing_since,
/// last_failure_at, last_error, updated_at.
pub(crate) type AlertRow = (
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    i64,
);

/// The alert state of a row.
pub(crate) fn endpoint_alert(
    (endpoint, merchant, state, streak, since, last, error, at): AlertRow,
) -> Result<blockhook_core::EndpointAlert, Error> {
    Ok(blockhook_core::EndpointAlert {
        endpoint_id: EndpointId::from_trusted(endpoint),
        merchant_id: MerchantId::from_trusted(merchant),
        state: blockhook_core::AlertState::parse(&state)?,
        streak: to_u32(streak, "streak")?,
        failing_since: since.map(Timestamp::from_ms),
        last_failure_at: last.map(Timestamp::from_ms),
        last_error: error,
        updated_at: Timestamp::from_ms(at),
    })
}

/// A failure window row: endpoint_id, merchant_id, last_ok, failures after it, the first of
/// them, the last failure, its error.
pub(crate) type WindowRow = (
    String,
    String,
    Option<i64>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

/// The failure window of a row.
pub(crate) fn failure_window(
    (endpoint, merchant, last_ok, failures, first, last, error): WindowRow,
) -> Result<blockhook_core::FailureWindow, Error> {
    Ok(blockhook_core::FailureWindow {
        endpoint_id: EndpointId::from_trusted(endpoint),
        merchant_id: MerchantId::from_trusted(merchant),
        last_ok: last_ok.map(Timestamp::from_ms),
        failures: to_u32(failures, "failures")?,
        first_failure: first.map(Timestamp::from_ms),
        last_failure_at: last.map(Timestamp::from_ms),
        last_error: error,
    })
}

/// An exhausted delivery row: delivery id, event id, event type, endpoint id, merchant id,
/// attempts, last status, start of the last attempt.
pub(crate) type ExhaustedRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i32>,
    i64,
);

/// The exhausted delivery of a row.
pub(crate) fn exhausted_delivery(
    (delivery, event, event_type, endpoint, merchant, attempts, status, at): ExhaustedRow,
) -> Result<blockhook_core::ExhaustedDelivery, Error> {
    Ok(blockhook_core::ExhaustedDelivery {
        delivery_id: DeliveryId::from_trusted(delivery),
        event_id: EventId::from_trusted(event),
        event_type: EventType::parse(&event_type)
            .map_err(|e| Error::Internal(format!("stored event type: {e}")))?,
        endpoint_id: EndpointId::from_trusted(endpoint),
        merchant_id: MerchantId::from_trusted(merchant),
        attempts: to_u32(attempts, "attempts")?,
        last_status: to_status(status)?,
        failed_at: Timestamp::from_ms(at),
    })
}

/// What both backends read for an endpoint's page, as the rows their statements return:
/// `(hour index from since, succeeded, failed, pending)` per hour, `(due, scheduled, in flight,
/// oldest due)`, the failed attempts since the last success with the first of them, and the
/// newest deliveries already decoded.
pub(crate) struct ActivityRows {
    pub(crate) hours: Vec<(i64, i64, i64, i64)>,
    pub(crate) queue: (i64, i64, i64, Option<i64>),
    pub(crate) last_success: Option<i64>,
    pub(crate) failed_since: (i64, Option<i64>),
    pub(crate) recent: Vec<Delivery>,
}

/// [`ActivityRows`] read from `since` (an hour boundary), as the store contract's value.
pub(crate) fn endpoint_activity(
    since: blockhook_core::Timestamp,
    rows: ActivityRows,
) -> blockhook_core::EndpointActivity {
    use blockhook_core::{EndpointActivity, EndpointQueue, FailureStreak, HourCounts, Timestamp};
    const HOUR_MS: i64 = 3_600_000;
    let ActivityRows {
        hours,
        queue,
        last_success,
        failed_since: (failed, first),
        recent,
    } = rows;
    EndpointActivity {
        hours: hours
            .into_iter()
            .map(|(h, succeeded, failed, pending)| HourCounts {
                hour: Timestamp::from_ms(since.ms() + h * HOUR_MS),
                succeeded: count(succeeded),
                failed: count(failed),
                pending: count(pending),
            })
            .collect(),
        queue: EndpointQueue {
            due: count(queue.0),
            scheduled: count(queue.1),
            in_flight: count(queue.2),
            oldest_due_at: queue.3.map(Timestamp::from_ms),
        },
        streak: FailureStreak {
            failed_attempts: count(failed),
            since: first.map(Timestamp::from_ms),
            last_success: last_success.map(Timestamp::from_ms),
        },
        recent,
    }
}
