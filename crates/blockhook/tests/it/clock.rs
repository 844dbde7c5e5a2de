//! System-time jumps seen by a real `blockhook serve` process, without touching the machine's
//! clock: the server runs under libfaketime (`LD_PRELOAD`), which shifts what the process reads
//! from `CLOCK_REALTIME` by an offset read from a file on every call (`FAKETIME_NO_CACHE=1`), so
//! the test steps the process's wall clock while it runs. `CLOCK_MONOTONIC` is left alone
//! (`FAKETIME_DONT_FAKE_MONOTONIC=1`), as in a real NTP step: the wall clock jumps, tokio's timers
//! and `Instant` do not.
//!
//! blockhook stores every schedule as absolute wall-clock milliseconds (see
//! `blockhook-core/src/time.rs`), so the expected behaviour, asserted here, is:
//!
//! * `forward_clock_jump_makes_a_scheduled_retry_fire_at_once`: three events whose first attempt
//!   fails get a retry 30 s later; the wall clock then jumps +1 h; every retry fires at once (long
//!   before the 30 s have passed) and succeeds.
//! * `backward_clock_jump_delays_a_scheduled_retry_by_the_jump`: the same with a 2 s retry and a
//!   −20 s jump; every retry still fires, about 20 s late (delay ≥ the jump), and succeeds. An
//!   event published after the jump is not delayed: both its attempts happen before the old
//!   retries.
//!
//! Both end in a ledger: every event delivered exactly once after one failure, attempts logged =
//! requests the receiver saw, and the process's clock offset as stored in the attempt log (which
//! proves that the times written to the store, PostgreSQL included, come from the process's
//! clock and not from the database server's). SQLite always; PostgreSQL with
//! `BLOCKHOOK_TEST_DATABASE_URL`.
//!
//! Needs libfaketime (Debian: `libfaketime`; or `BLOCKHOOK_TEST_LIBFAKETIME=<path to .so>`):
//! without it the tests fail under `CI` and print a skip line elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::{Api, Backend, Behaviour, Conf, Receiver, Server, backends, free_port, ledger};

/// Events whose first attempt fails before the jump.
const EVENTS: u64 = 3;

/// Where Debian and a local build put the library. The thread-safe build (`MT`) comes first:
/// the server reads the clock from many threads at once, and the plain build, which re-reads
/// the offset file on every call without a lock, can hand one of them the unshifted time (seen
/// as a retry logged without the jump, on PostgreSQL, whose driver adds threads).
const LIB_PATHS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
];

fn libfaketime(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("BLOCKHOOK_TEST_LIBFAKETIME")
        .map(PathBuf::from)
        .into_iter()
        .chain(LIB_PATHS.iter().map(PathBuf::from))
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("libfaketime is required in CI (apt-get install -y libfaketime)");
        }
        eprintln!("SKIPPED {test}: libfaketime not installed (apt-get install -y libfaketime)");
    }
    found
}

/// The offset file libfaketime reads on every clock call of the server process.
struct FakeClock {
    file: PathBuf,
    lib: PathBuf,
}

impl FakeClock {
    fn new(dir: &Path, lib: PathBuf) -> Self {
        let clock = Self {
            file: dir.join("faketime.rc"),
            lib,
        };
        clock.set("+0");
        clock
    }

    /// Steps the server's wall clock to `offset` from the real one (`+3600`, `-20`: seconds).
    /// Written to a temporary file and renamed, so a read never sees half a line.
    fn set(&self, offset: &str) {
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, format!("{offset}\n")).unwrap();
        std::fs::rename(&tmp, &self.file).unwrap();
    }

    fn envs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LD_PRELOAD", self.lib.display().to_string()),
            ("FAKETIME_TIMESTAMP_FILE", self.file.display().to_string()),
            ("FAKETIME_NO_CACHE", "1".into()),
            // A real NTP step moves CLOCK_REALTIME only; tokio's timers run on CLOCK_MONOTONIC.
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
            // No shared-memory segment left behind in /dev/shm when the server is SIGKILLed.
            ("FAKETIME_DISABLE_SHM", "1".into()),
        ]
    }
}

