//! Builds one signed request: fresh time, fresh signature, the headers of the endpoint's scheme
//! plus blockhook's own (event id, attempt number, attempt id), then the endpoint's extra headers.
//!
//! The scheme is one per endpoint: BlockATM (`BlockATM-Event`, `BlockATM-Request-Time` in ms,
//! `BlockATM-Signature-V2`) or Standard Webhooks (`webhook-id` = the event id, the same for every
//! endpoint, retry and resend; `webhook-timestamp` in seconds; `webhook-signature`, with the
//! previous secret's entry after the current one while a rotation's overlap lasts), never both.
//!
//! `logged_headers` is every header the receiver gets, in order: `User-Agent` and `Accept` are
//! set here (so the HTTP client adds none of its own), and `Content-Length`, which the client
//! sets from the body, is written down as it will send it (the host is the URL's).
//!
//! The clock is read once per attempt, by the caller, and that one value is both signed and sent.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use blockhook_core::{AttemptId, Endpoint, EventId, EventType, Timestamp};
use blockhook_sig::headers as h;
use blockhook_sig::standard;

use crate::keys::EndpointSigner;

/// A request ready for egress, with the headers as they will be logged.
#[derive(Debug, Clone)]
pub(super) struct Prepared {
    /// What egress sends.
    pub(super) request: blockhook_egress::Request,
    /// Every header sent, as text pairs, for the attempt log (contains no secret).
    pub(super) logged_headers: Vec<(String, String)>,
}

/// Which attempt a request is: its number within the delivery (`BlockHook-Attempt`) and the
/// id of this one request (`BlockHook-Attempt-Id`, the attempt log's id).
#[derive(Debug, Clone, Copy)]
pub(super) struct AttemptTag<'a> {
    /// 1 for the first attempt of the delivery.
    pub(super) number: u32,
    /// New for every request sent.
    pub(super) id: &'a AttemptId,
}

/// Why a request could not be built.
#[derive(Debug, thiserror::Error)]
pub(super) enum PrepareError {
    /// The payload cannot be signed in the endpoint's mode.
    #[error("cannot sign: {0}")]
    Sign(#[from] blockhook_sig::Error),
    /// A header value was not valid.
    #[error("invalid header {0}")]
    Header(String),
}

/// Signs `payload` for `endpoint` with `signer` (keyed with the endpoint's secrets) at time
/// `now` and builds the request.
pub(super) fn request(
    endpoint: &Endpoint,
    signer: &EndpointSigner,
    event_id: &EventId,
    event_type: &EventType,
    payload: &Bytes,
    attempt: AttemptTag<'_>,
    now: Timestamp,
) -> Result<Prepared, PrepareError> {
    let time_ms = u64::try_from(now.ms()).unwrap_or(0);
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(10 + endpoint.headers.pairs().len());
    pairs.push(("Content-Type".into(), "application/json".into()));
    match signer {
        EndpointSigner::BlockAtm { signer, mode } => {
            let signature = signer.sign(*mode, payload, time_ms)?;
            pairs.extend([
                (h::EVENT.into(), event_type.as_str().into()),
                (h::REQUEST_TIME.into(), time_ms.to_string()),
                (h::SIGNATURE_V2.into(), signature.to_hex()),
            ]);
        }
        EndpointSigner::Standard { current, previous } => {
            let id = event_id.to_string();
            let time_s = time_ms / 1000;
            let mut signature = current.sign(&id, time_s, payload);
            if let Some((old, until)) = previous {
                if now < *until {
                    signature.push(' ');
                    signature.push_str(&old.sign(&id, time_s, payload));
                }
            }
            pairs.extend([
                (standard::WEBHOOK_ID.into(), id),
                (standard::WEBHOOK_TIMESTAMP.into(), time_s.to_string()),
                (standard::WEBHOOK_SIGNATURE.into(), signature),
                (h::EVENT_TYPE.into(), event_type.as_str().into()),
            ]);
        }
    }
    pairs.extend([
        (h::EVENT_ID.into(), event_id.to_string()),
        (h::ATTEMPT.into(), attempt.number.to_string()),
        (h::ATTEMPT_ID.into(), attempt.id.to_string()),
        ("User-Agent".into(), USER_AGENT.into()),
        ("Accept".into(), "*/*".into()),
    ]);
    pairs.extend(endpoint.headers.pairs().iter().cloned());
    let mut headers = HeaderMap::with_capacity(pairs.len());
    for (name, value) in &pairs {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| PrepareError::Header(name.clone()))?;
        let v = HeaderValue::from_str(value).map_err(|_| PrepareError::Header(name.clone()))?;
        headers.append(n, v);
    }
    let url = endpoint.url.as_url();
    // The client sets this one itself (ExtraHeaders refuses it), from the body. The host is not
    // a header over HTTP/2 (it is the `:authority`), and is the URL's in either version.
    pairs.push(("Content-Length".into(), payload.len().to_string()));
    Ok(Prepared {
        request: blockhook_egress::Request {
            url: url.clone(),
            headers,
            body: payload.clone(),
        },
        logged_headers: pairs,
    })
}

/// The `User-Agent` of every webhook.
pub(crate) const USER_AGENT: &str = concat!("blockhook/", env!("CARGO_PKG_VERSION"));
