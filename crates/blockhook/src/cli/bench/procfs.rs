//! Process figures from `/proc` (no `libc`, no `unsafe`): CPU time of this process, of some of
//! its threads and of the local PostgreSQL server, and peak resident memory.

use std::path::Path;

/// Clock ticks per second of `/proc/*/stat` (`USER_HZ`, 100 on every Linux ABI in use).
const TICKS_PER_SECOND: f64 = 100.0;

/// The fields of a `stat` file after the command name, and the command name. The name (field 2)
/// may hold spaces and parentheses; fields after its last closing parenthesis are plain.
fn stat_of(path: &Path) -> Option<(String, Vec<u64>)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    // After ")": state is field 3, so utime (14), stime (15), cutime (16) and cstime (17) are
    // at 11 to 14; the state letter does not parse and is kept as 0.
    let fields = stat[close + 1..]
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    Some((comm, fields))
}

/// utime + stime (+ the reaped children's cutime + cstime with `children`), in seconds.
fn seconds(fields: &[u64], children: bool) -> Option<f64> {
    let own = fields.get(11)? + fields.get(12)?;
    let reaped = if children {
        fields.get(13)? + fields.get(14)?
    } else {
        0
    };
    Some((own + reaped) as f64 / TICKS_PER_SECOND)
}

/// User plus system CPU seconds this process used so far (`None` off Linux).
pub fn cpu_seconds() -> Option<f64> {
    seconds(&stat_of(Path::new("/proc/self/stat"))?.1, false)
}

/// CPU seconds of this process's live threads whose name starts with `prefix`, plus the main
/// thread's when `main` (`None` off Linux).
pub fn threads_cpu_seconds(prefix: &str, main: bool) -> Option<f64> {
    let pid = std::process::id().to_string();
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Some((comm, fields)) = stat_of(&task.path().join("stat")) else {
            continue;
        };
        let is_main = task.file_name().to_str() == Some(pid.as_str());
        if comm.starts_with(prefix) || (main && is_main) {
            total += seconds(&fields, false).unwrap_or(0.0);
        }
    }
    Some(total)
}

/// CPU seconds of every `postgres` process of this machine (the server and its exited
/// backends, which the postmaster reaps into its children's time), or `None` when none is
/// visible: PostgreSQL's own cost, for runs against a local server that nothing else is using.
pub fn postgres_cpu_seconds() -> Option<f64> {
    let mut total = None;
    for proc in std::fs::read_dir("/proc").ok()?.flatten() {
        let is_pid = proc
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            continue;
        }
        if let Some((comm, fields)) = stat_of(&proc.path().join("stat"))
            && comm == "postgres"
        {
            *total.get_or_insert(0.0) += seconds(&fields, true).unwrap_or(0.0);
        }
    }
    total
}

/// Peak resident set size in bytes (`VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        if cfg!(target_os = "linux") {
            assert!(cpu_seconds().is_some());
            assert!(peak_rss_bytes().is_some_and(|b| b > 0));
            // Burn a little CPU on a named thread: it shows up under its name only.
            let spin = std::thread::Builder::new()
                .name("procfs-probe".into())
                .spawn(|| {
                    // Until a clock tick is charged to it (bounded, in case it never is).
                    let started = std::time::Instant::now();
                    let mut x = 0u64;
                    loop {
                        for _ in 0..1_000_000 {
                            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
                        }
                        let own = threads_cpu_seconds("procfs-probe", false);
                        if own.is_some_and(|s| s > 0.0)
                            || started.elapsed() > std::time::Duration::from_secs(30)
                        {
                            return own;
                        }
                    }
                })
                .unwrap();
            let own = spin.join().unwrap().unwrap();
            assert!(own > 0.0, "the probe thread's CPU time is read");
            assert_eq!(threads_cpu_seconds("no-such-thread", false), Some(0.0));
        }
    }

    #[test]
    fn command_names_with_parentheses_are_skipped_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stat");
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime cutime cstime ...
        std::fs::write(&path, "42 (a (b) c) S 1 1 1 0 -1 0 0 0 0 0 7 3 20 10 0").unwrap();
        let (comm, fields) = stat_of(&path).unwrap();
        assert_eq!(comm, "a (b) c");
        assert_eq!(seconds(&fields, false), Some(0.10));
        assert_eq!(seconds(&fields, true), Some(0.40));
    }
}