/// One scenario: the wall-clock step and the retry delay it is measured against.
struct Jump {
    name: &'static str,
    /// libfaketime offset, seconds.
    offset: &'static str,
    offset_ms: i64,
    retry: &'static str,
    retry_ms: u128,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_clock_jump_makes_a_scheduled_retry_fire_at_once() {
    let Some(lib) = libfaketime("forward_clock_jump_makes_a_scheduled_retry_fire_at_once") else {
        return;
    };
    let jump = Jump {
        name: "+1h",
        offset: "+3600",
        offset_ms: 3_600_000,
        retry: "30s",
        retry_ms: 30_000,
    };
    for backend in backends().await {
        let r = run(backend, &jump, &lib).await;
        for (event, ms) in &r.first_to_retry_ms {
            assert!(
                *ms < jump.retry_ms,
                "{event}: retry {ms} ms after the first attempt; the +1 h jump should have made it \
                 due at once (scheduled {} ms later)",
                jump.retry_ms
            );
        }
        // The store's own timestamps carry the jump: written from the process's clock.
        assert!(
            (r.max_updated_at - r.real_ms_at_end - jump.offset_ms).abs() < 60_000,
            "deliveries.updated_at should be the process's (shifted) time: {} vs real {}",
            r.max_updated_at,
            r.real_ms_at_end
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backward_clock_jump_delays_a_scheduled_retry_by_the_jump() {
    let Some(lib) = libfaketime("backward_clock_jump_delays_a_scheduled_retry_by_the_jump") else {
        return;
    };
    let jump = Jump {
        name: "-20s",
        offset: "-20",
        offset_ms: -20_000,
        retry: "2s",
        retry_ms: 2_000,
    };
    for backend in backends().await {
        let r = run(backend, &jump, &lib).await;
        for (event, ms) in &r.first_to_retry_ms {
            // Absolute stored times: a retry due at wall time T waits until the stepped-back
            // clock reaches T again, i.e. its delay plus the jump.
            assert!(
                *ms >= 20_000,
                "{event}: retry only {ms} ms after the first attempt, despite the −20 s jump"
            );
        }
        let (fresh_first, fresh_retry) = r.fresh.expect("fresh event delivered");
        let old_retries = r.old_retry_arrivals.iter().min().copied().unwrap();
        assert!(
            fresh_first < old_retries && fresh_retry < old_retries,
            "an event published after the jump should not wait for the old retries"
        );
    }
}

/// What one run measured.
struct Run {
    /// Per event: first attempt → retry, at the receiver (real time).
    first_to_retry_ms: Vec<(String, u128)>,
    /// Arrival of each old event's retry.
    old_retry_arrivals: Vec<Instant>,
    /// Backward case: arrivals of the event published after the jump (first attempt, retry).
    fresh: Option<(Instant, Instant)>,
    max_updated_at: i64,
    real_ms_at_end: i64,
}

fn real_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

async fn run(backend: Backend, jump: &Jump, lib: &Path) -> Run {
    let label = if backend == Backend::Sqlite {
        "sqlite"
    } else {
        "postgres"
    };
    // Maps the receiver's `Instant`s to real wall-clock ms.
    let (ref_instant, ref_ms) = (Instant::now(), real_ms());
    let real_at = |t: Instant| ref_ms + i64::try_from((t - ref_instant).as_millis()).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(tmp.path(), lib.to_path_buf());
    let rx = Receiver::start(Behaviour::FailFirst { failures: 1 }).await;
    let conf = Conf {
        retry_schedule: vec![jump.retry, jump.retry],
        ..Conf::default()
    };
    let envs = clock.envs();
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut server = Server::start_with(
        tmp.path(),
        "server",
        free_port(),
        backend,
        &conf,
        &[],
        &envs,
    );
    server.ready().await;
    let api = Api::new(server.base());
    let merchant = api.merchant(&format!("clock {}", jump.name)).await;
    api.endpoint(&merchant, &rx.url()).await;
    let mut ids = Vec::new();
    for seq in 0..EVENTS {
        ids.push(api.publish(&merchant, seq).await.expect("publish"));
    }

    // Every first attempt failed and is logged, so every retry is scheduled, before the jump.
    let db = server.db().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let attempts_sql = format!(
        "SELECT COUNT(*) FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
         WHERE d.merchant_id = '{merchant}'"
    );
    while db.count(&attempts_sql).await < EVENTS as i64 {
        assert!(Instant::now() < deadline, "first attempts not logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = db.attempt_times(&merchant).await;
    let before_offset = before
        .iter()
        .map(|(_, _, started)| started - real_ms())
        .max()
        .unwrap();
    assert!(
        before_offset.abs() < 10_000,
        "before the jump the server's clock should be the real one (offset {before_offset} ms)"
    );
    assert_eq!(
        db.delivery_states(&merchant).await.get("pending").copied(),
        Some(EVENTS as i64),
        "retries scheduled"
    );

    clock.set(jump.offset);
    let jumped_at = Instant::now();
    // After a backward step, new work must not wait behind the old schedule.
    let fresh_id = if jump.offset_ms < 0 {
        Some(api.publish(&merchant, EVENTS).await.expect("publish fresh"))
    } else {
        None
    };
    let total = EVENTS + u64::from(fresh_id.is_some());
    let within = Duration::from_millis(jump.offset_ms.unsigned_abs()) + Duration::from_secs(60);
    let deadline = Instant::now() + within;
    while rx.requests() < 2 * total as usize {
        assert!(
            Instant::now() < deadline,
            "retries did not fire within {within:?}: receiver saw {} of {} requests",
            rx.requests(),
            2 * total
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        db.settle(&merchant, Duration::from_secs(30)).await,
        "deliveries still pending"
    );
    let real_ms_at_end = real_ms();

    let arrivals = rx.arrivals();
    let of = |id: &str| -> Vec<Instant> {
        arrivals
            .iter()
            .filter(|(e, _)| e == id)
            .map(|(_, t)| *t)
            .collect()
    };
    let mut first_to_retry_ms = Vec::new();
    let mut jump_to_retry_ms = Vec::new();
    let mut old_retry_arrivals = Vec::new();
    for id in &ids {
        let times = of(id);
        assert_eq!(times.len(), 2, "{id}: one failure, one retry");
        first_to_retry_ms.push((id.clone(), (times[1] - times[0]).as_millis()));
        jump_to_retry_ms.push(times[1].saturating_duration_since(jumped_at).as_millis());
        old_retry_arrivals.push(times[1]);
    }
    let fresh = fresh_id.as_ref().map(|id| {
        let times = of(id);
        assert_eq!(times.len(), 2, "{id}: one failure, one retry");
        (times[0], times[1])
    });

    // The offset of the process's clock at each retry, as the attempt log recorded it.
    let after = db.attempt_times(&merchant).await;
    let mut offsets = Vec::new();
    for id in &ids {
        let started = after
            .iter()
            .find(|(e, n, _)| e == id && *n == 2)
            .map(|(_, _, s)| *s)
            .expect("retry logged");
        let arrived = of(id)[1];
        offsets.push(started - real_at(arrived));
    }
    for off in &offsets {
        assert!(
            (off - jump.offset_ms).abs() < 10_000,
            "the server should have seen the {} jump: offset {off} ms at the retry",
            jump.name
        );
    }
    let states = db.delivery_states(&merchant).await;
    let classes = db.attempt_classes(&merchant).await;
    let logged: i64 = classes.values().sum();
    let max_updated_at = db
        .count(&format!(
            "SELECT MAX(updated_at) FROM deliveries WHERE merchant_id = '{merchant}'"
        ))
        .await;
    db.close().await;
    let seen = rx.seen();
    let duplicates: usize = seen.values().map(|n| n.saturating_sub(2)).sum();
    let fresh_ms = fresh.map(|(a, b)| {
        (
            a.saturating_duration_since(jumped_at).as_millis(),
            b.saturating_duration_since(jumped_at).as_millis(),
        )
    });
    ledger(&format!(
        "clock-jump[{label},{name}]: events={total} retry_delay={retry} \
         first_to_retry_ms={ftr:?} jump_to_retry_ms={jump_to_retry_ms:?} \
         server_clock_offset_ms_at_retry={offsets:?} fresh_event_after_jump_ms={fresh_ms:?} \
         attempts_logged={logged} by_class={classes:?} receiver_requests={requests} \
         duplicates={duplicates} overlaps={overlaps} store={states:?}",
        name = jump.name,
        retry = jump.retry,
        ftr = first_to_retry_ms
            .iter()
            .map(|(_, ms)| *ms)
            .collect::<Vec<_>>(),
        requests = rx.requests(),
        overlaps = rx.overlaps(),
    ));

    assert_eq!(
        states.get("succeeded").copied(),
        Some(total as i64),
        "every event delivered: {states:?}"
    );
    assert_eq!(states.len(), 1, "nothing pending or failed: {states:?}");
    assert_eq!(logged, rx.requests() as i64, "attempts logged = requests");
    assert_eq!(logged, 2 * total as i64, "one failure and one success each");
    assert_eq!(classes.get("bad_status").copied(), Some(total as i64));
    assert_eq!(duplicates, 0);
    assert_eq!(rx.overlaps(), 0);
    Run {
        first_to_retry_ms,
        old_retry_arrivals,
        fresh,
        max_updated_at,
        real_ms_at_end,
    }
}
