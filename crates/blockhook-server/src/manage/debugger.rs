//! The signature debugger's service layer: explains a received signature with either an
//! endpoint's secret (opened here, used, dropped: never returned) or a pasted one, and builds
//! the pre-filled inputs of one recorded attempt ("debug this signature" on an event's page).
//!
//! Nothing given here is stored or logged: the inputs live for one call, and no `tracing`
//! line in this module or its callers carries them (the HTTP trace layer logs the method and
//! path only, never a form body).

use blockhook_core::{AttemptId, EndpointId, EventId, MerchantId, SigningMode};
use blockhook_receiver::explain::{self, DebugMode, Explanation};
use blockhook_sig::{headers, standard};

use super::keys_error;
use crate::error::ApiError;
use crate::state::AppState;

/// Which secret to check with.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// The endpoint's current secret, opened server-side.
    Endpoint(EndpointId),
    /// A secret the caller pasted.
    Pasted(String),
}

/// What the debugger is asked to explain. Header values are as received; empty means absent.
#[derive(Debug, Clone, Default)]
pub struct DebugInput {
    /// The body as the receiver verified it.
    pub body: Vec<u8>,
    /// `BlockATM-Request-Time`.
    pub request_time: String,
    /// `BlockATM-Signature-V2`.
    pub signature_v2: String,
    /// `webhook-id`.
    pub webhook_id: String,
    /// `webhook-timestamp`.
    pub webhook_timestamp: String,
    /// `webhook-signature`.
    pub webhook_signature: String,
    /// The mode the receiver checks; `None`: the endpoint's mode (or none for a pasted secret).
    pub receiver_mode: Option<DebugMode>,
}

/// The answer: the explanation and the mode it was checked against.
#[derive(Debug, Clone)]
pub struct Debugged {
    /// What `explain` found.
    pub explanation: Explanation,
    /// The mode the receiver is expected to use, when known.
    pub expected_mode: Option<DebugMode>,
}

fn debug_mode(mode: SigningMode) -> DebugMode {
    match mode {
        SigningMode::Sorted => DebugMode::Sorted,
        SigningMode::Raw => DebugMode::Raw,
        SigningMode::Standard => DebugMode::Standard,
    }
}

/// Explains `input` with the secret `source` names (an endpoint of `merchant`'s: another
/// merchant's answers not found).
pub async fn explain(
    state: &AppState,
    merchant: &MerchantId,
    source: &SecretSource,
    input: &DebugInput,
) -> Result<Debugged, ApiError> {
    let (secret, endpoint_mode) = match source {
        SecretSource::Endpoint(id) => {
            let ep = state.store.get_endpoint(merchant, id).await?;
            let secret = state.keys.open(&ep.id, &ep.secret).map_err(keys_error)?;
            (
                secret.expose().to_owned(),
                Some(debug_mode(ep.signing_mode)),
            )
        }
        SecretSource::Pasted(secret) => {
            if secret.is_empty() {
                return Err(ApiError::invalid(
                    "secret",
                    "choose an endpoint or paste a secret",
                ));
            }
            (secret.clone(), None)
        }
    };
    let blockatm = !input.request_time.trim().is_empty() || !input.signature_v2.trim().is_empty();
    let standard = !input.webhook_id.trim().is_empty()
        || !input.webhook_timestamp.trim().is_empty()
        || !input.webhook_signature.trim().is_empty();
    if !blockatm && !standard {
        return Err(ApiError::invalid(
            "headers",
            format!(
                "give {} (and {}) or the Standard Webhooks headers",
                headers::REQUEST_TIME,
                headers::SIGNATURE_V2
            ),
        ));
    }
    let expected_mode = input.receiver_mode.or(endpoint_mode);
    let now = u64::try_from(state.clock.now().ms()).unwrap_or(0);
    let explanation = explain::explain(&explain::Input {
        body: &input.body,
        request_time: Some(&input.request_time),
        signature_v2: Some(&input.signature_v2),
        webhook_id: Some(&input.webhook_id),
        webhook_timestamp: Some(&input.webhook_timestamp),
        webhook_signature: Some(&input.webhook_signature),
        secret: &secret,
        expected_mode,
        now_ms: Some(now),
        window_ms: blockhook_sig::VerifyOptions::DEFAULT_WINDOW_MS,
    });
    Ok(Debugged {
        explanation,
        expected_mode,
    })
}

/// The debugger's inputs for one recorded attempt: the event's payload as sent, the
/// signature headers the attempt carried, and its endpoint.
#[derive(Debug, Clone)]
pub struct Prefill {
    /// The inputs (the receiver mode left to the endpoint's).
    pub input: DebugInput,
    /// The endpoint the attempt went to.
    pub endpoint_id: EndpointId,
}

/// Builds the [`Prefill`] of attempt `attempt` of event `event` (both `merchant`'s).
pub async fn prefill(
    state: &AppState,
    merchant: &MerchantId,
    event: &EventId,
    attempt: &AttemptId,
) -> Result<Prefill, ApiError> {
    let detail = super::events::detail(state, merchant, event).await?;
    let (delivery, record) = detail
        .deliveries
        .iter()
        .find_map(|d| {
            d.attempts
                .iter()
                .find(|a| &a.id == attempt)
                .map(|a| (&d.delivery, a))
        })
        .ok_or_else(|| ApiError::NotFound("attempt".into()))?;
    let body = detail
        .event
        .payload
        .as_ref()
        .map(|p| p.bytes().to_vec())
        .ok_or_else(|| {
            ApiError::invalid(
                "event",
                "its payload was removed by retention: paste the body",
            )
        })?;
    let header = |name: &str| {
        record
            .request_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    Ok(Prefill {
        input: DebugInput {
            body,
            request_time: header(headers::REQUEST_TIME),
            signature_v2: header(headers::SIGNATURE_V2),
            webhook_id: header(standard::WEBHOOK_ID),
            webhook_timestamp: header(standard::WEBHOOK_TIMESTAMP),
            webhook_signature: header(standard::WEBHOOK_SIGNATURE),
            receiver_mode: None,
        },
        endpoint_id: delivery.endpoint_id.clone(),
    })
}
