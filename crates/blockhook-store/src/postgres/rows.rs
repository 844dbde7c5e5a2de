//! Rows as PostgreSQL returns them, and their conversion into domain values.
//!
//! Every row type mirrors a table's columns by name (`FromRow`), so a query that selects
//! `endpoints.*`-shaped columns can be read by any method. Stored values were validated when
//! written; a value that no longer parses means the database was edited by hand or a migration
//! went wrong, so it surfaces as `Internal` rather than being silently patched.

use blockhook_core::{
    ApiKey, ApiKeyId, AttemptId, AttemptRecord, Delivery, DeliveryId, DeliveryOrigin,
    DeliveryState, Endpoint, EndpointId, EndpointUrl, Error, ErrorClass, Event, EventFilter,
    EventId, EventType, ExtraHeaders, IdempotencyKey, Label, Merchant, MerchantId, MerchantStatus,
    Payload, SealedSecret, SigningMode, SuccessPolicy, Timestamp,
};
use bytes::Bytes;

/// A stored integer that must fit the domain's unsigned type.
pub(super) fn to_u32(v: i64, what: &str) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::Internal(format!("stored {what} out of range: {v}")))
}

/// A stored HTTP status.
pub(super) fn to_status(v: Option<i32>) -> Result<Option<u16>, Error> {
    v.map(|s| u16::try_from(s).map_err(|_| Error::Internal(format!("stored status {s}"))))
        .transpose()
}

/// A domain count as a column value (counts beyond `i64` cannot occur).
pub(super) fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Header pairs as the JSON text stored in `headers`-like columns.
pub(super) fn pairs_json(pairs: &[(String, String)]) -> Result<String, Error> {
    serde_json::to_string(pairs).map_err(|e| Error::Internal(format!("encode headers: {e}")))
}

fn pairs_from_json(text: &str) -> Result<Vec<(String, String)>, Error> {
    serde_json::from_str(text).map_err(|e| Error::Internal(format!("stored headers: {e}")))
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
            id: MerchantId::from_trusted(r.id),
            name: r.name,
            status: MerchantStatus::parse(&r.status)
                .map_err(|_| Error::Internal(format!("stored merchant status {:?}", r.status)))?,
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

/// The columns [`EndpointRow`] reads, qualified with the alias `e`, as a literal for `concat!` (so
/// each query stays one `const` string).
macro_rules! endpoint_columns {
    () => {
        "e.id, e.merchant_id, e.url, e.description, e.event_types, e.signing_mode, \
         e.success_policy, e.headers, e.rate_limit, e.label, e.enabled, e.disabled_reason, \
         e.secret, e.created_at, e.updated_at"
    };
}
pub(super) use endpoint_columns;

/// The columns of `endpoints`, by name.
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
    /// The endpoint's id, before conversion.
    pub(super) fn id(&self) -> &str {
        &self.id
    }
}

impl TryFrom<EndpointRow> for Endpoint {
    type Error = Error;
    fn try_from(r: EndpointRow) -> Result<Self, Error> {
        let bad = |what: &str, e: Error| Error::Internal(format!("stored endpoint {what}: {e}"));
        Ok(Endpoint {
            id: EndpointId::from_trusted(r.id),
            merchant_id: MerchantId::from_trusted(r.merchant_id),
            url: EndpointUrl::from_trusted(&r.url)?,
            description: r.description,
            filter: serde_json::from_str::<EventFilter>(&r.event_types)
                .map_err(|e| Error::Internal(format!("stored endpoint filter: {e}")))?,
            signing_mode: SigningMode::parse(&r.signing_mode).map_err(|e| bad("mode", e))?,
            success_policy: SuccessPolicy::parse(&r.success_policy)
                .map_err(|e| bad("success policy", e))?,
            headers: serde_json::from_str::<ExtraHeaders>(&r.headers)
                .map_err(|e| Error::Internal(format!("stored endpoint headers: {e}")))?,
            rate_limit: r.rate_limit.map(|v| to_u32(v, "rate limit")).transpose()?,
            label: r
                .label
                .as_deref()
                .map(Label::parse)
                .transpose()
                .map_err(|e| bad("label", e))?,
            enabled: r.enabled,
            disabled_reason: r.disabled_reason,
            secret: SealedSecret(r.secret),
            created_at: Timestamp::from_ms(r.created_at),
            updated_at: Timestamp::from_ms(r.updated_at),
        })
    }
}

/// An endpoint's JSON columns, encoded for binding.
pub(super) struct EndpointJson {
    pub(super) event_types: String,
    pub(super) headers: String,
}

impl EndpointJson {
    pub(super) fn of(ep: &Endpoint) -> Result<Self, Error> {
        let enc = |e: serde_json::Error| Error::Internal(format!("encode endpoint: {e}"));
        Ok(Self {
            event_types: serde_json::to_string(&ep.filter).map_err(enc)?,
            headers: serde_json::to_string(&ep.headers).map_err(enc)?,
        })
    }
}

/// The event types of a stored filter (`[]` = every type), without building `EventType`s: ingest
/// only compares names.
pub(super) fn filter_types(event_types: &str) -> Result<Vec<String>, Error> {
    serde_json::from_str(event_types).map_err(|e| Error::Internal(format!("stored filter: {e}")))
}

/// Whether an event of type `ty` goes to an endpoint with these filter types (case-insensitive,
/// as `EventFilter::matches`).
pub(super) fn filter_matches(types: &[String], ty: &EventType) -> bool {
    types.is_empty() || types.iter().any(|t| t.eq_ignore_ascii_case(ty.as_str()))
}

#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
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
            id: EventId::from_trusted(r.id),
            merchant_id: MerchantId::from_trusted(r.merchant_id),
            event_type: EventType::parse(&r.event_type)
                .map_err(|e| Error::Internal(format!("stored event type: {e}")))?,
            payload: r.payload.map(|p| Payload::from_trusted(Bytes::from(p))),
            idempotency_key: r
                .idempotency_key
                .as_deref()
                .map(IdempotencyKey::parse)
                .transpose()
                .map_err(|e| Error::Internal(format!("stored idempotency key: {e}")))?,
            created_at: Timestamp::from_ms(r.created_at),
            resend_count: to_u32(i64::from(r.resend_count), "resend count")?,
        })
    }
}

/// The columns of `deliveries` a `Delivery` is made of.
#[derive(sqlx::FromRow)]
pub(super) struct DeliveryRow {
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
    /// The delivery as seen at `now`: a pending one under a live lease is in flight (and has no
    /// next attempt time: its attempt is running).
    pub(super) fn at(self, now: Timestamp) -> Result<Delivery, Error> {
        let stored = match self.state.as_str() {
            "pending" => DeliveryState::Pending,
            "succeeded" => DeliveryState::Succeeded,
            "failed" => DeliveryState::Failed,
            other => return Err(Error::Internal(format!("stored delivery state {other:?}"))),
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
            next_attempt_at: if state == DeliveryState::Pending {
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
