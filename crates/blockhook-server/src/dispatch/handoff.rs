//! The hand-off: deliveries leased in their event's own ingest transaction and given straight
//! to this process's dispatcher, with no claim round trip and no wait between the commit and the
//! first attempt.
//!
//! Why (measured, `BENCHMARKS.md`): at an everyday rate every event paid alone for a claim
//! transaction, a look at the next due time and a wake of the dispatcher loop; with the hand-off
//! the ingest's transaction does the claim's work on pages it has just written.
//!
//! The ingest task asks [`Handoff::reserve`] for free delivery slots before it writes; the store
//! leases at most that many due deliveries as it writes (`Events::ingest_and_claim`: a claim's
//! limits, ordering and per-endpoint caps; SQLite runs the claim itself in the ingest's
//! transaction, PostgreSQL inserts the batch's deliveries leased); [`Reserved::hand`]
//! gives the claims with their slots to the dispatcher loop, which starts them like its own.
//! With no dispatcher running (an API-only process, before start or after stop) nothing is
//! reserved, and a store that cannot lease at ingest hands back no claims: then ingest wakes the
//! dispatcher, as it always did. A store whose hand-off may cost statements of its own
//! (`Events::claims_within_ingest` false: PostgreSQL) is only given slots while at most
//! [`QUIET_IN_FLIGHT`] deliveries are in flight, the everyday case it pays in.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use blockhook_core::{Claim, ClaimRequest};

use super::{DispatchCx, Worker, claim};

/// The most deliveries in flight at which a store that claims in a statement of its own still
/// gets a hand-off. Measured on PostgreSQL (BENCHMARKS.md): at 400 events/s a hand-off replaces
/// about four statements per event; at saturation, one claim per ingest instead of the loop's
/// batched claims cost a fifth of the throughput.
pub(super) const QUIET_IN_FLIGHT: usize = 4;

/// Claims handed over, each with its delivery slot.
pub(super) type Handed = Vec<(Claim, OwnedSemaphorePermit)>;

/// Where ingest finds the running dispatcher, if any. One per process.
#[derive(Default)]
pub struct Handoff {
    open: Mutex<Option<Taker>>,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff").finish_non_exhaustive()
    }
}

/// The running dispatcher's side.
#[derive(Clone)]
pub(super) struct Taker {
    pub(super) cx: Arc<DispatchCx>,
    pub(super) worker: Arc<Worker>,
    pub(super) global: Arc<Semaphore>,
    pub(super) to_loop: mpsc::UnboundedSender<Handed>,
    /// Whether the store's hand-off pays at any load (`Events::claims_within_ingest`).
    pub(super) at_any_load: bool,
}

/// Delivery slots reserved for the claims of one ingest (one permit per slot, held together).
pub struct Reserved {
    permits: OwnedSemaphorePermit,
    request: ClaimRequest,
    to_loop: mpsc::UnboundedSender<Handed>,
}

impl Handoff {
    /// The dispatcher takes hand-offs from now on.
    pub(super) fn open(&self, taker: Taker) {
        *self.open.lock().unwrap_or_else(|p| p.into_inner()) = Some(taker);
    }

    /// The dispatcher stops: hand-offs end (and its worker is let go).
    pub(super) fn close(&self) {
        *self.open.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Free delivery slots (as many as one claim takes), with the claim request to lease at
    /// most that many under; `None` with no dispatcher or no free slot.
    pub fn reserve(&self) -> Option<Reserved> {
        let taker = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        let free = taker.global.available_permits();
        if !taker.at_any_load
            && taker.cx.settings.concurrency.saturating_sub(free) > QUIET_IN_FLIGHT
        {
            return None;
        }
        // One semaphore operation for all of them: this runs on every ingest.
        let want = (taker.cx.settings.claim_batch as usize).min(free);
        let n = u32::try_from(want).ok().filter(|n| *n > 0)?;
        let permits = taker.global.clone().try_acquire_many_owned(n).ok()?;
        let request = claim::request(&taker.cx, &taker.worker.load, want);
        Some(Reserved {
            permits,
            request,
            to_loop: taker.to_loop,
        })
    }
}

impl Reserved {
    /// What the store may lease.
    pub fn request(&self) -> &ClaimRequest {
        &self.request
    }

    /// Gives `claims` to the dispatcher; the slots left over are freed. Returns how many were
    /// handed (a stopped dispatcher takes none: their leases expire and they are claimed again).
    pub fn hand(mut self, claims: Vec<Claim>) -> usize {
        let handed: Handed = claims
            .into_iter()
            .map_while(|claim| Some((claim, self.permits.split(1)?)))
            .collect();
        let n = handed.len();
        if n == 0 {
            return 0;
        }
        match self.to_loop.send(handed) {
            Ok(()) => n,
            Err(_) => 0,
        }
    }
}
