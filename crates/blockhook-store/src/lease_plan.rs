//! The hand-off's lease at insert, shared by both stores: which of a batch's new deliveries
//! `Events::ingest_and_claim` inserts already leased, as a claim would take them (due by the
//! request's time, within its size and per-endpoint caps, no excluded endpoint), and the claims
//! they make, built from the events in hand with no statement. What the plan leaves (ordered
//! deliveries, whose place in their key's queue only a claim can judge; endpoints at their cap)
//! is for a claim with [`rest_of`] the request.

use std::collections::HashMap;
use std::sync::Arc;

use blockhook_core::{
    Claim, ClaimRequest, DeliveryId, Endpoint, EndpointId, LeaseToken, NewEvent, Timestamp,
};

/// The deliveries a hand-off leases as its ingest inserts them, chosen as the batch fans out.
pub(crate) struct LeasePlan<'r> {
    request: &'r ClaimRequest,
    pub(crate) token: LeaseToken,
    per_endpoint: HashMap<EndpointId, u32>,
    /// (index of the event in the batch, index of the delivery in the caller's list, endpoint).
    picked: Vec<(usize, usize, Arc<Endpoint>)>,
}

impl<'r> LeasePlan<'r> {
    pub(crate) fn new(request: &'r ClaimRequest) -> Self {
        Self {
            request,
            token: LeaseToken::generate(),
            per_endpoint: HashMap::new(),
            picked: Vec::new(),
        }
    }

    /// Whether delivery `delivery` (of event `index`, `e`, to `endpoint`) is leased at insert:
    /// as a claim would take it, it is due by the request's time, its endpoint is not excluded
    /// nor at `per_endpoint_max`, and the request is not full.
    pub(crate) fn take(
        &mut self,
        index: usize,
        e: &NewEvent,
        endpoint: &Arc<Endpoint>,
        delivery: usize,
    ) -> bool {
        let req = self.request;
        if self.picked.len() >= req.max as usize
            || e.created_at > req.now
            || req.exclude.contains(&endpoint.id)
        {
            return false;
        }
        let n = self.per_endpoint.entry(endpoint.id.clone()).or_default();
        if *n >= req.per_endpoint_max {
            return false;
        }
        *n += 1;
        self.picked.push((index, delivery, endpoint.clone()));
        true
    }

    /// When the plan's leases expire.
    pub(crate) fn lease_until(&self) -> Timestamp {
        self.request.lease_until
    }

    /// The claims of the leased deliveries whose event was stored (`stored`, by event index);
    /// `delivery_id` gives a delivery's id by its index in the caller's list.
    pub(crate) fn claims(
        self,
        events: &[NewEvent],
        delivery_id: impl Fn(usize) -> DeliveryId,
        stored: impl Fn(usize) -> bool,
    ) -> Vec<Claim> {
        self.picked
            .into_iter()
            .filter(|(index, _, _)| stored(*index))
            .map(|(index, delivery, endpoint)| {
                let e = &events[index];
                Claim {
                    delivery_id: delivery_id(delivery),
                    lease: self.token,
                    attempt: 1,
                    round_attempt: 1,
                    event_id: e.id.clone(),
                    event_type: e.event_type.clone(),
                    payload: e.payload.clone(),
                    event_created_at: e.created_at,
                    endpoint,
                }
            })
            .collect()
    }
}

/// What is left of a hand-off's request once `claims` were leased at insert: fewer slots, and the
/// endpoints those filled to `per_endpoint_max` left out.
pub(crate) fn rest_of(request: &ClaimRequest, claims: &[Claim]) -> ClaimRequest {
    let mut per_endpoint: HashMap<&EndpointId, u32> = HashMap::new();
    for c in claims {
        *per_endpoint.entry(&c.endpoint.id).or_default() += 1;
    }
    let mut exclude = request.exclude.clone();
    exclude.extend(
        per_endpoint
            .into_iter()
            .filter(|(_, n)| *n >= request.per_endpoint_max)
            .map(|(id, _)| id.clone()),
    );
    ClaimRequest {
        max: request
            .max
            .saturating_sub(u32::try_from(claims.len()).unwrap_or(u32::MAX)),
        exclude,
        ..request.clone()
    }
}
