//! A merchant's endpoints: create, list, read, update, enable or disable, delete, rotate the
//! secret, send a test webhook, recover failed deliveries, and show the backlog; for the
//! dashboard also the endpoints themselves with their delivery health.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use blockhook_core::{
    Endpoint, EndpointBacklog, EndpointHealth, EndpointId, EndpointUrl, EventFilter, EventId,
    EventType, ExtraHeaders, Label, MerchantId, Ordering, PreviousSecret, SigningMode,
    SuccessPolicy, Timestamp,
};

use super::ordering::{self, OrderingInput, OrderingView};
use super::{MAX_PAGE, PageQuery, PageView, keys_error};
use crate::dispatch;
use crate::error::{ApiError, ApiResult};
use crate::keys::EndpointSecret;
use crate::state::AppState;

/// Longest endpoint description.
const MAX_DESCRIPTION: usize = 1_000;
/// Response bytes a test send shows (the attempt logs keep more).
const TEST_BODY_EXCERPT: usize = 4_096;

/// An endpoint to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// Where webhooks are POSTed (`https://`).
    #[schema(pattern = "^[Hh][Tt][Tt][Pp][Ss]?://", max_length = 2048)]
    pub url: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Event types to receive (case-insensitive); empty or absent means all.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// `sorted` (default) or `raw` (BlockATM headers), or `standard` (Standard Webhooks
    /// headers and a `whsec_` secret).
    #[serde(default)]
    #[schema(pattern = "^(sorted|raw|standard)$")]
    pub signing_mode: Option<String>,
    /// `200` (default) or `2xx`.
    #[serde(default)]
    #[schema(pattern = "^(200|2xx)$")]
    pub success_policy: Option<String>,
    /// Extra static headers, as `[name, value]` pairs.
    #[serde(default)]
    #[schema(value_type = Vec<Vec<String>>)]
    pub headers: Vec<(String, String)>,
    /// At most this many deliveries per second.
    #[serde(default)]
    pub rate_limit: Option<u32>,
    /// A label such as `cashier:91`.
    #[serde(default)]
    pub label: Option<String>,
    /// A secret of your choice, generated when absent. BlockATM modes: 16 to 256 printable
    /// characters (below 32 the answer carries a warning). `standard`: a `whsec_` secret
    /// (standard base64 of 24 to 64 bytes).
    #[serde(default)]
    pub secret: Option<String>,
    /// Ordered delivery per key (docs/ordering.md); mode `none` when absent.
    #[serde(default)]
    pub ordering: Option<OrderingInput>,
}

/// Changes to an endpoint: absent fields stay as they are; `null` clears the nullable ones
/// (`description`, `rate_limit`, `label`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    /// New URL.
    #[serde(default)]
    #[schema(pattern = "^[Hh][Tt][Tt][Pp][Ss]?://", max_length = 2048)]
    pub url: Option<String>,
    /// New description (`null` clears).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// New event-type filter (empty = all).
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// `sorted`, `raw` or `standard`. Switching to `standard` while the secret is not a `whsec_`
    /// one generates a `whsec_` secret, shown once in the answer (`secret`).
    #[serde(default)]
    #[schema(pattern = "^(sorted|raw|standard)$")]
    pub signing_mode: Option<String>,
    /// `200` or `2xx`.
    #[serde(default)]
    #[schema(pattern = "^(200|2xx)$")]
    pub success_policy: Option<String>,
    /// New extra headers (replaces the list).
    #[serde(default)]
    #[schema(value_type = Option<Vec<Vec<String>>>)]
    pub headers: Option<Vec<(String, String)>>,
    /// New rate limit (`null` removes it).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub rate_limit: Option<Option<u32>>,
    /// New label (`null` clears).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub label: Option<Option<String>>,
    /// Enable or disable.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Ordering changes (absent fields stay as they are).
    #[serde(default)]
    pub ordering: Option<OrderingInput>,
}

