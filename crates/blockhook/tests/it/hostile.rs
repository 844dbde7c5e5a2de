//! Hostile input and hostile targets against the real binary.
//!
//! * `hostile_requests_get_a_clear_4xx`: malformed JSON, 10,000-level nesting, invalid UTF-8,
//!   duplicate keys (top level and in the payload), an oversized body and 100 KiB of headers each get a
//!   problem+json 4xx, nothing is stored, and `/readyz` stays 200. A 10,000-digit
//!   integer is accepted, stored verbatim, delivered verbatim and signed over its exact digits.
//! * `ssrf_targets_are_blocked_and_secrets_stay_sealed`: with no allowlist, endpoints at
//!   loopback, private, link-local, metadata, ULA, IPv4-mapped, decimal and octal addresses
//!   are refused at the API or end every attempt `blocked`, and no loopback listener sees a
//!   connection (only loopback listeners are used). Afterwards neither the server's log nor the
//!   SQLite files contain an endpoint secret or API key in plain text.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{ADMIN, Api, Backend, Behaviour, Conf, Receiver, Server, free_port, ledger};

async fn raw(api: &Api, path: &str, body: Vec<u8>, padding: usize) -> (u16, String, String) {
    let mut request = api
        .http
        .post(format!("{}{path}", api.base))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json");
    if padding > 0 {
        request = request.header("x-padding", "p".repeat(padding));
    }
    let r = request.body(body).send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = r.text().await.unwrap_or_default();
    (status, ct, text)
}

