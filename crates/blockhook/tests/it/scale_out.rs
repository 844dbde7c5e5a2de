//! Scale-out on PostgreSQL: several `blockhook serve` processes (`--role api` and
//! `--role worker`) on one fresh schema, run as real child processes.
//!
//! - `three_workers_deliver_everything_once`: 10,000 events to 20 loopback endpoints; every
//!   delivery arrives, no attempt of a delivery overlaps another, and the attempt log balances
//!   with what the receivers saw. Prints the ledger and the delivered events/s.
//! - `killed_worker_leases_are_taken_over`: a worker is SIGKILLed mid-run; its leased
//!   deliveries are claimed by the others once the lease expires, and nothing is lost.
//! - `servers_survive_terminated_connections`: every database session of the servers is
//!   terminated (`pg_terminate_backend`) mid-run, three times; the API answers only successes or
//!   `503` problem+json meanwhile, no process dies, and the run completes.
//! - `retention_purges_only_old_events`: payloads and attempts older than `retention.max_age`
//!   are removed, newer ones kept.
//!
//! PostgreSQL only: each test prints a SKIP line and returns when
//! `BLOCKHOOK_TEST_DATABASE_URL` is unset. The tests run one at a time (they measure throughput
//! on a small machine and one of them terminates database sessions).
//! `BLOCKHOOK_SCALE_WORKERS` changes the worker count of the first test (for comparisons).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common;
use crate::common::{Api, Backend, Behaviour, Conf, Receiver, Server, free_port, ledger};
use sqlx::PgPool;

/// One test at a time (see the module doc).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ENDPOINTS: usize = 20;
const BATCH: u64 = 100;

/// A fresh schema; the server URL (its sessions tagged with a unique `application_name`), the
/// tag, and an admin pool on the schema for the test's own queries (tagged differently).
struct Schema {
    name: String,
    server_url: String,
    tag: String,
    admin: PgPool,
    base: String,
}

impl Schema {
    async fn create() -> Option<Self> {
        let Ok(base) = std::env::var("BLOCKHOOK_TEST_DATABASE_URL") else {
            eprintln!("SKIP scale_out: BLOCKHOOK_TEST_DATABASE_URL is not set (PostgreSQL only)");
            return None;
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("bh_scale_{id}");
        let tag = format!("bh_scale_srv_{}", &id[..12]);
        blockhook_store::postgres::schema::create(&base, &name)
            .await
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let with_path = format!("{base}{sep}options=-c%20search_path%3D{name}");
        let admin = PgPool::connect(&format!("{with_path}&application_name=bh_scale_test"))
            .await
            .unwrap();
        Some(Self {
            server_url: format!("{with_path}&application_name={tag}"),
            name,
            tag,
            admin,
            base,
        })
    }

    fn backend(&self) -> Backend {
        Backend::Postgres(self.server_url.clone())
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.admin)
            .await
            .unwrap()
    }