/// Tells "absent" (outer `None`, via `default`) from "null" (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// An endpoint as the API shows it. The signing secret is present only in the answer to its
/// creation; reads and updates omit it (see `reveal_secret`), so listings, proxy logs and
/// client caches never hold it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EndpointView {
    /// Its id (`ep_…`).
    pub id: String,
    /// Its merchant.
    pub merchant_id: String,
    /// Where webhooks go.
    pub url: String,
    /// Free text.
    pub description: Option<String>,
    /// Event types received; empty = all.
    pub event_types: Vec<String>,
    /// `sorted`, `raw` or `standard`.
    pub signing_mode: String,
    /// `200` or `2xx`.
    pub success_policy: String,
    /// Extra static headers.
    #[schema(value_type = Vec<Vec<String>>)]
    pub headers: Vec<(String, String)>,
    /// Deliveries per second, if limited.
    pub rate_limit: Option<u32>,
    /// Label.
    pub label: Option<String>,
    /// Whether it receives deliveries.
    pub enabled: bool,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// The signing secret: only in the answer to the creation (and to a switch to `standard`
    /// that generated a `whsec_` secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Until when (Unix ms) the secret before the last rotation still signs beside the current
    /// one (`standard` mode); absent when there is no overlap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_until: Option<i64>,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// Last change, Unix ms.
    pub updated_at: i64,
    /// Advice about the request that did not stop it (e.g. a short secret); only at creation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Ordered delivery per key (docs/ordering.md).
    pub ordering: OrderingView,
    /// What the endpoint watch says about it (docs/alerts.md).
    pub health: AlertView,
}

/// The endpoint watch's view of an endpoint (docs/alerts.md): read-only.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertView {
    /// `ok`, `failing` (`endpoint.failing` was sent and no success came since) or `disabled`
    /// (disabled by the watch: no success for `alerts.disable_after`).
    pub state: String,
    /// Failed attempts since the last success, as of the watch's last pass.
    pub streak: u32,
    /// The first failure since the last success (or the re-enabling), Unix ms.
    pub failing_since: Option<i64>,
    /// The latest failed attempt, Unix ms.
    pub last_failure_at: Option<i64>,
    /// What the latest failed attempt ended with.
    pub last_error: Option<String>,
}

impl Default for AlertView {
    fn default() -> Self {
        Self {
            state: blockhook_core::AlertState::Ok.as_str().to_owned(),
            streak: 0,
            failing_since: None,
            last_failure_at: None,
            last_error: None,
        }
    }
}

impl AlertView {
    /// The view of a stored alert row.
    pub fn of(a: &blockhook_core::EndpointAlert) -> Self {
        Self {
            state: a.state.as_str().to_owned(),
            streak: a.streak,
            failing_since: a.failing_since.map(|t| t.ms()),
            last_failure_at: a.last_failure_at.map(|t| t.ms()),
            last_error: a.last_error.clone(),
        }
    }
}

/// A merchant's alert rows (endpoints failing, disabled by the watch, or with failures since
/// their last success), one query.
pub async fn alerts(
    state: &AppState,
    merchant: &MerchantId,
) -> ApiResult<Vec<blockhook_core::EndpointAlert>> {
    Ok(state.store.endpoint_alerts(Some(merchant)).await?)
}

/// Fills each view's `health` from the merchant's alert rows.
async fn with_alerts(
    state: &AppState,
    merchant: &MerchantId,
    views: &mut [EndpointView],
) -> ApiResult<()> {
    let rows = alerts(state, merchant).await?;
    for v in views {
        if let Some(a) = rows.iter().find(|a| a.endpoint_id.as_str() == v.id) {
            v.health = AlertView::of(a);
        }
    }
    Ok(())
}

impl EndpointView {
    /// The view of `ep`, without its secret (the sealed secret is never opened here).
    pub fn of(ep: Endpoint) -> Self {
        Self {
            secret: None,
            id: ep.id.to_string(),
            merchant_id: ep.merchant_id.to_string(),
            url: ep.url.as_str().to_owned(),
            description: ep.description,
            event_types: ep
                .filter
                .types()
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
            signing_mode: ep.signing_mode.as_str().to_owned(),
            success_policy: ep.success_policy.as_str().to_owned(),
            headers: ep.headers.pairs().to_vec(),
            rate_limit: ep.rate_limit,
            label: ep.label.map(|l| l.as_str().to_owned()),
            enabled: ep.enabled,
            disabled_reason: ep.disabled_reason,
            previous_secret_until: ep.previous_secret.map(|p| p.until.ms()),
            created_at: ep.created_at.ms(),
            updated_at: ep.updated_at.ms(),
            warnings: Vec::new(),
            ordering: OrderingView::of(&ep.ordering),
            health: AlertView::default(),
        }
    }
}

