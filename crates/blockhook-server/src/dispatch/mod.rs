//! The dispatcher: claims due deliveries under committed leases, sends each as a signed POST,
//! decides what follows, and hands the result back to the store.
//!
//! The path of one delivery, one file per step:
//! 1. `claim`: `Queue::claim_due` leases due deliveries (committed before it returns; no
//!    transaction stays open across a request), leaving out endpoints at their concurrency cap;
//! 2. `attempt`: `prepare` (fresh time, fresh signature) → egress → judge;
//! 3. `RetryPolicy::decide` (blockhook-core) says what follows;
//! 4. `observe`: metrics and the log line;
//! 5. `complete`: the attempt log entry and the next state, written in batches by
//!    `Queue::finish`.
//!
//! While a request runs, `lease` renews its lease; if this process dies, the lease expires and
//! another worker takes over. `signers` keeps keyed HMAC state per endpoint, so an attempt
//! neither decrypts the secret nor re-keys.

mod attempt;
mod claim;
mod complete;
mod handoff;
mod lease;
mod observe;
mod prepare;
mod signers;

use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use blockhook_core::{Claim, Clock, Completion, RetryPolicy, StoreRef};

use crate::config::DeliverySettings;
use crate::keys::MasterKey;
use crate::metrics::Metrics;

pub(crate) use attempt::{Message, attempt};
use claim::{Claimer, EndpointLoad};
pub use handoff::Handoff;
use lease::LeaseBook;

/// What the dispatcher needs.
#[derive(Clone)]
pub struct DispatchCx {
    /// The store.
    pub store: StoreRef,
    /// Opens endpoint secrets.
    pub keys: MasterKey,
    /// Outbound HTTP.
    pub egress: blockhook_egress::Client,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Retry schedule.
    pub policy: RetryPolicy,
    /// Delivery settings.
    pub settings: DeliverySettings,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Wakes the loop when new work may be due.
    pub wake: Arc<Notify>,
    /// Where ingest hands freshly leased deliveries to this dispatcher.
    pub handoff: Arc<Handoff>,
}

/// What every delivery task of one dispatcher shares.
struct Worker {
    cx: Arc<DispatchCx>,
    load: EndpointLoad,
    signers: signers::Signers,
    book: Arc<LeaseBook>,
    done: mpsc::Sender<Completion>,
}

/// Runs until `stop` is cancelled, then stops claiming and lets in-flight attempts finish up
/// to `drain_deadline`. Attempts still running then are abandoned: their leases expire and
/// another worker (or this one after a restart) sends them again.
pub async fn run(cx: DispatchCx, stop: CancellationToken) {
    let cx = Arc::new(cx);
    let (done, done_rx) = mpsc::channel::<Completion>(8_192);
    let recorder = tokio::spawn(complete::run(cx.clone(), done_rx));
    let book = Arc::new(LeaseBook::default());
    let renewer_stop = CancellationToken::new();
    let renewer = tokio::spawn(lease::renew(cx.clone(), book.clone(), renewer_stop.clone()));
    let global = Arc::new(Semaphore::new(cx.settings.concurrency));
    let worker = Arc::new(Worker {
        cx: cx.clone(),
        load: EndpointLoad::default(),
        signers: signers::Signers::default(),
        book,
        done,
    });
    let (to_loop, mut handed) = mpsc::unbounded_channel();
    let caught_up = Arc::new(handoff::CaughtUp::new());
    cx.handoff.open(handoff::Taker {
        cx: cx.clone(),
        worker: worker.clone(),
        global: global.clone(),
        to_loop,
        at_any_load: cx.store.claims_within_ingest(),
        caught_up: caught_up.clone(),
    });
    let mut claimer = Claimer::new();
    let mut tasks = JoinSet::new();

    tracing::info!(concurrency = cx.settings.concurrency, "dispatcher started");
    while !stop.is_cancelled() {
        while tasks.try_join_next().is_some() {}
        while let Ok(claims) = handed.try_recv() {
            worker.start_all(&mut tasks, claims);
        }
        let free = global.available_permits();
        if free == 0 {
            // Every branch must wait: a select that completes at once (an empty set's
            // `join_next`) would turn this loop into a spin that never yields its worker, and
            // the hand-offs holding the slots might then never run to give them back.
            tokio::select! {
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                Some(claims) = handed.recv() => worker.start_all(&mut tasks, claims),
                // Every slot is reserved by hand-offs still writing: wait for one to come back.
                Ok(permit) = global.clone().acquire_owned(), if tasks.is_empty() => drop(permit),
                () = stop.cancelled() => {}
            }
            continue;
        }
        // The slots are taken before the claim: hand-offs take slots from the same semaphore
        // while the claim runs, and a claim that came back to fewer free slots than it asked
        // for would leave its extra leases to expire unsent. Lost to a hand-off since
        // `available_permits`: look again.
        let free = free.min(cx.settings.claim_batch as usize);
        let Ok(mut slots) = global.clone().try_acquire_many_owned(permits(free)) else {
            continue;
        };
        // Register interest before claiming, so a wake between the claim and the wait is kept.
        let woken = cx.wake.notified();
        tokio::pin!(woken);
        let Some(mut claimed) = claimer.claim(&cx, &worker.load, free, &stop).await else {
            continue;
        };
        caught_up.record(!claimed.full, std::time::Instant::now());
        for claim in claimed.claims.drain(..) {
            // Cannot fail: the claim asked for at most `free`.
            let Some(permit) = slots.split(1) else {
                tracing::error!(delivery = %claim.delivery_id, "claimed past the free slots; the lease will expire");
                continue;
            };
            worker.start(&mut tasks, claim, permit);
        }
        // The slots left over are freed.
        drop(slots);
        if claimed.full {
            continue;
        }
        let idle = claim::idle_wait(&cx, &claimed).await;
        let sleep = tokio::time::sleep(idle);
        let work = cx.store.wait_for_work(idle);
        tokio::pin!(sleep, work);
        // Until there may be something to claim; hand-offs start as they come, without a claim.
        loop {
            tokio::select! {
                () = &mut woken => break,
                () = &mut sleep => break,
                () = &mut work => break,
                Some(claims) = handed.recv() => {
                    worker.start_all(&mut tasks, claims);
                    while tasks.try_join_next().is_some() {}
                }
                Some(_) = tasks.join_next(), if claimed.waiting_on_slots && !tasks.is_empty() => break,
                () = stop.cancelled() => break,
            }
        }
    }

    // No more hand-offs; those already made still go.
    cx.handoff.close();
    while let Ok(claims) = handed.try_recv() {
        worker.start_all(&mut tasks, claims);
    }
    drain(&cx, tasks).await;
    drop(worker);
    let _ = recorder.await;
    renewer_stop.cancel();
    let _ = renewer.await;
    tracing::info!("dispatcher stopped");
}

