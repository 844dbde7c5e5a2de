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
    let mut out = Headers::with_capacity(10 + endpoint.headers.pairs().len());
    out.fixed(&CONTENT_TYPE, "application/json");
    match signer {
        EndpointSigner::BlockAtm { signer, mode } => {
            let signature = signer.sign(*mode, payload, time_ms)?;
            out.own(&EVENT, event_type.as_str().to_owned())?;
            out.own(&REQUEST_TIME, time_ms.to_string())?;
            out.own(&SIGNATURE_V2, signature.to_hex())?;
        }
        EndpointSigner::Standard { current, previous } => {
            let id = event_id.as_str().to_owned();
            let time_s = time_ms / 1000;
            let mut signature = current.sign(&id, time_s, payload);
            if let Some((old, until)) = previous {
                if now < *until {
                    signature.push(' ');
                    signature.push_str(&old.sign(&id, time_s, payload));
                }
            }
            out.own(&WEBHOOK_ID, id)?;
            out.own(&WEBHOOK_TIMESTAMP, time_s.to_string())?;
            out.own(&WEBHOOK_SIGNATURE, signature)?;
            out.own(&EVENT_TYPE, event_type.as_str().to_owned())?;
        }
    }
    out.own(&EVENT_ID, event_id.as_str().to_owned())?;
    out.own(&ATTEMPT, attempt.number.to_string())?;
    out.own(&ATTEMPT_ID, attempt.id.as_str().to_owned())?;
    out.fixed(&USER_AGENT_HEADER, USER_AGENT);
    out.fixed(&ACCEPT, "*/*");
    for (name, value) in endpoint.headers.pairs() {
        out.extra(name, value)?;
    }
    let Headers { map, mut logged } = out;
    // The client sets this one itself (ExtraHeaders refuses it), from the body. The host is not
    // a header over HTTP/2 (it is the `:authority`), and is the URL's in either version.
    logged.push(("Content-Length".into(), payload.len().to_string()));
    Ok(Prepared {
        request: blockhook_egress::Request {
            url: endpoint.url.as_url().clone(),
            headers: map,
            body: payload.clone(),
        },
        logged_headers: logged,
    })
}

/// A header blockhook sets itself: the name sent, parsed once (`HeaderName::from_bytes` on
/// every request was a tenth of a delivery's allocations), and the name logged, as the
/// contract spells it.
struct Own {
    name: HeaderName,
    logged: &'static str,
}

const fn own(name: &'static str, logged: &'static str) -> Own {
    Own {
        name: HeaderName::from_static(name),
        logged,
    }
}

static CONTENT_TYPE: Own = own("content-type", "Content-Type");
static USER_AGENT_HEADER: Own = own("user-agent", "User-Agent");
static ACCEPT: Own = own("accept", "Accept");
static EVENT: Own = own("blockatm-event", h::EVENT);
static REQUEST_TIME: Own = own("blockatm-request-time", h::REQUEST_TIME);
static SIGNATURE_V2: Own = own("blockatm-signature-v2", h::SIGNATURE_V2);
static EVENT_ID: Own = own("blockhook-event-id", h::EVENT_ID);
static EVENT_TYPE: Own = own("blockhook-event-type", h::EVENT_TYPE);
static ATTEMPT: Own = own("blockhook-attempt", h::ATTEMPT);
static ATTEMPT_ID: Own = own("blockhook-attempt-id", h::ATTEMPT_ID);
static WEBHOOK_ID: Own = own("webhook-id", standard::WEBHOOK_ID);
static WEBHOOK_TIMESTAMP: Own = own("webhook-timestamp", standard::WEBHOOK_TIMESTAMP);
static WEBHOOK_SIGNATURE: Own = own("webhook-signature", standard::WEBHOOK_SIGNATURE);

/// The request's headers and, in the same order, the pairs the attempt log keeps.
struct Headers {
    map: HeaderMap,
    logged: Vec<(String, String)>,
}

impl Headers {
    fn with_capacity(n: usize) -> Self {
        Self {
            map: HeaderMap::with_capacity(n),
            logged: Vec::with_capacity(n + 1),
        }
    }

    /// One of blockhook's own headers with a value computed for this request.
    fn own(&mut self, header: &Own, value: String) -> Result<(), PrepareError> {
        let v = HeaderValue::from_str(&value)
            .map_err(|_| PrepareError::Header(header.logged.to_owned()))?;
        self.map.append(header.name.clone(), v);
        self.logged.push((header.logged.to_owned(), value));
        Ok(())
    }

    /// One of blockhook's own headers with a constant value.
    fn fixed(&mut self, header: &Own, value: &'static str) {
        self.map
            .append(header.name.clone(), HeaderValue::from_static(value));
        self.logged
            .push((header.logged.to_owned(), value.to_owned()));
    }

    /// One of the endpoint's extra headers, as its merchant spelled it.
    fn extra(&mut self, name: &str, value: &str) -> Result<(), PrepareError> {
        let bad = || PrepareError::Header(name.to_owned());
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
        let v = HeaderValue::from_str(value).map_err(|_| bad())?;
        self.map.append(n, v);
        self.logged.push((name.to_owned(), value.to_owned()));
        Ok(())
    }
}

/// The `User-Agent` of every webhook.
pub(crate) const USER_AGENT: &str = concat!("blockhook/", env!("CARGO_PKG_VERSION"));

#[cfg(test)]
mod tests {
    use super::*;

    /// Each name sent is the logged name, parsed as any header name would be: the two
    /// spellings cannot drift apart.
    #[test]
    fn own_header_names_are_their_logged_names() {
        for header in [
            &CONTENT_TYPE,
            &USER_AGENT_HEADER,
            &ACCEPT,
            &EVENT,
            &REQUEST_TIME,
            &SIGNATURE_V2,
            &EVENT_ID,
            &EVENT_TYPE,
            &ATTEMPT,
            &ATTEMPT_ID,
            &WEBHOOK_ID,
            &WEBHOOK_TIMESTAMP,
            &WEBHOOK_SIGNATURE,
        ] {
            let parsed = HeaderName::from_bytes(header.logged.as_bytes()).unwrap();
            assert_eq!(header.name, parsed, "{}", header.logged);
        }
    }
}
