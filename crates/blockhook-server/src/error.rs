//! The server's errors: `Error` for startup and background work, `ApiError` for HTTP answers.
//!
//! `ApiError` is the one place where failures become HTTP: each maps to a status and an
//! RFC 9457 problem document (`application/problem+json`) with a stable `type`, a `title`, a
//! human `detail` and, for validation errors, the offending `field`. Server-side failures are
//! logged with their cause and answered with a generic detail.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Errors of startup and background tasks.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// Reading or writing a local file failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] blockhook_core::Error),
    /// The outbound HTTP client could not be built.
    #[error("egress: {0}")]
    Egress(#[from] blockhook_egress::Error),
    /// A secret could not be sealed or opened.
    #[error("keys: {0}")]
    Keys(String),
}

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or bad credentials.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Authenticated, but this route is for the operator.
    #[error("this route needs the operator token")]
    Forbidden,
    /// Bad input.
    #[error("{detail}")]
    Invalid {
        /// The offending field, if one.
        field: Option<String>,
        /// What is wrong.
        detail: String,
    },
    /// The body is not valid JSON or not of the expected shape.
    #[error("{0}")]
    MalformedBody(String),
    /// The query string does not parse (a parameter of the wrong type or out of range).
    #[error("{0}")]
    MalformedQuery(String),
    /// Too large.
    #[error("request body larger than the configured limit (server.max_body_bytes)")]
    PayloadTooLarge,
    /// The request's body did not arrive within `server.body_read_timeout`, or arrived slower
    /// than `server.body_min_rate`.
    #[error(
        "the request body did not arrive within server.body_read_timeout, or arrived slower \
         than server.body_min_rate"
    )]
    RequestTimeout,
    /// The connection is over `server.max_connections` (or the per-address cap).
    #[error("the server is at its connection limit; retry shortly")]
    Overloaded,
    /// The request's headers are too large.
    #[error("request headers larger than 16 KiB")]
    HeadersTooLarge,
    /// Not found, or not yours.
    #[error("{0} not found")]
    NotFound(String),
    /// Conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// Too many requests for this key.
    #[error("rate limit exceeded")]
    RateLimited {
        /// Seconds until a request would be accepted.
        retry_after_secs: u64,
    },
    /// The store is unavailable.
    #[error("the store is unavailable; retry shortly")]
    Unavailable,
    /// A bug or unexpected failure; details only in the log.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A validation error on `field`.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Invalid {
            field: Some(field.into()),
            detail: detail.into(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Self::Forbidden => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            Self::Invalid { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Validation failed",
            ),
            Self::MalformedBody(_) => (StatusCode::BAD_REQUEST, "malformed-body", "Malformed body"),
            Self::MalformedQuery(_) => (
                StatusCode::BAD_REQUEST,
                "malformed-query",
                "Malformed query string",
            ),
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            Self::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                "Request timeout",
            ),
            Self::Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "Too many connections",
            ),
            Self::HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers-too-large",
                "Request headers too large",
            ),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            Self::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            ),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
            ),
        }
    }
}

/// The problem document (RFC 9457).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind.
    #[schema(value_type = String)]
    pub title: &'static str,
    /// HTTP status.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// The offending input field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The `type` URI prefix of every problem blockhook answers.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:blockhook:problem:";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, title) = self.parts();
        if let Self::Internal(cause) = &self {
            tracing::error!(%cause, "request failed");
        }
        let field = match &self {
            Self::Invalid { field, .. } => field.clone(),
            _ => None,
        };
        let problem = Problem {
            kind: format!("{PROBLEM_TYPE_PREFIX}{slug}"),
            title,
            status: status.as_u16(),
            detail: self.to_string(),
            field,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut resp = (status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Self::RateLimited { retry_after_secs } = self {
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

impl From<blockhook_core::Error> for ApiError {
    fn from(e: blockhook_core::Error) -> Self {
        use blockhook_core::Error as E;
        match e {
            E::Invalid { field, reason } => Self::Invalid {
                field: Some(field.into()),
                detail: reason,
            },
            E::NotFound(what) => Self::NotFound(what.to_owned()),
            E::Conflict(why) => Self::Conflict(why),
            e @ E::IdempotencyConflict { .. } => Self::Conflict(e.to_string()),
            E::Unavailable(cause) => {
                store_unavailable(&cause);
                Self::Unavailable
            }
            E::Internal(cause) => Self::Internal(cause),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::PayloadTooLarge
            }
            JsonRejection::MissingJsonContentType(_) => {
                Self::MalformedBody("expected Content-Type: application/json".to_owned())
            }
            JsonRejection::JsonDataError(e) => Self::Invalid {
                field: None,
                detail: e.body_text(),
            },
            other => Self::MalformedBody(other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::MalformedBody(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        // axum's text names the parameter ("Failed to deserialize query string: limit: invalid
        // digit found in string"); the status is 400 like a malformed body: the request never
        // had the expected shape, as opposed to a well-formed value that fails a rule (422).
        Self::MalformedQuery(r.body_text())
    }
}

/// Whether the store was last seen unavailable. While the database is down every request fails
/// the same way; one WARN line when it goes (and one INFO line when it answers again) says
/// everything, where a line per request would bury the rest of the log. Process-wide because
/// the conversion above has no state at hand, and it only decides what is logged.
static STORE_DOWN: AtomicBool = AtomicBool::new(false);

/// Notes a request answered 503 because the store is unavailable: logged on the transition only.
fn store_unavailable(cause: &str) {
    if STORE_DOWN.swap(true, Ordering::SeqCst) {
        tracing::debug!(%cause, "store still unavailable");
    } else {
        tracing::warn!(%cause, "store unavailable: answering 503 until it recovers (logged once)");
    }
}

/// Notes a request the store answered; logs the recovery if it was down.
pub(crate) fn store_answered() {
    if STORE_DOWN.load(Ordering::Relaxed) && STORE_DOWN.swap(false, Ordering::SeqCst) {
        tracing::info!("store reachable again");
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_unavailable_store_is_logged_once_at_warn_and_its_recovery_at_info() {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..2 {
                for _ in 0..5 {
                    let e = ApiError::from(blockhook_core::Error::Unavailable("refused".into()));
                    assert_eq!(e.into_response().status(), 503);
                }
                store_answered();
                store_answered();
            }
        });
        let log = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(log.matches(" WARN ").count(), 2, "once per outage:\n{log}");
        assert_eq!(log.matches("ERROR").count(), 0, "{log}");
        assert_eq!(log.matches("store reachable again").count(), 2, "{log}");
        assert!(
            log.lines()
                .all(|l| !l.contains(" INFO ") || l.contains("reachable"))
        );
    }
}
