//! Standard Webhooks signatures (<https://www.standardwebhooks.com>, specification version 1),
//! the scheme Svix, Clerk, Resend and others send, which merchants may already verify with the
//! `standardwebhooks` libraries.
//!
//! Three headers: `webhook-id` (the message id, the same for every retry), `webhook-timestamp`
//! (Unix **seconds**) and `webhook-signature`, a space-separated list of `v1,<base64>` entries,
//! each `base64(HMAC_SHA256(key, "{id}.{timestamp}.{body}"))` with the body byte for byte. During a
//! secret rotation a sender lists one entry per secret; a receiver accepts the request if any
//! entry matches any of its secrets.
//!
//! Secrets are written `whsec_` + standard base64 of the key bytes; the HMAC key is the decoded
//! bytes, not the text.
//!
//! ```
//! use blockhook_sig::standard::{self, StandardSecret};
//!
//! let secret = StandardSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
//! let body = br#"{"test": 2432232314}"#;
//! let sig = standard::sign(secret.key(), "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body)?;
//! assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
//! standard::verify(
//!     "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", &sig, body,
//!     &[secret.key()], standard::DEFAULT_TOLERANCE_S, 1_614_265_340,
//! )?;
//! # Ok::<(), blockhook_sig::Error>(())
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::Mac;
use subtle::ConstantTimeEq;

use crate::Error;

/// The message id header.
pub const WEBHOOK_ID: &str = "webhook-id";
/// The Unix-seconds timestamp header.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// The signature list header.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// The prefix of a secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";
/// Fewest key bytes a secret may have (the specification's lower bound).
pub const MIN_SECRET_BYTES: usize = 24;
/// Most key bytes a secret may have (the specification's upper bound).
pub const MAX_SECRET_BYTES: usize = 64;
/// How far a timestamp may lie from the receiver's clock, in seconds (the libraries' default).
pub const DEFAULT_TOLERANCE_S: u64 = 5 * 60;

/// A Standard Webhooks secret: the HMAC key bytes. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct StandardSecret(Vec<u8>);

impl std::fmt::Debug for StandardSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StandardSecret([redacted])")
    }
}

impl StandardSecret {
    /// Parses a secret as a sender stores it: `whsec_` + standard base64 of 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let encoded = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(Error::InvalidStandardSecret("it must start with whsec_"))?;
        Self::from_bytes(decode(encoded)?)
    }

    /// Parses a secret as a receiver may be given it: with or without the `whsec_` prefix, of
    /// any non-zero length (what the official libraries accept).
    pub fn parse_lenient(text: &str) -> Result<Self, Error> {
        let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let key = decode(encoded)?;
        if key.is_empty() {
            return Err(Error::EmptySecret);
        }
        Ok(Self(key))
    }

    /// A secret of these key bytes (24 to 64 of them).
    pub fn from_bytes(key: Vec<u8>) -> Result<Self, Error> {
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(Error::InvalidStandardSecret(
                "it must encode 24 to 64 bytes",
            ));
        }
        Ok(Self(key))
    }

    /// The HMAC key.
    pub fn key(&self) -> &[u8] {
        &self.0
    }

    /// The text form, `whsec_` + standard base64.
    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}", B64.encode(&self.0))
    }
}

fn decode(encoded: &str) -> Result<Vec<u8>, Error> {
    B64.decode(encoded)
        .map_err(|_| Error::InvalidStandardSecret("it is not standard base64"))
}

fn mac(key: &[u8], msg_id: &str, timestamp: &str, body: &[u8]) -> Result<[u8; 32], Error> {
    Ok(mac_keyed(crate::v2::keyed(key)?, msg_id, timestamp, body))
}

/// The one place the signed message `{id}.{timestamp}.{body}` is formed, on a keyed state.
fn mac_keyed(
    mut mac: crate::v2::HmacSha256,
    msg_id: &str,
    timestamp: &str,
    body: &[u8],
) -> [u8; 32] {
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// One signature entry, `v1,<base64>`, of `body` sent as message `msg_id` at `timestamp_s`
/// (`EmptySecret` for an empty key).
pub fn sign(key: &[u8], msg_id: &str, timestamp_s: u64, body: &[u8]) -> Result<String, Error> {
    let digest = mac(key, msg_id, &timestamp_s.to_string(), body)?;
    Ok(format!("v1,{}", B64.encode(digest)))
}

/// A signer keyed once with one secret, for a sender that signs many messages with it (the
/// HMAC key schedule is done here, not per message). Signs exactly like [`sign`].
///
/// ```
/// use blockhook_sig::standard::{self, Signer, StandardSecret};
/// let secret = StandardSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
/// let signer = Signer::new(&secret).unwrap();
/// let body = br#"{"test": 2432232314}"#;
/// assert_eq!(
///     signer.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
///     standard::sign(secret.key(), "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body).unwrap(),
/// );
/// ```
#[derive(Clone)]
pub struct Signer {
    keyed: crate::v2::HmacSha256,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard::Signer { .. }")
    }
}

