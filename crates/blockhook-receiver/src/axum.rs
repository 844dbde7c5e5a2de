//! The axum extractor: [`VerifiedWebhook`] (feature `axum`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Router, http::StatusCode, routing::post};
//! use blockhook_receiver::{EventKind, Verifier, axum::VerifiedWebhook};
//!
//! async fn webhook(VerifiedWebhook(hook): VerifiedWebhook) -> StatusCode {
//!     if *hook.event() == EventKind::Payment {
//!         // record hook.order_no() / hook.body() idempotently, work asynchronously
//!     }
//!     StatusCode::OK // only a 200 acknowledges the delivery
//! }
//!
//! # fn router() -> Result<Router, blockhook_receiver::Error> {
//! let verifier = Arc::new(Verifier::builder().secret("sck_...").replay_protection(true).build()?);
//! let app = Router::new().route("/webhooks/blockatm", post(webhook)).with_state(verifier);
//! # Ok(app) }
//! ```
//!
//! With your own state type, let axum find the verifier in it: `#[derive(Clone, FromRef)]` on
//! the state with an `Arc<Verifier>` field, or `impl FromRef<AppState> for Arc<Verifier>`.

use std::fmt;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::{Error, Verifier, Webhook};

/// Extracts a verified [`Webhook`] from a request, using the `Arc<Verifier>` of the router's
/// state.
///
/// It reads the raw body (within axum's body limit, `DefaultBodyLimit`) before any JSON
/// parsing, so it must be the handler's last argument and replaces `Json<T>`: take
/// [`Webhook::json`] or [`Webhook::value`] instead. On failure it answers
/// [`WebhookRejection`]: `401` with the reason code (`mismatch`, `too_old`, `replay`...) as a
/// plain-text body. To answer differently, take `Result<VerifiedWebhook, WebhookRejection>`.
#[derive(Debug, Clone)]
pub struct VerifiedWebhook(pub Webhook);

impl std::ops::Deref for VerifiedWebhook {
    type Target = Webhook;

    fn deref(&self) -> &Webhook {
        &self.0
    }
}

impl<S> FromRequest<S> for VerifiedWebhook
where
    Arc<Verifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = WebhookRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = Arc::<Verifier>::from_ref(state);
        let headers = req.headers().clone();
        let body = Bytes::from_request(req, state)
            .await
            .map_err(WebhookRejection::Body)?;
        verifier
            .verify(&headers, &body)
            .map(Self)
            .map_err(WebhookRejection::Unverified)
    }
}

/// Why [`VerifiedWebhook`] refused a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum WebhookRejection {
    /// Verification failed: answered `401` with [`Error::reason`] as the body (or `500`
    /// `config_error` if the verifier has no usable secret).
    Unverified(Error),
    /// The body could not be read (too large, client went away...): axum's own answer.
    Body(BytesRejection),
}

impl WebhookRejection {
    /// The verification error, if that is what failed.
    pub fn error(&self) -> Option<&Error> {
        match self {
            Self::Unverified(e) => Some(e),
            Self::Body(_) => None,
        }
    }

    /// The status this rejection is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unverified(e) if e.is_config() => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unverified(_) => StatusCode::UNAUTHORIZED,
            Self::Body(r) => r.status(),
        }
    }
}

impl fmt::Display for WebhookRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unverified(e) => write!(f, "webhook rejected ({}): {e}", e.reason()),
            Self::Body(r) => write!(f, "webhook body could not be read: {}", r.body_text()),
        }
    }
}

impl std::error::Error for WebhookRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unverified(e) => Some(e),
            Self::Body(r) => Some(r),
        }
    }
}

impl IntoResponse for WebhookRejection {
    fn into_response(self) -> Response {
        let status = self.status();
        match self {
            Self::Unverified(e) => {
                let ct = [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                )];
                (status, ct, e.reason()).into_response()
            }
            Self::Body(r) => r.into_response(),
        }
    }
}