/// An endpoint's signing secret in clear: the answer to a rotation and to
/// `GET …/endpoints/{id}/secret`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EndpointSecretView {
    /// The endpoint.
    pub endpoint_id: String,
    /// The secret; every delivery signed from now on uses it.
    pub secret: String,
    /// Until when (Unix ms) the previous secret still signs beside this one (`standard` mode,
    /// after a rotation with an overlap); absent when it no longer does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_until: Option<i64>,
}

/// A rotation's options.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the previous secret keeps signing beside the new one, e.g. `24h`, `30m`, `0s`
    /// (at most `7d`). `standard` mode: default `24h`, both signatures in every attempt meanwhile.
    /// BlockATM modes send one signature, so only `0s` (the default there) is accepted.
    #[serde(default)]
    #[schema(example = "24h")]
    pub overlap: Option<String>,
}

/// The longest rotation overlap.
pub const MAX_OVERLAP: Duration = Duration::from_secs(7 * 24 * 3600);
/// The overlap of a `standard` endpoint's rotation when none is asked for.
pub const DEFAULT_OVERLAP: Duration = Duration::from_secs(24 * 3600);

impl RotateSecret {
    /// The overlap asked for, checked against the endpoint's mode.
    fn overlap(&self, mode: SigningMode) -> ApiResult<Duration> {
        let asked = match self.overlap.as_deref() {
            None => None,
            Some(raw) => Some(humantime::parse_duration(raw.trim()).map_err(|e| {
                ApiError::invalid(
                    "overlap",
                    format!("{raw:?} is not a duration like 24h: {e}"),
                )
            })?),
        };
        if asked.is_some_and(|d| d > MAX_OVERLAP) {
            return Err(ApiError::invalid("overlap", "at most 7d"));
        }
        match (mode, asked) {
            (SigningMode::Standard, asked) => Ok(asked.unwrap_or(DEFAULT_OVERLAP)),
            (_, Some(d)) if !d.is_zero() => Err(ApiError::invalid(
                "overlap",
                "a BlockATM-mode endpoint sends one signature, so its rotation cannot overlap: \
                 use 0s, or signing_mode \"standard\"",
            )),
            _ => Ok(Duration::ZERO),
        }
    }
}

/// Which sample to send.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestSendRequest {
    /// `Payment`, `Payout`, `QR-Payment` or `QR-Payout`.
    #[schema(pattern = "^(Payment|Payout|QR-Payment|QR-Payout)$")]
    pub event_type: String,
}

/// The request a test send made, exactly as sent.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SentRequest {
    /// Always `POST`.
    pub method: String,
    /// The endpoint URL.
    pub url: String,
    /// Headers, in order.
    #[schema(value_type = Vec<Vec<String>>)]
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

/// What came back.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReceivedResponse {
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// Response headers.
    #[schema(value_type = Vec<Vec<String>>)]
    pub headers: Vec<(String, String)>,
    /// The first 4 KiB of the body (lossy UTF-8).
    pub body: String,
    /// Whether the body was longer than shown.
    pub truncated: bool,
    /// Milliseconds from sending to the end of the response.
    pub latency_ms: u64,
    /// Failure class (`bad_status`, `timeout`, `tls`, …) when it did not succeed.
    pub error: Option<String>,
    /// Human detail of the failure.
    pub error_detail: Option<String>,
}

/// A test send's exchange. Nothing is stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TestSendResult {
    /// Whether the endpoint acknowledged under its success policy.
    pub success: bool,
    /// What was sent.
    pub request: SentRequest,
    /// What came back.
    pub response: ReceivedResponse,
}

/// Re-queue failed deliveries created since a time.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverRequest {
    /// Unix ms; at most `recover.max_window` (default 14 days) ago.
    pub since: i64,
    /// Only count what would be re-queued; change nothing (a preview).
    #[serde(default)]
    pub dry_run: bool,
}

