//! A merchant's endpoints: create and read (the management API builds on this).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use blockhook_core::{
    Endpoint, EndpointId, EndpointUrl, EventFilter, EventType, ExtraHeaders, Label, MerchantId,
    SigningMode, SuccessPolicy, Timestamp,
};

use super::extract::{ApiJson, Tenant};
use crate::error::{ApiError, ApiResult};
use crate::keys::EndpointSecret;
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/merchants/{merchant_id}/endpoints", post(create))
        .route("/v1/merchants/{merchant_id}/endpoints/{endpoint_id}", get(read))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateEndpoint {
    url: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    event_types: Vec<String>,
    #[serde(default)]
    signing_mode: Option<String>,
    #[serde(default)]
    success_policy: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    rate_limit: Option<u32>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    secret: Option<String>,
}

/// An endpoint as the API shows it, secret included (its merchant needs it to verify).
#[derive(Debug, Serialize)]
pub struct EndpointView {
    id: EndpointId,
    merchant_id: MerchantId,
    url: EndpointUrl,
    description: Option<String>,
    event_types: EventFilter,
    signing_mode: SigningMode,
    success_policy: SuccessPolicy,
    headers: Vec<(String, String)>,
    rate_limit: Option<u32>,
    label: Option<Label>,
    enabled: bool,
    disabled_reason: Option<String>,
    secret: String,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl EndpointView {
    /// The view of `ep`, with its secret opened.
    pub fn of(ep: Endpoint, state: &AppState) -> ApiResult<Self> {
        let secret = state
            .keys
            .open(&ep.id, &ep.secret)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(Self {
            secret: secret.expose().to_owned(),
            id: ep.id,
            merchant_id: ep.merchant_id,
            url: ep.url,
            description: ep.description,
            event_types: ep.filter,
            signing_mode: ep.signing_mode,
            success_policy: ep.success_policy,
            headers: ep.headers.pairs().to_vec(),
            rate_limit: ep.rate_limit,
            label: ep.label,
            enabled: ep.enabled,
            disabled_reason: ep.disabled_reason,
            created_at: ep.created_at,
            updated_at: ep.updated_at,
        })
    }
}

async fn create(
    tenant: Tenant,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateEndpoint>,
) -> ApiResult<(StatusCode, Json<EndpointView>)> {
    let id = EndpointId::generate();
    let url = EndpointUrl::parse(&body.url, state.settings.delivery.allow_http)?;
    let types =
        body.event_types.iter().map(|t| EventType::parse(t)).collect::<Result<Vec<_>, _>>()?;
    let secret = match body.secret.as_deref() {
        Some(s) => EndpointSecret::parse(s)?,
        None => EndpointSecret::generate(),
    };
    let now = state.clock.now();
    let endpoint = Endpoint {
        secret: state.keys.seal(&id, &secret).map_err(|e| ApiError::Internal(e.to_string()))?,
        id,
        merchant_id: tenant.merchant_id,
        url,
        description: body.description,
        filter: EventFilter::new(types)?,
        signing_mode: body.signing_mode.as_deref().map(SigningMode::parse).transpose()?.unwrap_or_default(),
        success_policy: body.success_policy.as_deref().map(SuccessPolicy::parse).transpose()?.unwrap_or_default(),
        headers: ExtraHeaders::parse(body.headers)?,
        rate_limit: body.rate_limit,
        label: body.label.as_deref().map(Label::parse).transpose()?,
        enabled: true,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    };
    state.store.create_endpoint(&endpoint).await?;
    Ok((StatusCode::CREATED, Json(EndpointView::of(endpoint, &state)?)))
}

async fn read(
    tenant: Tenant,
    State(state): State<AppState>,
    Path((_, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Json<EndpointView>> {
    let id = EndpointId::parse(&endpoint_id).map_err(|_| ApiError::NotFound("endpoint".into()))?;
    let ep = state.store.get_endpoint(&tenant.merchant_id, &id).await?;
    Ok(Json(EndpointView::of(ep, &state)?))
}
