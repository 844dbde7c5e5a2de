//! PostgreSQL resilience: killing every backend of a store (as a failover or an operator's
//! `pg_terminate_backend` would) must surface as `Error::Unavailable` from the calls caught by it,
//! never as a panic or another error kind, and the store must heal by itself within seconds: its
//! pool reconnects and its LISTEN task resubscribes.
//!
//! Needs `BLOCKHOOK_TEST_DATABASE_URL`; without it every test prints why it skips and passes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use blockhook_core::{
    ClaimRequest, Completion, EndpointId, EndpointUrl, Error, EventFilter, EventId, EventType,
    ExtraHeaders, MerchantId, NewEvent, NewMerchant, Next, Payload, SealedSecret, SigningMode,
    StoreRef, SuccessPolicy, Timestamp,
};
use blockhook_store::contract::fixtures;
use blockhook_store::postgres::testing::{self, TestDb};
use blockhook_store::{StoreOptions, postgres::PgStore};
use sqlx::{Connection, PgConnection};

const T0: Timestamp = Timestamp::from_ms(1_700_000_000_000);

async fn merchant_with_endpoint(store: &StoreRef) -> MerchantId {
    let m = NewMerchant::parse(MerchantId::generate(), "Resilient Ltd", T0).unwrap();
    store.create_merchant(&m).await.unwrap();
    let ep = blockhook_core::Endpoint {
        id: EndpointId::generate(),
        merchant_id: m.id.clone(),
        url: EndpointUrl::parse("https://receiver.example/hook", false).unwrap(),
        description: None,
        filter: EventFilter::all(),
        signing_mode: SigningMode::Sorted,
        success_policy: SuccessPolicy::Exactly200,
        headers: ExtraHeaders::default(),
        rate_limit: None,
        label: None,
        enabled: true,
        disabled_reason: None,
        secret: SealedSecret::from_stored(vec![1; 32]),
        previous_secret: None,
        created_at: T0,
        updated_at: T0,
        ordering: Default::default(),
    };
    store.create_endpoint(&ep).await.unwrap();
    m.id
}