    /// Waits until no delivery is pending (false after `within`).
    async fn settle(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let pending = self
                .count("SELECT COUNT(*) FROM deliveries WHERE state = 'pending'")
                .await;
            if pending == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    async fn states(&self) -> HashMap<String, i64> {
        sqlx::query_as::<_, (String, i64)>("SELECT state, COUNT(*) FROM deliveries GROUP BY 1")
            .fetch_all(&self.admin)
            .await
            .unwrap()
            .into_iter()
            .collect()
    }

    /// Attempts by error class (`ok` = acknowledged).
    async fn attempt_classes(&self) -> HashMap<String, i64> {
        sqlx::query_as::<_, (String, i64)>(
            "SELECT COALESCE(error, 'ok'), COUNT(*) FROM attempts GROUP BY 1",
        )
        .fetch_all(&self.admin)
        .await
        .unwrap()
        .into_iter()
        .collect()
    }

    async fn drop_schema(self) {
        self.admin.close().await;
        let _ = blockhook_store::postgres::schema::drop(&self.base, &self.name).await;
    }
}

/// One `--role api` server and `workers` `--role worker` servers sharing `dir` (and so the
/// master key: the API server starts first and generates it).
async fn cluster(
    dir: &Path,
    schema: &Schema,
    conf: &Conf,
    workers: usize,
) -> (Server, Vec<Server>) {
    let mut api = Server::start_with(
        dir,
        "api",
        free_port(),
        schema.backend(),
        conf,
        &["--role", "api"],
        &[],
    );
    api.ready().await;
    let mut ws = Vec::new();
    for i in 0..workers {
        ws.push(Server::start_with(
            dir,
            &format!("worker{i}"),
            free_port(),
            schema.backend(),
            conf,
            &["--role", "worker"],
            &[],
        ));
    }
    for w in &mut ws {
        w.ready().await;
    }
    (api, ws)
}

/// `ENDPOINTS` receivers, each the one endpoint of its own merchant; returns the merchant ids.
async fn endpoints(api: &Api, behaviour: Behaviour) -> (Vec<Receiver>, Vec<String>) {
    let mut rxs = Vec::new();
    let mut merchants = Vec::new();
    for i in 0..ENDPOINTS {
        let rx = Receiver::start(behaviour).await;
        let m = api.merchant(&format!("scale-{i}")).await;
        api.endpoint(&m, &rx.url()).await;
        rxs.push(rx);
        merchants.push(m);
    }
    (rxs, merchants)
}

/// Publishes `total` events in batches of `BATCH` (batch `b` to merchant `b % ENDPOINTS`) from
/// `tasks` concurrent tasks, retrying refused batches (idempotency keys make retries safe).
/// Returns, per merchant index, the acknowledged event ids, and the refusals.
fn ingest(
    api: &Api,
    merchants: &[String],
    total: u64,
    tasks: u64,
) -> tokio::task::JoinHandle<(Vec<Vec<String>>, u64)> {
    let (api, merchants) = (api.clone(), merchants.to_vec());
    tokio::spawn(async move {
        let acked = Arc::new(Mutex::new(vec![Vec::<String>::new(); merchants.len()]));
        let refused = Arc::new(AtomicUsize::new(0));
        let batches = total.div_ceil(BATCH);
        let mut handles = Vec::new();
        for t in 0..tasks {
            let (api, merchants, acked, refused) = (
                api.clone(),
                merchants.clone(),
                acked.clone(),
                refused.clone(),
            );
            handles.push(tokio::spawn(async move {
                for b in (t..batches).step_by(tasks as usize) {
                    let m = (b as usize) % merchants.len();
                    let seqs = b * BATCH..((b + 1) * BATCH).min(total);
                    loop {
                        match api.publish_batch(&merchants[m], seqs.clone()).await {
                            Some(ids) => {
                                acked.lock().unwrap()[m].extend(ids);
                                break;
                            }
                            None => {
                                refused.fetch_add(1, Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let acked = acked.lock().unwrap().clone();
        (acked, refused.load(Ordering::SeqCst) as u64)
    })
}

/// Waits until every receiver has seen all of its merchant's events (false after `within`).
async fn wait_delivered(rxs: &[Receiver], acked: &[Vec<String>], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    for (rx, ids) in rxs.iter().zip(acked) {
        let left = deadline.saturating_duration_since(Instant::now());
        if !rx.wait_all(ids, left).await {
            return false;
        }
    }
    true
}

/// Totals over all receivers: (unique events delivered, requests, duplicates, overlaps, lost).
fn totals(rxs: &[Receiver], acked: &[Vec<String>]) -> (usize, usize, usize, usize, usize) {
    let (mut delivered, mut requests, mut duplicates, mut overlaps, mut lost) = (0, 0, 0, 0, 0);
    for (rx, ids) in rxs.iter().zip(acked) {
        let seen = rx.seen();
        delivered += seen.len();
        requests += rx.requests();
        duplicates += seen.values().map(|n| n - 1).sum::<usize>();
        overlaps += rx.overlaps();
        lost += ids.iter().filter(|id| !seen.contains_key(*id)).count();
    }
    (delivered, requests, duplicates, overlaps, lost)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_deliver_everything_once() {
    let _serial = SERIAL.lock().await;
    let Some(schema) = Schema::create().await else {
        return;
    };
    const TOTAL: u64 = 10_000;
    let workers: usize = std::env::var("BLOCKHOOK_SCALE_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(3);
    let tmp = tempfile::tempdir().unwrap();
    let conf = Conf {
        lease: "10s",
        ..Conf::default()
    };
    let (api_srv, mut ws) = cluster(tmp.path(), &schema, &conf, workers).await;
    let api = Api::new(api_srv.base());
    let (rxs, merchants) = endpoints(
        &api,
        Behaviour::Ok {
            min_ms: 0,
            max_ms: 2,
        },
    )
    .await;

    let started = Instant::now();
    let (acked, refused) = ingest(&api, &merchants, TOTAL, 4).await.unwrap();
    let ingest_secs = started.elapsed().as_secs_f64();
    assert_eq!(refused, 0, "the happy path refuses nothing");
    assert_eq!(acked.iter().map(Vec::len).sum::<usize>() as u64, TOTAL);
    let all_in = wait_delivered(&rxs, &acked, Duration::from_secs(120)).await;
    let secs = started.elapsed().as_secs_f64();
    let settled = schema.settle(Duration::from_secs(20)).await;
    let attempts = schema.count("SELECT COUNT(*) FROM attempts").await;
    let states = schema.states().await;
    let classes = schema.attempt_classes().await;
    for w in &mut ws {
        assert!(w.exited().is_none(), "a worker died");
    }

    let (delivered, requests, duplicates, overlaps, lost) = totals(&rxs, &acked);
    let rate = delivered as f64 / secs;
    ledger(&format!(
        "scale_out[{workers} workers + api, {ENDPOINTS} endpoints]: events={TOTAL} delivered={delivered} \
         requests={requests} attempts_logged={attempts} duplicates={duplicates} overlaps={overlaps} \
         lost={lost} store={states:?} attempts={classes:?}"
    ));
    eprintln!(
        "scale_out: {workers} workers: ingest {TOTAL} events in {ingest_secs:.1} s; all delivered \
         after {secs:.1} s = {rate:.0} delivered events/s (SQL statements per delivered event: \
         not measured, the store's statement counter is not exported in /metrics)"
    );
    assert!(all_in && lost == 0, "{lost} events never arrived");
    assert_eq!(delivered as u64, TOTAL);
    assert_eq!(overlaps, 0, "concurrent attempts of one delivery");
    assert!(settled, "deliveries still pending: {states:?}");
    assert_eq!(states.get("succeeded").copied(), Some(TOTAL as i64));
    assert_eq!(
        attempts, requests as i64,
        "attempt log must balance with the requests the receivers saw"
    );
    drop((api_srv, ws));
    schema.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_leases_are_taken_over() {
    let _serial = SERIAL.lock().await;
    let Some(schema) = Schema::create().await else {
        return;
    };
    const TOTAL: u64 = 3_000;
    const KILL_AFTER: usize = 600;
    let tmp = tempfile::tempdir().unwrap();
    let conf = Conf {
        lease: "3s",
        ..Conf::default()
    };
    let (api_srv, mut ws) = cluster(tmp.path(), &schema, &conf, 3).await;
    let api = Api::new(api_srv.base());
    let (rxs, merchants) = endpoints(
        &api,
        Behaviour::Ok {
            min_ms: 10,
            max_ms: 40,
        },
    )
    .await;

    let started = Instant::now();
    let ingesting = ingest(&api, &merchants, TOTAL, 2);
    let deadline = Instant::now() + Duration::from_secs(60);
    while rxs.iter().map(Receiver::requests).sum::<usize>() < KILL_AFTER {
        assert!(Instant::now() < deadline, "deliveries never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let in_flight_at_kill: usize = rxs.iter().map(Receiver::in_flight).sum();
    ws[0].kill();
    let kill_ms = now_ms();
    // Deliveries leased at the kill: the dead worker's stay leased until their lease expires.
    let leased: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM deliveries WHERE state = 'pending' AND lease_until > $1",
    )
    .bind(kill_ms)
    .fetch_all(&schema.admin)
    .await
    .unwrap();

    let (acked, refused) = ingesting.await.unwrap();
    assert_eq!(acked.iter().map(Vec::len).sum::<usize>() as u64, TOTAL);
    let all_in = wait_delivered(&rxs, &acked, Duration::from_secs(60)).await;
    let secs = started.elapsed().as_secs_f64();
    let settled = schema.settle(Duration::from_secs(20)).await;
    let states = schema.states().await;
    let classes = schema.attempt_classes().await;
    // Leased at the kill, yet first attempted (or attempted again) once the lease had run out:
    // taken over by a surviving worker.
    let taken_over: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT delivery_id) FROM attempts WHERE delivery_id = ANY($1) AND started_at >= $2",
    )
    .bind(&leased)
    .bind(kill_ms + 2_500)
    .fetch_one(&schema.admin)
    .await
    .unwrap();
    let attempts = schema.count("SELECT COUNT(*) FROM attempts").await;
    for w in ws.iter_mut().skip(1) {
        assert!(w.exited().is_none(), "a surviving worker died");
    }

    let (delivered, requests, duplicates, overlaps, lost) = totals(&rxs, &acked);
    ledger(&format!(
        "scale_out_kill[3 workers, 1 SIGKILLed, lease 3s]: events={TOTAL} delivered={delivered} \
         requests={requests} attempts_logged={attempts} duplicates={duplicates} overlaps={overlaps} \
         lost={lost} leased_at_kill={} taken_over_after_expiry={taken_over} \
         receiver_in_flight_at_kill={in_flight_at_kill} refused={refused} secs={secs:.1} store={states:?} attempts={classes:?}",
        leased.len()
    ));
    assert!(all_in && lost == 0, "{lost} events never arrived");
    assert!(settled, "deliveries still pending: {states:?}");
    assert_eq!(states.get("succeeded").copied(), Some(TOTAL as i64));
    assert!(
        taken_over > 0,
        "no leased delivery was taken over after the lease expired"
    );
    // Requests the dead worker had sent but not recorded are in no attempt row.
    assert!(attempts <= requests as i64);
    drop((api_srv, ws));
    schema.drop_schema().await;
}

/// Statuses seen while probing the servers; what must never happen is collected in `bad`.
#[derive(Default)]
struct Probe {
    statuses: Mutex<HashMap<u16, usize>>,
    bad: Mutex<Vec<String>>,
}

impl Probe {
    async fn check(&self, what: &str, r: reqwest::Result<reqwest::Response>) {
        match r {
            Ok(r) => {
                let status = r.status().as_u16();
                *self.statuses.lock().unwrap().entry(status).or_default() += 1;
                let problem = r
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("application/problem+json"));
                if status == 503 && !problem {
                    self.bad
                        .lock()
                        .unwrap()
                        .push(format!("{what}: 503 without problem+json"));
                } else if status >= 500 && status != 503 {
                    let body = r.text().await.unwrap_or_default();
                    self.bad
                        .lock()
                        .unwrap()
                        .push(format!("{what}: {status} {body}"));
                }
            }
            Err(e) => self.bad.lock().unwrap().push(format!("{what}: {e}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_survive_terminated_connections() {
    let _serial = SERIAL.lock().await;
    let Some(schema) = Schema::create().await else {
        return;
    };
    const TOTAL: u64 = 3_000;
    const TERMINATE_AFTER: usize = 500;
    let tmp = tempfile::tempdir().unwrap();
    let (mut api_srv, mut ws) = cluster(tmp.path(), &schema, &Conf::default(), 2).await;
    let api = Api::new(api_srv.base());
    let (rxs, merchants) = endpoints(
        &api,
        Behaviour::Ok {
            min_ms: 5,
            max_ms: 20,
        },
    )
    .await;

    // Probe every server's /readyz and the API's reads until the run is over.
    let probe = Arc::new(Probe::default());
    let done = Arc::new(AtomicBool::new(false));
    let prober = {
        let bases: Vec<String> = std::iter::once(api_srv.base())
            .chain(ws.iter().map(Server::base))
            .collect();
        let (api, probe, done, merchant) = (
            api.clone(),
            probe.clone(),
            done.clone(),
            merchants[0].clone(),
        );
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                for b in &bases {
                    let r = api.http.get(format!("{b}/readyz")).send().await;
                    probe.check(&format!("{b}/readyz"), r).await;
                }
                let r = api
                    .http
                    .get(format!("{}/v1/merchants/{merchant}", api.base))
                    .bearer_auth(common::ADMIN)
                    .send()
                    .await;
                probe.check("GET merchant", r).await;
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };

    let started = Instant::now();
    let ingesting = ingest(&api, &merchants, TOTAL, 2);
    let deadline = Instant::now() + Duration::from_secs(60);
    while rxs.iter().map(Receiver::requests).sum::<usize>() < TERMINATE_AFTER {
        assert!(Instant::now() < deadline, "deliveries never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Only the servers' sessions: they carry this schema's unique application_name.
    let killer = PgPool::connect(&schema.base).await.unwrap();
    let mut terminated = Vec::new();
    for _ in 0..3 {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE pid <> pg_backend_pid() AND application_name = $1) t",
        )
        .bind(&schema.tag)
        .fetch_one(&killer)
        .await
        .unwrap();
        terminated.push(n);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    killer.close().await;

    let (acked, refused) = ingesting.await.unwrap();
    assert_eq!(acked.iter().map(Vec::len).sum::<usize>() as u64, TOTAL);
    let all_in = wait_delivered(&rxs, &acked, Duration::from_secs(60)).await;
    let settled = schema.settle(Duration::from_secs(30)).await;
    let secs = started.elapsed().as_secs_f64();
    done.store(true, Ordering::SeqCst);
    prober.await.unwrap();
    let states = schema.states().await;
    let classes = schema.attempt_classes().await;
    let alive = api_srv.exited().is_none() && ws.iter_mut().all(|w| w.exited().is_none());

    let (delivered, requests, duplicates, overlaps, lost) = totals(&rxs, &acked);
    let statuses = probe.statuses.lock().unwrap().clone();
    let bad = probe.bad.lock().unwrap().clone();
    ledger(&format!(
        "scale_out_terminate[api + 2 workers, 3 rounds]: events={TOTAL} delivered={delivered} \
         requests={requests} duplicates={duplicates} overlaps={overlaps} lost={lost} \
         sessions_terminated={terminated:?} ingest_refused={refused} probe_statuses={statuses:?} \
         probe_violations={} secs={secs:.1} store={states:?} attempts={classes:?}",
        bad.len()
    ));
    assert!(alive, "a server process died");
    assert!(bad.is_empty(), "unexpected answers: {bad:?}");
    assert!(
        terminated[0] > 0,
        "no server session found to terminate: {terminated:?}"
    );
    assert!(all_in && lost == 0, "{lost} events never arrived");
    assert!(settled, "deliveries still pending: {states:?}");
    assert_eq!(states.get("succeeded").copied(), Some(TOTAL as i64));
    drop((api_srv, ws));
    schema.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purges_only_old_events() {
    let _serial = SERIAL.lock().await;
    let Some(schema) = Schema::create().await else {
        return;
    };
    const MAX_AGE_MS: i64 = 3_000;
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(
        tmp.path(),
        "retention",
        free_port(),
        schema.backend(),
        &Conf::default(),
        &[],
        &[
            ("BLOCKHOOK_RETENTION__MAX_AGE", "3s"),
            ("BLOCKHOOK_RETENTION__INTERVAL", "500ms"),
        ],
    );
    server.ready().await;
    let api = Api::new(server.base());
    let rx = Receiver::start(Behaviour::Ok {
        min_ms: 0,
        max_ms: 0,
    })
    .await;
    let m = api.merchant("retention").await;
    api.endpoint(&m, &rx.url()).await;

    let old = api.publish_batch(&m, 0..50).await.unwrap();
    assert!(rx.wait_all(&old, Duration::from_secs(20)).await);
    let old_at = now_ms();
    tokio::time::sleep(Duration::from_millis(MAX_AGE_MS as u64 + 500)).await;
    let new = api.publish_batch(&m, 50..100).await.unwrap();
    let new_at = now_ms();
    assert!(rx.wait_all(&new, Duration::from_secs(20)).await);
    assert!(
        schema.settle(Duration::from_secs(5)).await,
        "deliveries still pending"
    );

    let count = |ids: &[String], sql: &'static str| {
        let ids = ids.to_vec();
        let admin = schema.admin.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(ids)
                .fetch_one(&admin)
                .await
                .unwrap()
        }
    };
    const PAYLOADS: &str = "SELECT COUNT(*) FROM events WHERE id = ANY($1) AND payload IS NOT NULL";
    const ATTEMPTS: &str = "SELECT COUNT(*) FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
                            WHERE d.event_id = ANY($1)";
    // The old events have been past the limit for a while: the next pass (every 500 ms) purges.
    let deadline = Instant::now() + Duration::from_secs(5);
    while count(&old, PAYLOADS).await > 0 || count(&old, ATTEMPTS).await > 0 {
        assert!(Instant::now() < deadline, "old events were not purged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (new_payloads, new_attempts) = (count(&new, PAYLOADS).await, count(&new, ATTEMPTS).await);
    let checked_age = now_ms() - new_at;
    let states = schema.states().await;
    ledger(&format!(
        "scale_out_retention[max_age 3s, interval 500ms]: old_events={} old_payloads_left=0 \
         old_attempts_left=0 new_events={} new_payloads={new_payloads} new_attempts={new_attempts} \
         new_checked_at_age_ms={checked_age} old_age_at_new_publish_ms={} store={states:?}",
        old.len(),
        new.len(),
        new_at - old_at,
    ));
    assert!(
        checked_age < MAX_AGE_MS,
        "checked too late ({checked_age} ms) to tell old from new"
    );
    assert_eq!(new_payloads, new.len() as i64, "new events lost payloads");
    assert!(new_attempts >= new.len() as i64, "new events lost attempts");
    // Retention removes payloads and attempts, never the delivery record.
    assert_eq!(states.get("succeeded").copied(), Some(100));
    assert!(server.exited().is_none());
    drop(server);
    schema.drop_schema().await;
}
