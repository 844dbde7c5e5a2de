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

#[test]
fn create_merchant_endpoint_publish_and_list_events_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    // `--listen 127.0.0.1:0` would not tell us the port: take a free one first.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_blockhook"))
            .args(["serve", "--listen", &listen, "--data-dir"])
            .arg(dir.path())
            .env("BLOCKHOOK_SERVER__ADMIN_TOKEN", ADMIN)
            .env("BLOCKHOOK_LOG__FILTER", "warn")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&listen).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("http://{listen}");

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
            "--json",
        ],
    ));
    assert!(ep["secret"].as_str().unwrap().starts_with("sck_"));
    assert_eq!(ep["event_types"], serde_json::json!(["Payment"]));

    let payload = dir.path().join("order.json");
    std::fs::write(
        &payload,
        r#"{"orderNo":"OrderNo_1","amount":"2000.00","status":"SUCCESS"}"#,
    )
    .unwrap();
    let published = json_of(&blockhook(
        &url,
        &[
            "event",
            "publish",
            "--merchant",
            &m,
            "--type",
            "Payment",
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

    // Errors are the server's problem detail, exit code 2.
    let missing = blockhook(&url, &["endpoint", "get", "--merchant", &m, "ep_0000"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
}
