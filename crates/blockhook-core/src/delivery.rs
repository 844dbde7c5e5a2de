//! Deliveries (one per event × matching endpoint), the leases workers claim them with, and the
//! completion a worker hands back after an attempt.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{
    AttemptRecord, DeliveryId, Endpoint, EndpointId, Error, EventId, EventType, MerchantId, Next,
    Payload, Timestamp,
};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its next attempt (`next_attempt_at`).
    Pending,
    /// Claimed by a worker under a live lease: an attempt is running.
    InFlight,
    /// Acknowledged by the endpoint. Final.
    Succeeded,
    /// Ran out of attempts, or the endpoint answered 410. Final unless recovered or resent.
    Failed,
}

impl DeliveryState {
    /// The stored/wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InFlight => "in_flight",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    /// Parses the stored/wire name.
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "pending" => Ok(Self::Pending),
            "in_flight" => Ok(Self::InFlight),
            "succeeded" => Ok(Self::Succeeded),
            "failed" => Ok(Self::Failed),
            _ => Err(Error::invalid(
                "state",
                "must be one of pending, in_flight, succeeded, failed",
            )),
        }
    }
}

/// Why a delivery exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOrigin {
    /// Created when the event was ingested.
    Initial,
    /// Created by a manual resend.
    Resend,
}

impl DeliveryOrigin {
    /// The stored/wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Resend => "resend",
        }
    }

    /// Parses the stored/wire name.
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "initial" => Ok(Self::Initial),
            "resend" => Ok(Self::Resend),
            _ => Err(Error::Internal(format!("unknown delivery origin {s:?}"))),
        }
    }
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// Its id.
    pub id: DeliveryId,
    /// The event delivered.
    pub event_id: EventId,
    /// The endpoint it goes to.
    pub endpoint_id: EndpointId,
    /// The merchant owning both.
    pub merchant_id: MerchantId,
    /// Where it stands (`InFlight` when a live lease holds it).
    pub state: DeliveryState,
    /// Initial or resend.
    pub origin: DeliveryOrigin,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<Timestamp>,
    /// Status of the last attempt, if a response arrived.
    pub last_status: Option<u16>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last state change.
    pub updated_at: Timestamp,
}

/// Proof that a worker holds a delivery's lease. A completion or renewal with a stale token
/// changes nothing: another worker took the delivery over after the lease expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseToken(pub i64);

impl LeaseToken {
    /// A fresh random token.
    pub fn generate() -> Self {
        Self(rand::random::<i64>())
    }
}

/// What a worker needs to make one attempt, taken under a committed lease.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The lease held on it.
    pub lease: LeaseToken,
    /// This attempt's number for the delivery (1-based, counting every attempt ever made).
    pub attempt: u32,
    /// This attempt's number within the current retry round (1-based); a recovery starts a new
    /// round, so the retry schedule applies afresh.
    pub round_attempt: u32,
    /// The event.
    pub event_id: EventId,
    /// Its type.
    pub event_type: EventType,
    /// Its payload (shared bytes).
    pub payload: Payload,
    /// When the event was ingested (for latency measurements).
    pub event_created_at: Timestamp,
    /// The endpoint as it is now (URL, mode, sealed secret, ...), shared by every claim of it
    /// (stores keep one parsed copy per endpoint version).
    pub endpoint: Arc<Endpoint>,
}

/// Asks the store for due deliveries.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// Deliveries due at or before this time.
    pub now: Timestamp,
    /// At most this many.
    pub max: u32,
    /// The lease expires at this time unless renewed.
    pub lease_until: Timestamp,
    /// At most this many of one endpoint in one claim.
    pub per_endpoint_max: u32,
    /// Skip these endpoints (saturated in this worker).
    pub exclude: Vec<EndpointId>,
    /// For a hand-off ([`Events::ingest_and_claim`](crate::Events::ingest_and_claim)): the
    /// dispatcher has slots for any backlog (few deliveries in flight, or its last claim came
    /// back short), so the store may lease the batch's own new deliveries as it inserts them
    /// instead of the oldest due first. `claim_due` ignores it.
    pub new_first: bool,
}

/// A finished attempt, handed back to the store in one transaction.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The lease it was claimed with.
    pub lease: LeaseToken,
    /// The attempt to log.
    pub attempt: AttemptRecord,
    /// What happens next.
    pub next: Next,
    /// Why the endpoint is being disabled, with `Next::DisableEndpoint`.
    pub disable_reason: Option<String>,
    /// Whether recording it lets another delivery go: the final outcome of an ordered delivery
    /// makes the next one of its key claimable. A store that holds completions back to commit
    /// them together with other writes commits these at once.
    pub releases_key: bool,
}
