//! The crate's one error type.
//!
//! Every fallible function in `blockhook-sig` returns [`Error`]. Each variant names exactly what
//! was wrong, so that a receiver can log it (or answer with it) and a merchant debugging a
//! rejected webhook can act on it without reading this crate's source.

use crate::json::MAX_DEPTH;

/// Why a body could not be canonicalised, a message could not be signed, or a request was rejected.
///
/// Variants are grouped by the verification step that produces them, in the order [`verify`]
/// checks them: headers, time, signature format, body, comparison.
///
/// [`verify`]: crate::verify
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A required header (one of the [`headers`](crate::headers) constants) is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),

    /// `BlockATM-Request-Time` is not a plain decimal integer of milliseconds (digits only, no
    /// sign, no spaces, at most 19 digits).
    #[error(
        "BlockATM-Request-Time is not a plain integer of milliseconds (expected digits only, \
         e.g. 1743060268000)"
    )]
    TimeNotInteger,

    /// `BlockATM-Request-Time` lies `skew_ms` milliseconds in the past, at or beyond the window.
    #[error("BlockATM-Request-Time is {skew_ms} ms in the past, outside the verification window")]
    TooOld {
        /// How far in the past the request time is: `now - time`, in milliseconds.
        skew_ms: u64,
    },

    /// `BlockATM-Request-Time` lies `skew_ms` milliseconds in the future, at or beyond the window.
    #[error(
        "BlockATM-Request-Time is {skew_ms} ms in the future, outside the verification window \
         (is one of the clocks wrong?)"
    )]
    TooNew {
        /// How far in the future the request time is: `time - now`, in milliseconds.
        skew_ms: u64,
    },

    /// The signature is not in its wire format: 64 hexadecimal characters for V2, base64 of a
    /// DER-encoded ECDSA signature for V1.
    #[error(
        "signature is malformed (BlockATM-Signature-V2 must be 64 hexadecimal characters; \
         V1 must be base64 of a DER ECDSA signature)"
    )]
    MalformedSignature,

    /// The signature is well formed but matches none of the secrets (in none of the modes tried).
    #[error(
        "signature does not match: the body, the time or the secret differs from what was signed"
    )]
    Mismatch,

    /// The body is not a JSON object: it is empty, another JSON value (such as an array), or
    /// not JSON at all. Only the `sorted` mode needs an object; `raw` signs any bytes.
    #[error("body is not a JSON object")]
    NotAnObject,

    /// The body is not valid JSON (or not valid UTF-8).
    #[error("body is not valid JSON: {reason} at byte {offset}")]
    InvalidJson {
        /// Byte offset into the body where the problem was found.
        offset: usize,
        /// What was wrong there.
        reason: &'static str,
    },

    /// Objects and arrays in the body nest deeper than [`MAX_DEPTH`].
    #[error("body nests objects and arrays deeper than {MAX_DEPTH} levels")]
    TooDeep,

    /// One JSON object has the same key twice (compared after decoding escapes), so its
    /// canonical form would be ambiguous.
    #[error("body has the key {0:?} twice in one JSON object")]
    DuplicateKey(String),

    /// A secret is empty, or no secret was given to verify against.
    #[error("secret is empty (or no secret was given)")]
    EmptySecret,

    /// `webhook-timestamp` (Standard Webhooks) is not a plain decimal integer of seconds.
    #[error(
        "webhook-timestamp is not a plain integer of seconds (expected digits only, e.g. 1614265330)"
    )]
    StandardTimestamp,

    /// `webhook-timestamp` lies `skew_s` seconds in the past, beyond the tolerance.
    #[error("webhook-timestamp is {skew_s} s in the past, outside the verification window")]
    StandardTooOld {
        /// How far in the past the timestamp is, in seconds.
        skew_s: u64,
    },

    /// `webhook-timestamp` lies `skew_s` seconds in the future, beyond the tolerance.
    #[error(
        "webhook-timestamp is {skew_s} s in the future, outside the verification window \
         (is one of the clocks wrong?)"
    )]
    StandardTooNew {
        /// How far in the future the timestamp is, in seconds.
        skew_s: u64,
    },

    /// `webhook-signature` holds no `v1,<base64 of 32 bytes>` entry.
    #[error("webhook-signature holds no v1,<base64> entry")]
    MalformedStandardSignature,

    /// A Standard Webhooks secret is not `whsec_` + standard base64 of 24 to 64 bytes; the text
    /// says which rule it breaks.
    #[error("invalid Standard Webhooks secret: {0}")]
    InvalidStandardSecret(&'static str),

    /// A V1 (ECDSA) key could not be decoded; the text says which key and why. Only produced by
    /// the `v1` module.
    #[error("invalid V1 key: {0}")]
    InvalidKey(&'static str),
}

/// The error of parsing a [`Mode`](crate::Mode) or [`VerifyMode`](crate::VerifyMode) from text.
///
/// Kept apart from [`Error`] because it is about configuration text, never about a webhook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signing mode {input:?}: expected {expected}")]
pub struct ParseModeError {
    pub(crate) input: String,
    pub(crate) expected: &'static str,
}
