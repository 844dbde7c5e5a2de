//! Failure alerts: the operational event types blockhook publishes about endpoints (failing,
//! recovered, disabled, a delivery exhausted), each endpoint's alert state as the endpoint watch
//! keeps it, and what the store summarises from the attempt log for the watch.
//!
//! Operational events are ordinary events of the merchant (signed, retried and logged like any
//! other), but they only go to endpoints that list their type explicitly: an endpoint with the
//! empty filter ("every type") never receives them (see [`crate::EventFilter::matches`]).

use serde::Serialize;

use crate::{DeliveryId, EndpointId, Error, EventId, EventType, MerchantId, Timestamp};

/// An endpoint reached the failure streak (`[alerts] failure_streak` failed attempts in a row).
pub const ENDPOINT_FAILING: &str = "endpoint.failing";
/// An endpoint that was failing (or auto-disabled) acknowledged a delivery again.
pub const ENDPOINT_RECOVERED: &str = "endpoint.recovered";
/// An endpoint was disabled automatically: no success for `[alerts] disable_after`.
pub const ENDPOINT_DISABLED: &str = "endpoint.disabled";
/// A delivery ended `failed` after its last retry.
pub const DELIVERY_EXHAUSTED: &str = "delivery.exhausted";

/// Every operational event type, in the order the documentation lists them.
pub const OPERATIONAL_TYPES: [&str; 4] = [
    ENDPOINT_FAILING,
    ENDPOINT_RECOVERED,
    ENDPOINT_DISABLED,
    DELIVERY_EXHAUSTED,
];

/// Whether `t` is one of blockhook's operational event types (case-insensitive, like filters).
pub fn is_operational(t: &EventType) -> bool {
    OPERATIONAL_TYPES
        .iter()
        .any(|o| o.eq_ignore_ascii_case(t.as_str()))
}

/// Where an endpoint stands, as the endpoint watch sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Delivering, or failing less than the streak that alerts.
    #[default]
    Ok,
    /// `endpoint.failing` was sent and no success came since.
    Failing,
    /// Disabled by the watch (no success for `disable_after`).
    Disabled,
}

impl AlertState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failing => "failing",
            Self::Disabled => "disabled",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "ok" => Ok(Self::Ok),
            "failing" => Ok(Self::Failing),
            "disabled" => Ok(Self::Disabled),
            other => Err(Error::Internal(format!("stored alert state {other:?}"))),
        }
    }
}

/// One endpoint's alert state. The store keeps a row only for endpoints with failures since
/// their last success (or an alert standing), so the table stays as small as the trouble.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointAlert {
    /// The endpoint.
    pub endpoint_id: EndpointId,
    /// Its merchant.
    pub merchant_id: MerchantId,
    /// Where it stands.
    pub state: AlertState,
    /// Failed attempts since the last success.
    pub streak: u32,
    /// The first failure since the last success (for a re-enabled endpoint: the re-enabling).
    pub failing_since: Option<Timestamp>,
    /// The latest failed attempt.
    pub last_failure_at: Option<Timestamp>,
    /// What the latest failed attempt ended with.
    pub last_error: Option<String>,
    /// When the watch last changed this row.
    pub updated_at: Timestamp,
}

impl EndpointAlert {
    /// A fresh `Ok` state of an endpoint without failures.
    pub fn ok(endpoint_id: EndpointId, merchant_id: MerchantId, at: Timestamp) -> Self {
        Self {
            endpoint_id,
            merchant_id,
            state: AlertState::Ok,
            streak: 0,
            failing_since: None,
            last_failure_at: None,
            last_error: None,
            updated_at: at,
        }
    }
}

/// What the attempt log says about one endpoint in a window of attempt start times: its latest
/// success there, and the failures after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureWindow {
    /// The endpoint.
    pub endpoint_id: EndpointId,
    /// Its merchant.
    pub merchant_id: MerchantId,
    /// The latest acknowledged attempt in the window.
    pub last_ok: Option<Timestamp>,
    /// Failed attempts in the window after `last_ok` (all of them without one).
    pub failures: u32,
    /// The first of those failures.
    pub first_failure: Option<Timestamp>,
    /// The latest failed attempt in the window (after `last_ok` or not).
    pub last_failure_at: Option<Timestamp>,
    /// What the latest failed attempt ended with (its detail, else its error class).
    pub last_error: Option<String>,
}

/// A delivery that ended `failed` after its last retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExhaustedDelivery {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// Its event.
    pub event_id: EventId,
    /// The event's type.
    pub event_type: EventType,
    /// The endpoint it went to.
    pub endpoint_id: EndpointId,
    /// Their merchant.
    pub merchant_id: MerchantId,
    /// Attempts made.
    pub attempts: u32,
    /// The status of the last attempt, if any response came.
    pub last_status: Option<u16>,
    /// When the last attempt started.
    pub failed_at: Timestamp,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn operational_types_are_recognised_case_insensitively() {
        for t in OPERATIONAL_TYPES {
            assert!(is_operational(&EventType::parse(t).unwrap()));
        }
        assert!(is_operational(
            &EventType::parse("Endpoint.Failing").unwrap()
        ));
        assert!(!is_operational(&EventType::parse("Payment").unwrap()));
    }

    #[test]
    fn states_round_trip() {
        for s in [AlertState::Ok, AlertState::Failing, AlertState::Disabled] {
            assert_eq!(AlertState::parse(s.as_str()).unwrap(), s);
        }
        assert!(AlertState::parse("nope").is_err());
    }
}
