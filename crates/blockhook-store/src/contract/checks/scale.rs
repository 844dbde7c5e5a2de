//! Behaviour that matters at scale: many concurrent claimers (with re-claims and ingest running
//! alongside) never hold one delivery at once, cross-process wake-ups reach `wait_for_work`, and
//! the happy path stays within its round-trip budget.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blockhook_core::{ClaimRequest, DeliveryId, Next, ResendLimits, ResendScope, StoreRef};

use crate::contract::fixtures::*;

/// Eight workers claim small batches (per-endpoint cap included) while another task keeps
/// ingesting; every first attempt is retried at once, so deliveries are re-claimed while others
/// claim around them. No delivery is ever held by two workers at once, and all end up delivered
/// exactly as often as they were claimed.
pub async fn many_claimers_never_double_claim(store: StoreRef) {
    const WORKERS: usize = 8;
    let m = merchant(&store).await;
    for _ in 0..3 {
        endpoint(&store, &m, &[]).await;
    }
    let first: Vec<_> = (0..100).map(|i| event(&m, "Payment", t(i % 10))).collect();
    store.ingest(&first).await.unwrap();
    let now = t(100);

    // Deliveries currently held by some worker; claims per delivery.
    let held: Arc<Mutex<HashSet<DeliveryId>>> = Arc::default();
    let claims: Arc<Mutex<HashMap<DeliveryId, u32>>> = Arc::default();
    let writer = {
        let (store, m) = (store.clone(), m.clone());
        tokio::spawn(async move {
            for i in 0..20 {
                let batch: Vec<_> = (0..5).map(|_| event(&m, "Payout", t(20 + i))).collect();
                store.ingest(&batch).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (store, held, claims) = (store.clone(), held.clone(), claims.clone());
        workers.push(tokio::spawn(async move {
            let mut idle_rounds = 0;
            while idle_rounds < 5 {
                let req = ClaimRequest {
                    now,
                    max: 5,
                    lease_until: now + LEASE,
                    per_endpoint_max: 2,
                    exclude: Vec::new(),
                    new_first: false,
                };
                let got = store.claim_due(&req).await.unwrap();
                if got.is_empty() {
                    idle_rounds += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                idle_rounds = 0;
                let mut done = Vec::new();
                for c in &got {
                    assert!(
                        held.lock().unwrap().insert(c.delivery_id.clone()),
                        "worker {w}: {} is already held by another worker",
                        c.delivery_id
                    );
                    let n = {
                        let mut claims = claims.lock().unwrap();
                        let n = claims.entry(c.delivery_id.clone()).or_insert(0);
                        *n += 1;
                        *n
                    };
                    assert_eq!(c.attempt, n, "attempt numbers follow the claims");
                    // First attempt: retry at once (due again); second: delivered.
                    let next = if n == 1 {
                        Next::RetryAt(now)
                    } else {
                        Next::Succeeded
                    };
                    done.push(completion(c, next, now));
                }
                tokio::task::yield_now().await;
                // Released before finishing: once `finish` commits, another worker may claim it.
                for c in &got {
                    held.lock().unwrap().remove(&c.delivery_id);
                }
                let sent = done.len();
                let applied = store.finish(done.into(), now).await.unwrap();
                assert_eq!(
                    applied as usize, sent,
                    "worker {w}: live leases always apply"
                );
            }
        }));
    }
    writer.await.unwrap();
    for w in workers {
        w.await.unwrap();
    }
    // Events ingested after the workers went idle are still pending; finish them here.
    loop {
        let got = claim_all(&store, now).await;
        if got.is_empty() {
            break;
        }
        for c in got {
            let n = {
                let mut claims = claims.lock().unwrap();
                let n = claims.entry(c.delivery_id.clone()).or_insert(0);
                *n += 1;
                *n
            };
            let next = if n == 1 {
                Next::RetryAt(now)
            } else {
                Next::Succeeded
            };
            finish_one(&store, &c, next, now).await;
        }
    }

    let claims = claims.lock().unwrap().clone();
    assert_eq!(claims.len(), 600, "3 endpoints × 200 events");
    assert!(
        claims.values().all(|&n| n == 2),
        "each delivery claimed exactly twice"
    );
    let stats = store.queue_stats(now).await.unwrap();
    assert_eq!(
        (stats.succeeded, stats.due, stats.scheduled, stats.in_flight),
        (600, 0, 0, 0)
    );
}

/// Drains wake-ups already pending, so the next wait measures only what follows.
async fn drain_wakeups(store: &StoreRef) {
    while tokio::time::timeout(
        Duration::from_millis(20),
        store.wait_for_work(Duration::from_secs(60)),
    )
    .await
    .is_ok()
    {}
}

/// Waits up to `max` in a task and returns how long the wait took, after `trigger` ran.
async fn wait_around<F: std::future::Future<Output = ()>>(
    store: &StoreRef,
    max: Duration,
    trigger: F,
) -> Duration {
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            store.wait_for_work(max).await;
            start.elapsed()
        })
    };
    // Let the waiter register before the trigger fires.
    tokio::time::sleep(Duration::from_millis(50)).await;
    trigger.await;
    waiter.await.unwrap()
}

/// `wait_for_work` returns by `max` when nothing happens; on PostgreSQL, an ingest, a resend or a
/// recovery (by any process; the store never wakes itself in-process, so this goes through
/// LISTEN/NOTIFY) cuts the wait short.
pub async fn notify_wakes_wait_for_work(store: StoreRef) {
    let m = merchant(&store).await;
    let ep = endpoint(&store, &m, &[]).await;
    let ev = ingest_one(&store, &m, "Payment", t(0)).await;
    let notifies = store.backend() == "postgres";

    // Nothing happening: the wait ends at `max`, not long after.
    drain_wakeups(&store).await;
    let idle = wait_around(&store, Duration::from_millis(300), async {}).await;
    assert!(
        idle < Duration::from_secs(3),
        "wait_for_work overran max: {idle:?}"
    );
    if !notifies {
        assert!(
            idle >= Duration::from_millis(250),
            "the embedded store waits max: {idle:?}"
        );
        return;
    }
    assert!(
        idle >= Duration::from_millis(250),
        "woken without a notification: {idle:?}"
    );

    let long = Duration::from_secs(20);
    let quick = Duration::from_secs(5);
    drain_wakeups(&store).await;
    let woke = wait_around(&store, long, async {
        store.ingest(&[event(&m, "Payment", t(1))]).await.unwrap();
    })
    .await;
    assert!(woke < quick, "ingest did not wake the waiter: {woke:?}");

    drain_wakeups(&store).await;
    let woke = wait_around(&store, long, async {
        let limits = ResendLimits {
            window: Duration::from_secs(3600),
            max_per_event: 5,
        };
        store
            .resend(&m, &ev, &ResendScope::All, &limits, t(2))
            .await
            .unwrap();
    })
    .await;
    assert!(woke < quick, "resend did not wake the waiter: {woke:?}");

    for c in claim_all(&store, t(3)).await {
        finish_one(&store, &c, Next::GiveUp, t(3)).await;
    }
    drain_wakeups(&store).await;
    let woke = wait_around(&store, long, async {
        assert_eq!(store.recover(&m, &ep.id, T0, t(4)).await.unwrap(), 3);
    })
    .await;
    assert!(woke < quick, "recover did not wake the waiter: {woke:?}");

    // A hand-off at ingest that takes every new delivery wakes no one (nothing is left to
    // claim); one that leaves some due announces them.
    for c in claim_all(&store, t(5)).await {
        finish_one(&store, &c, Next::Succeeded, t(5)).await;
    }
    drain_wakeups(&store).await;
    let quiet = wait_around(&store, Duration::from_millis(300), async {
        let (_, handed) = store
            .ingest_and_claim(&[event(&m, "Payment", t(6))], &claim_req(t(6), 10))
            .await
            .unwrap();
        assert_eq!(handed.len(), 1, "handed off");
    })
    .await;
    assert!(
        quiet >= Duration::from_millis(250),
        "a hand-off that took everything woke a waiter: {quiet:?}"
    );
    drain_wakeups(&store).await;
    let woke = wait_around(&store, long, async {
        let (_, handed) = store
            .ingest_and_claim(&[event(&m, "Payment", t(7))], &claim_req(t(7), 0))
            .await
            .unwrap();
        assert!(handed.is_empty(), "no slot, nothing handed");
    })
    .await;
    assert!(
        woke < quick,
        "a hand-off that left work did not wake the waiter: {woke:?}"
    );
}

/// The happy path's round trips: ingest in batches of 10, claim and finish in batches of 25.
/// Every statement counts (transaction control included); the target is under 6 per delivered
/// event. Claims of one event share its payload bytes instead of copying them.
pub async fn round_trips_per_delivered_event(store: StoreRef) {
    let m = merchant(&store).await;
    endpoint(&store, &m, &[]).await;
    endpoint(&store, &m, &[]).await;
    let before = store.statements();
    for chunk in 0..5 {
        let batch: Vec<_> = (0..10)
            .map(|i| event(&m, "Payment", t(chunk * 10 + i)))
            .collect();
        store.ingest(&batch).await.unwrap();
    }
    let mut delivered = 0;
    loop {
        let got = store.claim_due(&claim_req(t(100), 25)).await.unwrap();
        if got.is_empty() {
            break;
        }
        let mut by_event: HashMap<_, Vec<_>> = HashMap::new();
        for c in &got {
            // Addresses as integers: raw pointers are not `Send`.
            by_event
                .entry(c.event_id.clone())
                .or_default()
                .push(c.payload.bytes().as_ptr() as usize);
        }
        for ptrs in by_event.values().filter(|p| p.len() > 1) {
            assert!(
                ptrs.windows(2).all(|w| w[0] == w[1]),
                "claims of one event share its payload"
            );
        }
        let done: Vec<_> = got
            .iter()
            .map(|c| completion(c, Next::Succeeded, t(100)))
            .collect();
        delivered += store.finish(done.into(), t(100)).await.unwrap();
    }
    assert_eq!(delivered, 100);
    let per_event = (store.statements() - before) as f64 / f64::from(delivered);
    assert!(
        per_event < 6.0,
        "{per_event:.2} statements per delivered event"
    );
}
