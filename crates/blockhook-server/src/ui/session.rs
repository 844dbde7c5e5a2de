//! Sessions: who is signed in to the dashboard, and the CSRF token of their forms.
//!
//! The session cookie holds only a random id (256 bits, hex); the server maps it to the caller in
//! memory for `ui.session_lifetime` (12 hours by default) from sign-in. Expiry is timed with the
//! monotonic clock (`Instant`), not the app's wall `Clock`, so a system-time step neither ends
//! sessions early nor keeps them alive longer; an expired session is treated exactly like no
//! session (every page and form redirects to the sign-in page). The API key or admin token the
//! user signed in with is never stored in clear, never put in a page or a URL: a merchant
//! session keeps the key's SHA-256 (the form the store already keeps) and re-checks it on every
//! request through `auth::authenticate`, the same check as sign-in and the API, so a revoked key
//! or a suspended merchant ends the session at once. Every POST form carries the session's CSRF
//! token, checked by the `Csrf` extractor (`super::csrf`). Sessions live in the process: a
//! restart signs everyone out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::{COOKIE, HOST};
use axum::http::request::Parts;
use rand::RngCore as _;

use blockhook_core::MerchantId;

use super::error::UiError;
use crate::auth::{self, AuthError, Authenticated, Credential};
use crate::state::AppState;

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "bh_session";

/// How long a session lasts unless `ui.session_lifetime` says otherwise.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Who a session belongs to.
#[derive(Debug, Clone)]
pub enum Principal {
    /// Signed in with the admin token, optionally acting as one merchant.
    Operator {
        /// The merchant whose pages the operator is looking at.
        acting_as: Option<MerchantId>,
    },
    /// Signed in with one of the merchant's API keys.
    Merchant {
        /// The merchant.
        merchant_id: MerchantId,
        /// SHA-256 (hex) of the key, to re-check it is still valid.
        key_hash: String,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    principal: Principal,
    csrf: String,
    expires: Instant,
    flash: Option<String>,
}

/// Every live session of this process.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<String, Entry>>,
    lifetime: Duration,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new(DEFAULT_LIFETIME)
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Sessions {
    /// An empty table whose sessions last `lifetime` from sign-in.
    pub fn new(lifetime: Duration) -> Self {
        Self {
            map: Mutex::default(),
            lifetime,
        }
    }

    /// How long a session lasts from sign-in.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock cannot leave a half-written entry: take the map as is.
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a session and returns its id.
    pub fn start(&self, principal: Principal) -> String {
        let id = random_hex();
        let now = Instant::now();
        let mut map = self.map();
        map.retain(|_, e| e.expires > now);
        map.insert(
            id.clone(),
            Entry {
                principal,
                csrf: random_hex(),
                expires: now + self.lifetime,
                flash: None,
            },
        );
        id
    }

    /// Ends a session.
    pub fn end(&self, id: &str) {
        self.map().remove(id);
    }

    fn get(&self, id: &str) -> Option<Entry> {
        let mut map = self.map();
        match map.get_mut(id) {
            Some(e) if e.expires > Instant::now() => {
                let out = e.clone();
                e.flash = None;
                Some(out)
            }
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    fn set_principal(&self, id: &str, principal: Principal) {
        if let Some(e) = self.map().get_mut(id) {
            e.principal = principal;
        }
    }

    fn set_flash(&self, id: &str, text: String) {
        if let Some(e) = self.map().get_mut(id) {
            e.flash = Some(text);
        }
    }
}

/// The signed-in caller of a UI request. Without a valid session the request is redirected to
/// the sign-in page.
#[derive(Debug, Clone)]
pub struct Ui {
    /// The session id (cookie value).
    id: String,
    /// The CSRF token of this session's forms.
    pub csrf: String,
    /// Who is signed in.
    pub principal: Principal,
    /// A one-time notice from the previous action.
    pub flash: Option<String>,
    /// The signed-in merchant's name (read with the key's re-check on every request).
    pub merchant_name: Option<String>,
    /// The alert rows of the merchant the pages show (read once per request, for the banner
    /// every page carries and the endpoint page; empty when no merchant is picked).
    pub alerts: Vec<blockhook_core::EndpointAlert>,
    sessions: Arc<Sessions>,
}

impl Ui {
    /// The merchant whose data the pages show; the operator must have picked one.
    pub fn merchant(&self) -> Result<&MerchantId, UiError> {
        match &self.principal {
            Principal::Merchant { merchant_id, .. } => Ok(merchant_id),
            Principal::Operator { acting_as: Some(m) } => Ok(m),
            Principal::Operator { acting_as: None } => Err(UiError::NeedMerchant),
        }
    }

    /// Whether the admin token signed this session in.
    pub fn is_operator(&self) -> bool {
        matches!(self.principal, Principal::Operator { .. })
    }

    /// Who is signed in, for the header: the merchant's name (its id when it has none).
    pub fn describe(&self) -> String {
        match &self.principal {
            Principal::Merchant { merchant_id, .. } => match self.merchant_name.as_deref() {
                Some(name) if !name.trim().is_empty() => name.to_owned(),
                _ => format!("merchant {merchant_id}"),
            },
            Principal::Operator { acting_as: Some(m) } => format!("operator, acting as {m}"),
            Principal::Operator { acting_as: None } => "operator".to_owned(),
        }
    }

    /// Operator only.
    pub fn require_operator(&self) -> Result<(), UiError> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(UiError::Forbidden)
        }
    }

    /// Switches the merchant the operator acts as.
    pub fn act_as(&self, merchant: Option<MerchantId>) -> Result<(), UiError> {
        self.require_operator()?;
        self.sessions.set_principal(
            &self.id,
            Principal::Operator {
                acting_as: merchant,
            },
        );
        Ok(())
    }

    /// A notice to show on the next page.
    pub fn flash(&self, text: impl Into<String>) {
        self.sessions.set_flash(&self.id, text.into());
    }

    /// Ends this session.
    pub fn end(&self) {
        self.sessions.end(&self.id);
    }
}

/// The session id from the `Cookie` header, if any.
pub fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_owned())
}

