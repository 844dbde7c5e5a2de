//! The delivery queue: what moves deliveries through their states. Dispatchers claim due work
//! under a lease, renew and finish it; operators put work back (resend, recover).

use std::sync::Arc;
use std::time::Duration;

use crate::{
    Claim, ClaimRequest, Completion, DeliveryId, EndpointId, Error, EventId, HeldKey, LeaseToken,
    MerchantId, OrderingKey, Timestamp,
};

use super::{ResendLimits, ResendScope};

/// Claiming, leasing, finishing and re-queueing deliveries.
#[async_trait::async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Resolves when another process may have made work due (PostgreSQL: LISTEN/NOTIFY on the
    /// channel `ingest` notifies inside its transaction), or after `max`. The embedded store is
    /// used by one process, whose dispatcher is woken directly, so it just waits `max`.
    async fn wait_for_work(&self, max: Duration);

    /// Leases due pending deliveries of enabled endpoints, oldest due first, and commits the
    /// leases before returning. Deliveries whose lease expired are due again.
    async fn claim_due(&self, req: &ClaimRequest) -> Result<Vec<Claim>, Error>;
    /// Extends leases still held with these tokens.
    async fn renew_leases(
        &self,
        leases: &[(DeliveryId, LeaseToken)],
        until: Timestamp,
    ) -> Result<(), Error>;
    /// Logs each attempt and applies its `Next` (state, attempts, next time, lease released,
    /// endpoint disabled on `DisableEndpoint`), in one transaction. Completions whose lease token
    /// is stale are skipped entirely (not even the attempt is logged). Returns how many applied.
    /// Shared, not borrowed: a store that hands them to another thread keeps them without copying
    /// every attempt's headers and response excerpt, and a caller retrying keeps them too.
    async fn finish(&self, done: Arc<[Completion]>, now: Timestamp) -> Result<u32, Error>;
    /// Whether [`finish`](Queue::finish) gathers completions into other transactions by itself
    /// (the embedded store's writer thread puts them into the next ingest's), so that callers
    /// need not gather them first. When false, the dispatcher waits a moment for company before
    /// it calls `finish` at an everyday rate (`dispatch::complete`).
    fn gathers_finishes(&self) -> bool {
        false
    }
    /// The earliest time any pending delivery becomes due (incl. expired leases), if any.
    async fn next_due_at(&self) -> Result<Option<Timestamp>, Error>;

    /// Creates new pending deliveries (origin `Resend`, due `now`) of an event; enforces the
    /// limits (`Conflict` naming the limit reached) and counts one resend per call.
    async fn resend(
        &self,
        merchant: &MerchantId,
        event: &EventId,
        scope: &ResendScope,
        limits: &ResendLimits,
        now: Timestamp,
    ) -> Result<Vec<DeliveryId>, Error>;
    /// Re-queues every failed delivery of an endpoint created at or after `since`: pending, due
    /// `now`, with a fresh retry round. Ordered deliveries keep their places in their keys'
    /// queues (so they go again in publish order) and no longer hold their keys. Returns how many.
    async fn recover(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
        since: Timestamp,
        now: Timestamp,
    ) -> Result<u64, Error>;

    /// How many deliveries [`recover`](Queue::recover) with the same `since` would re-queue
    /// now (failed ones whose payload is still kept), for a preview before acting.
    async fn recoverable(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
        since: Timestamp,
    ) -> Result<u64, Error>;

    /// The keys of an endpoint held by a failed head delivery (`on_final_failure: hold`), oldest
    /// first, with how many deliveries wait behind each. `NotFound("endpoint")` when the
    /// endpoint is not the merchant's.
    async fn held_keys(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
    ) -> Result<Vec<HeldKey>, Error>;
    /// Releases a held key: its failed head stays failed and the next delivery of the key may be
    /// claimed (due at once if it was waiting). `NotFound("held key")` when the key is not held,
    /// `NotFound("endpoint")` when the endpoint is not the merchant's.
    async fn release_key(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
        key: &OrderingKey,
    ) -> Result<(), Error>;
}
