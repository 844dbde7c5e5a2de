//! The documentation runs as written. Every shell block (```sh, ```bash, ```shell) of README.md,
//! docs/walkthrough.md and docs/receiving-webhooks.md is extracted in order and run in one
//! `bash` session with `set -euo pipefail`, in a fresh temporary directory, with the built
//! `blockhook` on `PATH` and no `BLOCKHOOK_*` variable inherited: what a reader pasting the
//! blocks into a new shell gets. The first block that exits non-zero, or whose stated outcome
//! does not appear, fails the test with the block's place in the file and the shell's output.
//!
//! HTML comments (invisible on the rendered page) tell the runner what the prose tells a reader:
//! - `<!-- doc-test: skip: why -->` before a fence: an example not meant to run as it is
//!   (placeholders, a foreground server). The reason is required.
//! - `<!-- doc-test: instead: cmd -->` before a fence: run `cmd` in its place (the README's
//!   foreground `serve`, started in the background as a reader's second terminal would).
//! - `<!-- doc-test: path: name -->` before a fence: one of several alternatives (the CLI or
//!   curl). The document is run once per path; a pass runs the blocks of no path and its own.
//! - `<!-- doc-test: expect: text -->` after a fence: `text` must appear in what the shell
//!   printed (background processes included) since the block began, within 20 s.
//! - `<!-- doc-test: wait: cmd -->` after a fence: `cmd` is retried in the same shell until it
//!   succeeds (20 s), as a reader waits for a delivery before looking at it.
//!
//! The blocks need `curl`, `jq` and `openssl`, as the docs say. Without them the test says it
//! was skipped, unless `BLOCKHOOK_REQUIRE_DOCS` is set (CI sets it and installs them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The documents share ports (8080, 8090, 9000): one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The longest one pass of a document may take.
const PASS_LIMIT: Duration = Duration::from_secs(180);

/// A fenced shell block and what the comments around it say.
#[derive(Debug, Default, Clone)]
struct Block {
    /// `file:line` of the opening fence.
    place: String,
    code: String,
    skip: Option<String>,
    instead: Option<String>,
    path: Option<String>,
    expect: Vec<String>,
    wait: Vec<String>,
}

/// The shell blocks of a Markdown text, with their markers; panics on a malformed marker.
fn blocks(file: &str, text: &str) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    let mut pending = Block::default();
    let mut fence: Option<(bool, Block)> = None;
    for (n, line) in text.lines().enumerate() {
        let place = format!("{file}:{}", n + 1);
        if let Some((shell, block)) = fence.as_mut() {
            if line.trim_start().starts_with("```") {
                if *shell {
                    out.push(std::mem::take(block));
                }
                fence = None;
            } else {
                block.code.push_str(line);
                block.code.push('\n');
            }
            continue;
        }
        if let Some(lang) = line.trim_start().strip_prefix("```") {
            let shell = matches!(lang.trim(), "sh" | "bash" | "shell");
            let mut block = std::mem::take(&mut pending);
            assert!(
                shell || (block.skip.is_none() && block.instead.is_none() && block.path.is_none()),
                "{place}: a doc-test marker before a fence that is not a shell block"
            );
            block.place = place;
            fence = Some((shell, block));
            continue;
        }
        let Some(marker) = line
            .trim()
            .strip_prefix("<!-- doc-test:")
            .and_then(|m| m.strip_suffix("-->"))
        else {
            continue;
        };
        let (verb, arg) = marker.trim().split_once(':').unwrap_or((marker.trim(), ""));
        let arg = arg.trim().to_owned();
        assert!(
            !arg.is_empty(),
            "{place}: doc-test marker `{verb}` needs a text"
        );
        match verb.trim() {
            "skip" => pending.skip = Some(arg),
            "instead" => pending.instead = Some(arg),
            "path" => pending.path = Some(arg),
            // Outcomes belong to the block just closed.
            "expect" | "wait" => {
                let last = out
                    .last_mut()
                    .unwrap_or_else(|| panic!("{place}: `{verb}` before any shell block"));
                if verb.trim() == "expect" {
                    last.expect.push(arg);
                } else {
                    last.wait.push(arg);
                }
            }
            other => panic!("{place}: unknown doc-test marker `{other}`"),
        }
    }
    assert!(fence.is_none(), "{file}: a fence is never closed");
    out
}

/// Quotes `s` for bash, single quotes.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The bash script of one pass: the blocks of no path and of `path`, in order, each announced
/// on the output so a failure can be placed.
fn script(blocks: &[Block], path: Option<&str>, log: &Path) -> String {
    let mut s = String::new();
    s.push_str("set -euo pipefail\n");
    s.push_str(&format!("__log={}\n", quote(&log.display().to_string())));
    // Kill what the blocks started, whatever way the pass ends.
    s.push_str("trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n");
    s.push_str(
        r#"__since() { stat -c %s "$__log"; }
__expect() {
  local from=$1 text=$2
  for _ in $(seq 1 200); do
    tail -c +$((from + 1)) "$__log" | grep -qF -- "$text" && return 0
    sleep 0.1
  done
  echo "doc-test: the stated outcome never appeared: $text" >&2
  exit 97
}
__wait() {
  for _ in $(seq 1 100); do
    if ( eval "$1" ) >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "doc-test: still not true after 20 s: $1" >&2
  exit 98
}
"#,
    );
    for b in blocks {
        if b.path.as_deref().is_some_and(|p| Some(p) != path) {
            continue;
        }
        let code = match (&b.skip, &b.instead) {
            (Some(_), _) => continue,
            (None, Some(cmd)) => format!("{cmd}\n"),
            (None, None) => b.code.clone(),
        };
        s.push_str(&format!(
            "echo {}\n",
            quote(&format!("::doc-test block {}", b.place))
        ));
        s.push_str("__from=$(__since)\n");
        s.push_str(&code);
        for text in &b.expect {
            s.push_str(&format!("__expect \"$__from\" {}\n", quote(text)));
        }
        for cmd in &b.wait {
            s.push_str(&format!("__wait {}\n", quote(cmd)));
        }
    }
    s.push_str("echo '::doc-test done'\n");
    s
}

