//! Events as the gateway publishes them: a type, a merchant, and a JSON object kept byte for byte.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{Cursor, DeliveryState, EndpointId, Error, EventId, MerchantId, Timestamp};

/// An event type such as `Payment`, `Payout`, `QR-Payment`, `QR-Payout`, or an operator's own.
///
/// Sent exactly as given in `BlockATM-Event`; compared case-insensitively when filtering.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventType(String);

impl EventType {
    /// The contract's event types.
    pub const BUILT_IN: [&'static str; 4] = ["Payment", "Payout", "QR-Payment", "QR-Payout"];

    /// 1 to 64 characters of `[A-Za-z0-9._:-]`.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Error::invalid(
                "event_type",
                "1 to 64 characters of letters, digits, '.', '_', ':', '-'",
            ))
        }
    }

    /// The type as sent in `BlockATM-Event`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Case-insensitive equality, as the contract asks receivers to compare.
    pub fn matches(&self, other: &EventType) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl TryFrom<String> for EventType {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::parse(&s)
    }
}

impl From<EventType> for String {
    fn from(t: EventType) -> String {
        t.0
    }
}

/// An event's payload: exactly one JSON object, kept as the exact bytes received so that `raw`
/// signatures and the merchant's view match what the gateway sent. Cheap to clone (shared bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct Payload(Bytes);

impl Payload {
    /// Checks that `bytes` is one JSON object the signer can canonicalise (valid UTF-8, no
    /// duplicate keys, bounded depth).
    pub fn parse(bytes: Bytes) -> Result<Self, Error> {
        blockhook_sig::json::validate_object(&bytes)
            .map_err(|e| Error::invalid("payload", e.to_string()))?;
        Ok(Self(bytes))
    }

    /// Rebuilds a payload read back from the store (validated when written).
    pub fn from_trusted(bytes: Bytes) -> Self {
        Self(bytes)
    }

    /// The exact bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty (never, for a parsed payload).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Payload({} bytes)", self.0.len())
    }
}

/// A gateway-chosen key that makes publishing idempotent per merchant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// 1 to 255 printable ASCII characters.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let ok =
            !raw.is_empty() && raw.len() <= 255 && raw.bytes().all(|b| (0x21..0x7f).contains(&b));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Error::invalid(
                "idempotency_key",
                "1 to 255 printable ASCII characters, no spaces",
            ))
        }
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::parse(&s)
    }
}

impl From<IdempotencyKey> for String {
    fn from(k: IdempotencyKey) -> String {
        k.0
    }
}

/// An event about to be stored.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Its id, generated before storing.
    pub id: EventId,
    /// The merchant it belongs to.
    pub merchant_id: MerchantId,
    /// Its type.
    pub event_type: EventType,
    /// The JSON object.
    pub payload: Payload,
    /// Optional idempotency key.
    pub idempotency_key: Option<IdempotencyKey>,
    /// Optional ordering key; wins over an endpoint's `key_field` (see [`crate::Ordering`]).
    pub ordering_key: Option<crate::OrderingKey>,
    /// When it was received.
    pub created_at: Timestamp,
    /// The (field, value) keys it can be searched by, stored with it in the same transaction
    /// (see [`crate::SearchFields::keys_of`]); empty when nothing is searchable.
    pub search_keys: Vec<crate::SearchKey>,
}

/// An event as a publisher sends it (over HTTP, in an outbox row, in a NATS message), before
/// any field is checked.
#[derive(Debug, Clone)]
pub struct Publication<'a> {
    /// `merchant_id`.
    pub merchant_id: &'a str,
    /// `event_type`.
    pub event_type: &'a str,
    /// The payload's exact bytes.
    pub payload: Bytes,
    /// `idempotency_key`, when given.
    pub idempotency_key: Option<&'a str>,
    /// `ordering_key`, when given.
    pub ordering_key: Option<&'a str>,
}

/// The field of a [`Publication`] that failed its check, and why.
#[derive(Debug)]
pub struct FieldError {
    /// `merchant_id`, `event_type`, `idempotency_key`, `payload` or `ordering_key`.
    pub field: &'static str,
    /// What was wrong with it.
    pub error: Error,
}

impl std::fmt::Display for FieldError {
    /// `field: reason`, as a dead letter records it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.error {
            Error::Invalid { reason, .. } => write!(f, "{}: {reason}", self.field),
            other => write!(f, "{}: {other}", self.field),
        }
    }
}

