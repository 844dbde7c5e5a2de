//! Ordered delivery per key, end to end (docs/ordering.md): the real binary, a loopback receiver
//! that fails 30 % of requests at random and sometimes sleeps, 2,000 events over 50 keys, and a
//! SIGKILL in the middle of the run.
//!
//! - `ordered_keys_survive_failures_and_sigkill`: one `serve` process, on SQLite and (when
//!   `BLOCKHOOK_TEST_DATABASE_URL` is set) PostgreSQL; the process is SIGKILLed and restarted.
//! - `ordered_keys_with_three_workers`: PostgreSQL only: an API process and three worker
//!   processes; one worker is SIGKILLed and restarted.
//!
//! Both assert, per key: the first successful delivery of each event arrives in publish order;
//! no two requests of one key are ever answered at the same time; one key ("poison", whose
//! receiver fails every request until the test heals it) is held after its head's last retry,
//! without holding up any other key; a resend of its failed head releases it and goes to the
//! back of its queue. Nothing here measures time: deadlines only bound how long a test waits.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::common::{
    ADMIN, Api, Backend, Conf, Rng, Server, backends, free_port, ledger, read_request,
};

const KEYS: usize = 50;
const PER_KEY: u64 = 40;
/// The key whose requests all fail until the test heals the receiver.
const POISON: &str = "order-poison";
/// Publishers, each owning every `TASKS`-th key.
const TASKS: usize = 5;
/// SIGKILL once the receiver has answered this many requests.
const KILL_AFTER: usize = 500;

fn key_name(k: usize) -> String {
    if k == KEYS - 1 {
        POISON.to_owned()
    } else {
        format!("order-{k:02}")
    }
}

/// One answered request.
#[derive(Debug, Clone)]
struct Answer {
    key: String,
    seq: u64,
    event: String,
    ok: bool,
}

#[derive(Default)]
struct FlakyState {
    rng: Mutex<Option<Rng>>,
    healed: AtomicBool,
    /// Every answer, in the order the answers were decided (a `200` is logged before it is
    /// written, so before blockhook can know of it and send the key's next event).
    log: Mutex<Vec<Answer>>,
    /// Key -> requests of it being answered right now.
    answering: Mutex<HashMap<String, usize>>,
    key_overlaps: AtomicUsize,
}

/// A loopback receiver on raw TCP: 30 % of requests get a 500 and 10 % sleep up to 300 ms
/// first (pseudo-random, seeded and printed by `Rng`); every request of the poison key gets a
/// 500 until [`Flaky::heal`].
struct Flaky {
    addr: SocketAddr,
    state: Arc<FlakyState>,
}