/// How many deliveries a recovery re-queued (or, with `dry_run`, would re-queue now).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Recovered {
    /// Failed deliveries now pending again; with `dry_run`, how many would be.
    pub requeued: u64,
    /// Whether this was only a preview.
    pub dry_run: bool,
}

/// Undelivered work of one endpoint.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BacklogView {
    /// The endpoint.
    pub endpoint_id: String,
    /// Pending deliveries (incl. in flight).
    pub pending: u64,
    /// Deliveries that failed for good.
    pub failed: u64,
    /// Creation time of the oldest undelivered one, Unix ms.
    pub oldest: Option<i64>,
}

impl From<EndpointBacklog> for BacklogView {
    fn from(b: EndpointBacklog) -> Self {
        Self {
            endpoint_id: b.endpoint_id.to_string(),
            pending: b.pending,
            failed: b.failed,
            oldest: b.oldest.map(|t| t.ms()),
        }
    }
}

/// Parses an endpoint id from a path; a malformed one is as unknown as a missing one.
pub fn endpoint_id(raw: &str) -> ApiResult<EndpointId> {
    EndpointId::parse(raw).map_err(|_| ApiError::NotFound("endpoint".into()))
}

fn event_types(raw: &[String]) -> ApiResult<EventFilter> {
    let types = raw
        .iter()
        .map(|t| EventType::parse(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| match e {
            blockhook_core::Error::Invalid { reason, .. } => {
                ApiError::invalid("event_types", reason)
            }
            other => other.into(),
        })?;
    Ok(EventFilter::new(types)?)
}

fn description(raw: Option<String>) -> ApiResult<Option<String>> {
    match raw {
        Some(d) if d.chars().count() > MAX_DESCRIPTION => Err(ApiError::invalid(
            "description",
            format!("at most {MAX_DESCRIPTION} characters"),
        )),
        // PostgreSQL's text cannot hold NUL (SQLite's can): refused here, the same on both
        // stores, instead of a 500 from one of them. Line breaks and tabs stay allowed.
        Some(d)
            if d.chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) =>
        {
            Err(ApiError::invalid(
                "description",
                "must not contain control characters (NUL included)",
            ))
        }
        other => Ok(other),
    }
}

fn rate_limit(raw: Option<u32>) -> ApiResult<Option<u32>> {
    match raw {
        Some(0) => Err(ApiError::invalid(
            "rate_limit",
            "must be at least 1 (or null for none)",
        )),
        other => Ok(other),
    }
}

/// Creates an endpoint.
pub async fn create(
    state: &AppState,
    merchant: &MerchantId,
    input: CreateEndpoint,
) -> ApiResult<EndpointView> {
    let id = EndpointId::generate();
    let url = EndpointUrl::parse(&input.url, state.settings.delivery.allow_http)?;
    let signing_mode = input
        .signing_mode
        .as_deref()
        .map(SigningMode::parse)
        .transpose()?
        .unwrap_or_default();
    let secret = match input.secret.as_deref() {
        Some(s) => EndpointSecret::parse_for(signing_mode, s)?,
        None => EndpointSecret::generate_for(signing_mode),
    };
    let now = state.clock.now();
    let endpoint = Endpoint {
        secret: state.keys.seal(&id, &secret).map_err(keys_error)?,
        previous_secret: None,
        id,
        merchant_id: merchant.clone(),
        url,
        description: description(input.description)?,
        filter: event_types(&input.event_types)?,
        signing_mode,
        success_policy: input
            .success_policy
            .as_deref()
            .map(SuccessPolicy::parse)
            .transpose()?
            .unwrap_or_default(),
        headers: ExtraHeaders::parse(input.headers)?,
        rate_limit: rate_limit(input.rate_limit)?,
        label: input.label.as_deref().map(Label::parse).transpose()?,
        enabled: true,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
        ordering: ordering::apply(&Ordering::default(), input.ordering.unwrap_or_default())?,
    };
    state.store.create_endpoint(&endpoint).await?;
    let mut view = EndpointView::of(endpoint);
    // The merchant chose or was just given this secret: showing it once here is the point.
    view.secret = Some(secret.expose().to_owned());
    if secret.is_short() {
        view.warnings.push(format!(
            "secret: shorter than {} characters; accepted, but rotate it (rotate-secret) once \
             your receiver can take a generated one",
            EndpointSecret::ADVISED_LEN
        ));
    }
    Ok(view)
}

