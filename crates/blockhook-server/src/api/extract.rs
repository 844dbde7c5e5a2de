//! Extractors: who is calling (`Caller`, `Operator`, `Tenant`), the JSON body (`ApiJson`) and
//! the query string (`ApiQuery`).
//!
//! A handler that takes `Tenant` cannot forget tenancy: the merchant in the path must be the
//! caller's own (merchant keys; `me` also works) or exist (operator). Another merchant's id
//! answers 404 exactly like an unknown one.

use std::collections::HashMap;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use blockhook_core::{ApiKeyId, MerchantId};

use crate::auth::{self, AuthError, Authenticated, Credential};
use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The gateway's platform team (admin token).
    Operator,
    /// A merchant, through one of its API keys.
    Merchant {
        /// The merchant.
        merchant_id: MerchantId,
        /// The key used.
        key_id: ApiKeyId,
    },
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(ApiError::Unauthorized(
                "missing Authorization: Bearer <token>",
            ))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized(
                "Authorization must be \"Bearer <token>\"",
            ))?;
        let caller = authenticate(token, state).await?;
        let limit = &state.settings.api;
        let exempt = matches!(caller, Caller::Operator)
            && !limit.limit_operator_publish
            && is_publish(parts);
        if limit.requests_per_second > 0 && !exempt {
            let key = match &caller {
                Caller::Operator => None,
                Caller::Merchant { key_id, .. } => Some(key_id.clone()),
            };
            if let Err(wait) = state
                .api_limiter
                .check(&key, limit.requests_per_second, limit.burst)
            {
                return Err(ApiError::RateLimited {
                    retry_after_secs: wait.as_secs().max(1),
                });
            }
        }
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// `POST /v1/events` or `POST /v1/events/batch`: the gateway's hot path, which the operator's
/// per-key budget must not throttle (a 429 there is a payment notification the gateway has to
/// queue and retry itself).
fn is_publish(parts: &Parts) -> bool {
    parts.method == axum::http::Method::POST
        && matches!(parts.uri.path(), "/v1/events" | "/v1/events/batch")
}

/// The API's answer to a refused token: always 401, naming the reason; a store failure is the
/// store's usual problem.
async fn authenticate(token: &str, state: &AppState) -> Result<Caller, ApiError> {
    match auth::authenticate(state, Credential::Token(token)).await {
        Ok(Authenticated::Operator) => Ok(Caller::Operator),
        Ok(Authenticated::Merchant {
            merchant_id,
            key_id,
            ..
        }) => Ok(Caller::Merchant {
            merchant_id,
            key_id,
        }),
        Err(AuthError::UnknownKey) => Err(ApiError::Unauthorized("unknown API key")),
        Err(AuthError::Revoked) => Err(ApiError::Unauthorized("API key revoked")),
        Err(AuthError::Suspended) => Err(ApiError::Unauthorized("merchant suspended")),
        Err(AuthError::Store(e)) => Err(e.into()),
    }
}

/// The caller must be the operator.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Operator => Ok(Operator),
            Caller::Merchant { .. } => Err(ApiError::Forbidden),
        }
    }
}

/// The merchant named by the `{merchant_id}` path segment, which the caller may act for.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The merchant.
    pub merchant_id: MerchantId,
    /// Who is acting.
    pub caller: Caller,
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let Path(params) =
            Path::<HashMap<String, String>>::from_request_parts(parts, state).await?;
        let raw = params
            .get("merchant_id")
            .ok_or_else(|| ApiError::Internal("route has no {merchant_id}".into()))?;
        let not_found = || ApiError::NotFound("merchant".into());
        let merchant_id = match &caller {
            Caller::Merchant { merchant_id, .. } => {
                if raw == "me" || raw == merchant_id.as_str() {
                    merchant_id.clone()
                } else {
                    return Err(not_found());
                }
            }
            // `me` is the API key's own merchant; the operator token has none, and "merchant
            // not found" would send the reader looking for a merchant that was never meant.
            Caller::Operator if raw == "me" => {
                return Err(ApiError::invalid(
                    "merchant_id",
                    "`me` names the merchant of a merchant API key; with the operator token put \
                     the merchant's id in the path (CLI: --merchant mch_…)",
                ));
            }
            Caller::Operator => {
                let id = MerchantId::parse(raw).map_err(|_| not_found())?;
                state.store.get_merchant(&id).await?;
                id
            }
        };
        Ok(Tenant {
            merchant_id,
            caller,
        })
    }
}

/// A query string, with every failure answered as a 400 problem+json (axum's own `Query`
/// answers `text/plain`). Every `/v1` handler reads its query through this one extractor.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(ApiQuery(Query::<T>::try_from_uri(&parts.uri)?.0))
    }
}

/// A JSON body, with every failure answered as problem+json.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = json_bytes(req, state).await?;
        let value = serde_json::from_slice(&bytes).map_err(json_error)?;
        Ok(ApiJson(value))
    }
}

/// An optional JSON body: an empty one is `T::default()` (for actions whose options all have
/// defaults, so `curl -X POST` without a body keeps working).
#[derive(Debug, Clone)]
pub struct ApiJsonOrEmpty<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for ApiJsonOrEmpty<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = json_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        serde_json::from_slice(&bytes).map(Self).map_err(json_error)
    }
}

/// The raw bytes of a JSON body (content type checked, size limited).
pub async fn json_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    if let Some(ct) = req.headers().get(CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
        if !ct.starts_with("application/json") && !ct.contains("+json") {
            return Err(ApiError::MalformedBody(
                "Content-Type must be application/json".into(),
            ));
        }
    }
    Bytes::from_request(req, state).await.map_err(|r| {
        if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::MalformedBody(r.body_text())
        }
    })
}

/// Maps a serde_json error: syntax problems are 400, shape problems 422.
pub fn json_error(e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => ApiError::Invalid {
            field: None,
            detail: e.to_string(),
        },
        _ => ApiError::MalformedBody(format!("body is not valid JSON: {e}")),
    }
}
