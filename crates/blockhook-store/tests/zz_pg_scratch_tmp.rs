#![cfg(feature = "contract")]
#![allow(clippy::unwrap_used)]
use blockhook_store::contract::fixtures::*;
use blockhook_core::{Next, ClaimRequest};
use std::time::{Duration, Instant};
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_big() {
    let db = blockhook_store::postgres::testing::fresh_db().await.unwrap();
    println!("schema {}", db.schema);
    let store = db.store.clone();
    let m = merchant(&store).await;
    for _ in 0..5 { endpoint(&store, &m, &[]).await; }
    let start = Instant::now();
    for chunk in 0..40 {
        let batch: Vec<_> = (0..1000).map(|i| event(&m, "Payment", t(chunk * 1000 + i))).collect();
        store.ingest(&batch).await.unwrap();
    }
    println!("ingest 40k events / 200k deliveries: {:?}", start.elapsed());
    // deliver 150k of them
    let start = Instant::now();
    let mut n = 0;
    let now = t(1_000_000);
    while n < 150_000 {
        let c = store.claim_due(&ClaimRequest { now, max: 500, lease_until: now + LEASE, per_endpoint_max: 500, exclude: vec![] }).await.unwrap();
        let done: Vec<_> = c.iter().map(|c| completion(c, Next::Succeeded, now)).collect();
        n += store.finish(&done, now).await.unwrap();
    }
    println!("claim+finish 150k in batches of 500: {:?}", start.elapsed());
    // concurrent processes
    let url = format!("{}?options=-c%20search_path%3D{}", db.url, db.schema);
    let mut tasks = Vec::new();
    let start = Instant::now();
    for p in 0..4 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let s = blockhook_store::postgres::PgStore::open(&url, &Default::default()).await.unwrap();
            let s: blockhook_core::StoreRef = std::sync::Arc::new(s);
            let mut mine = 0;
            loop {
                let c = s.claim_due(&ClaimRequest { now, max: 50, lease_until: now + LEASE, per_endpoint_max: 20, exclude: vec![] }).await.unwrap();
                if c.is_empty() { break; }
                let done: Vec<_> = c.iter().map(|c| completion(c, Next::Succeeded, now)).collect();
                mine += s.finish(&done, now).await.unwrap();
            }
            println!("process {p}: {mine}");
            mine
        }));
    }
    let mut total = 0;
    for t in tasks { total += t.await.unwrap(); }
    println!("4 processes delivered {total} in {:?}", start.elapsed());
    let _ = Duration::from_secs(1);
}