impl Flaky {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(FlakyState::default());
        *state.rng.lock().unwrap() = Some(Rng::from_env_or_clock());
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(tcp, st.clone()));
            }
        });
        Self { addr, state }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.addr.port())
    }

    fn heal(&self) {
        self.state.healed.store(true, Ordering::SeqCst);
    }

    fn log(&self) -> Vec<Answer> {
        self.state.log.lock().unwrap().clone()
    }

    fn requests(&self) -> usize {
        self.state.log.lock().unwrap().len()
    }

    fn overlaps(&self) -> usize {
        self.state.key_overlaps.load(Ordering::SeqCst)
    }

    /// Event ids that got a `200`.
    fn succeeded(&self) -> HashSet<String> {
        self.log()
            .into_iter()
            .filter(|a| a.ok)
            .map(|a| a.event)
            .collect()
    }

    /// Waits until every id in `ids` got a `200` (false after `within`).
    async fn wait_succeeded(&self, ids: &[String], within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let ok = self.succeeded();
            if ids.iter().all(|id| ok.contains(id)) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn roll(st: &FlakyState, below: u64) -> u64 {
    st.rng
        .lock()
        .unwrap()
        .as_mut()
        .map_or(0, |r| r.below(below))
}

async fn serve(mut tcp: TcpStream, st: Arc<FlakyState>) {
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok";
    const ERR: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\noops";
    let mut buf = Vec::new();
    while let Some((headers, body)) = read_request(&mut tcp, &mut buf).await {
        let event = headers
            .iter()
            .find(|(k, _)| k == "blockhook-event-id")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let key = payload["orderNo"].as_str().unwrap_or("").to_owned();
        let seq = payload["seq"].as_u64().unwrap_or(u64::MAX);
        {
            let mut answering = st.answering.lock().unwrap();
            let now = answering.entry(key.clone()).or_default();
            if *now > 0 {
                st.key_overlaps.fetch_add(1, Ordering::SeqCst);
            }
            *now += 1;
        }
        if roll(&st, 100) < 10 {
            tokio::time::sleep(Duration::from_millis(20 + roll(&st, 280))).await;
        }
        let ok = if key == POISON && !st.healed.load(Ordering::SeqCst) {
            false
        } else {
            roll(&st, 100) >= 30
        };
        st.log.lock().unwrap().push(Answer {
            key: key.clone(),
            seq,
            event,
            ok,
        });
        if let Some(n) = st.answering.lock().unwrap().get_mut(&key) {
            *n -= 1;
        }
        if tcp.write_all(if ok { OK } else { ERR }).await.is_err() {
            return;
        }
    }
}

/// Short retries (13 attempts, 100 ms apart): a random failure is almost never final, the
/// poison key's head gives up quickly.
fn conf() -> Conf {
    Conf {
        lease: "3s",
        total_timeout: "2s",
        retry_schedule: vec!["100ms"; 12],
        ..Conf::default()
    }
}

/// Publishes `PER_KEY` events of every key: `TASKS` publishers at once, each owning every
/// `TASKS`-th key and sending one batch per round (its keys' events of that round, in array
/// order), waiting for each `202`. A refused batch (the server is down) is sent again;
/// idempotency keys make a batch whose `202` was lost answer with the first ids. Half the events
/// name their key explicitly, the others leave it to the endpoint's `key_field`. Returns
/// (key, seq) -> event id.
async fn publish_all(api: &Api, merchant: &str) -> HashMap<(String, u64), String> {
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (api, merchant) = (api.clone(), merchant.to_owned());
        tasks.push(tokio::spawn(async move {
            let keys: Vec<String> = (t..KEYS).step_by(TASKS).map(key_name).collect();
            let mut ids = HashMap::new();
            for seq in 0..PER_KEY {
                let events: Vec<Value> = keys
                    .iter()
                    .map(|key| {
                        let mut e = json!({
                            "merchant_id": merchant,
                            "event_type": "Payment",
                            "payload": { "orderNo": key, "seq": seq, "amount": "10.00" },
                            "idempotency_key": format!("{key}-{seq}"),
                        });
                        if seq % 2 == 0 {
                            e["ordering_key"] = json!(key);
                        }
                        e
                    })
                    .collect();
                let body = json!({ "events": events });
                let answer = loop {
                    if let Ok(r) = api.post("/v1/events/batch", &body).await
                        && r.status() == 202
                        && let Ok(v) = r.json::<Value>().await
                    {
                        break v;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                };
                for (key, d) in keys.iter().zip(answer["data"].as_array().unwrap()) {
                    let id = d["event_id"].as_str().unwrap().to_owned();
                    ids.insert((key.clone(), seq), id);
                }
            }
            ids
        }));
    }
    let mut all = HashMap::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// What a run needs: the servers, which one answers the API, which one is killed.
struct Run<'a> {
    label: &'a str,
    servers: &'a mut [Server],
    api: usize,
    victim: usize,
}

async fn run(r: Run<'_>) {
    let label = r.label;
    let rx = Flaky::start().await;
    let api = Api::new(r.servers[r.api].base());
    let merchant = api.merchant(&format!("ordering-{label}")).await;
    let ep = api
        .endpoint_with(
            &merchant,
            json!({
                "url": rx.url(),
                "ordering": { "mode": "per_key", "key_field": "orderNo", "on_final_failure": "hold" },
            }),
        )
        .await;
    let ep_id = ep["id"].as_str().unwrap().to_owned();

    let publishing = {
        let (api, merchant) = (api.clone(), merchant.clone());
        tokio::spawn(async move { publish_all(&api, &merchant).await })
    };

    // SIGKILL mid-run, then start the same process again.
    let deadline = Instant::now() + Duration::from_secs(60);
    while rx.requests() < KILL_AFTER {
        assert!(
            Instant::now() < deadline,
            "{label}: deliveries never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    r.servers[r.victim].kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    r.servers[r.victim].restart().await;

    let ids = publishing.await.unwrap();
    assert_eq!(ids.len(), KEYS * PER_KEY as usize);
    let healthy: Vec<String> = ids
        .iter()
        .filter(|((key, _), _)| key != POISON)
        .map(|(_, id)| id.clone())
        .collect();
    let all_in = rx.wait_succeeded(&healthy, Duration::from_secs(240)).await;
    assert!(
        all_in,
        "{label}: some events of healthy keys never succeeded"
    );

    // Every other key completed while the poison key failed: it never got past its head.
    let poison_requests: Vec<Answer> = rx.log().into_iter().filter(|a| a.key == POISON).collect();
    assert!(
        poison_requests.iter().all(|a| a.seq == 0 && !a.ok),
        "{label}: the poison key moved past its failing head: {poison_requests:?}"
    );
    // Its head gives up after its last retry and holds the key.
    let held_path = format!("/v1/merchants/{merchant}/endpoints/{ep_id}/ordering/held");
    let deadline = Instant::now() + Duration::from_secs(60);
    let held = loop {
        let r = api
            .http
            .get(format!("{}{held_path}", api.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        if v.as_array().is_some_and(|a| !a.is_empty()) {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "{label}: the poison key was never held"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(held.as_array().unwrap().len(), 1, "{label}: {held}");
    assert_eq!(held[0]["key"], POISON);
    assert_eq!(held[0]["waiting"], json!(PER_KEY - 1), "{label}: {held}");

    // Heal the receiver and resend the failed head: the hold ends, the resent delivery goes
    // to the back of the key's queue.
    rx.heal();
    let head = &ids[&(POISON.to_owned(), 0)];
    let resent = api
        .post(
            &format!("/v1/merchants/{merchant}/events/{head}/resend"),
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(resent.status(), 202, "{label}: resend");
    let poison_ids: Vec<String> = (0..PER_KEY)
        .map(|s| ids[&(POISON.to_owned(), s)].clone())
        .collect();
    assert!(
        rx.wait_succeeded(&poison_ids, Duration::from_secs(120))
            .await,
        "{label}: the released key did not complete"
    );

    // Per key: the first successful delivery of each event, in publish order.
    let mut firsts: HashMap<String, Vec<u64>> = HashMap::new();
    let mut seen = HashSet::new();
    for a in rx.log() {
        if a.ok && seen.insert(a.event.clone()) {
            firsts.entry(a.key).or_default().push(a.seq);
        }
    }
    assert_eq!(firsts.len(), KEYS, "{label}");
    for (key, seqs) in &firsts {
        let want: Vec<u64> = if key == POISON {
            (1..PER_KEY).chain([0]).collect()
        } else {
            (0..PER_KEY).collect()
        };
        assert_eq!(seqs, &want, "{label}: key {key} out of publish order");
    }
    let requests = rx.requests();
    let failures = rx.log().iter().filter(|a| !a.ok).count();
    let overlaps = rx.overlaps();

    let db = r.servers[r.api].db().await;
    let settled = db.settle(&merchant, Duration::from_secs(30)).await;
    let states = db.delivery_states(&merchant).await;
    db.close().await;
    ledger(&format!(
        "ordering[{label}]: events={} keys={KEYS} requests={requests} failed_answers={failures} \
         key_overlaps={overlaps} store={states:?}",
        ids.len()
    ));
    assert_eq!(overlaps, 0, "{label}: two requests of one key at once");
    assert!(settled, "{label}: deliveries still pending: {states:?}");
    assert_eq!(
        states.get("succeeded").copied(),
        Some(KEYS as i64 * PER_KEY as i64),
        "{label}: {states:?}"
    );
    assert_eq!(
        states.get("failed").copied(),
        Some(1),
        "{label}: only the poison head"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_keys_survive_failures_and_sigkill() {
    for backend in backends().await {
        let label = if backend == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        };
        let tmp = tempfile::tempdir().unwrap();
        let mut server = Server::start(tmp.path(), free_port(), backend, &conf());
        server.ready().await;
        let mut servers = [server];
        run(Run {
            label,
            servers: &mut servers,
            api: 0,
            victim: 0,
        })
        .await;
    }
}

/// An API process and three workers on one PostgreSQL schema, sharing `dir` (and so the
/// master key: the API process starts first and generates it).
async fn cluster(dir: &Path, backend: &Backend) -> Vec<Server> {
    let conf = conf();
    let mut api = Server::start_with(
        dir,
        "api",
        free_port(),
        backend.clone(),
        &conf,
        &["--role", "api"],
        &[],
    );
    api.ready().await;
    let mut all = vec![api];
    for i in 0..3 {
        all.push(Server::start_with(
            dir,
            &format!("worker{i}"),
            free_port(),
            backend.clone(),
            &conf,
            &["--role", "worker"],
            &[],
        ));
    }
    for w in &mut all[1..] {
        w.ready().await;
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_keys_with_three_workers() {
    let Some(backend) = backends()
        .await
        .into_iter()
        .find(|b| matches!(b, Backend::Postgres(_)))
    else {
        eprintln!("SKIP ordered_keys_with_three_workers: PostgreSQL only");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut servers = cluster(tmp.path(), &backend).await;
    run(Run {
        label: "postgres, 3 workers",
        servers: &mut servers,
        api: 0,
        victim: 2,
    })
    .await;
    for w in &mut servers {
        assert!(w.exited().is_none(), "a process died");
    }
}
