//! Events and their logs: ingest (the write every event takes) and everything read back about
//! events, their deliveries and the deliveries' attempts, including the per-endpoint views built
//! from them (backlog, health).

use crate::{
    AttemptRecord, Claim, ClaimRequest, DeadLetter, Delivery, DeliveryId, EndpointId, Error, Event,
    EventId, EventQuery, Ingested, MerchantId, NewEvent, Page, Timestamp,
};

use super::{EndpointActivity, EndpointBacklog, EndpointHealth};

/// Events, deliveries and attempts.
#[async_trait::async_trait]
pub trait Events: Send + Sync + 'static {
    /// Stores events and one pending delivery (due at the event's `created_at`) per enabled
    /// matching endpoint of its merchant, all in one transaction. A repeated idempotency key of
    /// the same merchant returns the original event id with `duplicate: true` and stores nothing.
    /// An unknown merchant fails the whole batch with `NotFound("merchant")`, a suspended one with
    /// `Conflict`.
    async fn ingest(&self, events: &[NewEvent]) -> Result<Vec<Ingested>, Error>;
    /// [`ingest`](Events::ingest), and in the same transaction leases some of the new deliveries
    /// to the caller, who is about to send them (direct handoff: no `claim_due` round trip, and
    /// no delay between commit and first attempt). `lease` is read like a claim: at most
    /// `lease.max` deliveries, at most `lease.per_endpoint_max` per endpoint, none of the
    /// `lease.exclude`d endpoints, under fresh tokens until `lease.lease_until`, none due after
    /// `lease.now`. The rest stay due for `claim_due`. With `lease.new_first` a store may prefer
    /// the batch's own deliveries to older due ones (both of ours then insert them leased); a
    /// store that claims within the ingest (`claims_within_ingest`) takes the oldest due first
    /// without it. A store that cannot hand off returns no claims (the default).
    async fn ingest_and_claim(
        &self,
        events: &[NewEvent],
        lease: &ClaimRequest,
    ) -> Result<(Vec<Ingested>, Vec<Claim>), Error> {
        let _ = lease;
        Ok((self.ingest(events).await?, Vec::new()))
    }
    /// Whether [`ingest_and_claim`](Events::ingest_and_claim) can claim, oldest due first,
    /// inside the ingest's own transaction, so that it pays at any load. A store whose hand-off
    /// may cost statements of its own (PostgreSQL: a claim for what its insert could not lease)
    /// is only asked with `new_first`, while the dispatcher has room for any backlog: there it
    /// replaces a wake-up, two claims and a look at the next due time, but under load the
    /// dispatcher's batched claims are cheaper than one claim per ingest (BENCHMARKS.md).
    fn claims_within_ingest(&self) -> bool {
        false
    }
    /// Records a message a source could not ingest. A second record of the same (source,
    /// reference), a redelivery after a crash, is ignored; whether this one was new.
    async fn dead_letter(&self, letter: &DeadLetter) -> Result<bool, Error>;
    /// Dead letters, newest first, at most `limit`.
    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, Error>;
    /// One event.
    async fn get_event(&self, merchant: &MerchantId, id: &EventId) -> Result<Event, Error>;
    /// Events, newest first: one page of those matching every filter of `q`, after `q.after`
    /// or before `q.before` (the page is newest first either way; `prev` is set when there
    /// are newer matches, `next` when there may be older ones).
    async fn list_events(
        &self,
        merchant: &MerchantId,
        q: &EventQuery,
    ) -> Result<Page<Event>, Error>;
    /// How many events match the filters of `q` (its cursors and limit ignored), counting at
    /// most `cap + 1`: an answer above `cap` means "more than `cap`", so the cost is bounded
    /// whatever the merchant's history.
    async fn count_events(
        &self,
        merchant: &MerchantId,
        q: &EventQuery,
        cap: u64,
    ) -> Result<u64, Error>;
    /// The deliveries of one event, oldest first.
    async fn list_deliveries(
        &self,
        merchant: &MerchantId,
        event: &EventId,
        now: Timestamp,
    ) -> Result<Vec<Delivery>, Error>;
    /// The deliveries of several events of a merchant, in one query: ordered by event id, then
    /// oldest first within an event. Ids that are not the merchant's events contribute nothing
    /// (no error: a batch read answers for what exists).
    async fn list_deliveries_of_events(
        &self,
        merchant: &MerchantId,
        events: &[EventId],
        now: Timestamp,
    ) -> Result<Vec<Delivery>, Error>;
    /// One delivery.
    async fn get_delivery(
        &self,
        merchant: &MerchantId,
        id: &DeliveryId,
        now: Timestamp,
    ) -> Result<Delivery, Error>;
    /// The attempts of one delivery, oldest first.
    async fn list_attempts(
        &self,
        merchant: &MerchantId,
        delivery: &DeliveryId,
    ) -> Result<Vec<AttemptRecord>, Error>;
    /// Every attempt of every delivery of one event, in one query: ordered by delivery id, then
    /// attempt number. Empty when the event has no attempts or is not the merchant's.
    async fn list_attempts_of_event(
        &self,
        merchant: &MerchantId,
        event: &EventId,
    ) -> Result<Vec<AttemptRecord>, Error>;
    /// Undelivered work per endpoint of a merchant (endpoints with nothing undelivered omitted).
    async fn backlog(&self, merchant: &MerchantId) -> Result<Vec<EndpointBacklog>, Error>;
    /// Recent results of one endpoint since `since`.
    async fn endpoint_health(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
        since: Timestamp,
    ) -> Result<EndpointHealth, Error>;
    /// [`endpoint_health`](Events::endpoint_health) of several endpoints at once, with a fixed
    /// number of statements whatever their count: one entry per endpoint of the merchant among
    /// `endpoints`, in the order given (an endpoint without attempts gets the default, ids that
    /// are not the merchant's endpoints are left out).
    async fn endpoints_health(
        &self,
        merchant: &MerchantId,
        endpoints: &[EndpointId],
        since: Timestamp,
    ) -> Result<Vec<(EndpointId, EndpointHealth)>, Error>;
    /// What one endpoint's page shows: deliveries created per hour since `since` (an hour
    /// boundary) by their state now, its queue at `now`, its failure streak, and its `recent`
    /// newest deliveries. `NotFound("endpoint")` when it is not the merchant's.
    async fn endpoint_activity(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
        since: Timestamp,
        now: Timestamp,
        recent: u32,
    ) -> Result<EndpointActivity, Error>;
}
