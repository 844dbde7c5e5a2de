//! Disk trouble under the embedded store: the data directory of a real `blockhook serve` (SQLite)
//! sits on a small tmpfs that fills up, or turns read-only, while events are being published.
//! Ingest must answer `503` problem+json (never a 500, never a `202` for something not stored,
//! and the process must not die), resume without a restart once the disk is usable again, and
//! every event acknowledged before, during and after must reach the loopback receiver.
//!
//! How the disk is made to fail, with nothing left behind if the test dies: the server runs under
//! `unshare -m` (a private mount namespace; the tmpfs is mounted inside it, just before `exec`), so
//! the mount exists only as long as the server process does, and is invisible to the rest of the
//! machine. The test reaches the server's files through `/proc/<pid>/root/...`, changes its
//! mounts with `nsenter -t <pid> -m mount ...`, and queries the store with the `sqlite3` shell run
//! inside the namespace.
//!
//! * `disk_full_refuses_with_503_and_resumes`: a filler file takes all free space, then is
//!   deleted.
//! * `read_only_data_directory_then_writable_again`: Linux refuses `mount -o remount,ro` while
//!   files are open for writing (the server's database, WAL and `-shm` are), so a read-only bind
//!   mount covers the data directory instead; files opened from then on are read-only. The disk
//!   is also filled for a moment, so that a write fails and the store replaces its writer
//!   connection while the directory is read-only, which is how a real read-only file system
//!   reaches the store. Once writable again, the store must not keep a read-only connection.
//!
//! Needs root (or CAP_SYS_ADMIN) to mount. Without it each test prints `skipped: ...` and returns,
//! unless `BLOCKHOOK_REQUIRE_MOUNT=1` (set by `.ci/run`), which turns the skip into a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{Api, Backend, Behaviour, Conf, Receiver, Server, free_port, ledger};
use serde_json::{Value, json};

/// The tmpfs under the data directory. The writer checkpoints once the WAL holds a quarter of the
/// free space (at least 2 MiB: `sqlite/checkpoints.rs` in the store crate), so the WAL never
/// fills the disk by itself, and a full disk is the filler's doing.
const TMPFS_SIZE: &str = "24m";

