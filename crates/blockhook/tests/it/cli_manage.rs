//! The management CLI against a real `blockhook serve`: create a merchant, add an endpoint,
//! publish an event from a file, list events with `--json` (and as a table).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const ADMIN: &str = "cli-manage-admin-token-0123456789";

/// The server child, killed when the test ends however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn blockhook(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_blockhook"))
        .args(args)
        .env("BLOCKHOOK_URL", url)
        .env("BLOCKHOOK_TOKEN", ADMIN)
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Starts `blockhook serve` on a loopback port of its own with `dir` as data and working
/// directory (and `extra` flags); returns the guard and the base URL once it accepts
/// connections.
///
/// The server binds port 0 and writes the port it got (`--port-file`): a port chosen before
/// the server starts could be taken in between, and a connection that then succeeded would not
/// be to this server.
fn serve(dir: &std::path::Path, extra: &[&std::ffi::OsStr]) -> (Server, String) {
    let port_file = dir.join("listening.port");
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_blockhook"))
            .args(["serve", "--listen", "127.0.0.1:0", "--port-file"])
            .arg(&port_file)
            .arg("--data-dir")
            .arg(dir)
            .args(extra)
            .env("BLOCKHOOK_SERVER__ADMIN_TOKEN", ADMIN)
            .env("BLOCKHOOK_LOG__FILTER", "warn")
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let listen = loop {
        if let Ok(written) = std::fs::read_to_string(&port_file) {
            break written.trim().to_owned();
        }
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        TcpStream::connect(&listen).is_ok(),
        "server at {listen} does not accept"
    );
    (server, format!("http://{listen}"))
}

