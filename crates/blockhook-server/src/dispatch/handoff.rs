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
//! limits, ordering and per-endpoint caps); [`Reserved::hand`] gives the claims with their slots
//! to the dispatcher loop, which starts them like its own. With no dispatcher running (an
//! API-only process, before start or after stop) nothing is reserved, and a store that cannot
//! lease at ingest hands back no claims: then ingest wakes the dispatcher, as it always did.
//!
//! While at most [`QUIET_IN_FLIGHT`] deliveries are in flight, or the dispatcher loop is caught
//! up ([`CaughtUp`]: its last claim, less than [`CAUGHT_UP_FOR`] ago, came back short), the loop
//! has slots for any backlog, and the request says so (`ClaimRequest::new_first`): both stores
//! then insert the batch's own deliveries already leased, with no claim statement. Otherwise a
//! store whose hand-off is a real claim in the ingest's transaction, oldest due first
//! (`Events::claims_within_ingest`: SQLite) still gets slots, and the other (PostgreSQL) none.
//! So new events never take the slots a backlog waits for (retries now due, deliveries an outage
//! left behind): once the loop finds more due than it could take, hand-offs that lease only the
//! new batch stop until a claim comes back short again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use blockhook_core::{Claim, ClaimRequest};

use super::{DispatchCx, Worker, claim};

/// The most deliveries in flight at which a store whose hand-off leases only the new batch's
/// deliveries gets a hand-off whatever the dispatcher loop last found: so few in flight, the
/// loop has free slots for any backlog. Above it, only while the loop is caught up ([`CaughtUp`]).
pub(super) const QUIET_IN_FLIGHT: usize = 4;

/// How long a short claim of the dispatcher loop lets hand-offs run above [`QUIET_IN_FLIGHT`]:
/// when hand-offs keep every slot busy the loop claims seldom, so its word must lapse, or a
/// retry falling due meanwhile would wait behind new events for as long as they keep coming.
/// A backlog thus waits at most this long (and one request) for its first slot.
pub(super) const CAUGHT_UP_FOR: Duration = Duration::from_millis(250);

/// Whether the dispatcher loop has lately found nothing due beyond what it took: written by the
/// loop after each claim, read by every ingest's [`Handoff::reserve`].
#[derive(Debug)]
pub(super) struct CaughtUp {
    start: Instant,
    /// Until when, in ms since `start` (0: not caught up).
    until_ms: AtomicU64,
}

impl CaughtUp {
    pub(super) fn new() -> Self {
        Self {
            start: Instant::now(),
            until_ms: AtomicU64::new(0),
        }
    }

    /// Records a claim made `at`: `short` when it came back with fewer than it asked for.
    pub(super) fn record(&self, short: bool, at: Instant) {
        let until = if short {
            self.ms(at + CAUGHT_UP_FOR)
        } else {
            0
        };
        self.until_ms.store(until, Ordering::Relaxed);
    }

    /// Whether the loop was caught up `at`.
    pub(super) fn holds(&self, at: Instant) -> bool {
        self.ms(at) < self.until_ms.load(Ordering::Relaxed)
    }

    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.start).as_millis()).unwrap_or(u64::MAX)
    }
}

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
    /// Whether the loop lately found no backlog (see the module's doc).
    pub(super) caught_up: Arc<CaughtUp>,
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
        let in_flight = taker.cx.settings.concurrency.saturating_sub(free);
        // The clock is read only above the quiet level.
        let new_first = in_flight <= QUIET_IN_FLIGHT || taker.caught_up.holds(Instant::now());
        if !taker.at_any_load && !new_first {
            return None;
        }
        // One semaphore operation for all of them: this runs on every ingest.
        let want = (taker.cx.settings.claim_batch as usize).min(free);
        let n = u32::try_from(want).ok().filter(|n| *n > 0)?;
        let permits = taker.global.clone().try_acquire_many_owned(n).ok()?;
        let mut request = claim::request(&taker.cx, &taker.worker.load, want);
        request.new_first = new_first;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_claim_lets_hand_offs_run_for_a_while_and_a_full_one_stops_them() {
        let caught_up = CaughtUp::new();
        let t0 = Instant::now();
        assert!(!caught_up.holds(t0), "no claim yet: not caught up");

        caught_up.record(true, t0);
        assert!(caught_up.holds(t0));
        assert!(caught_up.holds(t0 + CAUGHT_UP_FOR - Duration::from_millis(10)));
        assert!(
            !caught_up.holds(t0 + CAUGHT_UP_FOR + Duration::from_millis(1)),
            "a short claim's word lapses: the loop must claim again to keep hand-offs going"
        );

        caught_up.record(false, t0 + Duration::from_millis(5));
        assert!(
            !caught_up.holds(t0 + Duration::from_millis(6)),
            "a full claim found a backlog: it goes first"
        );
    }
}