/// `free` slots as a permit count (a semaphore counts in `u32`).
fn permits(free: usize) -> u32 {
    u32::try_from(free).unwrap_or(u32::MAX)
}

/// Waits for in-flight attempts up to the drain deadline, then abandons the rest.
async fn drain(cx: &DispatchCx, mut tasks: JoinSet<()>) {
    let pending = tasks.len();
    if pending == 0 {
        return;
    }
    tracing::info!(pending, deadline = ?cx.settings.drain_deadline, "draining in-flight attempts");
    let drained = tokio::time::timeout(cx.settings.drain_deadline, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            abandoned = tasks.len(),
            "drain deadline passed; leases will expire"
        );
        tasks.abort_all();
    }
}

impl Worker {
    /// Starts every handed claim with its slot.
    fn start_all(self: &Arc<Self>, tasks: &mut JoinSet<()>, claims: handoff::Handed) {
        for (claim, permit) in claims {
            self.start(tasks, claim, permit);
        }
    }

    /// Starts delivering `claim` in its own task and span; `permit` is its global slot.
    fn start(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
        claim: Claim,
        permit: OwnedSemaphorePermit,
    ) {
        self.book.hold(&claim.delivery_id, claim.lease);
        self.load.enter(&claim.endpoint.id);
        let span = tracing::info_span!(
            "attempt",
            event = %claim.event_id,
            endpoint = %claim.endpoint.id,
            delivery = %claim.delivery_id,
            attempt = claim.attempt,
        );
        tasks.spawn(self.clone().deliver(claim, permit).instrument(span));
    }

    /// One delivery attempt, step by step, then the bookkeeping of this process.
    async fn deliver(self: Arc<Self>, claim: Claim, _permit: OwnedSemaphorePermit) {
        let cx = &self.cx;
        let endpoint = &claim.endpoint;
        if let Some(rate) = endpoint.rate_limit {
            let wait = self.load.limiter.reserve(&endpoint.id, rate);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        let signer = self.signers.get(&cx.keys, endpoint);
        let message = Message {
            event_id: &claim.event_id,
            event_type: &claim.event_type,
            payload: claim.payload.bytes(),
        };
        let attempted = attempt(
            &cx.egress,
            &cx.metrics.in_flight_requests,
            endpoint,
            signer.as_deref().map_err(ToString::to_string),
            message,
            claim.attempt,
            cx.clock.now(),
        )
        .await;
        let now = cx.clock.now();
        let next = cx
            .policy
            .decide(claim.round_attempt, &attempted.outcome, now, rand::random());
        observe::observe(&cx.metrics, &claim, &attempted, &next, now);
        let ok = attempted.delivered();
        let (endpoint_id, delivery_id) = (endpoint.id.clone(), claim.delivery_id.clone());
        let completion = complete::completion(claim, attempted, next);
        if self.done.send(completion).await.is_err() {
            tracing::error!("recorder stopped; the lease will expire and the delivery be retried");
        }
        self.load.leave(&endpoint_id, ok, &cx.metrics);
        self.book.release(&delivery_id);
    }
}
