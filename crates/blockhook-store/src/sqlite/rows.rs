//! Rows as SQLite returns them, their conversion into domain values, and the small helpers every
//! aggregate shares (column lists, JSON columns, multi-row INSERT chunking).
//!
//! Stored values were validated when written, so they are rebuilt with the `from_trusted`
//! constructors; a value that no longer parses means the file was edited by hand or a migration
//! went wrong, and surfaces as `Internal` instead of being silently patched.

use blockhook_core::{
    ApiKey, ApiKeyId, AttemptId, AttemptRecord, Delivery, DeliveryId, DeliveryOrigin,
    DeliveryState, Endpoint, EndpointId, EndpointUrl, Error, ErrorClass, Event, EventFilter,
    EventId, EventType, ExtraHeaders, IdempotencyKey, Label, Merchant, MerchantId, MerchantStatus,
    Payload, SealedSecret, SigningMode, SuccessPolicy, Timestamp,
};
use bytes::Bytes;

/// The largest page any listing returns, whatever the caller asks.
pub(super) const MAX_PAGE: u32 = 1000;

/// Rows per multi-row statement at most.
pub(super) const MAX_ROWS: usize = 256;

/// Splits a batch for multi-row statements: slices of at most [`MAX_ROWS`], each with the row
/// count its statement is written for, the next power of two. The statement's extra rows are
/// bound to NULL and filtered out in SQL (`WHERE column1 IS NOT NULL`), so nine SQL texts (1 to
/// 256 rows) serve every batch size: each is prepared once per connection, and a batch of any
/// size is one statement per 256 rows.
pub(super) fn padded_chunks<T>(items: &[T]) -> impl Iterator<Item = (&[T], usize)> {
    items
        .chunks(MAX_ROWS)
        .map(|c| (c, c.len().next_power_of_two()))
}

/// `(?, ?, ?), (?, ?, ?)`: `rows` tuples of `cols` placeholders, for `VALUES`.
pub(super) fn placeholders(rows: usize, cols: usize) -> String {
    let tuple = format!("({})", vec!["?"; cols].join(", "));
    vec![tuple.as_str(); rows].join(", ")
}

/// A stored count or number that must fit the domain's `u32`.
pub(super) fn to_u32(v: i64, what: &str) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::Internal(format!("stored {what} out of range: {v}")))
}

/// A stored HTTP status.
pub(super) fn to_status(v: Option<i64>) -> Result<Option<u16>, Error> {
    v.map(|s| u16::try_from(s).map_err(|_| Error::Internal(format!("stored status {s}"))))
        .transpose()
}

/// A `COUNT`/`SUM` result as a domain count.
pub(super) fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A page size as SQL `LIMIT` for an over-fetch of one row (see `Page::from_overfetch`).
pub(super) fn page_limit(limit: u32) -> (usize, i64) {
    let limit = limit.clamp(1, MAX_PAGE);
    (limit as usize, i64::from(limit) + 1)
}

/// Ids (or any strings) as a JSON array, bound as one parameter and unpacked in SQL with
/// `json_each`, so a list of any length is one statement with one cached plan.
pub(super) fn json_list<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<String, Error> {
    serde_json::to_string(&items.into_iter().collect::<Vec<_>>())
        .map_err(|e| Error::Internal(format!("encode id list: {e}")))
}

/// Header pairs as the JSON text stored in headers columns.
pub(super) fn pairs_json(pairs: &[(String, String)]) -> Result<String, Error> {
    serde_json::to_string(pairs).map_err(|e| Error::Internal(format!("encode headers: {e}")))
}

fn pairs_from_json(text: &str) -> Result<Vec<(String, String)>, Error> {
    serde_json::from_str(text).map_err(|e| Error::Internal(format!("stored headers: {e}")))
}

/// An event filter as stored in `endpoints.event_types`.
pub(super) fn filter_json(filter: &EventFilter) -> Result<String, Error> {
    serde_json::to_string(filter).map_err(|e| Error::Internal(format!("encode event types: {e}")))
}

/// An event filter read back from `endpoints.event_types`.
pub(super) fn filter_from_json(text: &str) -> Result<EventFilter, Error> {
    serde_json::from_str(text).map_err(|e| Error::Internal(format!("stored event types: {e}")))
}

fn corrupt(what: &str, value: &str) -> Error {
    Error::Internal(format!("stored {what} {value:?} does not parse"))
}

#[derive(sqlx::FromRow)]
pub(super) struct MerchantRow {
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
pub(super) struct ApiKeyRow {
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
pub(super) struct EndpointRow {
    id: String,
    merchant_id: String,
    url: String,
    description: Option<String>,
    event_types: String,
    signing_mode: String,
    success_policy: String,
    headers: String,
    rate_limit: Option<i64>,
    label: Option<String>,
    enabled: bool,
    disabled_reason: Option<String>,
    secret: Vec<u8>,
    created_at: i64,
    updated_at: i64,
}

impl EndpointRow {
    /// Reads the columns of `endpoint_columns!()`, in that order, from a row of the writer
    /// thread's rusqlite connection.
    pub(super) fn from_rusqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            merchant_id: r.get(1)?,
            url: r.get(2)?,
            description: r.get(3)?,
            event_types: r.get(4)?,
            signing_mode: r.get(5)?,
            success_policy: r.get(6)?,
            headers: r.get(7)?,
            rate_limit: r.get(8)?,
            label: r.get(9)?,
            enabled: r.get(10)?,
            disabled_reason: r.get(11)?,
            secret: r.get(12)?,
            created_at: r.get(13)?,
            updated_at: r.get(14)?,
        })
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
            secret: SealedSecret(r.secret),
            created_at: Timestamp::from_ms(r.created_at),
            updated_at: Timestamp::from_ms(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    id: String,
    merchant_id: String,
    event_type: String,
    payload: Option<Vec<u8>>,
    idempotency_key: Option<String>,
    created_at: i64,
    resend_count: i64,
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
            resend_count: to_u32(r.resend_count, "resend count")?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct DeliveryRow {
    id: String,
    event_id: String,
    endpoint_id: String,
    merchant_id: String,
    state: String,
    origin: String,
    attempts: i64,
    next_attempt_at: Option<i64>,
    lease_until: Option<i64>,
    last_status: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl DeliveryRow {
    /// The delivery as seen at `now`: a pending one under a live lease is `InFlight`.
    pub(super) fn at(self, now: Timestamp) -> Result<Delivery, Error> {
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
            attempts: to_u32(self.attempts, "attempts")?,
            next_attempt_at: if stored == DeliveryState::Pending {
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
pub(super) struct AttemptRow {
    id: String,
    delivery_id: String,
    number: i64,
    started_at: i64,
    url: String,
    request_headers: String,
    status: Option<i64>,
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
            number: to_u32(r.number, "attempt number")?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_chunks_use_few_shapes() {
        let items: Vec<u32> = (0..1000).collect();
        let parts: Vec<_> = padded_chunks(&items).collect();
        assert_eq!(parts.iter().map(|(c, _)| c.len()).sum::<usize>(), 1000);
        assert_eq!(
            parts.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
            vec![256, 256, 256, 256]
        );
        let few: Vec<_> = padded_chunks(&items[..5])
            .map(|(c, n)| (c.len(), n))
            .collect();
        assert_eq!(few, vec![(5, 8)]);
        assert_eq!(padded_chunks::<u32>(&[]).count(), 0);
        assert_eq!(placeholders(2, 3), "(?, ?, ?), (?, ?, ?)");
    }
}
