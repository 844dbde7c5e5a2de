//! Throughput of the embedded store's hot path (ingest, claim, finish), without HTTP: the
//! store alone, on a SQLite file in a temporary directory.
//!
//! `cargo bench -p blockhook-store --features contract --bench hot_path` (it builds its
//! merchant and endpoint with the contract suite's fixtures) prints events/s for ingest and for
//! claim+finish, the statements each phase ran and the CPU time per event. Knobs (environment):
//! `BH_EVENTS` (default 20000), `BH_BATCH` events per ingest call (default 100), `BH_SINGLE=1`
//! for one call per event and per completion (64 at a time, as API requests and delivery
//! tasks make them), `BH_SYNC=normal` for `synchronous=NORMAL`, `BH_ONLY=ingest`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench fails loudly

use std::sync::Arc;
use std::time::{Duration, Instant};

use blockhook_core::{
    AttemptId, AttemptRecord, ClaimRequest, Completion, EventId, EventType, MerchantId, NewEvent,
    Next, Payload,
};
use blockhook_store::contract::fixtures::{self, T0};
use blockhook_store::{SqliteSync, StoreOptions, StoreRef};
use bytes::Bytes;

/// Process CPU time (user + system) so far, from /proc (10 ms resolution): wall time on a
/// shared 2-core machine says little.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    // After the command name: state, ppid, pgrp, session, tty_nr, tpgid, flags, minflt,
    // cminflt, majflt, cmajflt, utime, stime (clock ticks, 100 per second).
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10)
}

/// A merchant with one endpoint receiving every event type.
async fn tenant(store: &StoreRef) -> MerchantId {
    let m = fixtures::merchant(store).await;
    fixtures::endpoint(store, &m, &[]).await;
    m
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too, so keep that short.
    let quick = !std::env::args().any(|a| a == "--bench");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(quick));
}

async fn run(quick: bool) {
    let dir = tempfile::tempdir().unwrap();
    let sync = match std::env::var("BH_SYNC").as_deref() {
        Ok("normal") => SqliteSync::Normal,
        _ => SqliteSync::Full,
    };
    let opts = StoreOptions {
        sqlite_sync: sync,
        ..Default::default()
    };
    let single = std::env::var("BH_SINGLE").is_ok();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let store: StoreRef = blockhook_store::open(&url, &opts).await.unwrap();
    let t0 = T0;
    let merchant = tenant(&store).await;
    let body = Bytes::from_static(br#"{"custNo":"CustNo_00240101","orderNo":"OrderNo_202504010023","id":8210003616,"symbol":"USDT","amount":"2000.00","status":"SUCCESS","txId":"0x7614a9840d9422feaef4671e0ee98dd7092ebcba6e41076285f99d0b2b0de5fe","network":"Ethereum","chainId":"1","fromAddress":"0xa9e358e33a57e67c9b84618a52f0194c345c8e35","cashierId":86100021}"#);
    let total: usize = std::env::var("BH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 200 } else { 20_000 });
    let batch: usize = std::env::var("BH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);

    let start = Instant::now();
    let cpu0 = cpu();
    for i in 0..total / batch {
        let evs: Vec<NewEvent> = (0..batch)
            .map(|_| NewEvent {
                id: EventId::generate(),
                merchant_id: merchant.clone(),
                event_type: EventType::parse("Payment").unwrap(),
                payload: Payload::from_trusted(body.clone()),
                idempotency_key: None,
                ordering_key: None,
                created_at: t0 + Duration::from_millis(i as u64),
                // What ingest stores with the default `[search] fields`.
                search_keys: blockhook_core::SearchFields::default()
                    .keys_of(&Payload::from_trusted(body.clone())),
            })
            .collect();
        if single {
            // One call per event, 64 at a time, as API requests would: group commit at work.
            let calls: Vec<_> = evs
                .into_iter()
                .map(|ev| {
                    let store = Arc::clone(&store);
                    tokio::spawn(async move { store.ingest(&[ev]).await.unwrap() })
                })
                .collect();
            for c in calls {
                c.await.unwrap();
            }
        } else {
            store.ingest(&evs).await.unwrap();
        }
    }
    let ingest = start.elapsed();
    let cpu_ingest = cpu() - cpu0;
    let s_ingest = store.statements();
    if std::env::var("BH_ONLY").as_deref() == Ok("ingest") {
        println!(
            "{total} events, batch {batch}{}, {sync:?}: ingest {:.0}/s",
            if single { " (one per call)" } else { "" },
            total as f64 / ingest.as_secs_f64()
        );
        return;
    }

    let start = Instant::now();
    let cpu1 = cpu();
    let now = t0 + Duration::from_secs(3600);
    let mut done = 0;
    let (mut in_claim, mut in_finish) = (Duration::ZERO, Duration::ZERO);
    loop {
        let lap = Instant::now();
        let req = ClaimRequest {
            now,
            max: 256,
            lease_until: now + Duration::from_secs(30),
            per_endpoint_max: 256,
            exclude: vec![],
            new_first: false,
        };
        let claims = store.claim_due(&req).await.unwrap();
        in_claim += lap.elapsed();
        if claims.is_empty() {
            break;
        }
        let completions: Vec<Completion> = claims
            .iter()
            .map(|c| Completion {
                delivery_id: c.delivery_id.clone(),
                lease: c.lease,
                attempt: AttemptRecord {
                    id: AttemptId::generate(),
                    delivery_id: c.delivery_id.clone(),
                    number: c.attempt,
                    started_at: now,
                    url: c.endpoint.url.as_str().to_owned(),
                    request_headers: vec![("BlockATM-Event".into(), "Payment".into())],
                    status: Some(200),
                    response_headers: vec![],
                    response_body: Bytes::from_static(b"ok"),
                    response_truncated: false,
                    latency_ms: 3,
                    error: None,
                    error_detail: None,
                },
                next: Next::Succeeded,
                disable_reason: None,
                releases_key: false,
            })
            .collect();
        let lap = Instant::now();
        if single {
            // One call per delivery, as delivery tasks would.
            let calls: Vec<_> = completions
                .into_iter()
                .map(|c| {
                    let store = Arc::clone(&store);
                    tokio::spawn(async move { store.finish(Arc::from([c]), now).await.unwrap() })
                })
                .collect();
            for c in calls {
                done += c.await.unwrap();
            }
        } else {
            done += store.finish(completions.into(), now).await.unwrap();
        }
        in_finish += lap.elapsed();
    }
    let dispatch = start.elapsed();
    let cpu_dispatch = cpu() - cpu1;
    assert_eq!(done as usize, total);
    let per_s = |d: Duration| total as f64 / d.as_secs_f64();
    println!(
        "{total} events, batch {batch}{}, {sync:?}: ingest {:.0}/s, claim+finish {:.0}/s, \
         (claim {:.0}/s, finish {:.0}/s), statements: ingest {s_ingest}, dispatch {}; \
         CPU µs/event: ingest {:.1}, claim+finish {:.1}",
        if single { " (one per call)" } else { "" },
        per_s(ingest),
        per_s(dispatch),
        per_s(in_claim),
        per_s(in_finish),
        store.statements() - s_ingest,
        cpu_ingest.as_secs_f64() * 1e6 / total as f64,
        cpu_dispatch.as_secs_f64() * 1e6 / total as f64,
    );
}