fn event(m: &MerchantId) -> NewEvent {
    NewEvent {
        id: EventId::generate(),
        merchant_id: m.clone(),
        event_type: EventType::parse("Payment").unwrap(),
        payload: Payload::from_trusted(bytes::Bytes::from_static(br#"{"orderNo":"O1"}"#)),
        idempotency_key: None,
        ordering_key: None,
        created_at: T0,
        search_keys: Vec::new(),
    }
}

/// Kills every backend whose `application_name` is the test schema (the store's pool and its
/// listener), from a separate admin connection. Returns how many were killed.
async fn terminate_backends(db: &TestDb) -> i64 {
    const KILL: &str = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()";
    let mut admin = PgConnection::connect(&db.url).await.unwrap();
    let killed: i64 = sqlx::query_scalar(KILL)
        .bind(&db.schema)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    killed
}

/// Fails the test unless `r` is a success or `Unavailable`.
#[track_caller]
fn ok_or_unavailable<T>(what: &str, r: Result<T, Error>) -> bool {
    match r {
        Ok(_) => true,
        Err(Error::Unavailable(_)) => false,
        Err(other) => panic!("{what}: a lost connection must be Unavailable, got {other:?}"),
    }
}

/// One full delivery cycle (ingest, claim, finish); any error is returned.
async fn cycle(store: &StoreRef, m: &MerchantId, now: Timestamp) -> Result<(), Error> {
    store.ingest(&[event(m)]).await?;
    let req = ClaimRequest {
        now,
        max: 50,
        lease_until: now + Duration::from_secs(30),
        per_endpoint_max: 50,
        exclude: vec![],
        new_first: false,
    };
    let claims = store.claim_due(&req).await?;
    let done: Vec<Completion> = claims
        .iter()
        .map(|c| fixtures::completion(c, Next::Succeeded, now))
        .collect();
    store.finish(done.into(), now).await?;
    Ok(())
}

/// Retries `cycle` until it succeeds, failing the test after `deadline`.
async fn heals_within(store: &StoreRef, m: &MerchantId, deadline: Duration) -> Duration {
    let start = Instant::now();
    loop {
        match cycle(store, m, T0 + Duration::from_secs(60)).await {
            Ok(()) => return start.elapsed(),
            Err(Error::Unavailable(e)) if start.elapsed() < deadline => {
                eprintln!("still unavailable after {:?}: {e}", start.elapsed());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the store did not heal within {deadline:?}: {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backends_are_unavailable_then_heal() {
    let Some(db) = testing::fresh_db_or_skip("terminated_backends_are_unavailable_then_heal").await
    else {
        return;
    };
    let store = db.store.clone();
    let m = merchant_with_endpoint(&store).await;
    // Open several pooled connections, so there is more than one to kill.
    let warm: Vec<_> = (0..4)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { s.ping().await })
        })
        .collect();
    for w in warm {
        w.await.unwrap().unwrap();
    }
    cycle(&store, &m, T0 + Duration::from_secs(1))
        .await
        .unwrap();

    let killed = terminate_backends(&db).await;
    assert!(
        killed >= 2,
        "the pool and the listener were connected: killed {killed}"
    );

    // The first calls after the kill either already reconnected or say Unavailable.
    for i in 0..6 {
        ok_or_unavailable(&format!("ping #{i}"), store.ping().await);
        ok_or_unavailable(&format!("ingest #{i}"), store.ingest(&[event(&m)]).await);
        ok_or_unavailable(&format!("stats #{i}"), store.queue_stats(T0).await);
    }
    let took = heals_within(&store, &m, Duration::from_secs(5)).await;
    eprintln!("healed after {took:?}");
    store.ping().await.unwrap();
}

/// Calls running while their backends are killed see `Ok` or `Unavailable`, nothing else, and
/// the same load runs cleanly a moment later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_under_load_never_panics_or_misclassifies() {
    let Some(db) = testing::fresh_db_or_skip("kill_under_load_never_panics_or_misclassifies").await
    else {
        return;
    };
    let store = db.store.clone();
    let m = merchant_with_endpoint(&store).await;
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (store, m, stop, failures) = (store.clone(), m.clone(), stop.clone(), failures.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let now = T0 + Duration::from_secs(60 + n);
                match cycle(&store, &m, now).await {
                    Ok(()) => {}
                    Err(Error::Unavailable(_)) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("worker {w}: expected Ok or Unavailable, got {e:?}"),
                }
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        terminate_backends(&db).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("a worker panicked");
    }
    eprintln!(
        "{} cycles failed with Unavailable during the kills",
        failures.load(Ordering::Relaxed)
    );
    heals_within(&store, &m, Duration::from_secs(5)).await;
}

/// After its LISTEN connection is killed, the store resubscribes: a notification still wakes
/// `wait_for_work`. (The store never wakes itself in-process: the wake-up can only come through
/// PostgreSQL, from the ingest's `pg_notify` to the LISTEN connection.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_resubscribes_after_kill() {
    let Some(db) = testing::fresh_db_or_skip("listener_resubscribes_after_kill").await else {
        return;
    };
    let store = db.store.clone();
    let m = merchant_with_endpoint(&store).await;
    terminate_backends(&db).await;
    heals_within(&store, &m, Duration::from_secs(5)).await;

    let start = Instant::now();
    let mut woke_in = None;
    while start.elapsed() < Duration::from_secs(10) {
        // Drain wake-ups already pending (the reconnection itself wakes once).
        while tokio::time::timeout(
            Duration::from_millis(20),
            store.wait_for_work(Duration::from_secs(60)),
        )
        .await
        .is_ok()
        {}
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                store.wait_for_work(Duration::from_secs(3)).await;
                t.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        if store.ingest(&[event(&m)]).await.is_err() {
            continue;
        }
        let waited = waiter.await.unwrap();
        if waited < Duration::from_secs(2) {
            woke_in = Some(waited);
            break;
        }
    }
    let woke_in = woke_in.expect("a notification woke wait_for_work again within 10 s of the kill");
    eprintln!("notification woke the waiter in {woke_in:?}");
}

/// A database that does not answer makes `open` fail with `Unavailable` (after the acquire
/// timeout), not hang or panic.
#[tokio::test]
async fn unreachable_database_is_unavailable() {
    if std::env::var(testing::ENV).is_err() {
        testing::skipped("unreachable_database_is_unavailable");
        return;
    }
    let opts = StoreOptions {
        acquire_timeout: Duration::from_millis(500),
        ..StoreOptions::default()
    };
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let r = PgStore::open("postgres://postgres@127.0.0.1:1/test", &opts).await;
    assert!(
        matches!(r, Err(Error::Unavailable(_))),
        "{:?}",
        r.map(|_| ())
    );
}

/// `classify` reads real PostgreSQL errors by SQLSTATE: transient ones are `Unavailable`,
/// constraint violations `Conflict`, mistakes `Internal`.
#[tokio::test]
async fn classify_reads_postgres_sqlstates() {
    let Ok(url) = std::env::var(testing::ENV) else {
        testing::skipped("classify_reads_postgres_sqlstates");
        return;
    };
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let mut raise = async |code: &str| {
        let sql = format!("DO $$ BEGIN RAISE EXCEPTION 'test' USING ERRCODE = '{code}'; END $$");
        blockhook_store::classify(sqlx::query(&sql).execute(&mut conn).await.unwrap_err())
    };
    for code in ["40P01", "40001", "57P01", "08006", "53300", "25006"] {
        assert!(matches!(raise(code).await, Error::Unavailable(_)), "{code}");
    }
    assert!(matches!(raise("23505").await, Error::Conflict(_)));
    for code in ["22012", "42P01", "P0001"] {
        assert!(matches!(raise(code).await, Error::Internal(_)), "{code}");
    }
}
