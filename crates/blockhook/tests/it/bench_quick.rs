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

/// `--rate`: the bare requests run again at the offered rate, then the durable floor (one
/// event-sized row committed alone per event) at that rate, and both are printed beside the
/// server's CPU per event, with their sum, as the floor a run at that rate is read against.
#[test]
fn a_fixed_rate_prints_the_bare_cost_of_a_request_and_the_durable_floor_at_that_rate() {
    let stdout = bench(&[
        "--quick",
        "--events",
        "300",
        "--rate",
        "200",
        "--idempotency-keys",
    ]);
    let find = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in:\n{stdout}"))
    };
    assert!(
        find("bench: ").contains(" idempotency_keys=true "),
        "{stdout}"
    );
    let bare = find("bare cpu per request at 200 requests/s:");
    assert!(
        bare.ends_with("(client and receiver, 300 requests)"),
        "{bare}"
    );
    let durable = find("durable floor per event at 200 events/s:");
    assert!(
        durable.ends_with(
            "(one event-sized row committed alone, SQLite synchronous=full, 300 commits)"
        ),
        "{durable}"
    );
    // The sum line adds the two figures printed above it.
    let ms = |line: &str, after: &str| -> f64 {
        let rest = &line[line.find(after).unwrap_or_else(|| panic!("{line}")) + after.len()..];
        rest.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no figure after {after:?} in {line}"))
    };
    let floor = find("floor per event at 200 events/s:");
    let (b, d) = (ms(bare, "requests/s: "), ms(durable, "events/s: "));
    assert!(b > 0.0 && d > 0.0, "{bare}\n{durable}");
    assert!(
        floor.starts_with(&format!(
            "floor per event at 200 events/s: {b:.3} + {d:.3} = "
        )) && floor.ends_with(" ms (bare request + durable commit)"),
        "{floor}"
    );
    // Each figure was rounded on its own, so the sum may differ from theirs in the last place.
    let sum = ms(floor, " = ");
    assert!((sum - (b + d)).abs() < 0.0015, "{floor}");
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
