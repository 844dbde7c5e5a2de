//! Fault injection against the real binary, each run ending in a ledger that must balance.
//!
//! * `three_sigkills_during_a_batch_run`: 5,000 events ingested in batches while the server is
//!   SIGKILLed three times at random moments (seed printed; replay with `BLOCKHOOK_CHAOS_SEED`);
//!   every acknowledged event must arrive and every delivery end `succeeded`.
//! * `misbehaving_receivers`: endpoints that answer 500, hang past the timeout, reset the
//!   connection, close mid-response, answer after 2 s, or stream a 1 GiB body. Never-recovering
//!   endpoints must end `failed` with every attempt logged; the others `succeeded`; and for each,
//!   attempts logged = requests the receiver saw. The 1 GiB body must be cut at the cap.
//!
//! A full or read-only data directory is covered by `disk.rs` (the server runs on a small tmpfs
//! in a private mount namespace); clock jumps by `clock.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{
    Api, Backend, Behaviour, Conf, Receiver, Rng, Server, backends, free_port, ledger,
};

const TOTAL: u64 = 5_000;
const BATCH: u64 = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sigkills_during_a_batch_run() {
    for backend in backends().await {
        three_sigkills(backend).await;
    }
}

async fn three_sigkills(backend: Backend) {
    let label = if backend == Backend::Sqlite {
        "sqlite"
    } else {
        "postgres"
    };
    let mut rng = Rng::from_env_or_clock();
    let tmp = tempfile::tempdir().unwrap();
    let rx = Receiver::start(Behaviour::Ok {
        min_ms: 5,
        max_ms: 20,
    })
    .await;
    let mut server = Server::start(tmp.path(), free_port(), backend, &Conf::default());
    server.ready().await;
    let api = Api::new(server.base());
    let merchant = api.merchant("three kills").await;
    api.endpoint(&merchant, &rx.url()).await;

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let ingest = {
        let (api, merchant, acked) = (api.clone(), merchant.clone(), acked.clone());
        tokio::spawn(async move {
            let (mut seq, mut refused) = (0u64, 0u64);
            while seq < TOTAL {
                let end = (seq + BATCH).min(TOTAL);
                match api.publish_batch(&merchant, seq..end).await {
                    Some(ids) => {
                        acked.lock().unwrap().extend(ids);
                        seq = end;
                        // Paced, so that the kills land during ingest as well as delivery.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    None => {
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            refused
        })
    };

    let mut kills = Vec::new();
    for _ in 0..3 {
        let wait = 200 + rng.below(1_000);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        kills.push(format!(
            "+{wait}ms(acked={},rx={},in_flight={})",
            acked.lock().unwrap().len(),
            rx.requests(),
            rx.in_flight()
        ));
        server.kill();
        server.restart().await;
    }
    let refused = ingest.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    let all_in = rx.wait_all(&acked, Duration::from_secs(40)).await;
    let db = server.db().await;
    let settled = db.settle(&merchant, Duration::from_secs(20)).await;
    let states = db.delivery_states(&merchant).await;
    db.close().await;

    let seen = rx.seen();
    let lost = acked.iter().filter(|id| !seen.contains_key(*id)).count();
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    ledger(&format!(
        "three-kills[{label}]: kills=[{}] acked={} refused_while_down={refused} delivered_unique={} \
         requests={} duplicates={duplicates} lost={lost} store={states:?}",
        kills.join(" "),
        acked.len(),
        seen.len(),
        rx.requests()
    ));
    assert_eq!(acked.len() as u64, TOTAL);
    assert!(
        all_in && lost == 0,
        "{lost} acknowledged events never arrived"
    );
    assert!(settled, "deliveries still pending: {states:?}");
    assert_eq!(
        states.get("succeeded").copied(),
        Some(TOTAL as i64),
        "{states:?}"
    );
}

/// One misbehaving endpoint and what its ledger must show.
struct Case {
    name: &'static str,
    behaviour: Behaviour,
    /// Final delivery state of every event.
    state: &'static str,
    /// Attempts per delivery.
    attempts: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_receivers() {
    const EVENTS: u64 = 4;
    const CAP: usize = 65_536;
    let cases = [
        Case {
            name: "500",
            behaviour: Behaviour::Status500,
            state: "failed",
            attempts: 3,
        },
        Case {
            name: "hang",
            behaviour: Behaviour::Hang { secs: 10 },
            state: "failed",
            attempts: 3,
        },
        Case {
            name: "reset",
            behaviour: Behaviour::Reset,
            state: "failed",
            attempts: 3,
        },
        Case {
            name: "close-mid-response",
            behaviour: Behaviour::CloseMidResponse,
            state: "failed",
            attempts: 3,
        },
        Case {
            name: "slow-2s",
            behaviour: Behaviour::Ok {
                min_ms: 2_000,
                max_ms: 2_000,
            },
            state: "succeeded",
            attempts: 1,
        },
        Case {
            name: "1GiB-body",
            behaviour: Behaviour::HugeBody,
            state: "succeeded",
            attempts: 1,
        },
    ];
    let tmp = tempfile::tempdir().unwrap();
    let conf = Conf {
        lease: "6s",
        total_timeout: "3s",
        retry_schedule: vec!["1s", "1s"],
        max_response_bytes: CAP,
        ..Conf::default()
    };
    let mut server = Server::start(tmp.path(), free_port(), Backend::Sqlite, &conf);
    server.ready().await;
    let api = Api::new(server.base());

    let mut running = Vec::new();
    for case in &cases {
        let rx = Receiver::start(case.behaviour).await;
        let merchant = api.merchant(case.name).await;
        api.endpoint(&merchant, &rx.url()).await;
        for seq in 0..EVENTS {
            assert!(
                api.publish(&merchant, seq).await.is_some(),
                "{}: publish",
                case.name
            );
        }
        running.push((case, rx, merchant));
    }

    let db = server.db().await;
    let mut failures = Vec::new();
    for (case, rx, merchant) in &running {
        let settled = db.settle(merchant, Duration::from_secs(40)).await;
        let states = db.delivery_states(merchant).await;
        let classes = db.attempt_classes(merchant).await;
        let logged: i64 = classes.values().sum();
        let longest_body = db
            .count(&format!(
                "SELECT COALESCE(MAX(LENGTH(a.response_body)), 0) FROM attempts a \
                 JOIN deliveries d ON d.id = a.delivery_id WHERE d.merchant_id = '{merchant}'"
            ))
            .await;
        ledger(&format!(
            "receiver[{}]: acked={EVENTS} store={states:?} attempts_logged={logged} by_class={classes:?} \
             receiver_requests={} connections={} longest_logged_body={longest_body} huge_body_bytes_sent={}",
            case.name,
            rx.requests(),
            rx.connections(),
            rx.huge_bytes_sent()
        ));
        let expect_state =
            states.get(case.state).copied() == Some(EVENTS as i64) && states.len() == 1;
        let expect_attempts = logged == EVENTS as i64 * case.attempts;
        let balanced = logged == rx.requests() as i64;
        let classified = case.state == "succeeded" || !classes.contains_key("null");
        if !(settled && expect_state && expect_attempts && balanced && classified) {
            failures.push(case.name);
        }
        assert!(
            longest_body <= CAP as i64,
            "{}: logged body over the cap",
            case.name
        );
        if case.behaviour == Behaviour::HugeBody {
            // The cap plus what socket buffers absorb: nowhere near 1 GiB per request.
            assert!(
                rx.huge_bytes_sent() < EVENTS * (32 << 20),
                "{}: read far past the cap",
                case.name
            );
        }
    }
    db.close().await;
    let healthy = reqwest::get(format!("{}/readyz", server.base()))
        .await
        .unwrap()
        .status();
    assert_eq!(healthy, 200, "server unhealthy after the faults");
    assert!(
        failures.is_empty(),
        "ledgers that did not balance: {failures:?}"
    );
}