impl Signer {
    /// Keys a signer with `secret`'s key bytes.
    pub fn new(secret: &StandardSecret) -> Result<Self, Error> {
        Ok(Self {
            keyed: crate::v2::keyed(secret.key())?,
        })
    }

    /// One entry, `v1,<base64>`, of `body` sent as message `msg_id` at `timestamp_s`.
    pub fn sign(&self, msg_id: &str, timestamp_s: u64, body: &[u8]) -> String {
        let digest = mac_keyed(self.keyed.clone(), msg_id, &timestamp_s.to_string(), body);
        format!("v1,{}", B64.encode(digest))
    }
}

/// The `webhook-signature` value for several keys (a rotation's overlap): one entry per key,
/// space-separated, in the order given.
pub fn sign_all(
    keys: &[&[u8]],
    msg_id: &str,
    timestamp_s: u64,
    body: &[u8],
) -> Result<String, Error> {
    let entries = keys
        .iter()
        .map(|key| sign(key, msg_id, timestamp_s, body))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(entries.join(" "))
}

/// Checks a request: `timestamp` within `tolerance_s` of `now_s`, then any `v1` entry of
/// `signatures` against every key, in constant time. Entries of other versions are ignored.
pub fn verify(
    msg_id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    keys: &[&[u8]],
    tolerance_s: u64,
    now_s: u64,
) -> Result<(), Error> {
    verify_which(
        msg_id,
        timestamp,
        signatures,
        body,
        keys,
        tolerance_s,
        now_s,
    )
    .map(|_| ())
}

/// What [`verify_which`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The timestamp, Unix seconds.
    pub timestamp_s: u64,
    /// The index in `keys` of the first key that matched.
    pub key_index: usize,
    /// The matching signature's bytes (a replay cache's key: a retry is re-stamped, so it
    /// differs; an exact replay does not).
    pub signature: [u8; 32],
}

/// [`verify`], also telling which key matched, the timestamp and the matching signature.
pub fn verify_which(
    msg_id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    keys: &[&[u8]],
    tolerance_s: u64,
    now_s: u64,
) -> Result<Verified, Error> {
    if msg_id.is_empty() {
        return Err(Error::MissingHeader(WEBHOOK_ID));
    }
    if keys.is_empty() || keys.iter().any(|k| k.is_empty()) {
        return Err(Error::EmptySecret);
    }
    let sent: u64 = match timestamp.len() {
        1..=19 if timestamp.bytes().all(|b| b.is_ascii_digit()) => {
            timestamp.parse().map_err(|_| Error::StandardTimestamp)?
        }
        _ => return Err(Error::StandardTimestamp),
    };
    if now_s.saturating_sub(sent) > tolerance_s {
        return Err(Error::StandardTooOld {
            skew_s: now_s - sent,
        });
    }
    if sent.saturating_sub(now_s) > tolerance_s {
        return Err(Error::StandardTooNew {
            skew_s: sent - now_s,
        });
    }
    let candidates: Vec<Vec<u8>> = signatures
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| B64.decode(b64).ok())
        .filter(|raw| raw.len() == 32)
        .collect();
    if candidates.is_empty() {
        return Err(Error::MalformedStandardSignature);
    }
    // Every key against every entry, each comparison in constant time; which key matched is
    // not a secret, so it may be picked after the loop.
    let mut found = None;
    for (index, key) in keys.iter().enumerate() {
        let expected = mac(key, msg_id, timestamp, body)?;
        let mut matched = subtle::Choice::from(0);
        for candidate in &candidates {
            matched |= expected.ct_eq(candidate.as_slice());
        }
        if found.is_none() && bool::from(matched) {
            found = Some((index, expected));
        }
    }
    let (key_index, signature) = found.ok_or(Error::Mismatch)?;
    Ok(Verified {
        timestamp_s: sent,
        key_index,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_outside_the_rules_are_refused() {
        assert!(StandardSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(StandardSecret::parse("whsec_not base64!").is_err());
        let short = format!("whsec_{}", B64.encode([1u8; 23]));
        assert!(StandardSecret::parse(&short).is_err());
        let long = format!("whsec_{}", B64.encode([1u8; 65]));
        assert!(StandardSecret::parse(&long).is_err());
        let ok = format!("whsec_{}", B64.encode([1u8; 64]));
        assert_eq!(StandardSecret::parse(&ok).map(|s| s.to_text()), Ok(ok));
    }

    #[test]
    fn a_timestamp_must_be_plain_digits() {
        for bad in ["", "hello", "-1", "+1614265330", " 1614265330", "1.5"] {
            let err = verify("msg", bad, "v1,AAAA", b"{}", &[b"k"], 300, 0);
            assert_eq!(err, Err(Error::StandardTimestamp), "{bad:?}");
        }
    }
}
