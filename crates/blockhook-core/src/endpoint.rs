//! A merchant's webhook endpoint and the values it is made of, each parsed once.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::{EndpointId, Error, EventType, MerchantId, Timestamp};

/// The longest endpoint URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// An endpoint URL: `https` (or `http` when the operator allows it), no credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct EndpointUrl(Url);

impl EndpointUrl {
    /// Parses and checks a URL given by a merchant. Reachability is checked at delivery time,
    /// where the resolved addresses are vetted.
    pub fn parse(raw: &str, allow_http: bool) -> Result<Self, Error> {
        if raw.len() > MAX_URL_LEN {
            return Err(Error::invalid(
                "url",
                format!("longer than {MAX_URL_LEN} characters"),
            ));
        }
        let url = Url::parse(raw).map_err(|e| Error::invalid("url", format!("not a URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if allow_http => {}
            "http" => return Err(Error::invalid("url", "must use https://")),
            other => {
                return Err(Error::invalid(
                    "url",
                    format!("unsupported scheme {other:?}"),
                ));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::invalid("url", "must not contain credentials"));
        }
        if url.host().is_none() {
            return Err(Error::invalid("url", "must have a host"));
        }
        if url.fragment().is_some() {
            return Err(Error::invalid("url", "must not contain a #fragment"));
        }
        Ok(Self(url))
    }

    /// Rebuilds a URL read back from the store (it was validated when written).
    pub fn from_trusted(raw: &str) -> Result<Self, Error> {
        Url::parse(raw)
            .map(Self)
            .map_err(|e| Error::Internal(format!("stored url: {e}")))
    }

    /// The URL.
    pub fn as_url(&self) -> &Url {
        &self.0
    }

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// How the signature's message is formed (contract section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SigningMode {
    /// Canonical sorted key=value form (the contract's default).
    #[default]
    Sorted,
    /// The exact body bytes.
    Raw,
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`) instead of the
    /// BlockATM headers, with a `whsec_` secret.
    Standard,
}

impl SigningMode {
    /// The stored/wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sorted => "sorted",
            Self::Raw => "raw",
            Self::Standard => "standard",
        }
    }

    /// Parses the stored/wire name.
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "sorted" => Ok(Self::Sorted),
            "raw" => Ok(Self::Raw),
            "standard" => Ok(Self::Standard),
            _ => Err(Error::invalid(
                "signing_mode",
                "must be \"sorted\", \"raw\" or \"standard\"",
            )),
        }
    }

    /// The BlockATM signature's message form, or `None` for Standard Webhooks.
    pub fn blockatm(self) -> Option<blockhook_sig::Mode> {
        match self {
            Self::Sorted => Some(blockhook_sig::Mode::Sorted),
            Self::Raw => Some(blockhook_sig::Mode::Raw),
            Self::Standard => None,
        }
    }
}

/// Which HTTP statuses acknowledge a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SuccessPolicy {
    /// Only `200`, as the contract says.
    #[default]
    #[serde(rename = "200")]
    Exactly200,
    /// Any `2xx` (an operator/merchant opt-in).
    #[serde(rename = "2xx")]
    Any2xx,
}

impl SuccessPolicy {
    /// The stored/wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exactly200 => "200",
            Self::Any2xx => "2xx",
        }
    }

    /// Parses the stored/wire name.
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "200" => Ok(Self::Exactly200),
            "2xx" => Ok(Self::Any2xx),
            _ => Err(Error::invalid(
                "success_policy",
                "must be \"200\" or \"2xx\"",
            )),
        }
    }

    /// Whether `status` acknowledges a delivery under this policy.
    pub fn accepts(self, status: u16) -> bool {
        match self {
            Self::Exactly200 => status == 200,
            Self::Any2xx => (200..300).contains(&status),
        }
    }
}

/// The event types an endpoint wants; empty means every type.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventFilter(Vec<EventType>);

impl EventFilter {
    /// At most this many types in one filter.
    pub const MAX_TYPES: usize = 64;

    /// A filter from already-parsed types (duplicates removed).
    pub fn new(mut types: Vec<EventType>) -> Result<Self, Error> {
        if types.len() > Self::MAX_TYPES {
            return Err(Error::invalid("event_types", "at most 64 event types"));
        }
        types.sort_by_key(|t| t.as_str().to_ascii_lowercase());
        types.dedup_by(|a, b| a.matches(b));
        Ok(Self(types))
    }

    /// Every type.
    pub fn all() -> Self {
        Self(Vec::new())
    }

    /// Whether an event of type `t` goes to this endpoint (names compare case-insensitively).
    /// The empty filter means every type except blockhook's operational ones
    /// ([`crate::OPERATIONAL_TYPES`]): alerts go only where they were asked for by name, so a
    /// merchant's ordinary endpoints never start receiving them.
    pub fn matches(&self, t: &EventType) -> bool {
        if self.0.is_empty() {
            return !crate::is_operational(t);
        }
        self.0.iter().any(|f| f.matches(t))
    }

    /// Whether this filter names an operational event type: the endpoint is an alert endpoint,
    /// which the endpoint watch does not watch (so alerts never feed more alerts).
    pub fn wants_operational(&self) -> bool {
        self.0.iter().any(crate::is_operational)
    }

    /// The listed types (empty = all).
    pub fn types(&self) -> &[EventType] {
        &self.0
    }
}

/// Extra static headers an endpoint sends with every request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExtraHeaders(Vec<(String, String)>);

impl ExtraHeaders {
    /// At most this many extra headers.
    pub const MAX: usize = 20;

    /// Validates names and values; refuses names that would clash with the contract's headers
    /// or with headers the HTTP client controls.
    pub fn parse(pairs: Vec<(String, String)>) -> Result<Self, Error> {
        const RESERVED: &[&str] = &[
            "content-type",
            "content-length",
            "host",
            "transfer-encoding",
            "connection",
            "user-agent",
            "te",
            "upgrade",
            "keep-alive",
            "proxy-authorization",
            "expect",
        ];
        if pairs.len() > Self::MAX {
            return Err(Error::invalid("headers", "at most 20 extra headers"));
        }
        for (name, value) in &pairs {
            let lower = name.to_ascii_lowercase();
            let token = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
            if !token {
                return Err(Error::invalid(
                    "headers",
                    format!("{name:?} is not a header name"),
                ));
            }
            if RESERVED.contains(&lower.as_str())
                || lower.starts_with("blockatm-")
                || lower.starts_with("blockhook-")
                || lower.starts_with("webhook-")
            {
                return Err(Error::invalid("headers", format!("{name:?} is reserved")));
            }
            if value.len() > 1024
                || !value
                    .bytes()
                    .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
            {
                return Err(Error::invalid(
                    "headers",
                    format!("value of {name:?} must be printable ASCII, at most 1024 bytes"),
                ));
            }
        }
        Ok(Self(pairs))
    }

    /// The headers.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

/// A free label tying an endpoint to a gateway object, e.g. `cashier:91`, `payout-contract:200910`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Label(String);

impl Label {
    /// 1 to 64 characters of `[A-Za-z0-9:._-]`.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":._-".contains(&b));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Error::invalid(
                "label",
                "1 to 64 characters of letters, digits, ':', '.', '_', '-'",
            ))
        }
    }

    /// The label.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An endpoint secret encrypted at rest (AEAD ciphertext with its nonce). Only the server's key
/// module can open it; the store keeps the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret(Vec<u8>);

impl SealedSecret {
    /// The sealed bytes as stored; only the server's key module opens them.
    pub fn from_stored(sealed: Vec<u8>) -> Self {
        Self(sealed)
    }

    /// The sealed bytes as stored; only the server's key module opens them.
    pub fn as_stored(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedSecret([sealed])")
    }
}

/// The secret an endpoint signed with before its last rotation, still signing beside the new one
/// until `until` (Standard Webhooks mode: `webhook-signature: v1,<new> v1,<old>`), so receivers
/// can switch secrets without missing a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousSecret {
    /// The old secret, sealed like the current one.
    pub secret: SealedSecret,
    /// When it stops signing.
    pub until: Timestamp,
}

impl PreviousSecret {
    /// Whether it still signs at `now`.
    pub fn signs_at(&self, now: Timestamp) -> bool {
        now < self.until
    }
}

/// An endpoint as stored.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Its id.
    pub id: EndpointId,
    /// Its merchant.
    pub merchant_id: MerchantId,
    /// Where deliveries are POSTed.
    pub url: EndpointUrl,
    /// Free text for the merchant.
    pub description: Option<String>,
    /// Event types it receives.
    pub filter: EventFilter,
    /// How signatures are formed.
    pub signing_mode: SigningMode,
    /// Which statuses acknowledge.
    pub success_policy: SuccessPolicy,
    /// Extra static headers.
    pub headers: ExtraHeaders,
    /// At most this many deliveries per second, if set.
    pub rate_limit: Option<u32>,
    /// Optional label (`cashier:91`).
    pub label: Option<Label>,
    /// Disabled endpoints receive nothing; their pending deliveries wait.
    pub enabled: bool,
    /// Why it was disabled (e.g. "410 Gone on attempt 2 of dlv_…").
    pub disabled_reason: Option<String>,
    /// The signing secret, sealed.
    pub secret: SealedSecret,
    /// The secret before the last rotation, while its overlap lasts.
    pub previous_secret: Option<PreviousSecret>,
    /// Ordered delivery per key (mode `none` by default).
    pub ordering: crate::Ordering,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_without_credentials() {
        assert!(EndpointUrl::parse("https://merchant.example/hook", false).is_ok());
        assert!(EndpointUrl::parse("http://merchant.example/hook", false).is_err());
        assert!(EndpointUrl::parse("http://merchant.example/hook", true).is_ok());
        assert!(EndpointUrl::parse("https://u:p@merchant.example/", false).is_err());
        assert!(EndpointUrl::parse("ftp://merchant.example/", true).is_err());
        assert!(EndpointUrl::parse("not a url", false).is_err());
        let long = format!("https://m.example/{}", "a".repeat(MAX_URL_LEN));
        assert!(EndpointUrl::parse(&long, false).is_err());
    }

    #[test]
    fn success_policy_accepts() {
        assert!(SuccessPolicy::Exactly200.accepts(200));
        assert!(!SuccessPolicy::Exactly200.accepts(201));
        assert!(SuccessPolicy::Any2xx.accepts(204));
        assert!(!SuccessPolicy::Any2xx.accepts(302));
    }

    #[test]
    fn reserved_headers_are_refused() {
        for name in [
            "BlockATM-Signature-V2",
            "blockhook-attempt",
            "Content-Type",
            "Host",
            "webhook-signature",
        ] {
            let r = ExtraHeaders::parse(vec![(name.into(), "x".into())]);
            assert!(r.is_err(), "{name} should be refused");
        }
        assert!(ExtraHeaders::parse(vec![("X-Merchant".into(), "abc".into())]).is_ok());
        assert!(ExtraHeaders::parse(vec![("X-Bad".into(), "a\nb".into())]).is_err());
    }

    #[test]
    fn filter_matches_case_insensitively() {
        let f = EventFilter::new(vec![EventType::parse("Payment").unwrap()]).unwrap();
        assert!(f.matches(&EventType::parse("payment").unwrap()));
        assert!(!f.matches(&EventType::parse("Payout").unwrap()));
        assert!(EventFilter::all().matches(&EventType::parse("Payout").unwrap()));
        // Operational events go only where they are named.
        let failing = EventType::parse("endpoint.failing").unwrap();
        assert!(!EventFilter::all().matches(&failing));
        let alerts = EventFilter::new(vec![failing.clone()]).unwrap();
        assert!(alerts.matches(&failing) && alerts.wants_operational());
        assert!(!f.wants_operational());
    }
}
