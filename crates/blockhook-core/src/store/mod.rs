//! The storage contract, in domain verbs. SQLite and PostgreSQL implement it (crate
//! `blockhook-store`); a shared contract suite proves both behave the same.
//!
//! The contract is split by concern, one trait per file, and [`Store`] is their union:
//! - [`Merchants`] (`merchants`): tenants and their API keys.
//! - [`Endpoints`] (`endpoints`): a merchant's webhook endpoints.
//! - [`Events`] (`events`): ingest and everything read back about events, deliveries and
//!   attempts (logs, backlog, health).
//! - [`Queue`] (`queue`): what moves deliveries through their states: claiming, leases,
//!   finishing attempts, and the manual re-queueing actions (resend, recover).
//! - [`Maintenance`] (`maintenance`): operating the database itself: identity, liveness,
//!   statistics, retention, checkpoints, job locks, and the values key rotation re-seals.
//! - [`Alerts`] (`alerts`): the endpoint watch's reads of the attempt log and its alert state.
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

use crate::{EndpointId, Timestamp};

mod alerts;
mod endpoints;
mod events;
mod maintenance;
mod merchants;
mod queue;

pub use alerts::Alerts;
pub use endpoints::Endpoints;
pub use events::Events;
pub use maintenance::{Maintenance, SecretSlot};
pub use merchants::Merchants;
pub use queue::Queue;

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

/// Deliveries of one endpoint created in one hour, by where they stand now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HourCounts {
    /// Start of the hour.
    pub hour: Timestamp,
    /// Acknowledged.
    pub succeeded: u64,
    /// Failed for good.
    pub failed: u64,
    /// Still to be sent or retried (incl. in flight and waiting behind their ordering key).
    pub pending: u64,
}

/// One endpoint's queue right now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EndpointQueue {
    /// Pending and due now, not leased (with ordered delivery, incl. those waiting behind
    /// their key's head).
    pub due: u64,
    /// Pending and due later (retries waiting for their time).
    pub scheduled: u64,
    /// Leased right now.
    pub in_flight: u64,
    /// Due time of the oldest due delivery.
    pub oldest_due_at: Option<Timestamp>,
}

/// The attempts an endpoint failed since it last acknowledged one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FailureStreak {
    /// Failed attempts since the last success (counted up to [`FailureStreak::CAP`]).
    pub failed_attempts: u64,
    /// The first of them.
    pub since: Option<Timestamp>,
    /// The last acknowledged attempt, if any is still logged.
    pub last_success: Option<Timestamp>,
}

impl FailureStreak {
    /// Streaks are counted up to this many attempts: a console needs "10,000+", not an exact
    /// count that costs a scan of every attempt an endpoint down for weeks has logged.
    pub const CAP: u64 = 10_000;
}

/// What an endpoint's page shows, read in a fixed number of statements.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EndpointActivity {
    /// Deliveries created per hour since the `since` asked for (an hour boundary), oldest
    /// first; hours without deliveries are left out.
    pub hours: Vec<HourCounts>,
    /// The queue now.
    pub queue: EndpointQueue,
    /// The current failure streak.
    pub streak: FailureStreak,
    /// The most recent deliveries, newest first.
    pub recent: Vec<crate::Delivery>,
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

/// Persistence for everything blockhook knows: every concern's trait at once. Implemented for
/// every type that implements them all, so a backend implements the six traits and nothing else.
pub trait Store: Merchants + Endpoints + Events + Queue + Maintenance + Alerts {}

impl<T: Merchants + Endpoints + Events + Queue + Maintenance + Alerts + ?Sized> Store for T {}