/// A merchant's endpoints, newest first.
pub async fn list(
    state: &AppState,
    merchant: &MerchantId,
    page: &PageQuery,
) -> ApiResult<PageView<EndpointView>> {
    let limit = page.limit()?;
    let after = page.cursor(EndpointId::parse)?;
    let rows = state
        .store
        .list_endpoints(merchant, after.as_ref(), limit)
        .await?;
    let mut page = PageView::map(rows, |ep| Ok(EndpointView::of(ep)))?;
    with_alerts(state, merchant, &mut page.data).await?;
    Ok(page)
}

/// One endpoint.
pub async fn get(
    state: &AppState,
    merchant: &MerchantId,
    id: &EndpointId,
) -> ApiResult<EndpointView> {
    let ep = state.store.get_endpoint(merchant, id).await?;
    let mut view = [EndpointView::of(ep)];
    with_alerts(state, merchant, &mut view).await?;
    let [view] = view;
    Ok(view)
}

/// One endpoint as stored (its secret sealed), for pages that render every setting.
pub async fn endpoint(
    state: &AppState,
    merchant: &MerchantId,
    id: &EndpointId,
) -> ApiResult<Endpoint> {
    Ok(state.store.get_endpoint(merchant, id).await?)
}

/// A merchant's newest endpoints (one page of [`MAX_PAGE`], all the dashboard shows).
pub async fn newest(state: &AppState, merchant: &MerchantId) -> ApiResult<Vec<Endpoint>> {
    Ok(state
        .store
        .list_endpoints(merchant, None, MAX_PAGE)
        .await?
        .data)
}

/// An endpoint with its health over each of `N` windows.
#[derive(Debug, Clone)]
pub struct EndpointWithHealth<const N: usize> {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Its health since each `since` passed to [`with_health`], in that order.
    pub health: [EndpointHealth; N],
}

/// A merchant's newest endpoints, each with its health since every timestamp of `since`.
pub async fn with_health<const N: usize>(
    state: &AppState,
    merchant: &MerchantId,
    since: [Timestamp; N],
) -> ApiResult<Vec<EndpointWithHealth<N>>> {
    let endpoints = newest(state, merchant).await?;
    let ids: Vec<EndpointId> = endpoints.iter().map(|e| e.id.clone()).collect();
    // One batch read per window, whatever the number of endpoints.
    let mut windows = Vec::with_capacity(N);
    for from in since {
        let health: HashMap<EndpointId, EndpointHealth> = state
            .store
            .endpoints_health(merchant, &ids, from)
            .await?
            .into_iter()
            .collect();
        windows.push(health);
    }
    Ok(endpoints
        .into_iter()
        .map(|endpoint| {
            // Each endpoint appears once: take its figures instead of copying them.
            let health =
                std::array::from_fn(|w| windows[w].remove(&endpoint.id).unwrap_or_default());
            EndpointWithHealth { endpoint, health }
        })
        .collect())
}

/// The endpoint's signing secret in clear: the one read that opens it (the API's
/// `GET …/secret`, the dashboard's "Reveal secret" and `blockhook endpoint secret` all come
/// here), so there is exactly one place to audit.
pub async fn reveal_secret(
    state: &AppState,
    merchant: &MerchantId,
    id: &EndpointId,
) -> ApiResult<EndpointSecretView> {
    let ep = state.store.get_endpoint(merchant, id).await?;
    let secret = state.keys.open(&ep.id, &ep.secret).map_err(keys_error)?;
    let now = state.clock.now();
    Ok(EndpointSecretView {
        endpoint_id: ep.id.to_string(),
        secret: secret.expose().to_owned(),
        previous_secret_until: ep
            .previous_secret
            .filter(|p| p.signs_at(now))
            .map(|p| p.until.ms()),
    })
}

