//! One attempt: prepare (fresh time, fresh signature) → send (egress) → judge (the endpoint's
//! success policy). The dispatcher and the API's test-send both attempt with [`attempt`], so a
//! test-send is exactly what a delivery would send. The attempt log entry is made from the
//! [`Attempted`] by the next steps: `complete` writes it (`Queue::finish`).

use bytes::Bytes;
use prometheus_client::metrics::gauge::Gauge;

use blockhook_core::{
    AttemptId, Endpoint, ErrorClass, EventId, EventType, Outcome, SuccessPolicy, Timestamp,
};
use blockhook_egress::{FailClass, Response};

use super::prepare::{self, AttemptTag};
use crate::keys::EndpointSigner as Signer;

/// What is sent: the event, whichever endpoint receives it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Message<'a> {
    /// `BlockHook-Event-Id`.
    pub(crate) event_id: &'a EventId,
    /// `BlockATM-Event`.
    pub(crate) event_type: &'a EventType,
    /// The body, relayed byte for byte.
    pub(crate) payload: &'a Bytes,
}

/// An attempt made: the request as sent, the response and its verdict.
#[derive(Debug)]
pub(crate) struct Attempted {
    /// `BlockHook-Attempt-Id`, and the attempt log's id.
    pub(crate) id: AttemptId,
    /// 1 for the first attempt of the delivery.
    pub(crate) number: u32,
    /// The time signed and sent in `BlockATM-Request-Time`.
    pub(crate) started_at: Timestamp,
    /// Every header sent, in order (none when the request could not be built).
    pub(crate) request_headers: Vec<(String, String)>,
    /// What egress saw.
    pub(crate) response: Response,
    /// The verdict under the endpoint's success policy.
    pub(crate) outcome: Outcome,
}

impl Attempted {
    /// Whether the receiver acknowledged it.
    pub(crate) fn delivered(&self) -> bool {
        matches!(self.outcome, Outcome::Delivered { .. })
    }
}

/// Makes attempt `number` of `message` to `endpoint` at time `now`, signing with `signer`
/// (or failing without sending when the signer could not be made: `Err` says why).
///
/// A secret that will not open or a payload that will not sign is logged as a failed attempt
/// (no request was sent), so the retry schedule applies and fixing the master key or the
/// endpoint recovers the delivery.
pub(crate) async fn attempt(
    egress: &blockhook_egress::Client,
    in_flight: &Gauge,
    endpoint: &Endpoint,
    signer: Result<&Signer, String>,
    message: Message<'_>,
    number: u32,
    now: Timestamp,
) -> Attempted {
    let id = AttemptId::generate();
    let prepared = signer.and_then(|signer| {
        prepare::request(
            endpoint,
            signer,
            message.event_id,
            message.event_type,
            message.payload,
            AttemptTag { number, id: &id },
            now,
        )
        .map_err(|e| e.to_string())
    });
    let (response, request_headers) = match prepared {
        Ok(prepared) => {
            in_flight.inc();
            let response = egress.send(prepared.request).await;
            in_flight.dec();
            (response, prepared.logged_headers)
        }
        Err(detail) => {
            tracing::error!(%detail, "could not prepare the request");
            (not_sent(detail), Vec::new())
        }
    };
    let outcome = judge(&response, endpoint.success_policy);
    Attempted {
        id,
        number,
        started_at: now,
        request_headers,
        response,
        outcome,
    }
}

/// The verdict of a response under an endpoint's success policy.
fn judge(resp: &Response, policy: SuccessPolicy) -> Outcome {
    if let Some(fail) = resp.failure {
        return Outcome::Failed {
            status: None,
            class: class_of(fail),
            retry_after: None,
        };
    }
    match resp.status {
        Some(status) if policy.accepts(status) => Outcome::Delivered { status },
        status => Outcome::Failed {
            status,
            class: ErrorClass::BadStatus,
            retry_after: resp.retry_after,
        },
    }
}

/// Maps egress's failure classes onto the domain's.
fn class_of(fail: FailClass) -> ErrorClass {
    match fail {
        FailClass::Dns => ErrorClass::Dns,
        FailClass::Blocked => ErrorClass::Blocked,
        FailClass::ConnectRefused => ErrorClass::ConnectionRefused,
        FailClass::Connect => ErrorClass::Connection,
        FailClass::Timeout => ErrorClass::Timeout,
        FailClass::Tls => ErrorClass::Tls,
        FailClass::Protocol => ErrorClass::Protocol,
    }
}

/// The response of an attempt that could not even be sent: a protocol failure with the reason.
fn not_sent(detail: String) -> Response {
    Response {
        status: None,
        headers: Vec::new(),
        body: Bytes::new(),
        truncated: false,
        latency: std::time::Duration::ZERO,
        failure: Some(FailClass::Protocol),
        detail: Some(detail),
        retry_after: None,
        remote_addr: None,
    }
}
