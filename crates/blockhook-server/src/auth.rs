//! Who is calling: the one check of a presented credential, shared by the API's `Caller`
//! extractor, the dashboard's sign-in form and the dashboard's session re-check.
//!
//! The operator is recognised by the admin token (compared in constant time); a merchant by one
//! of its API keys, looked up by SHA-256 (the only form the store keeps), which must not be
//! revoked and whose merchant must be active. Each caller maps [`AuthError`] to its own answer
//! (problem+json 401 for the API, the sign-in page's message or a redirect for the dashboard),
//! so the rules live here once and the wording stays where it is shown.

use blockhook_core::{ApiKeyId, MerchantId, MerchantStatus};

use crate::keys::hash_api_key;
use crate::state::AppState;

/// A credential as presented.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// A bearer token or the sign-in form's field: the admin token or an API key, in clear.
    Token(&'a str),
    /// The SHA-256 (hex) of an API key, as a dashboard session keeps it to re-check the key on
    /// every request without holding it in clear. Never the admin token: an operator session
    /// has nothing left to re-check.
    KeyHash(&'a str),
}

/// Who a credential belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authenticated {
    /// The admin token: the gateway's platform team.
    Operator,
    /// A merchant, through one of its API keys.
    Merchant {
        /// The merchant.
        merchant_id: MerchantId,
        /// The key used.
        key_id: ApiKeyId,
        /// SHA-256 (hex) of the key, what a session keeps to re-check it.
        key_hash: String,
        /// The merchant's name, for the dashboard's header.
        merchant_name: String,
    },
}

/// Why a credential was refused.
#[derive(Debug)]
pub enum AuthError {
    /// Neither the admin token nor a stored API key.
    UnknownKey,
    /// The API key was revoked.
    Revoked,
    /// The key's merchant is suspended.
    Suspended,
    /// The store could not answer; not the caller's fault.
    Store(blockhook_core::Error),
}

impl From<blockhook_core::Error> for AuthError {
    fn from(e: blockhook_core::Error) -> Self {
        Self::Store(e)
    }
}

/// Checks `credential` and says who it is.
pub async fn authenticate(
    state: &AppState,
    credential: Credential<'_>,
) -> Result<Authenticated, AuthError> {
    let key_hash = match credential {
        Credential::Token(token) if state.admin.matches(token) => {
            return Ok(Authenticated::Operator);
        }
        Credential::Token(token) => hash_api_key(token),
        Credential::KeyHash(hash) => hash.to_owned(),
    };
    let key = state
        .store
        .api_key_by_hash(&key_hash)
        .await?
        .ok_or(AuthError::UnknownKey)?;
    if key.revoked_at.is_some() {
        return Err(AuthError::Revoked);
    }
    let merchant = state.store.get_merchant(&key.merchant_id).await?;
    if merchant.status != MerchantStatus::Active {
        return Err(AuthError::Suspended);
    }
    Ok(Authenticated::Merchant {
        merchant_id: key.merchant_id,
        key_id: key.id,
        key_hash,
        merchant_name: merchant.name,
    })
}
