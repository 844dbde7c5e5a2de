//! Header names of the wire contract, and case-insensitive lookup over any header source.
//!
//! HTTP header names are case-insensitive, so every lookup through [`HeaderSource`] compares
//! names with ASCII case folding: `blockatm-request-time` finds `BlockATM-Request-Time`.

/// The event type, e.g. `Payment` (receivers compare it case-insensitively).
pub const EVENT: &str = "BlockATM-Event";
/// Unix time in milliseconds at which this attempt was sent; part of the signed message.
pub const REQUEST_TIME: &str = "BlockATM-Request-Time";
/// Lowercase hex HMAC-SHA256 signature (64 characters).
pub const SIGNATURE_V2: &str = "BlockATM-Signature-V2";
/// Legacy base64 DER ECDSA P-256 signature, offered for old receivers.
pub const SIGNATURE_V1: &str = "BlockATM-Signature-V1";
/// blockhook's stable event id, identical across attempts (for de-duplication).
pub const EVENT_ID: &str = "BlockHook-Event-Id";
/// The event type in Standard Webhooks mode, where the BlockATM headers (and so
/// [`EVENT`]) are not sent.
pub const EVENT_TYPE: &str = "BlockHook-Event-Type";
/// blockhook's attempt number for this delivery, starting at 1.
pub const ATTEMPT: &str = "BlockHook-Attempt";
/// blockhook's id of this one HTTP request (`att_…`), new on every send, including a resend of
/// the same attempt number after another worker took over an expired lease. It is the attempt
/// id of the delivery log. Receivers de-duplicate on [`EVENT_ID`], never on this.
pub const ATTEMPT_ID: &str = "BlockHook-Attempt-Id";

/// Anything that can answer "what is the value of header `name`?".
///
/// Implementations must match `name` case-insensitively (ASCII). When a header occurs more than
/// once, the implementations here return the first occurrence.
///
/// Implemented for slices, arrays and vectors of `(&str, &str)` and `(String, String)` pairs,
/// for references to any implementor and, with the `http` feature, for `http::HeaderMap`
/// (values that are not visible ASCII are treated as absent).
pub trait HeaderSource {
    /// The value of the first header called `name` (ignoring ASCII case), if any.
    fn header(&self, name: &str) -> Option<&str>;
}

fn find<'a, K, V>(pairs: &'a [(K, V)], name: &str) -> Option<&'a str>
where
    K: AsRef<str> + 'a,
    V: AsRef<str> + 'a,
{
    pairs
        .iter()
        .find(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_ref())
}

impl HeaderSource for [(&str, &str)] {
    fn header(&self, name: &str) -> Option<&str> {
        find(self, name)
    }
}

impl HeaderSource for [(String, String)] {
    fn header(&self, name: &str) -> Option<&str> {
        find(self, name)
    }
}

impl<const N: usize> HeaderSource for [(&str, &str); N] {
    fn header(&self, name: &str) -> Option<&str> {
        find(self, name)
    }
}

impl<const N: usize> HeaderSource for [(String, String); N] {
    fn header(&self, name: &str) -> Option<&str> {
        find(self, name)
    }
}

impl HeaderSource for Vec<(String, String)> {
    fn header(&self, name: &str) -> Option<&str> {
        find(self, name)
    }
}

impl HeaderSource for Vec<(&str, &str)> {
    fn header(&self, name: &str) -> Option<&str> {
        find(self, name)
    }
}

impl<T: HeaderSource + ?Sized> HeaderSource for &T {
    fn header(&self, name: &str) -> Option<&str> {
        (**self).header(name)
    }
}

#[cfg(feature = "http")]
impl HeaderSource for http::HeaderMap {
    fn header(&self, name: &str) -> Option<&str> {
        // `HeaderMap::get` already ignores case; a value that is not visible ASCII is absent.
        self.get(name).and_then(|v| v.to_str().ok())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_exactly_the_contract() {
        assert_eq!(EVENT, "BlockATM-Event");
        assert_eq!(REQUEST_TIME, "BlockATM-Request-Time");
        assert_eq!(SIGNATURE_V2, "BlockATM-Signature-V2");
        assert_eq!(SIGNATURE_V1, "BlockATM-Signature-V1");
        assert_eq!(EVENT_ID, "BlockHook-Event-Id");
        assert_eq!(ATTEMPT, "BlockHook-Attempt");
        assert_eq!(ATTEMPT_ID, "BlockHook-Attempt-Id");
    }

    #[test]
    fn lookup_ignores_ascii_case_in_every_source() {
        let borrowed = [
            ("blockatm-request-time", "1"),
            ("BLOCKATM-SIGNATURE-V2", "ab"),
        ];
        let owned: Vec<(String, String)> = borrowed
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let slice: &[(&str, &str)] = &borrowed;
        let owned_slice: &[(String, String)] = &owned;
        fn check(h: &(impl HeaderSource + ?Sized)) {
            assert_eq!(h.header(REQUEST_TIME), Some("1"));
            assert_eq!(h.header("BlockATM-Request-TIME"), Some("1"));
            assert_eq!(h.header(SIGNATURE_V2), Some("ab"));
            assert_eq!(h.header(EVENT), None);
            assert_eq!(h.header("BlockATM-Request-Tim"), None);
        }
        check(&borrowed);
        check(&slice);
        check(slice);
        check(&owned);
        check(owned_slice);
        check(&&owned);
    }

    #[test]
    fn first_occurrence_wins() {
        let h = [("a", "1"), ("A", "2")];
        assert_eq!(h.header("a"), Some("1"));
    }

    #[cfg(feature = "http")]
    #[test]
    fn http_header_map() {
        let mut map = http::HeaderMap::new();
        map.insert("blockatm-request-time", http::HeaderValue::from_static("5"));
        assert_eq!(map.header(REQUEST_TIME), Some("5"));
        assert_eq!(map.header(SIGNATURE_V2), None);
    }
}
