//! `Csrf<Form<T>>`: a POSTed dashboard form whose CSRF token has been checked.
//!
//! Every state-changing dashboard handler takes its form through this extractor instead of
//! `Form<T>`, so a handler cannot forget the check: without a valid token it never runs. The
//! token travels in the form's `csrf` field (see `html::csrf_field`) and is compared in constant
//! time with the session's; `T` holds the other fields only.
//!
//! Before the token, the request's origin is checked ([`same_origin`]): a browser names the
//! site a form was posted from in `Origin` (and `Sec-Fetch-Site`), and a post from another site
//! is refused even if it somehow carried a token. The sign-in form, which has no session yet,
//! makes the same check.

use axum::Form;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::request::Parts;
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

/// The host (with its port, if any) of an origin or URL such as `https://a.example:8443`.
fn host_of(origin: &str) -> Option<&str> {
    let rest = origin.split_once("://")?.1;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then_some(host)
}

/// Whether a state-changing request may come from where the browser says it does.
///
/// - `Origin` present: its host must be this request's host (`Host`, the HTTP/2 authority, or
///   `X-Forwarded-Host` set by a reverse proxy that rewrites `Host`). A cross-site form post
///   cannot set those headers, so accepting either host keeps the check sound. `Origin: null`
///   (sandboxed or privacy-redirected posts) is refused.
/// - No `Origin` (older browsers, scripts): `Sec-Fetch-Site`, when sent, must not say
///   `cross-site`; without either header the CSRF token alone decides.
pub(crate) fn same_origin(headers: &HeaderMap, authority: Option<&str>) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match header("origin") {
        Some(origin) => {
            let Some(from) = host_of(origin) else {
                return false;
            };
            let mut hosts = [header("host"), authority, header("x-forwarded-host")]
                .into_iter()
                .flatten()
                .flat_map(|h| h.split(','))
                .map(str::trim);
            hosts.any(|h| h.eq_ignore_ascii_case(from))
        }
        None => header("sec-fetch-site") != Some("cross-site"),
    }
}

fn check_origin(parts: &Parts) -> Result<(), UiError> {
    if same_origin(&parts.headers, parts.uri.authority().map(|a| a.as_str())) {
        Ok(())
    } else {
        Err(UiError::CrossOrigin)
    }
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
        check_origin(&parts).map_err(IntoResponse::into_response)?;
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

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn origin_must_name_this_host() {
        let here = [("host", "127.0.0.1:8080")];
        assert!(
            same_origin(&headers(&here), None),
            "no Origin: the token decides"
        );
        assert!(same_origin(
            &headers(&[here[0], ("origin", "http://127.0.0.1:8080")]),
            None
        ));
        assert!(!same_origin(
            &headers(&[here[0], ("origin", "https://evil.example")]),
            None
        ));
        assert!(
            !same_origin(
                &headers(&[here[0], ("origin", "http://127.0.0.1:9090")]),
                None
            ),
            "another port is another origin"
        );
        assert!(!same_origin(&headers(&[here[0], ("origin", "null")]), None));
        assert!(!same_origin(
            &headers(&[here[0], ("sec-fetch-site", "cross-site")]),
            None
        ));
        assert!(same_origin(
            &headers(&[here[0], ("sec-fetch-site", "same-origin")]),
            None
        ));
        // Behind a proxy that rewrites Host, or over HTTP/2 (no Host header).
        assert!(same_origin(
            &headers(&[
                ("host", "10.0.0.5:8080"),
                ("x-forwarded-host", "hooks.example.com"),
                ("origin", "https://hooks.example.com"),
            ]),
            None
        ));
        assert!(same_origin(
            &headers(&[("origin", "https://hooks.example.com")]),
            Some("hooks.example.com")
        ));
    }

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