impl NewEvent {
    /// Checks every field of `p`, in this order: merchant id, event type (not one of the
    /// operational types, which only blockhook publishes), idempotency key,
    /// payload (a JSON object, kept byte for byte), ordering key; the first that fails is the
    /// error. Every way of publishing checks with this one function, so they refuse alike.
    pub fn check(p: Publication<'_>, created_at: Timestamp) -> Result<Self, FieldError> {
        let at = |field: &'static str| move |error| FieldError { field, error };
        let merchant_id = MerchantId::parse(p.merchant_id).map_err(at("merchant_id"))?;
        let event_type = EventType::parse(p.event_type).map_err(at("event_type"))?;
        if crate::is_operational(&event_type) {
            // Only the endpoint watch publishes these: a publisher could otherwise fake alerts.
            return Err(at("event_type")(Error::invalid(
                "event_type",
                "is reserved for blockhook's operational events",
            )));
        }
        let idempotency_key = p
            .idempotency_key
            .map(IdempotencyKey::parse)
            .transpose()
            .map_err(at("idempotency_key"))?;
        let payload = Payload::parse(p.payload).map_err(at("payload"))?;
        let ordering_key = p
            .ordering_key
            .map(crate::OrderingKey::parse)
            .transpose()
            .map_err(at("ordering_key"))?;
        Ok(Self {
            id: EventId::generate(),
            merchant_id,
            event_type,
            payload,
            idempotency_key,
            ordering_key,
            created_at,
            search_keys: Vec::new(),
        })
    }
}

/// What storing one event did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ingested {
    /// The event's id (the original one when `duplicate`).
    pub event_id: EventId,
    /// The idempotency key had been used: nothing new was stored.
    pub duplicate: bool,
    /// Deliveries created (0 when duplicate or no endpoint matched).
    pub deliveries: u32,
}

/// A stored event.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its id.
    pub id: EventId,
    /// Its merchant.
    pub merchant_id: MerchantId,
    /// Its type.
    pub event_type: EventType,
    /// The payload; `None` once retention has removed it.
    pub payload: Option<Payload>,
    /// Its idempotency key.
    pub idempotency_key: Option<IdempotencyKey>,
    /// When it was received.
    pub created_at: Timestamp,
    /// Manual resends made so far.
    pub resend_count: u32,
}

/// Filters for listing events, newest first.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only this type (case-insensitive).
    pub event_type: Option<EventType>,
    /// Created at or after.
    pub since: Option<Timestamp>,
    /// Created before.
    pub until: Option<Timestamp>,
    /// Only events with at least one delivery in this state (to `endpoint`, when given).
    pub state: Option<DeliveryState>,
    /// Only this event.
    pub event_id: Option<EventId>,
    /// Only events with at least one delivery to this endpoint.
    pub endpoint: Option<EndpointId>,
    /// Only events indexed under this (field, value) when they were stored.
    pub key: Option<crate::SearchKey>,
    /// Continue after this cursor (older events).
    pub after: Option<Cursor>,
    /// Go back before this cursor (newer events); the page is still newest first. Not together
    /// with `after`.
    pub before: Option<Cursor>,
    /// Page size (1 to 250).
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn publication<'a>(merchant: &'a str, payload: &'static str) -> Publication<'a> {
        Publication {
            merchant_id: merchant,
            event_type: "Payment",
            payload: Bytes::from_static(payload.as_bytes()),
            idempotency_key: Some("k-1"),
            ordering_key: Some("A1"),
        }
    }

    #[test]
    fn check_keeps_the_bytes_and_names_the_first_bad_field() {
        let m = MerchantId::generate().to_string();
        let ev =
            NewEvent::check(publication(&m, "{ \"a\": 1.50 }"), Timestamp::from_ms(7)).unwrap();
        assert_eq!(&ev.payload.bytes()[..], b"{ \"a\": 1.50 }");
        assert_eq!(ev.idempotency_key.unwrap().as_str(), "k-1");
        assert_eq!(ev.ordering_key.unwrap().as_str(), "A1");
        assert_eq!(ev.created_at, Timestamp::from_ms(7));

        // Several bad fields: the first in the documented order is named.
        let mut p = publication(&m, "[1]");
        p.idempotency_key = Some("has space");
        let err = NewEvent::check(p, Timestamp::from_ms(7)).unwrap_err();
        assert_eq!(err.field, "idempotency_key");
        assert!(err.to_string().starts_with("idempotency_key: "), "{err}");
        let err = NewEvent::check(publication("nope", "{}"), Timestamp::from_ms(7)).unwrap_err();
        assert_eq!(err.field, "merchant_id");
        let mut p = publication(&m, "{}");
        p.event_type = "Endpoint.Failing";
        let err = NewEvent::check(p, Timestamp::from_ms(7)).unwrap_err();
        assert_eq!(err.field, "event_type");
        assert!(err.to_string().contains("reserved"), "{err}");
        let mut p = publication(&m, "{}");
        p.ordering_key = Some("");
        assert_eq!(
            NewEvent::check(p, Timestamp::from_ms(7)).unwrap_err().field,
            "ordering_key"
        );
    }
}
