//! Strict configuration through the real binary: `config check` prints the effective settings
//! with secrets redacted and fails on any unknown key or `BLOCKHOOK_*` variable; `serve`
//! refuses the same typos; `serve --listen 127.0.0.1:0 --port-file F` says where it listens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn blockhook(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_blockhook"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn config_check_prints_the_effective_settings_with_every_secret_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blockhook.toml");
    std::fs::write(
        &file,
        "[server]\nadmin_token = \"op-secret-token-0123456789\"\n\
         [store]\nurl = \"postgres://app:hunter2@127.0.0.1:5432/blockhook\"\n\
         [keys]\nmaster_key = \"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU=\"\n\
         [delivery]\nlease = \"90s\"\n",
    )
    .unwrap();
    let out = blockhook(
        &["config", "check", "--config", file.to_str().unwrap()],
        &[("BLOCKHOOK_DELIVERY__CONCURRENCY", "64")],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    for secret in [
        "op-secret-token",
        "hunter2",
        "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU=",
    ] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
    }
    assert!(stdout.contains("admin_token = \"<redacted>\""), "{stdout}");
    assert!(stdout.contains("master_key = \"<redacted>\""), "{stdout}");
    assert!(stdout.contains("postgres://app:"), "{stdout}");
    // The file and the environment both took effect.
    assert!(stdout.contains("lease = \"1m 30s\""), "{stdout}");
    assert!(stdout.contains("concurrency = 64"), "{stdout}");
}

#[test]
fn config_check_and_serve_refuse_typos_in_the_file_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blockhook.toml");
    std::fs::write(&file, "[delivery]\nleese = \"3s\"\n").unwrap();
    let path = file.to_str().unwrap();
    let out = blockhook(&["config", "check", "--config", path], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "unknown setting `leese` in [delivery] of {path}; did you mean `delivery.lease`?"
        )),
        "{err}"
    );

    std::fs::write(&file, "[delivery]\nlease = \"30s\"\n").unwrap();
    let out = blockhook(
        &["config", "check", "--config", path],
        &[("BLOCKHOOK_RETENTION__MAX_AGEX", "1d")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "environment variable BLOCKHOOK_RETENTION__MAX_AGEX is not a setting; did you mean \
             BLOCKHOOK_RETENTION__MAX_AGE?"
        ),
        "{err}"
    );

    // `serve` refuses to start on the same typo, before binding or creating anything.
    let data = dir.path().join("data");
    let out = blockhook(
        &[
            "serve",
            "--config",
            path,
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[("BLOCKHOOK_DELIVERY_LEASE", "5s")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("BLOCKHOOK_DELIVERY_LEASE is neither a setting")
            && err.contains("did you mean BLOCKHOOK_DELIVERY__LEASE?"),
        "{err}"
    );
    assert!(!data.exists(), "nothing was created");
}

/// The server child, killed when the test ends however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_on_port_zero_prints_the_bound_address_plainly_and_writes_the_port_file() {
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_blockhook"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--port-file")
            .arg(&port_file)
            .env("BLOCKHOOK_LOG__FILTER", "warn")
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = server.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("no `listening on` line");
        if line.starts_with("listening on ") {
            break line;
        }
    };
    let addr = line
        .strip_prefix("listening on http://")
        .unwrap()
        .to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{line}");
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0, "{line}");
    assert_eq!(
        std::fs::read_to_string(&port_file).unwrap().trim(),
        addr,
        "the port file holds host:port"
    );
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    use std::io::{Read, Write};
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn serve_help_points_to_the_settings_file_for_retries_timeouts_and_leases() {
    let out = blockhook(&["serve", "--help"], &[]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for word in [
        "blockhook.example.toml",
        "retry_schedule",
        "total_timeout",
        "lease",
        "config check",
    ] {
        assert!(
            help.contains(word),
            "{word} missing from serve --help:\n{help}"
        );
    }
}
