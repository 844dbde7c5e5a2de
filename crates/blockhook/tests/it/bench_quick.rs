//! `blockhook bench --quick` end to end, through the built binary: every figure is printed and
//! nothing is lost. Completeness only; speed is never asserted (this runs in debug builds on
//! shared CI machines).

use std::process::Command;

#[test]
fn quick_bench_prints_every_figure_and_loses_nothing() {
    let out = Command::new(env!("CARGO_BIN_EXE_blockhook"))
        .args(["bench", "--quick", "--events", "2000", "--timeout", "240"])
        .env("RUST_LOG", "warn")
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => panic!("cannot run blockhook bench: {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
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