/// Whether this process may mount: tries a tmpfs in a throwaway mount namespace. `Err(why)` when
/// it may not (the caller skips, or fails under `BLOCKHOOK_REQUIRE_MOUNT=1`).
fn can_mount() -> Result<(), String> {
    let probe = tempfile::tempdir().unwrap();
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", r#"mount -t tmpfs -o size=1m tmpfs "$0""#])
        .arg(probe.path())
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "unshare -m + mount -t tmpfs failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `true` when the test may go on; prints the skip (or panics when mounting is required).
fn mount_or_skip(test: &str) -> bool {
    match can_mount() {
        Ok(()) => true,
        Err(why) if std::env::var("BLOCKHOOK_REQUIRE_MOUNT").is_ok_and(|v| v == "1") => {
            panic!("{test}: BLOCKHOOK_REQUIRE_MOUNT=1 but mounting is impossible: {why}")
        }
        Err(why) => {
            eprintln!("skipped: {test}: needs root or CAP_SYS_ADMIN to mount a tmpfs ({why})");
            false
        }
    }
}

/// A server whose data directory is a private tmpfs, and the paths to reach it.
struct DiskServer {
    server: Server,
    /// The data directory, as the server sees it.
    data: PathBuf,
    /// A second mount of the same tmpfs (server's namespace only), through which the test can
    /// still write when the data directory itself has been made read-only.
    rw: PathBuf,
}

impl DiskServer {
    async fn start(dir: &Path) -> Self {
        let (data, rw) = (dir.join("data"), dir.join("rw"));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&rw).unwrap();
        // $0 = data directory, $1 = second mount point, then the server's command line.
        let script = format!(
            r#"mount -t tmpfs -o size={TMPFS_SIZE},mode=0700 tmpfs "$0" && mount --bind "$0" "$1" && shift && exec "$@""#
        );
        let wrapper: Vec<String> = ["unshare", "-m", "sh", "-c", &script]
            .iter()
            .map(|s| (*s).to_owned())
            .chain([&data, &rw].map(|p| p.to_string_lossy().into_owned()))
            .collect();
        let mut server = Server::start_wrapped(
            dir,
            free_port(),
            Backend::Sqlite,
            &Conf::default(),
            &wrapper,
        );
        server.ready().await;
        Self { server, data, rw }
    }

    /// `path` (inside the server's namespace) as seen from the test.
    fn see(&self, path: &Path) -> PathBuf {
        let pid = self.server.pid().expect("server running");
        PathBuf::from(format!("/proc/{pid}/root")).join(path.strip_prefix("/").unwrap())
    }

    /// The data directory as seen from the test (through the server's mount namespace).
    fn view(&self) -> PathBuf {
        self.see(&self.data)
    }

    /// The tmpfs's second, always writable mount as seen from the test.
    fn rw_view(&self) -> PathBuf {
        self.see(&self.rw)
    }

    /// Runs `argv` (`mount ...`, `umount ...`) inside the server's mount namespace;
    /// `Err(stderr)` on failure.
    fn ns(&self, argv: &[&str]) -> Result<(), String> {
        let pid = self.server.pid().expect("server running").to_string();
        let out = Command::new("nsenter")
            .args(["-t", &pid, "-m", "--"])
            .args(argv)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// Runs one query on the server's store with the `sqlite3` shell, inside the server's mount
    /// namespace, and returns its output rows (`|`-separated columns). Not a sqlx connection:
    /// SQLite resolves symbolic links in a database path, and `/proc/<pid>/root` is one, so the
    /// test's own process would end up looking for the file in its own namespace.
    fn sql(&self, query: &str) -> Vec<String> {
        let pid = self.server.pid().expect("server running").to_string();
        let db = self.data.join("blockhook.db");
        let out = Command::new("nsenter")
            .args(["-t", &pid, "-m", "--", "sqlite3", "-readonly"])
            .arg(&db)
            .arg(query)
            .output()
            .expect("sqlite3 shell (Debian package `sqlite3`)");
        assert!(
            out.status.success(),
            "sqlite3 {query}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Delivery states of `merchant` with their counts.
    fn delivery_states(&self, merchant: &str) -> BTreeMap<String, i64> {
        self.sql(&format!(
            "SELECT state, COUNT(*) FROM deliveries WHERE merchant_id = '{merchant}' GROUP BY state"
        ))
        .iter()
        .filter_map(|row| row.split_once('|'))
        .map(|(state, n)| (state.to_owned(), n.parse().unwrap()))
        .collect()
    }

    /// Waits until no delivery of `merchant` is pending (false after `within`).
    async fn settle(&self, merchant: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if !self.delivery_states(merchant).contains_key("pending") {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        false
    }

    /// The distinct store errors the server logged (warnings and errors carrying an `error` or
    /// `cause` field), with how often each was logged, for the ledger.
    fn logged_store_errors(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for line in String::from_utf8_lossy(&self.server.logs()).lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let fields = &v; // events are logged flattened
            let cause = fields["cause"].as_str().or(fields["error"].as_str());
            if let Some(cause) = cause {
                let msg = fields["message"].as_str().unwrap_or_default();
                *out.entry(format!("{msg}: {cause}")).or_default() += 1;
            }
        }
        out
    }

    fn assert_alive(&mut self, when: &str) {
        if let Some(status) = self.server.exited() {
            panic!(
                "the server died {when} ({status}): {}",
                String::from_utf8_lossy(&self.server.logs())
            );
        }
    }
}

/// What one publish request got.
enum Sent {
    /// `202`: (event id, duplicate) per event.
    Acked(Vec<(String, bool)>),
    /// `503` with a problem+json body.
    Refused,
    /// Anything else (a 500, a 503 without problem+json, a transport error): always a failure.
    Other(String),
}

/// Publishes events `seqs` (one request: `/v1/events` for one, `/v1/events/batch` for more).
async fn send(api: &Api, merchant: &str, seqs: std::ops::Range<u64>) -> Sent {
    let single = seqs.end - seqs.start == 1;
    let events: Vec<Value> = seqs.map(|s| common::event(merchant, s)).collect();
    let resp = if single {
        api.post("/v1/events", &events[0]).await
    } else {
        api.post("/v1/events/batch", &json!({ "events": events }))
            .await
    };
    let r = match resp {
        Ok(r) => r,
        Err(e) => return Sent::Other(format!("transport error: {e}")),
    };
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    match status {
        202 => {
            let items = if single {
                vec![body]
            } else {
                body["data"].as_array().cloned().unwrap_or_default()
            };
            Sent::Acked(
                items
                    .iter()
                    .map(|i| {
                        (
                            i["event_id"].as_str().unwrap_or_default().to_owned(),
                            i["duplicate"].as_bool().unwrap_or(false),
                        )
                    })
                    .collect(),
            )
        }
        503 if ctype.starts_with("application/problem+json") && body["status"] == 503 => {
            Sent::Refused
        }
        _ => Sent::Other(format!("{status} {ctype} {body}")),
    }
}

/// What the background publisher has seen so far.
#[derive(Default)]
struct Tally {
    /// Event ids answered `202`, in order.
    acked: Vec<String>,
    /// Requests answered `503` problem+json.
    refused: u64,
    /// Events first refused with `503`, then answered `202` as a duplicate when retried: the
    /// refused request had stored them after all (harmless thanks to the idempotency key).
    stored_despite_503: u64,
    /// Anything else (must stay empty).
    other: Vec<String>,
}

/// Publishes events in the background (singles, with a batch of 10 every fifth request), retrying
/// a refused request with the same idempotency keys, until told to stop.
struct Publisher {
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    fn start(api: Api, merchant: String) -> Self {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (tally.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let (mut seq, mut req) = (0u64, 0u64);
            let mut retrying = false;
            while !s.load(Ordering::SeqCst) || retrying {
                req += 1;
                let n = if req % 5 == 0 { 10 } else { 1 };
                match send(&api, &merchant, seq..seq + n).await {
                    Sent::Acked(ids) => {
                        {
                            let mut t = t.lock().unwrap();
                            if retrying {
                                t.stored_despite_503 +=
                                    ids.iter().filter(|(_, dup)| *dup).count() as u64;
                            }
                            t.acked.extend(ids.into_iter().map(|(id, _)| id));
                        }
                        retrying = false;
                        seq += n;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Sent::Refused => {
                        t.lock().unwrap().refused += 1;
                        retrying = true;
                        req -= 1; // the same request again
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Sent::Other(what) => {
                        t.lock().unwrap().other.push(what);
                        retrying = true;
                        req -= 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Self { tally, stop, task }
    }

    fn acked(&self) -> usize {
        self.tally.lock().unwrap().acked.len()
    }

    fn refused(&self) -> u64 {
        self.tally.lock().unwrap().refused
    }

    /// Waits until `done(self)` or `within` passed; false on timeout.
    async fn wait(&self, within: Duration, done: impl Fn(&Self) -> bool) -> bool {
        let deadline = Instant::now() + within;
        while !done(self) {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        Arc::try_unwrap(self.tally)
            .ok()
            .expect("publisher finished")
            .into_inner()
            .unwrap()
    }
}

/// Writes zeros to `path` until the file system is full; the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let mut written = 0u64;
    // Large chunks first, then page-sized ones for the last bit of space.
    for chunk in [vec![0u8; 1 << 20], vec![0u8; 4096]] {
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
    written
}

/// The delivery side of a run: waits for every acknowledged event, then for the store to settle,
/// and returns the ledger fields plus whether the ledger balances.
async fn settle(
    ds: &DiskServer,
    rx: &Receiver,
    merchant: &str,
    tally: &Tally,
) -> (String, usize, bool) {
    let all_in = rx.wait_all(&tally.acked, Duration::from_secs(45)).await;
    let settled = ds.settle(merchant, Duration::from_secs(20)).await;
    let states = ds.delivery_states(merchant);
    let stored: i64 = ds.sql(&format!(
        "SELECT COUNT(*) FROM events WHERE merchant_id = '{merchant}'"
    ))[0]
        .parse()
        .unwrap();
    let seen = rx.seen();
    let lost = tally
        .acked
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .count();
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    let fields = format!(
        "acked={} refused_503={} stored_despite_503={} other={} events_stored={stored} \
         delivered_unique={} requests={} duplicates={duplicates} lost={lost} store={states:?}",
        tally.acked.len(),
        tally.refused,
        tally.stored_despite_503,
        tally.other.len(),
        seen.len(),
        rx.requests(),
    );
    let balanced = all_in
        && lost == 0
        && settled
        && stored == tally.acked.len() as i64
        && states.get("succeeded").copied() == Some(tally.acked.len() as i64);
    (fields, lost, balanced)
}

/// A server, a receiver, a merchant with one endpoint, and a publisher already running.
async fn setup(dir: &Path, name: &str) -> (DiskServer, Receiver, String, Publisher) {
    // Slow enough (32 requests at a time per endpoint, 200-400 ms each) for a backlog to build
    // up, so that the dispatcher's claims and attempt records hit the disk trouble too.
    let rx = Receiver::start(Behaviour::Ok {
        min_ms: 200,
        max_ms: 400,
    })
    .await;
    let ds = DiskServer::start(dir).await;
    let api = Api::new(ds.server.base());
    let merchant = api.merchant(name).await;
    api.endpoint(&merchant, &rx.url()).await;
    let publisher = Publisher::start(api, merchant.clone());
    (ds, rx, merchant, publisher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_refuses_with_503_and_resumes() {
    if !mount_or_skip("disk_full_refuses_with_503_and_resumes") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (mut ds, rx, merchant, publisher) = setup(tmp.path(), "disk full").await;
    assert!(
        publisher
            .wait(Duration::from_secs(20), |p| p.acked() >= 300)
            .await,
        "ingest never got going"
    );

    // Fill the disk while events keep coming.
    let filler = ds.view().join("filler");
    let wal = ds.view().join("blockhook.db-wal");
    let wal_size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    let wal_at_fill = wal_size();
    let acked_before_fill = publisher.acked();
    let filled = fill(&filler);
    let full_at = Instant::now();
    let refusing = publisher
        .wait(Duration::from_secs(20), |p| p.refused() >= 20)
        .await;
    ds.assert_alive("with the disk full");
    assert!(
        refusing,
        "no 503 within 20 s of filling the disk (acked since: {})",
        publisher.acked() - acked_before_fill
    );
    let time_to_503 = full_at.elapsed();
    let acked_while_full = publisher.acked() - acked_before_fill;
    // Stay full a little longer: the dispatcher, the lease keeper and the publisher all keep
    // hitting the full disk.
    tokio::time::sleep(Duration::from_secs(2)).await;
    ds.assert_alive("with the disk full");
    let refused_while_full = publisher.refused();
    let wal_when_full = wal_size();
    let readyz_while_full = reqwest::get(format!("{}/readyz", ds.server.base()))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);

    // Space returns: ingest must resume without a restart.
    std::fs::remove_file(&filler).unwrap();
    let freed_at = Instant::now();
    let acked_at_free = publisher.acked();
    let resumed = publisher
        .wait(Duration::from_secs(20), |p| p.acked() > acked_at_free)
        .await;
    let time_to_resume = freed_at.elapsed();
    assert!(
        resumed,
        "ingest did not resume within 20 s of freeing space"
    );
    assert!(
        publisher
            .wait(Duration::from_secs(20), |p| p.acked()
                >= acked_at_free + 300)
            .await,
        "ingest resumed but stalled again"
    );
    let tally = publisher.finish().await;
    ds.assert_alive("after space returned");

    let (fields, lost, balanced) = settle(&ds, &rx, &merchant, &tally).await;
    ledger(&format!(
        "disk-full[sqlite,tmpfs={TMPFS_SIZE}]: filler_bytes={filled} acked_before_fill={acked_before_fill} \
         acked_while_full={acked_while_full} first_503_after={time_to_503:.1?} refused_while_full={refused_while_full} \
         wal_bytes(at_fill/full)={wal_at_fill}/{wal_when_full} readyz_while_full={readyz_while_full} resumed_after={time_to_resume:.1?} {fields}"
    ));
    eprintln!("server log (disk full): {:#?}", ds.logged_store_errors());
    assert!(tally.other.is_empty(), "not 202/503: {:?}", tally.other);
    assert_eq!(lost, 0, "acknowledged events lost");
    assert!(balanced, "the ledger does not balance: {fields}");
    ds.assert_alive("at the end");
}

/// Reads (`GET` of a merchant's event log, and `/readyz`) from `workers` concurrent clients for
/// `during`, so that the store's pool of read connections grows (opens new connections) inside
/// the window: (2xx, 503 problem+json, anything else as text).
async fn read_load(
    api: &Api,
    merchant: &str,
    workers: usize,
    during: Duration,
) -> (u64, u64, Vec<String>) {
    let deadline = Instant::now() + during;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (api, merchant) = (api.clone(), merchant.to_owned());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut refused, mut other) = (0u64, 0u64, Vec::new());
            while Instant::now() < deadline {
                let path = if w % 2 == 0 {
                    format!("{}/v1/merchants/{merchant}/events?limit=5", api.base)
                } else {
                    format!("{}/readyz", api.base)
                };
                match api.http.get(path).bearer_auth(common::ADMIN).send().await {
                    Ok(r) if r.status().is_success() => ok += 1,
                    Ok(r)
                        if r.status() == 503
                            && r.headers().get("content-type").is_some_and(|v| {
                                v.as_bytes().starts_with(b"application/problem+json")
                            }) =>
                    {
                        refused += 1
                    }
                    Ok(r) => other.push(format!("GET {}: {}", r.url().path(), r.status())),
                    Err(e) => other.push(format!("GET: {e}")),
                }
            }
            (ok, refused, other)
        }));
    }
    let (mut ok, mut refused, mut other) = (0, 0, Vec::new());
    for t in tasks {
        let (o, r, x) = t.await.unwrap();
        ok += o;
        refused += r;
        other.extend(x);
    }
    (ok, refused, other)
}

/// The publisher's counts over a window: (acked, refused) since `from`.
fn since(p: &Publisher, from: (usize, u64)) -> (usize, u64) {
    (p.acked() - from.0, p.refused() - from.1)
}

fn mark(p: &Publisher) -> (usize, u64) {
    (p.acked(), p.refused())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_data_directory_then_writable_again() {
    if !mount_or_skip("read_only_data_directory_then_writable_again") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (mut ds, rx, merchant, publisher) = setup(tmp.path(), "read only").await;
    let api = Api::new(ds.server.base());
    assert!(
        publisher
            .wait(Duration::from_secs(20), |p| p.acked() >= 300)
            .await,
        "ingest never got going"
    );
    let data = ds.data.to_string_lossy().into_owned();

    // What an operator would type first. Linux refuses to remount a file system read-only while
    // files on it are open for writing (EBUSY), and the server keeps its database, WAL and
    // shared-memory files open for writing. So the directory is made read-only with a read-only
    // bind mount over it: every file opened from then on (a new read connection, a replacement
    // writer connection) is opened read-only, while descriptors opened before keep writing.
    let (how, remount_ro) = match ds.ns(&["mount", "-o", "remount,ro", &data]) {
        Ok(()) => ("remount", "ok".to_owned()),
        Err(e) => {
            ds.ns(&["mount", "--bind", &data, &data]).unwrap();
            ds.ns(&["mount", "-o", "remount,bind,ro", &data]).unwrap();
            let why = if e.contains("busy") {
                "EBUSY".to_owned()
            } else {
                e
            };
            ("ro-bind", format!("refused({why})"))
        }
    };
    let probe = std::fs::write(ds.view().join("probe"), b"x");
    assert_eq!(
        probe.as_ref().map_err(|e| e.raw_os_error()),
        Err(Some(30)), // EROFS
        "the data directory should be read-only"
    );

    // Phase 1, read-only: the open writer carries on; new read connections open read-only.
    let m = mark(&publisher);
    let ro_reads = read_load(&api, &merchant, 8, Duration::from_millis(1500)).await;
    let phase_ro = since(&publisher, m);
    ds.assert_alive("with the data directory read-only");
    if how == "remount" {
        assert!(
            phase_ro.1 > 0,
            "writes to a read-only file system were acknowledged"
        );
    }

    // Phase 2, read-only and full: a write fails (SQLITE_FULL), the store replaces its writer
    // connection, and the replacement can only be opened read-only. This is how a real read-only
    // condition reaches the store (a file system turned read-only by the kernel fails the open
    // descriptors' writes, and the connection opened next is read-only).
    let filler = ds.rw_view().join("filler");
    let m = mark(&publisher);
    let filled = fill(&filler);
    assert!(
        publisher
            .wait(Duration::from_secs(20), |p| p.refused() >= m.1 + 20)
            .await,
        "no 503 within 20 s of filling the disk"
    );
    let phase_full = since(&publisher, m);
    ds.assert_alive("read-only and full");

    // Phase 3, space back but still read-only: ingest must keep refusing (and not acknowledge
    // anything it cannot store).
    std::fs::remove_file(&filler).unwrap();
    let m = mark(&publisher);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let phase_ro_again = since(&publisher, m);
    ds.assert_alive("read-only with space back");

    // Phase 4, writable again: ingest, reads and deliveries must carry on without a restart.
    match how {
        "remount" => ds.ns(&["mount", "-o", "remount,rw", &data]).unwrap(),
        // Lazily: read connections opened inside the window hold files open through the
        // read-only mount, which keeps it busy; detached, it stays theirs alone.
        _ => ds.ns(&["umount", "-l", &data]).unwrap(),
    }
    std::fs::write(ds.view().join("probe"), b"x").unwrap();
    let rw_at = Instant::now();
    let m = mark(&publisher);
    let resumed = publisher
        .wait(Duration::from_secs(20), |p| p.acked() > m.0)
        .await;
    let time_to_resume = rw_at.elapsed();
    ds.assert_alive("writable again");
    assert!(
        resumed,
        "ingest did not resume within 20 s of the directory becoming writable again \
         (refused since: {}); store errors logged: {:#?}",
        publisher.refused() - m.1,
        ds.logged_store_errors()
    );
    assert!(
        publisher
            .wait(Duration::from_secs(20), |p| p.acked() >= m.0 + 300)
            .await,
        "ingest resumed but stalled again"
    );
    let rw_reads = read_load(&api, &merchant, 8, Duration::from_secs(1)).await;
    let tally = publisher.finish().await;
    ds.assert_alive("at the end");

    let (fields, lost, balanced) = settle(&ds, &rx, &merchant, &tally).await;
    ledger(&format!(
        "read-only[sqlite,{how}]: remount_ro={remount_ro} ro(acked/503)={}/{} ro+full(acked/503)={}/{} filler_bytes={filled} \
         ro+space(acked/503)={}/{} reads_ro(ok/503/other)={}/{}/{} reads_after(ok/503/other)={}/{}/{} \
         resumed_after={time_to_resume:.1?} {fields}",
        phase_ro.0,
        phase_ro.1,
        phase_full.0,
        phase_full.1,
        phase_ro_again.0,
        phase_ro_again.1,
        ro_reads.0,
        ro_reads.1,
        ro_reads.2.len(),
        rw_reads.0,
        rw_reads.1,
        rw_reads.2.len(),
    ));
    eprintln!("server log (read-only): {:#?}", ds.logged_store_errors());
    assert!(tally.other.is_empty(), "not 202/503: {:?}", tally.other);
    assert!(
        ro_reads.2.is_empty(),
        "reads while read-only: {:?}",
        ro_reads.2
    );
    assert!(
        rw_reads.1 == 0 && rw_reads.2.is_empty(),
        "reads failing once writable again: {} x 503, {:?}",
        rw_reads.1,
        rw_reads.2
    );
    assert_eq!(
        phase_ro_again.0, 0,
        "events acknowledged through a read-only writer connection"
    );
    assert_eq!(lost, 0, "acknowledged events lost");
    assert!(balanced, "the ledger does not balance: {fields}");
}
