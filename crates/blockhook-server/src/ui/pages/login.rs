//! Sign in (merchant API key or operator token) and sign out.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use crate::auth::{self, AuthError, Authenticated, Credential};
use crate::edge::ServedOverTls;
use crate::state::AppState;
use crate::ui::csrf::{Csrf, NoFields};
use crate::ui::error::{UiError, UiResult};
use crate::ui::html::Esc;
use crate::ui::layout::page;
use crate::ui::session::{self, Principal, Sessions, Ui};

fn login_page(error: Option<&str>) -> Response {
    let error = error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, Esc(e)))
        .unwrap_or_default();
    let body = format!(
        r#"{error}<form method="post" action="/ui/login" class="card narrow">
<label for="token">API key or operator token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit" class="primary">Sign in</button>
<p class="hint">The key is checked once; the browser keeps only a session cookie.</p></form>"#
    );
    let status = if error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    };
    (status, page("Sign in", None, None, &body)).into_response()
}

/// `GET /ui/login`.
pub async fn form() -> Response {
    login_page(None)
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /ui/login`: checks the token, starts a session, sets the cookie.
pub async fn submit(
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
    tls: Option<Extension<ServedOverTls>>,
    uri: axum::http::Uri,
    Form(input): Form<LoginForm>,
) -> UiResult {
    // No session yet, so no token: the origin check is what stops a cross-site sign-in
    // (a form elsewhere signing the browser in with the attacker's key).
    if !crate::ui::csrf::same_origin(&headers, uri.authority().map(|a| a.as_str())) {
        return Err(UiError::CrossOrigin);
    }
    let principal = match auth::authenticate(&state, Credential::Token(input.token.trim())).await {
        Ok(Authenticated::Operator) => Principal::Operator { acting_as: None },
        Ok(Authenticated::Merchant {
            merchant_id,
            key_hash,
            ..
        }) => Principal::Merchant {
            merchant_id,
            key_hash,
        },
        // The page does not tell an unknown key from a revoked one.
        Err(AuthError::UnknownKey | AuthError::Revoked) => {
            return Ok(login_page(Some("That key is not valid.")));
        }
        Err(AuthError::Suspended) => return Ok(login_page(Some("This merchant is suspended."))),
        Err(AuthError::Store(e)) => return Err(e.into()),
    };
    let to = if matches!(principal, Principal::Operator { .. }) {
        "/ui/operator"
    } else {
        "/ui/endpoints"
    };
    let id = sessions.start(principal);
    let cookie = HeaderValue::from_str(&session::set_cookie(
        session::cookie_secure(&headers, tls.is_some()),
        &id,
        sessions.lifetime(),
    ))
    .map_err(|_| UiError::Internal("cookie header".into()))?;
    let mut resp = Redirect::to(to).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(resp)
}

/// `POST /ui/logout`: ends the session and clears the cookie.
pub async fn logout(
    ui: Ui,
    headers: HeaderMap,
    tls: Option<Extension<ServedOverTls>>,
    _: Csrf<Form<NoFields>>,
) -> UiResult {
    ui.end();
    let cookie = HeaderValue::from_str(&session::clear_cookie(session::cookie_secure(
        &headers,
        tls.is_some(),
    )))
    .map_err(|_| UiError::Internal("cookie header".into()))?;
    let mut resp = Redirect::to("/ui/login").into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(resp)
}