/// Applies `patch`: every field is validated before anything is written.
pub async fn update(
    state: &AppState,
    merchant: &MerchantId,
    id: &EndpointId,
    patch: UpdateEndpoint,
) -> ApiResult<EndpointView> {
    let mut ep = state.store.get_endpoint(merchant, id).await?;
    if let Some(url) = patch.url {
        ep.url = EndpointUrl::parse(&url, state.settings.delivery.allow_http)?;
    }
    if let Some(d) = patch.description {
        ep.description = description(d)?;
    }
    if let Some(types) = patch.event_types {
        ep.filter = event_types(&types)?;
    }
    let mut generated = None;
    if let Some(mode) = patch.signing_mode {
        let mode = SigningMode::parse(&mode)?;
        if mode != ep.signing_mode {
            // Either way the previous secret's signature ends: BlockATM modes send one
            // signature, and a secret from another scheme cannot sign Standard Webhooks.
            ep.previous_secret = None;
            if mode == SigningMode::Standard {
                let current = state.keys.open(&ep.id, &ep.secret).map_err(keys_error)?;
                if !current.is_standard() {
                    let fresh = EndpointSecret::generate_standard();
                    ep.secret = state.keys.seal(&ep.id, &fresh).map_err(keys_error)?;
                    generated = Some(fresh);
                }
            }
        }
        ep.signing_mode = mode;
    }
    if let Some(policy) = patch.success_policy {
        ep.success_policy = SuccessPolicy::parse(&policy)?;
    }
    if let Some(headers) = patch.headers {
        ep.headers = ExtraHeaders::parse(headers)?;
    }
    if let Some(limit) = patch.rate_limit {
        ep.rate_limit = rate_limit(limit)?;
    }
    if let Some(label) = patch.label {
        ep.label = label.as_deref().map(Label::parse).transpose()?;
    }
    if let Some(enabled) = patch.enabled {
        apply_enabled(&mut ep, enabled);
    }
    if let Some(o) = patch.ordering {
        ep.ordering = ordering::apply(&ep.ordering, o)?;
    }
    ep.updated_at = state.clock.now();
    state.store.update_endpoint(&ep).await?;
    if ep.enabled {
        // Deliveries that waited while it was disabled may be due now.
        state.wake.notify_one();
    }
    let mut view = EndpointView::of(ep);
    if let Some(fresh) = generated {
        // The merchant must learn the secret they now have to verify with: shown once, here.
        view.secret = Some(fresh.expose().to_owned());
        view.warnings.push(
            "secret: signing_mode \"standard\" needs a whsec_ secret, so one was generated \
             (the old secret no longer signs); give it to your receiver"
                .to_owned(),
        );
    }
    Ok(view)
}

fn apply_enabled(ep: &mut Endpoint, enabled: bool) {
    if enabled {
        ep.disabled_reason = None;
    } else if ep.enabled || ep.disabled_reason.is_none() {
        ep.disabled_reason = Some("disabled through the management API".to_owned());
    }
    ep.enabled = enabled;
}

/// Enables or disables an endpoint. A disabled endpoint gets no new deliveries and its pending
/// ones wait; enabling it clears the reason it was disabled (e.g. a 410).
pub async fn set_enabled(
    state: &AppState,
    merchant: &MerchantId,
    id: &EndpointId,
    enabled: bool,
) -> ApiResult<EndpointView> {
    update(
        state,
        merchant,
        id,
        UpdateEndpoint {
            enabled: Some(enabled),
            ..UpdateEndpoint::default()
        },
    )
    .await
}

/// Deletes an endpoint with its deliveries and attempts.
pub async fn delete(state: &AppState, merchant: &MerchantId, id: &EndpointId) -> ApiResult<()> {
    Ok(state.store.delete_endpoint(merchant, id).await?)
}

/// Replaces the signing secret with a fresh one in the endpoint's format. Claims read the
/// endpoint row when they are taken, so every delivery signed after this commit uses the new
/// secret (one already in flight finishes with the old one). With an overlap (`standard` mode),
/// the old secret keeps signing beside the new one until it ends; a rotation during an overlap
/// ends the older one (at most two signatures go out).
pub async fn rotate_secret(
    state: &AppState,
    merchant: &MerchantId,
    id: &EndpointId,
    input: RotateSecret,
) -> ApiResult<EndpointSecretView> {
    let mut ep = state.store.get_endpoint(merchant, id).await?;
    let overlap = input.overlap(ep.signing_mode)?;
    let now = state.clock.now();
    let secret = EndpointSecret::generate_for(ep.signing_mode);
    let fresh = state.keys.seal(&ep.id, &secret).map_err(keys_error)?;
    let old = std::mem::replace(&mut ep.secret, fresh);
    ep.previous_secret = (!overlap.is_zero()).then(|| PreviousSecret {
        secret: old,
        until: now + overlap,
    });
    ep.updated_at = now;
    state.store.update_endpoint(&ep).await?;
    Ok(EndpointSecretView {
        endpoint_id: ep.id.to_string(),
        secret: secret.expose().to_owned(),
        previous_secret_until: ep.previous_secret.map(|p| p.until.ms()),
    })
}

