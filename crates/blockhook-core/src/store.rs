//! The storage contract, in domain verbs. SQLite and PostgreSQL implement it (crate
//! `blockhook-store`); a shared contract suite proves both behave the same.
//!
//! Rules every implementation keeps:
//! - Tenant-scoped methods take the `MerchantId` first and answer `NotFound` for another
//!   merchant's ids exactly as for ids that do not exist.
//! - `ingest` is one transaction: the events and every delivery row commit together or not at all.
//! - `claim_due` commits its leases before returning; no transaction stays open across an HTTP
//!   call. `finish` and `renew_leases` with a stale lease token change nothing.
//! - Unreachable databases surface as `Error::Unavailable` (the API answers 503).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::{
    ApiKey, ApiKeyId, AttemptRecord, Claim, ClaimRequest, Completion, Cursor, Delivery, DeliveryId,
    Endpoint, EndpointId, Error, Event, EventId, EventQuery, Ingested, LeaseToken, Merchant,
    MerchantId, MerchantStatus, NewApiKey, NewEvent, NewMerchant, Page, SealedSecret, Timestamp,
};

/// A shared handle on the store in use.
pub type StoreRef = Arc<dyn Store>;

/// Which endpoints a manual resend targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResendScope {
    /// Every endpoint the event was delivered to that still exists.
    All,
    /// One endpoint of the event's merchant (it need not have received the event before).
    Endpoint(EndpointId),
}

/// Limits on manual resends (BlockATM: within 72 hours, 3 times per event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResendLimits {
    /// Only events younger than this can be resent.
    pub window: Duration,
    /// At most this many resends per event.
    pub max_per_event: u32,
}

impl Default for ResendLimits {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(72 * 3600),
            max_per_event: 3,
        }
    }
}

/// Undelivered work of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointBacklog {
    /// The endpoint.
    pub endpoint_id: EndpointId,
    /// Deliveries still pending (incl. in flight).
    pub pending: u64,
    /// Deliveries that failed for good.
    pub failed: u64,
    /// Creation time of the oldest undelivered one.
    pub oldest: Option<Timestamp>,
}

/// The whole queue at a glance (for metrics and `blockhook status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Pending and due now, not leased.
    pub due: u64,
    /// Pending and due later.
    pub scheduled: u64,
    /// Leased right now.
    pub in_flight: u64,
    /// Succeeded, all time (or since retention).
    pub succeeded: u64,
    /// Failed for good.
    pub failed: u64,
    /// Due time of the oldest due delivery.
    pub oldest_due_at: Option<Timestamp>,
}

/// One endpoint's recent results (for health views).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EndpointHealth {
    /// Attempts in the window.
    pub attempts: u64,
    /// Of which acknowledged.
    pub succeeded: u64,
    /// Latencies (ms) of the attempts in the window, oldest first, with their start times:
    /// at most the most recent 10,000.
    pub latencies: Vec<(Timestamp, u32)>,
}

/// The right to run a periodic job (retention) in one process at a time; released when dropped.
#[async_trait::async_trait]
pub trait JobLock: Send + Sync {
    /// Whether the lock is still held (PostgreSQL: whether the session holding it is alive).
    async fn held(&mut self) -> bool;
}

/// The lock of a store used by one process only: always held.
#[derive(Debug)]
pub struct SoleProcess;

#[async_trait::async_trait]
impl JobLock for SoleProcess {
    async fn held(&mut self) -> bool {
        true
    }
}