/// Whether the request names a loopback host (plain-http development and tests), where a
/// `Secure` cookie would not be kept by every client.
fn loopback_host(headers: &HeaderMap) -> bool {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let name = host
        .rsplit_once(':')
        .map_or(host, |(n, p)| if p.ends_with(']') { host } else { n });
    name == "localhost" || name.starts_with("127.") || name == "[::1]"
}

/// Whether the session cookie must be `Secure`: always over HTTPS served by blockhook, and on
/// plain HTTP unless the host is loopback (behind a TLS proxy the browser sees HTTPS).
pub fn cookie_secure(headers: &HeaderMap, over_tls: bool) -> bool {
    over_tls || !loopback_host(headers)
}

fn secure_attr(secure: bool) -> &'static str {
    if secure { "; Secure" } else { "" }
}

/// The `Set-Cookie` value starting a session that lasts `lifetime`.
pub fn set_cookie(secure: bool, id: &str, lifetime: Duration) -> String {
    format!(
        "{COOKIE_NAME}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{}",
        lifetime.as_secs(),
        secure_attr(secure)
    )
}

/// The `Set-Cookie` value ending a session.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE_NAME}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{}",
        secure_attr(secure)
    )
}

/// The sessions of this app (installed as an extension by [`super::router`]).
pub fn sessions_of(parts: &Parts) -> Result<Arc<Sessions>, UiError> {
    parts
        .extensions
        .get::<Arc<Sessions>>()
        .cloned()
        .ok_or_else(|| UiError::Internal("ui sessions not installed".into()))
}

impl FromRequestParts<AppState> for Ui {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, UiError> {
        // Extracted once per request: a handler taking both `Ui` and `Csrf<…>` re-checks the key
        // (and consumes the flash notice) only once.
        if let Some(ui) = parts.extensions.get::<Ui>() {
            return Ok(ui.clone());
        }
        let sessions = sessions_of(parts)?;
        let id = cookie_value(&parts.headers).ok_or(UiError::Login)?;
        let entry = sessions.get(&id).ok_or(UiError::Login)?;
        let mut merchant_name = None;
        if let Principal::Merchant {
            merchant_id,
            key_hash,
        } = &entry.principal
        {
            let still_valid = match auth::authenticate(state, Credential::KeyHash(key_hash)).await {
                Ok(Authenticated::Merchant {
                    merchant_id: of_key,
                    merchant_name: name,
                    ..
                }) => {
                    merchant_name = Some(name);
                    &of_key == merchant_id
                }
                Ok(Authenticated::Operator)
                | Err(AuthError::UnknownKey | AuthError::Revoked | AuthError::Suspended) => false,
                Err(AuthError::Store(e)) => return Err(e.into()),
            };
            if !still_valid {
                sessions.end(&id);
                return Err(UiError::Login);
            }
        }
        let mut ui = Ui {
            id,
            csrf: entry.csrf,
            principal: entry.principal,
            flash: entry.flash,
            merchant_name,
            alerts: Vec::new(),
            sessions,
        };
        if let Ok(m) = ui.merchant() {
            // The banner is advice: a page still renders when it cannot be read.
            match crate::manage::endpoints::alerts(state, m).await {
                Ok(rows) => ui.alerts = rows,
                Err(e) => tracing::warn!(error = ?e, "could not read the alert banner"),
            }
        }
        parts.extensions.insert(ui.clone());
        Ok(ui)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sessions_start_read_and_end() {
        let s = Sessions::default();
        let id = s.start(Principal::Operator { acting_as: None });
        assert_eq!(id.len(), 64);
        let e = s.get(&id).unwrap();
        assert_eq!(e.csrf.len(), 64);
        assert!(s.get("nope").is_none());
        s.end(&id);
        assert!(s.get(&id).is_none());
    }

    #[test]
    fn sessions_expire_after_their_lifetime() {
        let s = Sessions::new(Duration::from_secs(3600));
        assert!(
            s.get(&s.start(Principal::Operator { acting_as: None }))
                .is_some()
        );
        // A zero lifetime has expired by the time anything can look the session up.
        let s = Sessions::new(Duration::ZERO);
        let id = s.start(Principal::Operator { acting_as: None });
        assert!(s.get(&id).is_none(), "expired");
        assert!(
            s.map().is_empty(),
            "an expired entry is dropped when looked up"
        );
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, "a=1; bh_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie_value(&h).as_deref(), Some("abc"));
        h.insert(HOST, "127.0.0.1:8080".parse().unwrap());
        let life = DEFAULT_LIFETIME;
        assert!(!cookie_secure(&h, false), "plain http on loopback");
        assert!(
            cookie_secure(&h, true),
            "HTTPS served by blockhook, even on loopback"
        );
        assert!(!set_cookie(false, "x", life).contains("Secure"));
        assert!(set_cookie(false, "x", life).contains("Max-Age=43200"));
        h.insert(HOST, "hooks.example.com".parse().unwrap());
        assert!(cookie_secure(&h, false));
        assert!(set_cookie(true, "x", life).contains("; Secure"));
        assert!(set_cookie(true, "x", life).contains("HttpOnly; SameSite=Strict"));
        assert!(clear_cookie(true).ends_with("Max-Age=0; Secure"));
    }
}