/// Sends one signed sample webhook now and reports the exchange. Nothing is stored and no
/// delivery is created; the endpoint need not be enabled.
pub async fn test_send(
    state: &AppState,
    merchant: &MerchantId,
    id: &EndpointId,
    input: TestSendRequest,
) -> ApiResult<TestSendResult> {
    let sample = EventType::BUILT_IN
        .iter()
        .find(|t| t.eq_ignore_ascii_case(&input.event_type))
        .and_then(|t| blockhook_sig::samples::for_event(t).map(|p| (*t, p)));
    let Some((name, payload)) = sample else {
        return Err(ApiError::invalid(
            "event_type",
            format!("must be one of {}", EventType::BUILT_IN.join(", ")),
        ));
    };
    let event_type = EventType::parse(name)?;
    let ep = state.store.get_endpoint(merchant, id).await?;
    let signer = state.keys.signer(&ep).map_err(keys_error)?;
    let body = Bytes::from_static(payload.as_bytes());
    let attempted = dispatch::attempt(
        &state.egress,
        &state.metrics.in_flight_requests,
        &ep,
        Ok(&signer),
        dispatch::Message {
            event_id: &EventId::generate(),
            event_type: &event_type,
            payload: &body,
        },
        1,
        state.clock.now(),
    )
    .await;
    let error = match &attempted.outcome {
        blockhook_core::Outcome::Delivered { .. } => None,
        blockhook_core::Outcome::Failed { class, .. } => Some(class.as_str().to_owned()),
    };
    let resp = attempted.response;
    let shown = resp.body.len().min(TEST_BODY_EXCERPT);
    Ok(TestSendResult {
        success: error.is_none(),
        request: SentRequest {
            method: "POST".to_owned(),
            url: ep.url.as_url().to_string(),
            headers: attempted.request_headers,
            body: payload.to_owned(),
        },
        response: ReceivedResponse {
            status: resp.status,
            headers: resp.headers,
            body: String::from_utf8_lossy(&resp.body[..shown]).into_owned(),
            truncated: resp.truncated || resp.body.len() > shown,
            latency_ms: u64::try_from(resp.latency.as_millis()).unwrap_or(u64::MAX),
            error,
            error_detail: resp.detail,
        },
    })
}

/// Re-queues every failed delivery of the endpoint created at or after `since`, which may
/// reach back at most `recover.max_window`.
pub async fn recover(
    state: &AppState,
    merchant: &MerchantId,
    id: &EndpointId,
    input: RecoverRequest,
) -> ApiResult<Recovered> {
    let now = state.clock.now();
    let window: Duration = state.settings.recover.max_window;
    let since = Timestamp::from_ms(input.since);
    if since < now - window {
        return Err(ApiError::invalid(
            "since",
            format!(
                "may reach back at most {} (recover.max_window)",
                humantime::format_duration(window)
            ),
        ));
    }
    if since > now {
        return Err(ApiError::invalid("since", "is in the future"));
    }
    if input.dry_run {
        return Ok(Recovered {
            requeued: state.store.recoverable(merchant, id, since).await?,
            dry_run: true,
        });
    }
    let requeued = state.store.recover(merchant, id, since, now).await?;
    if requeued > 0 {
        state.wake.notify_one();
    }
    Ok(Recovered {
        requeued,
        dry_run: false,
    })
}

/// Undelivered work per endpoint of a merchant (endpoints with none are omitted).
pub async fn backlog(state: &AppState, merchant: &MerchantId) -> ApiResult<Vec<BacklogView>> {
    Ok(state
        .store
        .backlog(merchant)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}
