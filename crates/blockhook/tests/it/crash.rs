//! Crash safety of the real binary: a `202` is a promise. The server is SIGKILLed while
//! deliveries are in flight, restarted on the same data directory (and store) and port, and
//! every event it acknowledged must still reach the receiver at least once (duplicates are
//! allowed and counted: delivery is at-least-once).
//!
//! Runs on SQLite, and on PostgreSQL too when `BLOCKHOOK_TEST_DATABASE_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{Api, Backend, Behaviour, Conf, Receiver, Server, backends, free_port, ledger};

const TOTAL: u64 = 2_000;
/// Kill once the receiver has seen this many requests.
const KILL_AFTER: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_sigkill() {
    for backend in backends().await {
        crash_once(backend).await;
    }
}

async fn crash_once(backend: Backend) {
    let label = if backend == Backend::Sqlite {
        "sqlite"
    } else {
        "postgres"
    };
    let tmp = tempfile::tempdir().unwrap();
    let rx = Receiver::start(Behaviour::Ok {
        min_ms: 20,
        max_ms: 50,
    })
    .await;
    let mut server = Server::start(tmp.path(), free_port(), backend, &Conf::default());
    server.ready().await;
    let api = Api::new(server.base());
    let merchant = api.merchant("crash").await;
    api.endpoint(&merchant, &rx.url()).await;

    // Ingest in the background: singles, with a batch of 50 every tenth request. A request that
    // fails (the server is down) is simply not acknowledged; the loop waits and goes on.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let ingest = {
        let (api, merchant, acked) = (api.clone(), merchant.clone(), acked.clone());
        tokio::spawn(async move {
            let (mut seq, mut req, mut refused) = (0u64, 0u64, 0u64);
            while seq < TOTAL {
                req += 1;
                let ids = if req % 10 == 0 {
                    let end = (seq + 50).min(TOTAL);
                    let ids = api.publish_batch(&merchant, seq..end).await;
                    if ids.is_some() {
                        seq = end;
                    }
                    ids
                } else {
                    let id = api.publish(&merchant, seq).await.map(|id| vec![id]);
                    if id.is_some() {
                        seq += 1;
                    }
                    id
                };
                match ids {
                    Some(ids) => acked.lock().unwrap().extend(ids),
                    None => {
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            refused
        })
    };

    // Kill while the receiver is busy with requests blockhook has not yet recorded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while rx.requests() < KILL_AFTER {
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let in_flight_at_kill = rx.in_flight();
    let acked_at_kill = acked.lock().unwrap().len();
    server.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart().await;

    let refused = ingest.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len() as u64, TOTAL);
    let all_in = rx.wait_all(&acked, Duration::from_secs(40)).await;
    // Let the attempts cut off by the kill expire their leases and be redelivered, so that the
    // duplicates are counted too.
    let db = server.db().await;
    let settled = db.settle(&merchant, Duration::from_secs(20)).await;
    let states = db.delivery_states(&merchant).await;
    db.close().await;

    let seen = rx.seen();
    let lost: Vec<&String> = acked.iter().filter(|id| !seen.contains_key(*id)).collect();
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    ledger(&format!(
        "crash[{label}]: acked={} acked_before_kill={acked_at_kill} receiver_in_flight_at_kill={in_flight_at_kill} \
         refused_while_down={refused} delivered_unique={} requests={} duplicates={duplicates} lost={} store={states:?}",
        acked.len(),
        seen.len(),
        rx.requests(),
        lost.len()
    ));
    assert!(
        all_in && lost.is_empty(),
        "{} acknowledged events never arrived, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    assert!(
        in_flight_at_kill > 0,
        "the kill should land while requests are in flight"
    );
    assert!(settled, "deliveries still pending: {states:?}");
    // A redelivery after the kill (a lease taken over) can carry the same attempt number as the
    // request cut off; every request still has its own attempt id, so receivers and operators
    // can tell them apart, while the event id says they are one event.
    let requests = rx.bodies();
    let attempt_ids: std::collections::HashSet<&str> = requests
        .iter()
        .map(|(headers, _)| {
            headers
                .iter()
                .find(|(k, _)| k == "blockhook-attempt-id")
                .map(|(_, v)| v.as_str())
                .expect("every request carries BlockHook-Attempt-Id")
        })
        .collect();
    assert_eq!(
        attempt_ids.len(),
        requests.len(),
        "{label}: an attempt id is never reused ({duplicates} redeliveries)"
    );
    assert_eq!(
        states.get("succeeded").copied(),
        Some(TOTAL as i64),
        "{states:?}"
    );
}