#[test]
fn create_merchant_endpoint_publish_and_list_events_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = serve(dir.path(), &[]);

    let merchant = json_of(&blockhook(
        &url,
        &["merchant", "create", "--name", "Acme Pay", "--json"],
    ));
    let m = merchant["id"].as_str().unwrap().to_owned();
    assert!(m.starts_with("mch_"));

    let ep = json_of(&blockhook(
        &url,
        &[
            "endpoint",
            "create",
            "--merchant",
            &m,
            "https://merchant.example/webhooks",
            "--event-type",
            "Payment",
            "--label",
            "cashier:91",
            "--ordering",
            "per_key",
            "--ordering-key-field",
            "orderNo",
            "--json",
        ],
    ));
    assert_eq!(
        ep["ordering"],
        serde_json::json!({ "mode": "per_key", "key_field": "orderNo", "on_final_failure": "continue" })
    );
    let secret = ep["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sck_"));
    assert_eq!(ep["event_types"], serde_json::json!(["Payment"]));
    // Reads never carry the secret; `endpoint secret` prints it bare.
    let ep_id = ep["id"].as_str().unwrap();
    let got = json_of(&blockhook(
        &url,
        &["endpoint", "get", "--merchant", &m, ep_id, "--json"],
    ));
    assert!(got.get("secret").is_none(), "{got}");
    let shown = blockhook(&url, &["endpoint", "secret", "--merchant", &m, ep_id]);
    assert!(shown.status.success());
    assert_eq!(String::from_utf8(shown.stdout).unwrap().trim(), secret);

    let payload = dir.path().join("order.json");
    // Not in key order, with a space and a literal serde would rewrite: read back unchanged.
    let published_bytes =
        r#"{"orderNo":"OrderNo_1","amount":"2000.00", "rate":1E-7,"status":"SUCCESS"}"#;
    std::fs::write(&payload, published_bytes).unwrap();
    let published = json_of(&blockhook(
        &url,
        &[
            "event",
            "publish",
            "--merchant",
            &m,
            "--type",
            "Payment",
            "--ordering-key",
            "A-1",
            payload.to_str().unwrap(),
            "--json",
        ],
    ));
    let event = published["event_id"].as_str().unwrap().to_owned();
    assert_eq!(published["deliveries"], 1);

    let list = json_of(&blockhook(
        &url,
        &["event", "list", "--merchant", &m, "--json"],
    ));
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![event.as_str()]);

    // The default output is a table naming the event; the payload reads back as published.
    let table = blockhook(&url, &["event", "list", "--merchant", &m]);
    assert!(table.status.success());
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(
        text.starts_with("ID") && text.contains(&event) && text.contains("Payment"),
        "{text}"
    );
    let got = json_of(&blockhook(
        &url,
        &["event", "get", "--merchant", &m, &event, "--json"],
    ));
    assert_eq!(got["payload"]["amount"], "2000.00");

    // `event get` prints the payload byte for byte; `--pretty` indents it, keys in order.
    let shown = blockhook(&url, &["event", "get", "--merchant", &m, &event]);
    let shown = String::from_utf8(shown.stdout).unwrap();
    assert!(
        shown.contains(&format!("payload:\n{published_bytes}\n")),
        "{shown}"
    );
    let pretty = blockhook(
        &url,
        &["event", "get", "--merchant", &m, &event, "--pretty"],
    );
    let pretty = String::from_utf8(pretty.stdout).unwrap();
    assert!(
        pretty.contains(
            "{\n  \"orderNo\": \"OrderNo_1\",\n  \"amount\": \"2000.00\",\n  \"rate\": 1E-7,"
        ),
        "{pretty}"
    );

    // Tables print times as ISO-8601 UTC; `--json` keeps Unix milliseconds.
    let created = got["created_at"].as_i64().unwrap();
    assert!(created > 1_600_000_000_000);
    assert!(
        shown.contains("created_at       20") && shown.contains('Z'),
        "{shown}"
    );
    assert!(!shown.contains(&created.to_string()), "{shown}");

    // `--since` takes a duration: the event is within the last hour, not before it.
    let recent = json_of(&blockhook(
        &url,
        &["event", "list", "--merchant", &m, "--since", "1h", "--json"],
    ));
    assert_eq!(recent["data"].as_array().unwrap().len(), 1);
    let later = json_of(&blockhook(
        &url,
        &["event", "list", "--merchant", &m, "--until", "1h", "--json"],
    ));
    assert_eq!(later["data"].as_array().unwrap().len(), 0);

    // The operator token has no merchant of its own: without --merchant the CLI says so.
    let no_merchant = blockhook(&url, &["event", "list"]);
    assert_eq!(no_merchant.status.code(), Some(2));
    let err = String::from_utf8_lossy(&no_merchant.stderr);
    assert!(
        err.contains("--merchant") && !err.contains("not found"),
        "{err}"
    );

    // Errors are the server's problem detail, exit code 2.
    let missing = blockhook(&url, &["endpoint", "get", "--merchant", &m, "ep_0000"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
}

/// A loopback receiver answering 500 until `healthy` is set, then 200; counts the 200s.
fn flaky_receiver(
    healthy: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ok: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> u16 {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::sync::atomic::Ordering;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let status = if healthy.load(Ordering::SeqCst) {
                ok.fetch_add(1, Ordering::SeqCst);
                "200 OK"
            } else {
                "500 Internal Server Error"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    port
}

#[test]
fn recover_wait_follows_the_redelivery_until_the_backlog_is_empty() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let healthy = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let receiver = flaky_receiver(healthy.clone(), ok.clone());
    let config = dir.path().join("blockhook.toml");
    std::fs::write(
        &config,
        "[delivery]\nallow_http = true\nallow_nets = [\"127.0.0.0/8\"]\nretry_schedule = [\"1s\"]\n\
         jitter = 0.0\nidle_poll = \"50ms\"\n[api]\nrequests_per_second = 0\n",
    )
    .unwrap();
    let (_server, url) = serve(dir.path(), &["--config".as_ref(), config.as_os_str()]);
    let merchant = json_of(&blockhook(
        &url,
        &["merchant", "create", "--name", "Flaky", "--json"],
    ));
    let m = merchant["id"].as_str().unwrap().to_owned();
    let hook = format!("http://127.0.0.1:{receiver}/hook");
    let ep = json_of(&blockhook(
        &url,
        &["endpoint", "create", "--merchant", &m, &hook, "--json"],
    ));
    let ep = ep["id"].as_str().unwrap().to_owned();
    let payload = dir.path().join("order.json");
    std::fs::write(&payload, r#"{"orderNo":"OrderNo_1"}"#).unwrap();
    for _ in 0..3 {
        json_of(&blockhook(
            &url,
            &["event", "publish", "--merchant", &m, "--type", "Payment"]
                .into_iter()
                .chain([payload.to_str().unwrap(), "--json"])
                .collect::<Vec<_>>(),
        ));
    }
    // Two attempts each (the first and one retry after 1 s), both 500: all three fail.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let backlog = json_of(&blockhook(
            &url,
            &["endpoint", "backlog", "--merchant", &m, "--json"],
        ));
        let row = &backlog[0];
        if row["failed"] == 3 && row["pending"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries did not fail: {backlog}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A dry run counts them and re-queues nothing.
    let preview = json_of(&blockhook(
        &url,
        &[
            "endpoint",
            "recover",
            "--merchant",
            &m,
            &ep,
            "--since",
            "1h",
            "--dry-run",
            "--json",
        ],
    ));
    assert_eq!(preview["requeued"], 3, "{preview}");
    assert_eq!(preview["dry_run"], true);
    let backlog = json_of(&blockhook(
        &url,
        &["endpoint", "backlog", "--merchant", &m, "--json"],
    ));
    assert_eq!(backlog[0]["failed"], 3, "{backlog}");

    healthy.store(true, Ordering::SeqCst);
    let out = blockhook(
        &url,
        &[
            "endpoint",
            "recover",
            "--merchant",
            &m,
            &ep,
            "--since",
            "1h",
            "--wait",
            "--json",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let recovered = json_of(&out);
    assert_eq!(recovered["requeued"], 3, "{recovered}");
    // `--wait` returned only once the re-queued deliveries were made.
    assert_eq!(ok.load(Ordering::SeqCst), 3);
    assert!(stderr.contains("0 pending, 0 failed"), "{stderr}");
    // Not a terminal: plain lines, no bar drawn with control sequences.
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");

    // One delivery sent again.
    let events = json_of(&blockhook(
        &url,
        &["event", "list", "--merchant", &m, "--json"],
    ));
    let event = events["data"][0]["id"].as_str().unwrap().to_owned();
    let deliveries = json_of(&blockhook(
        &url,
        &["event", "deliveries", "--merchant", &m, &event, "--json"],
    ));
    let delivery = deliveries[0]["id"].as_str().unwrap().to_owned();
    let retried = json_of(&blockhook(
        &url,
        &["event", "retry", "--merchant", &m, &delivery, "--json"],
    ));
    assert_eq!(
        retried["delivery_ids"].as_array().unwrap().len(),
        1,
        "{retried}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok.load(Ordering::SeqCst) < 4 {
        assert!(Instant::now() < deadline, "the retry was not delivered");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The server's log carries colour codes only on a terminal, and not when `NO_COLOR` is set:
/// `script` gives `serve` a pseudo-terminal, as a person running it in a shell has.
#[test]
fn logs_are_coloured_only_on_a_terminal_without_no_color() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: `script` (util-linux) is not installed");
        return;
    }
    let run = |no_color: bool, tty: bool| -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let serve = format!(
            "timeout 2 {} serve --listen 127.0.0.1:0 --data-dir {}",
            env!("CARGO_BIN_EXE_blockhook"),
            dir.path().display()
        );
        let mut cmd = if tty {
            let mut c = Command::new("script");
            c.args(["-qec", &serve, "/dev/null"]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", &format!("{serve} 2>&1")]);
            c
        };
        cmd.env_remove("NO_COLOR")
            .env("BLOCKHOOK_SERVER__ADMIN_TOKEN", ADMIN);
        if no_color {
            cmd.env("NO_COLOR", "1");
        }
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains("generated one"), "{text}");
        out.stdout
    };
    assert!(run(false, true).contains(&0x1b), "a terminal gets colour");
    assert!(!run(true, true).contains(&0x1b), "NO_COLOR is honoured");
    assert!(!run(false, false).contains(&0x1b), "a pipe gets no colour");
}

/// `event search`: by order number (table with the number of matches, and `--json`), paged
/// forwards and back, and a field that is not searchable refused with the server's reason.
#[test]
fn event_search_finds_an_order_and_pages_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = serve(dir.path(), &[]);
    let merchant = json_of(&blockhook(
        &url,
        &["merchant", "create", "--name", "Search Pay", "--json"],
    ));
    let m = merchant["id"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for order in ["OrderNo_A", "OrderNo_B", "OrderNo_B", "OrderNo_B"] {
        let file = dir.path().join("order.json");
        std::fs::write(&file, format!(r#"{{"orderNo":"{order}","amount":"1.00"}}"#)).unwrap();
        let published = json_of(&blockhook(
            &url,
            &[
                "event",
                "publish",
                "--merchant",
                &m,
                "--type",
                "Payment",
                file.to_str().unwrap(),
                "--json",
            ],
        ));
        ids.push(published["event_id"].as_str().unwrap().to_owned());
    }

    let found = json_of(&blockhook(
        &url,
        &[
            "event",
            "search",
            "--merchant",
            &m,
            "--order-no",
            "OrderNo_A",
            "--json",
        ],
    ));
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["data"][0]["id"], ids[0].as_str());
    let table = blockhook(
        &url,
        &[
            "event",
            "search",
            "--merchant",
            &m,
            "--order-no",
            "OrderNo_A",
        ],
    );
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(
        text.starts_with("ID") && text.contains(&ids[0]) && text.contains("1 match\n"),
        "{text}"
    );

    // Three B orders, two a page: forwards with --after, back with --before.
    let args = |extra: &[&str]| {
        let mut a = vec![
            "event",
            "list",
            "--merchant",
            &m,
            "--field",
            "orderNo",
            "--value",
            "OrderNo_B",
            "--limit",
            "2",
            "--json",
        ];
        a.extend_from_slice(extra);
        json_of(&blockhook(&url, &a))
    };
    let page_ids = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let p1 = args(&[]);
    assert_eq!(p1["total"], 3);
    assert_eq!(page_ids(&p1), vec![ids[3].clone(), ids[2].clone()]);
    let p2 = args(&["--after", p1["next"].as_str().unwrap()]);
    assert_eq!(page_ids(&p2), vec![ids[1].clone()]);
    let back = args(&["--before", p2["prev"].as_str().unwrap()]);
    assert_eq!(page_ids(&back), page_ids(&p1));

    let refused = blockhook(
        &url,
        &[
            "event",
            "search",
            "--merchant",
            &m,
            "--field",
            "amount",
            "--value",
            "1.00",
        ],
    );
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("422") && err.contains("searchable fields: orderNo"),
        "{err}"
    );
}