/// Persistence for everything blockhook knows.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// Checks the database answers (for `/readyz`).
    async fn ping(&self) -> Result<(), Error>;

    /// SQL statements executed since the store was opened (to measure round trips per event).
    fn statements(&self) -> u64;

    /// Resolves when another process may have made work due (PostgreSQL: LISTEN/NOTIFY on the
    /// channel `ingest` notifies inside its transaction), or after `max`. The embedded store is
    /// used by one process, whose dispatcher is woken directly, so it just waits `max`.
    async fn wait_for_work(&self, max: Duration);

    // --- merchants and keys -------------------------------------------------------------

    /// Creates a merchant (`Conflict` if the id exists).
    async fn create_merchant(&self, m: &NewMerchant) -> Result<Merchant, Error>;
    /// One merchant.
    async fn get_merchant(&self, id: &MerchantId) -> Result<Merchant, Error>;
    /// Merchants, newest first.
    async fn list_merchants(
        &self,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Merchant>, Error>;
    /// Suspends or reactivates.
    async fn set_merchant_status(
        &self,
        id: &MerchantId,
        status: MerchantStatus,
    ) -> Result<Merchant, Error>;
    /// Deletes a merchant and everything it owns.
    async fn delete_merchant(&self, id: &MerchantId) -> Result<(), Error>;

    /// Stores a new API key (hash only).
    async fn create_api_key(&self, key: &NewApiKey) -> Result<ApiKey, Error>;
    /// The key with this hash, revoked or not (the caller checks).
    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, Error>;
    /// A merchant's keys, newest first.
    async fn list_api_keys(&self, merchant: &MerchantId) -> Result<Vec<ApiKey>, Error>;
    /// Revokes a key (idempotent).
    async fn revoke_api_key(
        &self,
        merchant: &MerchantId,
        id: &ApiKeyId,
        at: Timestamp,
    ) -> Result<(), Error>;

    // --- endpoints ----------------------------------------------------------------------

    /// Stores a new endpoint.
    async fn create_endpoint(&self, ep: &Endpoint) -> Result<(), Error>;
    /// One endpoint of a merchant.
    async fn get_endpoint(&self, merchant: &MerchantId, id: &EndpointId)
    -> Result<Endpoint, Error>;
    /// A merchant's endpoints, newest first.
    async fn list_endpoints(
        &self,
        merchant: &MerchantId,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Endpoint>, Error>;
    /// Replaces every mutable field (url, description, filter, modes, headers, rate limit,
    /// label, enabled, disabled reason, secret, updated_at) of an endpoint of `ep.merchant_id`.
    async fn update_endpoint(&self, ep: &Endpoint) -> Result<(), Error>;
    /// Deletes an endpoint with its deliveries and attempts.
    async fn delete_endpoint(&self, merchant: &MerchantId, id: &EndpointId) -> Result<(), Error>;

    // --- events and their logs ----------------------------------------------------------

    /// Stores events and one pending delivery (due at the event's `created_at`) per enabled
    /// matching endpoint of its merchant, all in one transaction. A repeated idempotency key of
    /// the same merchant returns the original event id with `duplicate: true` and stores nothing.
    /// An unknown merchant fails the whole batch with `NotFound("merchant")`, a suspended one with
    /// `Conflict`.
    async fn ingest(&self, events: &[NewEvent]) -> Result<Vec<Ingested>, Error>;
    /// [`ingest`](Store::ingest), and in the same transaction leases some of the new deliveries
    /// to the caller, who is about to send them (direct handoff: no `claim_due` round trip, and
    /// no delay between commit and first attempt). `lease` is read like a claim: at most
    /// `lease.max` deliveries, at most `lease.per_endpoint_max` per endpoint, none of the
    /// `lease.exclude`d endpoints, under one fresh token until `lease.lease_until`. The rest stay
    /// due for `claim_due`. A store that cannot hand off returns no claims (the default).
    async fn ingest_and_claim(
        &self,
        events: &[NewEvent],
        lease: &ClaimRequest,
    ) -> Result<(Vec<Ingested>, Vec<Claim>), Error> {
        let _ = lease;
        Ok((self.ingest(events).await?, Vec::new()))
    }
    /// One event.
    async fn get_event(&self, merchant: &MerchantId, id: &EventId) -> Result<Event, Error>;
    /// Events, newest first.
    async fn list_events(
        &self,
        merchant: &MerchantId,
        q: &EventQuery,
    ) -> Result<Page<Event>, Error>;
    /// The deliveries of one event, oldest first.
    async fn list_deliveries(
        &self,
        merchant: &MerchantId,
        event: &EventId,
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
    /// Undelivered work per endpoint of a merchant (endpoints with nothing undelivered omitted).
    async fn backlog(&self, merchant: &MerchantId) -> Result<Vec<EndpointBacklog>, Error>;
    /// Recent results of one endpoint since `since`.
    async fn endpoint_health(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
        since: Timestamp,
    ) -> Result<EndpointHealth, Error>;

    // --- dispatch -----------------------------------------------------------------------

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
    async fn finish(&self, done: &[Completion], now: Timestamp) -> Result<u32, Error>;
    /// The earliest time any pending delivery becomes due (incl. expired leases), if any.
    async fn next_due_at(&self) -> Result<Option<Timestamp>, Error>;

    // --- actions ------------------------------------------------------------------------

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
    /// `now`, with a fresh retry round. Returns how many.
    async fn recover(
        &self,
        merchant: &MerchantId,
        endpoint: &EndpointId,
        since: Timestamp,
        now: Timestamp,
    ) -> Result<u64, Error>;

    // --- operations ---------------------------------------------------------------------

    /// Queue depth and totals.
    async fn queue_stats(&self, now: Timestamp) -> Result<QueueStats, Error>;
    /// Retention: removes up to `batch` payloads of events created before `before` (the event
    /// row stays, `payload` becomes `None`; pending deliveries keep their payload) and up to
    /// `batch` attempts started before `before`. Returns rows affected; call until 0.
    async fn purge_before(&self, before: Timestamp, batch: u32) -> Result<u64, Error>;

    /// Makes the database complete on its own before a clean exit (SQLite: moves the WAL into
    /// the database file and empties it, so a copy of the file alone is a whole backup).
    async fn checkpoint(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Takes the lock of the periodic job `job` unless another process holds it (`None`). The
    /// embedded store serves one process, so it always grants it.
    async fn try_job_lock(&self, job: &str) -> Result<Option<Box<dyn JobLock>>, Error> {
        let _ = job;
        Ok(Some(Box::new(SoleProcess)))
    }

    // --- keys ---------------------------------------------------------------------------

    /// The key check value (a known text sealed with the master key), if one was written.
    async fn key_check(&self) -> Result<Option<Vec<u8>>, Error>;
    /// Stores `sealed` as the key check value unless one exists, and returns the value stored
    /// (the existing one when another process wrote it first).
    async fn init_key_check(&self, sealed: &[u8]) -> Result<Vec<u8>, Error>;
    /// Replaces the key check value if it still is `expected` (compare-and-set); whether it did.
    async fn replace_key_check(&self, expected: &[u8], new: &[u8]) -> Result<bool, Error>;
    /// Sealed endpoint secrets in id order, after `after`, at most `limit`.
    async fn sealed_secrets(
        &self,
        after: Option<&EndpointId>,
        limit: u32,
    ) -> Result<Vec<(EndpointId, SealedSecret)>, Error>;
    /// Replaces an endpoint's sealed secret if it still is `expected` (compare-and-set, so a
    /// concurrent rotation is never overwritten); whether it did.
    async fn reseal_secret(
        &self,
        id: &EndpointId,
        expected: &SealedSecret,
        new: &SealedSecret,
    ) -> Result<bool, Error>;
}
