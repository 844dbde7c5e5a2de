//! Turns what egress saw into the domain's verdict and the attempt log record.

use blockhook_core::{AttemptRecord, DeliveryId, ErrorClass, Outcome, SuccessPolicy, Timestamp};
use blockhook_egress::{FailClass, Response};

/// The verdict of a response under an endpoint's success policy.
pub fn judge(resp: &Response, policy: SuccessPolicy) -> Outcome {
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
pub fn class_of(fail: FailClass) -> ErrorClass {
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

/// The log record of one attempt.
pub fn record(
    attempt: super::prepare::AttemptTag<'_>,
    delivery_id: &DeliveryId,
    started_at: Timestamp,
    url: &str,
    request_headers: Vec<(String, String)>,
    resp: Response,
    outcome: &Outcome,
) -> AttemptRecord {
    let error = match outcome {
        Outcome::Delivered { .. } => None,
        Outcome::Failed { class, .. } => Some(*class),
    };
    AttemptRecord {
        id: attempt.id.clone(),
        delivery_id: delivery_id.clone(),
        number: attempt.number,
        started_at,
        url: url.to_owned(),
        request_headers,
        status: resp.status,
        response_headers: resp.headers,
        response_body: resp.body,
        response_truncated: resp.truncated,
        latency_ms: u32::try_from(resp.latency.as_millis()).unwrap_or(u32::MAX),
        error,
        error_detail: resp.detail,
    }
}

/// The response of an attempt that could not even be sent (secret would not open, payload would
/// not sign): logged as a protocol failure with the reason, so the retry schedule applies.
pub fn not_sent(detail: String) -> Response {
    Response {
        status: None,
        headers: Vec::new(),
        body: bytes::Bytes::new(),
        truncated: false,
        latency: std::time::Duration::ZERO,
        failure: Some(FailClass::Protocol),
        detail: Some(detail),
        retry_after: None,
        remote_addr: None,
    }
}
