//! One HTTP attempt of a delivery: what was sent, what came back, and how it is classified.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{AttemptId, DeliveryId, Error, Timestamp};

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The endpoint answered with a status that does not acknowledge (incl. 3xx).
    BadStatus,
    /// No answer within the timeout.
    Timeout,
    /// The connection was refused.
    ConnectionRefused,
    /// Another connection failure.
    Connection,
    /// TLS handshake or certificate failure.
    Tls,
    /// The name did not resolve.
    Dns,
    /// The address is not allowed (SSRF policy) or the URL scheme is refused.
    Blocked,
    /// Reset, closed mid-response, or a malformed response.
    Protocol,
}

impl ErrorClass {
    /// Every class, for metrics.
    pub const ALL: [ErrorClass; 8] = [
        Self::BadStatus,
        Self::Timeout,
        Self::ConnectionRefused,
        Self::Connection,
        Self::Tls,
        Self::Dns,
        Self::Blocked,
        Self::Protocol,
    ];

    /// The stored/wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadStatus => "bad_status",
            Self::Timeout => "timeout",
            Self::ConnectionRefused => "connection_refused",
            Self::Connection => "connection",
            Self::Tls => "tls",
            Self::Dns => "dns",
            Self::Blocked => "blocked",
            Self::Protocol => "protocol",
        }
    }

    /// Parses the stored/wire name.
    pub fn parse(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| Error::Internal(format!("unknown error class {s:?}")))
    }
}

/// The verdict of one attempt, as the retry policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint acknowledged.
    Delivered {
        /// The acknowledging status.
        status: u16,
    },
    /// It did not.
    Failed {
        /// The status, when a response arrived.
        status: Option<u16>,
        /// Why.
        class: ErrorClass,
        /// The endpoint's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
}

/// One attempt, as logged. Request headers never contain the secret (only its signature).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRecord {
    /// Its id.
    pub id: AttemptId,
    /// The delivery it belongs to.
    pub delivery_id: DeliveryId,
    /// 1 for the first attempt of the delivery, counting across manual recoveries.
    pub number: u32,
    /// When the request was sent (the `BlockATM-Request-Time` value).
    pub started_at: Timestamp,
    /// The URL posted to.
    pub url: String,
    /// Headers sent.
    pub request_headers: Vec<(String, String)>,
    /// Response status, when one arrived.
    pub status: Option<u16>,
    /// Response headers.
    pub response_headers: Vec<(String, String)>,
    /// The first bytes of the response body (capped, 64 KiB by default).
    #[serde(serialize_with = "lossy_text")]
    pub response_body: Bytes,
    /// The body was longer than the cap.
    pub response_truncated: bool,
    /// Time from sending to the end of reading the (capped) response.
    pub latency_ms: u32,
    /// Why it failed, if it did.
    pub error: Option<ErrorClass>,
    /// A short human description of the failure (never a secret).
    pub error_detail: Option<String>,
}

fn lossy_text<S: serde::Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(b))
}
