//! Ordered delivery per ordering key: an endpoint's ordering setting, the ordering key an event
//! carries (or that is derived from its payload), and the held keys an operator releases.
//!
//! The guarantee and every rule around it are in `docs/ordering.md`; this module only holds the
//! values, each parsed once.

use serde::{Deserialize, Serialize};

use crate::{DeliveryId, Error, Payload, Timestamp};

/// The longest ordering key accepted, in bytes.
pub const MAX_ORDERING_KEY_LEN: usize = 256;

/// A key that orders an endpoint's deliveries: 1 to 256 bytes of any text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrderingKey(String);

impl OrderingKey {
    /// 1 to 256 bytes.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        if raw.is_empty() || raw.len() > MAX_ORDERING_KEY_LEN {
            return Err(Error::invalid("ordering_key", "1 to 256 bytes"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// Rebuilds a key read back from the store (validated when written).
    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OrderingKey {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::parse(&s)
    }
}

impl From<OrderingKey> for String {
    fn from(k: OrderingKey) -> String {
        k.0
    }
}

impl std::fmt::Display for OrderingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether an endpoint orders its deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderingMode {
    /// Deliveries are independent (the default, and the fastest).
    #[default]
    None,
    /// One delivery in flight per ordering key, in publish order.
    PerKey,
}

/// What a key does after its head delivery failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFinalFailure {
    /// The next delivery of the key proceeds (the default).
    #[default]
    Continue,
    /// The key waits until a resend or an operator releases it.
    Hold,
}

/// An endpoint's ordering setting, as the API shows and takes it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ordering {
    /// `none` or `per_key`.
    #[serde(default)]
    pub mode: OrderingMode,
    /// A top-level payload field (string or number) whose value is the key of events published
    /// without an explicit `ordering_key`.
    #[serde(default)]
    pub key_field: Option<String>,
    /// `continue` or `hold`.
    #[serde(default)]
    pub on_final_failure: OnFinalFailure,
}

impl Ordering {
    /// The longest `key_field` accepted, in bytes.
    pub const MAX_KEY_FIELD_LEN: usize = 128;

    /// Checks a setting given by a merchant.
    pub fn validate(self) -> Result<Self, Error> {
        let bad = |f: &String| f.is_empty() || f.len() > Self::MAX_KEY_FIELD_LEN;
        if self.key_field.as_ref().is_some_and(bad) {
            return Err(Error::invalid("ordering.key_field", "1 to 128 bytes"));
        }
        Ok(self)
    }

    /// Whether deliveries are ordered per key.
    pub fn per_key(&self) -> bool {
        self.mode == OrderingMode::PerKey
    }

    /// The setting as stored: `None` for the default (mode `none`, nothing else set), so that
    /// unordered endpoints carry nothing.
    pub fn to_stored(&self) -> Result<Option<String>, Error> {
        if *self == Self::default() {
            return Ok(None);
        }
        serde_json::to_string(self)
            .map(Some)
            .map_err(|e| Error::Internal(format!("encode ordering: {e}")))
    }

    /// The setting read back from the store (`None` = the default).
    pub fn from_stored(stored: Option<&str>) -> Result<Self, Error> {
        match stored {
            None => Ok(Self::default()),
            Some(json) => serde_json::from_str(json)
                .map_err(|e| Error::Internal(format!("stored ordering {json:?}: {e}"))),
        }
    }

    /// The key a delivery of this event to this endpoint is ordered by: none unless the mode is
    /// `per_key`; then the explicit key, else the value of `key_field` in the payload (a string
    /// as is, a number as written), else none (delivered unordered).
    pub fn key_for(
        &self,
        explicit: Option<&OrderingKey>,
        payload: &Payload,
    ) -> Option<OrderingKey> {
        if !self.per_key() {
            return None;
        }
        if let Some(key) = explicit {
            return Some(key.clone());
        }
        let field = self.key_field.as_deref()?;
        key_from_payload(payload, field)
    }
}

/// The value of the top-level `field` of `payload` as a key: a string as is, a number as written
/// (so `1.50` stays `1.50`); any other value, or one longer than a key may be, gives no key.
fn key_from_payload(payload: &Payload, field: &str) -> Option<OrderingKey> {
    let object: std::collections::HashMap<String, &serde_json::value::RawValue> =
        serde_json::from_slice(payload.bytes()).ok()?;
    let raw = object.get(field)?.get();
    let text = if raw.starts_with('"') {
        serde_json::from_str::<String>(raw).ok()?
    } else if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        raw.to_owned()
    } else {
        return None;
    };
    OrderingKey::parse(&text).ok()
}

/// A key held after its head delivery failed for good (`on_final_failure: hold`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldKey {
    /// The key.
    pub key: OrderingKey,
    /// The delivery that failed and holds the key.
    pub delivery_id: DeliveryId,
    /// When it failed.
    pub since: Timestamp,
    /// Deliveries of the key waiting behind it.
    pub waiting: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn payload(json: &str) -> Payload {
        Payload::parse(Bytes::from(json.to_owned())).unwrap()
    }

    fn per_key(field: Option<&str>) -> Ordering {
        Ordering {
            mode: OrderingMode::PerKey,
            key_field: field.map(str::to_owned),
            on_final_failure: OnFinalFailure::Continue,
        }
    }

    #[test]
    fn keys_are_1_to_256_bytes() {
        assert!(OrderingKey::parse("").is_err());
        assert!(OrderingKey::parse(&"k".repeat(256)).is_ok());
        assert!(OrderingKey::parse(&"k".repeat(257)).is_err());
        assert!(OrderingKey::parse("订单 7").is_ok());
    }

    #[test]
    fn explicit_key_beats_key_field() {
        let p = payload(r#"{"orderNo":"A-1"}"#);
        let explicit = OrderingKey::parse("X").unwrap();
        let o = per_key(Some("orderNo"));
        assert_eq!(o.key_for(Some(&explicit), &p).unwrap().as_str(), "X");
        assert_eq!(o.key_for(None, &p).unwrap().as_str(), "A-1");
    }

    #[test]
    fn numbers_keep_their_literal_and_other_values_give_no_key() {
        let o = per_key(Some("n"));
        assert_eq!(
            o.key_for(None, &payload(r#"{"n":1.50}"#)).unwrap().as_str(),
            "1.50"
        );
        assert_eq!(
            o.key_for(None, &payload(r#"{"n":-7}"#)).unwrap().as_str(),
            "-7"
        );
        assert!(o.key_for(None, &payload(r#"{"n":true}"#)).is_none());
        assert!(o.key_for(None, &payload(r#"{"n":{"a":1}}"#)).is_none());
        assert!(o.key_for(None, &payload(r#"{"n":""}"#)).is_none());
        assert!(o.key_for(None, &payload(r#"{"m":"x"}"#)).is_none());
    }

    #[test]
    fn mode_none_orders_nothing() {
        let explicit = OrderingKey::parse("X").unwrap();
        let none = Ordering::default();
        assert!(none.key_for(Some(&explicit), &payload("{}")).is_none());
        assert_eq!(none.to_stored().unwrap(), None);
    }

    #[test]
    fn stored_form_round_trips() {
        let o = Ordering {
            on_final_failure: OnFinalFailure::Hold,
            ..per_key(Some("orderNo"))
        };
        let stored = o.to_stored().unwrap();
        assert_eq!(Ordering::from_stored(stored.as_deref()).unwrap(), o);
    }
}
