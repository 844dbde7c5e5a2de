//! `blockhook listen` and `blockhook send`, run as real processes talking over loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;

const BIN: &str = env!("CARGO_BIN_EXE_blockhook");
const SECRET: &str = "sck_QOoPSlHDSsgXYeNyTP2i0ug1HKLRjHw9Ug7mCc1Q0";

/// Kills the child process when the test ends, however it ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `blockhook listen` and everything it printed so far.
struct Listen {
    _child: ChildGuard,
    output: Arc<Mutex<Vec<String>>>,
    addr: String,
}

impl Listen {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .arg("listen")
            .args(["--port", "0"])
            .args(args)
            .env_remove("BLOCKATM_WEBHOOK_SECRET")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    output.lock().unwrap().push(line);
                }
            });
        }
        let mut listen = Self {
            _child: ChildGuard(child),
            output,
            addr: String::new(),
        };
        let line = listen.wait_for(|l| l.starts_with("listening on http://"));
        listen.addr = line.trim_start_matches("listening on ").to_owned();
        listen
    }

    /// The first printed line matching `pred`, waiting up to 60 s for it.
    fn wait_for(&self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(l) = self.output.lock().unwrap().iter().find(|l| pred(l)) {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "not printed; output so far:\n{}",
                self.dump()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn dump(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }
}

fn send(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("send")
        .args(["--timeout", "30"])
        .args(args)
        .env_remove("BLOCKATM_WEBHOOK_SECRET")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn describe(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The value of `> Name: value` in `send`'s printed request.
fn sent_header(o: &Output, name: &str) -> String {
    let prefix = format!("> {name}: ");
    stdout(o)
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {name} in\n{}", describe(o)))
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

#[test]
fn a_correctly_signed_webhook_is_verified_and_acknowledged() {
    let listen = Listen::start(&["--secret", "sck_other", "--secret", SECRET]);
    let url = format!("{}/webhooks/blockatm", listen.addr);
    let out = send(&["--url", &url, "--secret", SECRET, "--event", "Payment"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(stdout(&out).contains("< 200 OK"), "{}", describe(&out));

    let verdict = listen.wait_for(|l| l.trim_start().starts_with("signature:"));
    assert!(
        verdict.contains(" valid (mode sorted, secret #2 of 2)"),
        "{verdict}\n{}",
        listen.dump()
    );
    let all = listen.wait_for(|l| l.contains("\"orderNo\": \"OrderNo_202504010023\""));
    assert!(all.contains("OrderNo_202504010023"));
    let text = listen.dump();
    assert!(text.contains("POST /webhooks/blockatm"), "{text}");
    assert!(
        text.lines().any(|l| l.trim_start() == "event:     Payment"),
        "{text}"
    );
    assert!(text.contains("\"amount\": \"2000.00\""), "{text}");
    assert!(text.contains("s ago (local clock)"), "{text}");
    assert!(
        text.contains(&format!(
            "event id:  {}",
            sent_header(&out, "BlockHook-Event-Id")
        )),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.trim_start() == "attempt:   1"),
        "{text}"
    );
    assert!(text.contains("answered:  200 OK"), "{text}");

    // Each built-in sample verifies too, in raw mode as well.
    for event in ["Payout", "QR-Payment", "QR-Payout", "Refund"] {
        let out = send(&[
            "--url", &url, "--secret", SECRET, "--event", event, "--mode", "raw",
        ]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "listen expects sorted; {}",
            describe(&out)
        );
        let out = send(&["--url", &url, "--secret", SECRET, "--event", event]);
        assert_eq!(out.status.code(), Some(0), "{event}: {}", describe(&out));
    }
}

#[test]
fn a_wrong_secret_is_rejected_with_the_reason() {
    let listen = Listen::start(&["--secret", SECRET]);
    let out = send(&[
        "--url",
        &listen.addr,
        "--secret",
        "sck_wrong",
        "--event",
        "Payout",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stdout(&out).contains("< 401 Unauthorized"),
        "{}",
        describe(&out)
    );
    assert!(
        stdout(&out).contains("mismatch: signature does not match"),
        "{}",
        describe(&out)
    );
    let verdict = listen.wait_for(|l| l.trim_start().starts_with("signature:"));
    assert!(
        verdict.contains(
            "REJECTED mismatch: signature does not match: the body, the time or the secret differs"
        ),
        "{verdict}"
    );
    listen.wait_for(|l| l.contains("answered:  401 Unauthorized"));
}

#[test]
fn a_stale_time_is_rejected_with_the_skew() {
    let listen = Listen::start(&["--secret", SECRET, "--window", "60"]);
    let stale = (now_ms() - 120_000).to_string();
    let out = send(&["--url", &listen.addr, "--secret", SECRET, "--time", &stale]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stdout(&out).contains("too_old"), "{}", describe(&out));
    let verdict = listen.wait_for(|l| l.trim_start().starts_with("signature:"));
    assert!(
        verdict.contains("REJECTED too_old: BlockATM-Request-Time is 1"),
        "{verdict}"
    );
    assert!(verdict.contains("ms in the past"), "{verdict}");
}

#[test]
fn forward_relays_the_original_request_and_the_apps_answer() {
    // The developer's app: records what it received, answers 200 "app-ack".
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (tx, rx) = mpsc::channel::<(HeaderMap, Bytes)>();
    let app_addr: SocketAddr = rt.block_on(async move {
        let app = Router::new().route(
            "/app/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send((headers, body));
                    "app-ack"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    });

    let forward = format!("http://{app_addr}/app/hook");
    let listen = Listen::start(&["--secret", SECRET, "--mode", "raw", "--forward", &forward]);
    // Raw mode signs the exact bytes: any change on the way would break the app's check.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.json");
    let body = " {\n\t\"b\" : 1.50 ,\r\n \"orderNo\":\"OrderNo_X\",\"memo\":\"caf\\u00e9\" }\n";
    std::fs::write(&file, body).unwrap();
    let url = format!("{}/anything", listen.addr);
    let out = send(&[
        "--url",
        &url,
        "--secret",
        SECRET,
        "--mode",
        "raw",
        "--event",
        "Payment",
        "--header",
        "X-Custom: kept",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(stdout(&out).contains("app-ack"), "{}", describe(&out));

    let (headers, received) = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(received.as_ref(), body.as_bytes());
    for name in [
        "BlockATM-Signature-V2",
        "BlockATM-Request-Time",
        "BlockATM-Event",
        "BlockHook-Event-Id",
        "BlockHook-Attempt",
    ] {
        assert_eq!(
            headers.get(name).unwrap().to_str().unwrap(),
            sent_header(&out, name),
            "{name}"
        );
    }
    assert_eq!(headers.get("x-custom").unwrap(), "kept");
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    assert_eq!(
        headers.get("host").unwrap().to_str().unwrap(),
        app_addr.to_string()
    );

    let verdict = listen.wait_for(|l| l.trim_start().starts_with("signature:"));
    assert!(verdict.contains(" valid (mode raw"), "{verdict}");
    let fwd = listen.wait_for(|l| l.trim_start().starts_with("forwarded:"));
    assert!(fwd.contains(&format!("POST {forward} -> 200 OK")), "{fwd}");
    // The literal `1.50` is printed as received.
    listen.wait_for(|l| l.contains("\"b\": 1.50,"));
    drop(rt);
}

#[test]
fn send_exits_2_when_the_receiver_is_unreachable() {
    let port = crate::common::free_port();
    let out = send(&[
        "--url",
        &format!("http://127.0.0.1:{port}/"),
        "--secret",
        SECRET,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("POST http://127.0.0.1"),
        "{}",
        describe(&out)
    );
    let out = send(&["--url", "not a url", "--secret", SECRET]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}
