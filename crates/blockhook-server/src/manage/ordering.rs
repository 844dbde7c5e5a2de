//! Ordered delivery per ordering key, as merchants and operators manage it: the endpoint's
//! `ordering` object (its view, and parsing it on create and PATCH with the offending field
//! named), and the keys held after a final failure, listed and released. The rules are in
//! `docs/ordering.md`.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use blockhook_core::{
    EndpointId, HeldKey, MerchantId, OnFinalFailure, Ordering, OrderingKey, OrderingMode,
};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// An endpoint's ordering setting as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OrderingView {
    /// `none` (deliveries are independent; the default) or `per_key` (one delivery in flight
    /// per ordering key, in publish order).
    #[schema(pattern = "^(none|per_key)$", example = "per_key")]
    pub mode: String,
    /// With `per_key`: the top-level payload field (string or number) whose value is the key of
    /// events published without an explicit `ordering_key`.
    #[schema(example = "orderNo")]
    pub key_field: Option<String>,
    /// After a key's head delivery failed for good: `continue` (the next one proceeds; the
    /// default) or `hold` (the key waits until a resend or a release).
    #[schema(pattern = "^(continue|hold)$", example = "continue")]
    pub on_final_failure: String,
}

impl OrderingView {
    /// The view of a setting.
    pub fn of(o: &Ordering) -> Self {
        Self {
            mode: mode_name(o.mode).to_owned(),
            key_field: o.key_field.clone(),
            on_final_failure: failure_name(o.on_final_failure).to_owned(),
        }
    }
}

impl Default for OrderingView {
    fn default() -> Self {
        Self::of(&Ordering::default())
    }
}

/// The ordering setting as given on create or PATCH. On create, absent fields take their
/// defaults; on PATCH, absent fields keep their current values and `key_field: null` clears it.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderingInput {
    /// `none` or `per_key`.
    #[serde(default)]
    #[schema(pattern = "^(none|per_key)$")]
    pub mode: Option<String>,
    /// A top-level payload field, 1 to 128 bytes (`null` clears).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub key_field: Option<Option<String>>,
    /// `continue` or `hold`.
    #[serde(default)]
    #[schema(pattern = "^(continue|hold)$")]
    pub on_final_failure: Option<String>,
}

/// Tells "absent" (outer `None`, via `default`) from "null" (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn mode_name(m: OrderingMode) -> &'static str {
    match m {
        OrderingMode::None => "none",
        OrderingMode::PerKey => "per_key",
    }
}

fn failure_name(f: OnFinalFailure) -> &'static str {
    match f {
        OnFinalFailure::Continue => "continue",
        OnFinalFailure::Hold => "hold",
    }
}

/// `current` changed by `input` (every value checked; a bad one is a 422 naming
/// `ordering.<field>`).
pub fn apply(current: &Ordering, input: OrderingInput) -> ApiResult<Ordering> {
    let mut o = current.clone();
    if let Some(mode) = input.mode {
        o.mode = match mode.as_str() {
            "none" => OrderingMode::None,
            "per_key" => OrderingMode::PerKey,
            _ => {
                return Err(ApiError::invalid(
                    "ordering.mode",
                    "must be \"none\" or \"per_key\"",
                ));
            }
        };
    }
    if let Some(field) = input.key_field {
        o.key_field = field;
    }
    if let Some(f) = input.on_final_failure {
        o.on_final_failure = match f.as_str() {
            "continue" => OnFinalFailure::Continue,
            "hold" => OnFinalFailure::Hold,
            _ => {
                return Err(ApiError::invalid(
                    "ordering.on_final_failure",
                    "must be \"continue\" or \"hold\"",
                ));
            }
        };
    }
    Ok(o.validate()?)
}

/// A held key as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HeldKeyView {
    /// The ordering key.
    pub key: String,
    /// The delivery that failed for good and holds the key (it stays failed when released).
    pub delivery_id: String,
    /// When it failed, Unix ms.
    pub since: i64,
    /// Deliveries of the key waiting behind it.
    pub waiting: u64,
}

impl From<HeldKey> for HeldKeyView {
    fn from(h: HeldKey) -> Self {
        Self {
            key: h.key.as_str().to_owned(),
            delivery_id: h.delivery_id.to_string(),
            since: h.since.ms(),
            waiting: h.waiting,
        }
    }
}

/// The endpoint's held keys, oldest first.
pub async fn held(
    state: &AppState,
    merchant: &MerchantId,
    id: &EndpointId,
) -> ApiResult<Vec<HeldKeyView>> {
    Ok(state
        .store
        .held_keys(merchant, id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Releases a held key: its next delivery proceeds, the failed head stays failed.
pub async fn release(
    state: &AppState,
    merchant: &MerchantId,
    id: &EndpointId,
    key: &str,
) -> ApiResult<()> {
    // A key that cannot exist cannot be held: the same answer as one that is not.
    let key = OrderingKey::parse(key).map_err(|_| ApiError::NotFound("held key".into()))?;
    state.store.release_key(merchant, id, &key).await?;
    // The key's next delivery has been due since it was published.
    state.wake.notify_one();
    Ok(())
}
