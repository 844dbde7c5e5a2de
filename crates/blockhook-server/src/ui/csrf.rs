//! `Csrf<Form<T>>`: a POSTed dashboard form whose CSRF token has been checked.
//!
//! Every state-changing dashboard handler takes its form through this extractor instead of
//! `Form<T>`, so a handler cannot forget the check: without a valid token it never runs. The
//! token travels in the form's `csrf` field (see `html::csrf_field`) and is compared in constant
//! time with the session's; `T` holds the other fields only.

use axum::Form;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq as _;

use super::error::UiError;
use super::session::Ui;
use crate::state::AppState;

/// A form (`Csrf<Form<T>>`) that carried this session's CSRF token.
#[derive(Debug, Clone)]
pub struct Csrf<F>(pub F);

/// A form with no field but the token (one-button actions).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct NoFields {}

/// The form as posted: the token beside the handler's fields.
///
/// `flatten` hands the other fields to `T` as text, which is all a urlencoded form carries:
/// every field of a dashboard form is a `String` and parsed by the handler.
#[derive(Deserialize)]
struct WithToken<T> {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    fields: T,
}

/// Whether `token` is the session's CSRF token (constant time; empty never matches).
fn token_matches(expected: &str, token: &str) -> bool {
    !token.is_empty() && bool::from(expected.as_bytes().ct_eq(token.as_bytes()))
}

impl<T> FromRequest<AppState> for Csrf<Form<T>>
where
    T: DeserializeOwned + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        // The handler's own `Ui` was extracted first and is reused: without a session this is
        // the same redirect to sign-in.
        let ui = Ui::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        // The form is read before the token is checked, as a malformed form was always
        // answered by `Form`'s own rejection first.
        let Form(posted) =
            Form::<WithToken<T>>::from_request(Request::from_parts(parts, body), state)
                .await
                .map_err(IntoResponse::into_response)?;
        if !token_matches(&ui.csrf, &posted.csrf) {
            return Err(UiError::Csrf.into_response());
        }
        Ok(Csrf(Form(posted.fields)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_nonempty_token_matches() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abc", "abd"));
        assert!(!token_matches("abc", "ab"));
        assert!(!token_matches("abc", ""));
        assert!(!token_matches("", ""), "an empty token never passes");
    }

    #[test]
    fn token_and_fields_are_read_from_one_form() {
        #[derive(Deserialize)]
        struct Named {
            name: String,
            #[serde(default)]
            id: String,
        }
        let posted: WithToken<Named> = decode_form("csrf=t0k&name=Acme%20Pay&id=mch_acme");
        assert_eq!(posted.csrf, "t0k");
        assert_eq!(posted.fields.name, "Acme Pay");
        assert_eq!(posted.fields.id, "mch_acme");
        let bare: WithToken<NoFields> = decode_form("name=x");
        assert_eq!(
            bare.csrf, "",
            "a missing token reads as empty, and is refused"
        );
    }

    /// Decodes a form body exactly as `Form` does.
    fn decode_form<T: DeserializeOwned>(body: &'static str) -> T {
        let req = Request::builder()
            .method("POST")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(body))
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(Form::<T>::from_request(req, &())).unwrap().0
    }
}
