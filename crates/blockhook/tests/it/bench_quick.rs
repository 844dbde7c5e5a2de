//! `blockhook bench --quick` and `--drain` end to end, through the built binary: every figure is
//! printed and nothing is lost. Completeness only; speed is never asserted (this runs in debug builds on
//! shared CI machines).

use std::process::Command;

/// Runs `blockhook bench` with `args`; its standard output, once it succeeded.
fn bench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_blockhook"))
        .arg("bench")
        .args(args)
        .env("RUST_LOG", "warn")
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => panic!("cannot run blockhook bench: {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    stdout
}

#[test]
fn quick_bench_prints_every_figure_and_loses_nothing() {
    let stdout = bench(&["--quick", "--events", "2000", "--timeout", "240"]);
    for figure in [
        "bare limit:",
        "ingest rate:",
        "delivery rate:",
        "ratio to bare limit:",
        "latency p50:",
        "latency p90:",
        "latency p99:",
        "latency max:",
        "duplicates:",
        "server cpu per event:",
        "cpu per 1000 deliveries:",
        "peak rss:",
    ] {
        assert!(stdout.contains(figure), "missing {figure:?} in:\n{stdout}");
    }
    let line = |key: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(key))
            .map(str::to_owned)
    };
    assert_eq!(line("lost:").as_deref(), Some("lost: 0"), "{stdout}");
    assert_eq!(
        line("duplicates:").as_deref(),
        Some("duplicates: 0"),
        "{stdout}"
    );
    assert!(
        line("ingest rate:").is_some_and(|l| l.contains("(2000 acknowledged")),
        "{stdout}"
    );
    assert!(
        line("delivery rate:").is_some_and(|l| l.contains("(2000 in")),
        "{stdout}"
    );
}

/// `--rate`: the bare requests run again at the offered rate, and their CPU per request is
/// printed beside the server's, as the floor a run at that rate is read against.
#[test]
fn a_fixed_rate_prints_the_bare_cost_of_a_request_at_that_rate() {
    let stdout = bench(&["--quick", "--events", "300", "--rate", "200"]);
    let bare = stdout
        .lines()
        .find(|l| l.starts_with("bare cpu per request at 200 requests/s:"))
        .unwrap_or_else(|| panic!("no bare figure at the rate in:\n{stdout}"));
    assert!(
        bare.ends_with("(client and receiver, 300 requests)"),
        "{bare}"
    );
    assert!(stdout.contains("server cpu per event:"), "{stdout}");
    assert!(stdout.lines().any(|l| l == "lost: 0"), "{stdout}");
}

/// `--drain`: every delivery is refused once during the outage and fails, the recovery
/// re-queues exactly those, and all of them arrive once, with the drain's figures printed.
#[test]
fn drain_bench_recovers_every_failed_delivery() {
    let stdout = bench(&[
        "--drain",
        "--events",
        "600",
        "--batch",
        "50",
        "--endpoints",
        "10",
        "--timeout",
        "240",
    ]);
    let line = |key: &str| stdout.lines().find(|l| l.starts_with(key)).unwrap_or("");
    assert!(
        line("outage:").contains("600 deliveries failed"),
        "{stdout}"
    );
    assert!(
        line("recovered:").starts_with("recovered: 600 deliveries re-queued"),
        "{stdout}"
    );
    assert!(
        line("drain rate:").contains("(600 delivered in"),
        "{stdout}"
    );
    assert!(!line("drain ratio to bare limit:").is_empty(), "{stdout}");
    assert_eq!(line("lost:"), "lost: 0", "{stdout}");
    assert_eq!(line("duplicates:"), "duplicates: 0", "{stdout}");
}