fn event(merchant: &str, payload: &str) -> Vec<u8> {
    format!(r#"{{"merchant_id":"{merchant}","event_type":"Payment","payload":{payload}}}"#)
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_a_clear_4xx() {
    let tmp = tempfile::tempdir().unwrap();
    let rx = Receiver::start(Behaviour::Ok {
        min_ms: 0,
        max_ms: 0,
    })
    .await;
    let mut server = Server::start(tmp.path(), free_port(), Backend::Sqlite, &Conf::default());
    server.ready().await;
    let api = Api::new(server.base());
    let m = api.merchant("hostile").await;
    let ep = api.endpoint(&m, &rx.url()).await;

    let deep = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    let mut bad_utf8 = event(&m, r#"{"a":"XX"}"#);
    let at = bad_utf8.windows(2).position(|w| w == b"XX").unwrap();
    bad_utf8[at] = 0xff;
    bad_utf8[at + 1] = 0xfe;
    let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(300 * 1024));
    let deep_batch = [b"{\"events\":[".as_slice(), &event(&m, &deep), b"]}"].concat();
    let dup_keys = format!(
        r#"{{"merchant_id":"{m}","merchant_id":"{m}","event_type":"Payment","payload":{{}}}}"#
    );
    let dup_keys = dup_keys.into_bytes();
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "malformed",
            "/v1/events",
            br#"{"merchant_id": "x", "event_type": "#.to_vec(),
        ),
        ("nested-10000", "/v1/events", event(&m, &deep)),
        ("nested-10000-batch", "/v1/events/batch", deep_batch),
        ("invalid-utf8", "/v1/events", bad_utf8),
        ("duplicate-keys", "/v1/events", dup_keys),
        (
            "duplicate-payload-keys",
            "/v1/events",
            event(&m, r#"{"amount":"1","amount":"2"}"#),
        ),
        ("oversized", "/v1/events", event(&m, &big)),
        // A valid event behind 100 KiB of request headers.
        ("oversized-headers", "/v1/events", event(&m, r#"{"a":1}"#)),
    ];
    let mut results = Vec::new();
    for (name, path, body) in cases {
        let padding = if name == "oversized-headers" {
            100 * 1024
        } else {
            0
        };
        let (status, ct, text) = raw(&api, path, body, padding).await;
        results.push(format!("{name}={status}"));
        assert!((400..500).contains(&status), "{name}: {status} {text}");
        assert!(
            ct.starts_with("application/problem+json"),
            "{name}: content-type {ct:?}"
        );
        let ready = reqwest::get(format!("{}/readyz", server.base()))
            .await
            .unwrap()
            .status();
        assert_eq!(ready, 200, "{name}: server unhealthy afterwards");
    }
    let db = server.db().await;
    let stored = db.count("SELECT COUNT(*) FROM events").await;
    ledger(&format!(
        "hostile: {} events_stored={stored}",
        results.join(" ")
    ));
    assert_eq!(stored, 0, "a rejected request stored something");

    // A 10,000-digit integer is legal JSON: stored, delivered and signed exactly as sent.
    let digits: String = (0..10_000)
        .map(|i| char::from(b'1' + (i % 9) as u8))
        .collect();
    let payload = format!(r#"{{"orderNo":"huge","amount":{digits}}}"#);
    let (status, _, text) = raw(&api, "/v1/events", event(&m, &payload), 0).await;
    assert_eq!(status, 202, "{text}");
    let id = serde_json::from_str::<Value>(&text).unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        rx.wait_all(std::slice::from_ref(&id), Duration::from_secs(20))
            .await,
        "huge number not delivered"
    );
    let stored = db
        .bytes(&format!("SELECT payload FROM events WHERE id = '{id}'"))
        .await;
    assert_eq!(stored, payload.as_bytes(), "stored payload differs");
    let (headers, body) = rx.bodies().into_iter().next().unwrap();
    assert_eq!(body, payload.as_bytes(), "delivered body differs");
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let time: u64 = header("blockatm-request-time").parse().unwrap();
    let secret = ep["secret"].as_str().unwrap();
    let expected = blockhook_sig::sign(
        secret.as_bytes(),
        blockhook_sig::Mode::Sorted,
        payload.as_bytes(),
        time,
    )
    .unwrap();
    assert_eq!(
        header("blockatm-signature-v2"),
        expected.to_hex(),
        "signature not over the exact digits"
    );
    ledger("hostile: 10000-digit integer stored=verbatim delivered=verbatim signature=valid");
    db.close().await;
}

/// A listener that only counts connections (for addresses `Receiver` does not bind).
async fn counting_listener(addr: &str) -> Option<(u16, Arc<AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind(addr).await.ok()?;
    let port = listener.local_addr().ok()?.port();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((_tcp, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
        }
    });
    Some((port, count))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssrf_targets_are_blocked_and_secrets_stay_sealed() {
    let tmp = tempfile::tempdir().unwrap();
    let rx = Receiver::start(Behaviour::Ok {
        min_ms: 0,
        max_ms: 0,
    })
    .await;
    let v6 = counting_listener("[::1]:0").await;
    let conf = Conf {
        allow_loopback: false,
        retry_schedule: vec![],
        ..Conf::default()
    };
    let mut server = Server::start(tmp.path(), free_port(), Backend::Sqlite, &conf);
    server.ready().await;
    let api = Api::new(server.base());
    let m = api.merchant("ssrf").await;

    let p = rx.addr.port();
    let p6 = v6.as_ref().map_or(p, |(port, _)| *port);
    let targets = [
        format!("http://127.0.0.1:{p}/hook"),
        format!("http://localhost:{p}/hook"),
        format!("http://[::1]:{p6}/hook"),
        format!("http://10.0.0.1:{p}/hook"),
        format!("http://172.16.0.1:{p}/hook"),
        format!("http://192.168.1.1:{p}/hook"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("http://[fd00::1]:{p}/hook"),
        format!("http://[::ffff:127.0.0.1]:{p}/hook"),
        format!("http://2130706433:{p}/hook"),
        format!("http://0177.0.0.1:{p}/hook"),
    ];
    let mut secrets = Vec::new();
    let (mut refused_at_api, mut created) = (Vec::new(), 0);
    for url in &targets {
        let r = api
            .post(
                &format!("/v1/merchants/{m}/endpoints"),
                &json!({ "url": url }),
            )
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        match status {
            201 => {
                created += 1;
                secrets.push(v["secret"].as_str().unwrap().to_owned());
            }
            400..=499 => refused_at_api.push(format!("{url}={status}")),
            other => panic!("{url}: unexpected {other} {v}"),
        }
    }
    let id = api.publish(&m, 1).await.unwrap();
    let db = server.db().await;
    assert!(
        db.settle(&m, Duration::from_secs(20)).await,
        "deliveries still pending"
    );
    let states = db.delivery_states(&m).await;
    let classes = db.attempt_classes(&m).await;

    // An API key, issued and used once, so that it passes through the server.
    let r = api
        .post(&format!("/v1/merchants/{m}/api-keys"), &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "issue api key");
    let key = r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let used = api
        .http
        .post(format!("{}/v1/events", api.base))
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_ne!(used.status(), 401, "the API key was not accepted");
    secrets.push(key);
    db.close().await;
    server.kill(); // flush nothing on purpose: what is on disk is what a thief would get

    let v6_conns = v6.as_ref().map_or(0, |(_, c)| c.load(Ordering::SeqCst));
    ledger(&format!(
        "ssrf: targets={} refused_at_api=[{}] endpoints_created={created} event={id} store={states:?} \
         attempts_by_class={classes:?} loopback_connections={} v6_connections={v6_conns}",
        targets.len(),
        refused_at_api.join(" "),
        rx.connections(),
    ));
    assert_eq!(
        states.get("failed").copied().unwrap_or(0),
        created,
        "{states:?}"
    );
    assert_eq!(
        classes.keys().collect::<Vec<_>>(),
        vec!["blocked"],
        "{classes:?}"
    );
    assert_eq!(
        classes["blocked"], created,
        "one blocked attempt per endpoint"
    );
    assert_eq!(
        rx.connections() + v6_conns,
        0,
        "a refused address was connected to"
    );

    // Secrets at rest and in logs.
    let mut haystacks = vec![("server log".to_owned(), server.logs())];
    for entry in std::fs::read_dir(tmp.path().join("data")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("blockhook.db") {
            haystacks.push((name, std::fs::read(&path).unwrap()));
        }
    }
    let mut leaks = Vec::new();
    for secret in &secrets {
        for (name, bytes) in &haystacks {
            if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                leaks.push(format!("{}… in {name}", &secret[..8.min(secret.len())]));
            }
        }
    }
    let files: Vec<&str> = haystacks.iter().map(|(n, _)| n.as_str()).collect();
    ledger(&format!(
        "secrets: checked={} files={files:?} leaks={}",
        secrets.len(),
        leaks.len()
    ));
    assert!(leaks.is_empty(), "secrets in plain text: {leaks:?}");
}