fn tools_present() -> bool {
    let missing: Vec<&str> = ["curl", "jq", "openssl"]
        .into_iter()
        .filter(|t| {
            Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {t}"))
                .stdout(Stdio::null())
                .status()
                .map_or(true, |s| !s.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("BLOCKHOOK_REQUIRE_DOCS").is_none(),
        "the documentation needs {missing:?}, and BLOCKHOOK_REQUIRE_DOCS is set"
    );
    eprintln!(
        "SKIPPED: the documentation's blocks need {missing:?}; install them to run this test"
    );
    false
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs every pass of `file` (relative to the repository) and fails on the first broken block.
fn run_doc(file: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !tools_present() {
        return;
    }
    let text = std::fs::read_to_string(repo().join(file)).unwrap();
    let blocks = blocks(file, &text);
    assert!(
        blocks.iter().any(|b| b.skip.is_none()),
        "{file}: no shell block to run"
    );
    let paths: BTreeSet<&str> = blocks.iter().filter_map(|b| b.path.as_deref()).collect();
    let passes: Vec<Option<&str>> = if paths.is_empty() {
        vec![None]
    } else {
        paths.into_iter().map(Some).collect()
    };
    for path in passes {
        run_pass(file, &blocks, path);
    }
}

fn run_pass(file: &str, blocks: &[Block], path: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join(".doc-test.log");
    let script_file = dir.path().join(".doc-test.sh");
    std::fs::write(&script_file, script(blocks, path, &log)).unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_blockhook"))
        .parent()
        .unwrap()
        .to_owned();
    let path_var = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let out = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg(&script_file)
        .current_dir(dir.path())
        .env("PATH", path_var)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("BLOCKHOOK_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > PASS_LIMIT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Whatever the blocks left running (a server, a listener) goes with the process group.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    let output = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    let last_block = output
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("::doc-test block "))
        .unwrap_or("(before the first block)")
        .to_owned();
    let pass = path.map_or(String::new(), |p| format!(" (path {p})"));
    let ok = status.is_some_and(|s| s.success()) && output.contains("::doc-test done");
    assert!(
        ok,
        "{file}{pass}: the block at {last_block} failed ({}).\n--- shell output ---\n{output}",
        status.map_or("timed out".to_owned(), |s| s.to_string())
    );
    // Nothing printed to a file or pipe carries colour codes: not the commands' output, not
    // the server's log.
    for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".log") {
            let bytes = std::fs::read(entry.path()).unwrap();
            assert!(
                !bytes.contains(&0x1b),
                "{file}{pass}: {name} holds ANSI escape codes although it is not a terminal"
            );
        }
    }
    eprintln!("{file}{pass}: every block ran ({:.1?})", started.elapsed());
}

#[test]
fn readme_runs_as_written() {
    run_doc("README.md");
}

#[test]
fn walkthrough_runs_as_written() {
    run_doc("docs/walkthrough.md");
}

#[test]
fn receiving_webhooks_runs_as_written() {
    run_doc("docs/receiving-webhooks.md");
}

#[test]
fn markers_are_read_and_alternatives_split_into_passes() {
    let md = "\
<!-- doc-test: skip: placeholders -->
```sh
blockhook serve --database-url postgres://user@host/db
```
```text
not run
```
<!-- doc-test: path: cli -->
```sh
A=$(echo cli)
```
<!-- doc-test: expect: cli -->
<!-- doc-test: path: curl -->
```bash
A=$(echo curl)
```
<!-- doc-test: wait: test -n \"$A\" -->
```sh
echo \"$A\"
```
";
    let b = blocks("x.md", md);
    assert_eq!(b.len(), 4);
    assert_eq!(b[0].skip.as_deref(), Some("placeholders"));
    assert_eq!(b[1].path.as_deref(), Some("cli"));
    assert_eq!(b[1].expect, vec!["cli".to_owned()]);
    assert_eq!(b[2].wait, vec!["test -n \"$A\"".to_owned()]);
    assert_eq!(b[3].place, "x.md:18");
    let log = Path::new("/tmp/x.log");
    let cli = script(&b, Some("cli"), log);
    assert!(cli.contains("A=$(echo cli)") && !cli.contains("A=$(echo curl)"));
    assert!(!cli.contains("postgres://user@host/db"));
    let curl = script(&b, Some("curl"), log);
    assert!(curl.contains("A=$(echo curl)") && !curl.contains("A=$(echo cli)"));
}

#[test]
#[should_panic(expected = "unknown doc-test marker")]
fn an_unknown_marker_is_an_error() {
    blocks("x.md", "<!-- doc-test: skipp: typo -->\n```sh\ntrue\n```\n");
}
