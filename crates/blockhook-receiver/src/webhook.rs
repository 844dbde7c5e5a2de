//! A verified webhook: its headers of interest, raw body and parsed JSON.

use serde::de::DeserializeOwned;
use serde_json::Value;

use blockhook_sig::Mode;

use crate::{EventKind, Scheme};

/// A webhook whose signature, time (and, if enabled, freshness) were checked by
/// [`Verifier::verify`](crate::Verifier::verify).
///
/// Note that `BlockATM-Event`, `BlockHook-Event-Id` and `BlockHook-Attempt` are not covered by
/// the signature (only the body and the time are): base business decisions on the body.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub(crate) event: EventKind,
    pub(crate) event_header: String,
    pub(crate) request_time_ms: u64,
    pub(crate) event_id: Option<String>,
    pub(crate) attempt: Option<u32>,
    pub(crate) scheme: Scheme,
    pub(crate) mode: Mode,
    pub(crate) secret_index: usize,
    pub(crate) body: Vec<u8>,
    pub(crate) value: Value,
}

impl Webhook {
    /// The event type, parsed case-insensitively (see [`EventKind`]).
    pub fn event(&self) -> &EventKind {
        &self.event
    }

    /// `BlockATM-Event` exactly as received (empty if the header was absent); in
    /// [`Scheme::Standard`], `BlockHook-Event-Type`.
    pub fn event_header(&self) -> &str {
        &self.event_header
    }

    /// `BlockATM-Request-Time`: when this attempt was sent, in Unix milliseconds (in
    /// [`Scheme::Standard`], `webhook-timestamp` × 1000).
    pub fn request_time_ms(&self) -> u64 {
        self.request_time_ms
    }

    /// `BlockHook-Event-Id` (in [`Scheme::Standard`], `webhook-id`, signed there), when present:
    /// the same on every attempt of one event, so a good de-duplication key.
    pub fn event_id(&self) -> Option<&str> {
        self.event_id.as_deref()
    }

    /// `BlockHook-Attempt`, when present and a number: 1 for the first try, then 2, 3...
    pub fn attempt(&self) -> Option<u32> {
        self.attempt
    }

    /// Which scheme was verified.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Which signing mode matched (useful with [`VerifyMode::Either`](crate::VerifyMode));
    /// `Raw` in [`Scheme::Standard`], which signs the body byte for byte.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Index of the secret that matched, in the order they were given to the builder. During a
    /// rotation, once every delivery reports the new secret, the old one can go.
    pub fn secret_index(&self) -> usize {
        self.secret_index
    }

    /// The body bytes exactly as received (and as signed).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Takes the body bytes.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// The body parsed as JSON (always an object). Numbers are `serde_json` numbers: for
    /// amounts, prefer [`Webhook::json`] into a decimal type or read the string fields.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// Takes the parsed body.
    pub fn into_value(self) -> Value {
        self.value
    }

    /// Deserialises the body into `T`, from the received bytes (not from [`Webhook::value`]),
    /// so number literals reach `T` as written.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The merchant's order number, BlockATM's advised de-duplication key: `orderNo`
    /// (`Payment`, `QR-Payment`), else `bizOrderNo` (`Payout`), when it is a string.
    pub fn order_no(&self) -> Option<&str> {
        ["orderNo", "bizOrderNo"]
            .iter()
            .find_map(|k| self.value.get(k).and_then(Value::as_str))
    }
}
