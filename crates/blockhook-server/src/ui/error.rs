//! The dashboard's error type: what can go wrong in a UI handler, and the page (or redirect) each
//! failure is answered with. Store and service-layer errors convert into it, so handlers use `?`.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::html::{Esc, document};

/// What can go wrong in a UI handler, each answered with a page (or a redirect).
#[derive(Debug)]
pub enum UiError {
    /// No valid session: go to the sign-in page.
    Login,
    /// The operator must pick a merchant first.
    NeedMerchant,
    /// Unknown, or another merchant's.
    NotFound,
    /// Operator-only page.
    Forbidden,
    /// The form's CSRF token is missing or wrong.
    Csrf,
    /// A state-changing post came from another site (its `Origin` is not this dashboard's).
    CrossOrigin,
    /// Input was refused; the message is safe to show.
    Invalid(String),
    /// A state conflict (e.g. the resend limit); the message is safe to show.
    Conflict(String),
    /// Anything else: logged, shown generically.
    Internal(String),
}

impl From<blockhook_core::Error> for UiError {
    fn from(e: blockhook_core::Error) -> Self {
        use blockhook_core::Error as E;
        match e {
            E::NotFound(_) => Self::NotFound,
            E::Invalid { field, reason } => Self::Invalid(format!("{field}: {reason}")),
            E::Conflict(why) => Self::Conflict(why),
            e @ E::IdempotencyConflict { .. } => Self::Conflict(e.to_string()),
            E::Unavailable(why) => Self::Internal(format!("store unavailable: {why}")),
            E::Internal(why) => Self::Internal(why),
        }
    }
}

impl From<crate::ApiError> for UiError {
    fn from(e: crate::ApiError) -> Self {
        use crate::ApiError as A;
        match e {
            A::Unauthorized(_) => Self::Login,
            A::Forbidden => Self::Forbidden,
            A::Invalid {
                field: Some(field),
                detail,
            } => Self::Invalid(format!("{field}: {detail}")),
            A::Invalid {
                field: None,
                detail,
            }
            | A::MalformedBody(detail)
            | A::MalformedQuery(detail) => Self::Invalid(detail),
            A::PayloadTooLarge | A::HeadersTooLarge => Self::Invalid("too large".into()),
            A::NotFound(_) => Self::NotFound,
            A::Conflict(why) => Self::Conflict(why),
            A::RateLimited { .. } => Self::Conflict("too many requests; retry shortly".into()),
            A::Unavailable => Self::Internal("store unavailable".into()),
            A::RequestTimeout => Self::Invalid("the form did not arrive in time".into()),
            A::Overloaded => Self::Internal("the server is at its connection limit".into()),
            A::Internal(why) => Self::Internal(why),
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, title, text) = match self {
            Self::Login => return Redirect::to("/ui/login").into_response(),
            Self::NeedMerchant => return Redirect::to("/ui/operator").into_response(),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here.".to_owned(),
            ),
            Self::Forbidden => (
                StatusCode::FORBIDDEN,
                "Forbidden",
                "This page is for the operator.".to_owned(),
            ),
            Self::CrossOrigin => (
                StatusCode::FORBIDDEN,
                "Cross-site request refused",
                "This form was posted from another site. Open the dashboard directly and try again."
                    .to_owned(),
            ),
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "Form expired",
                "The form's security token is missing or stale. Go back, reload and try again."
                    .to_owned(),
            ),
            Self::Invalid(why) => (StatusCode::UNPROCESSABLE_ENTITY, "Check your input", why),
            Self::Conflict(why) => (StatusCode::CONFLICT, "Not possible", why),
            Self::Internal(why) => {
                tracing::error!(error = %why, "ui request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "Please retry.".to_owned(),
                )
            }
        };
        let body = format!(
            r#"<p>{}</p><p><a href="/ui/">Back to the dashboard</a></p>"#,
            Esc(&text)
        );
        let mut resp = (status, document(title, "", None, &body)).into_response();
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        resp
    }
}

/// Result of a UI handler.
pub type UiResult<T = Response> = Result<T, UiError>;
