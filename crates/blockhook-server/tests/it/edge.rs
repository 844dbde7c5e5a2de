//! The HTTP edge against hostile clients, with real sockets on loopback: slow headers, slow
//! bodies (past the deadline, below the minimum rate), connection floods past the per-address
//! and the total cap, an HTTP/2 client opening streams without end or sending too large a
//! header list; and HTTPS served by blockhook with a CA made here (HTTP/2 by ALPN, the
//! dashboard signed in, a certificate swapped on disk picked up with and without SIGHUP while
//! an open connection lives on, TLS 1.2 and 1.3, an expired certificate refused at start).
//! Timings are printed, never asserted: speed is measured by benchmarks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use blockhook_server::config::Settings;
use blockhook_server::startup::Application;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::helpers::Backend;
use crate::helpers::{ADMIN, TestApp};

/// Reads until the server closes the connection (or `within` passes); returns what was read
/// and whether it closed.
async fn read_until_closed(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    within: Duration,
) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics_text(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_connections_are_closed_by_the_header_timeout() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        // Long enough to open all 3000 and count them on a busy machine before the first is cut.
        s.server.header_read_timeout = Duration::from_secs(5);
        s.server.max_connections_per_ip = 0;
    })
    .await;
    let addr = app.addr();
    let mut conns = Vec::new();
    for _ in 0..3000 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        conns.push(c);
    }
    // The kernel completes a connect before the server accepts it: wait for the accept loop.
    let mut open = 0.0;
    for _ in 0..100 {
        open = metric(
            &metrics_text(&app.base).await,
            "blockhook_http_connections_open",
        );
        if open >= 3000.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(open >= 3000.0, "{open} connections open");
    // One more header line on each, the headers still unfinished: bytes that keep arriving do
    // not extend the timeout, which runs from each request's first byte.
    let started = Instant::now();
    let mut closed = 0;
    let results = futures::future::join_all(conns.iter_mut().map(|c| async move {
        let _ = c.write_all(b"X-Slow: 1\r\n").await;
        read_until_closed(c, Duration::from_secs(20)).await.1
    }))
    .await;
    closed += results.iter().filter(|c| **c).count();
    assert_eq!(closed, 3000, "every slow-header connection is closed");
    eprintln!(
        "3000 slow-header connections closed within {:?}",
        started.elapsed()
    );
    drop(conns);
    // The server let go of them: only the metrics request's own connection is open.
    let mut open = f64::MAX;
    for _ in 0..50 {
        open = metric(
            &metrics_text(&app.base).await,
            "blockhook_http_connections_open",
        );
        if open <= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(open <= 1.0, "{open} connections still counted open");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_at_one_byte_per_second_is_cut_at_the_body_timeout() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.server.body_read_timeout = Duration::from_secs(1);
        s.server.max_connections_per_ip = 0;
    })
    .await;
    let addr = app.addr();
    let started = Instant::now();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    );
    // One byte a second, far fewer than the 100 announced, until the server answers.
    let answers = trickled_bodies(addr, 1000, &head, 20).await;
    let mut seen = std::collections::BTreeMap::new();
    for (a, _) in &answers {
        *seen
            .entry(a.lines().next().unwrap_or("(reset)").to_owned())
            .or_insert(0) += 1;
    }
    // Every connection is cut. Most read the 408 first; but the server closes with trickled
    // bytes unread, so its kernel may answer with a reset, which can discard the 408 before
    // the client reads it: a reset is a cut too. Whatever was read is the 408 problem.
    assert!(
        answers.iter().all(|(_, closed)| *closed),
        "every trickled connection is cut: {seen:?}"
    );
    let answered = answers.iter().filter(|(a, _)| !a.is_empty()).count();
    let problems = answers
        .iter()
        .filter(|(a, _)| a.starts_with("HTTP/1.1 408") && a.contains("application/problem+json"))
        .count();
    assert_eq!(
        problems, answered,
        "what was read is a 408 problem: {seen:?}"
    );
    assert!(answered > 0, "{seen:?}");
    eprintln!("{seen:?}");
    eprintln!("1000 trickled bodies cut within {:?}", started.elapsed());
    app.stop().await;
}

/// `server.body_min_rate`: bodies trickled at 1 byte/s are cut once the grace is over, with
/// `body_read_timeout` at 10 minutes, so within this test's 30 s bound only the rate can cut
/// them; a body arriving at about twice the minimum rate is read whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_below_the_minimum_rate_is_cut_and_a_steady_one_is_read() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.server.body_read_timeout = Duration::from_secs(600);
        s.server.body_min_rate = 1024;
        s.server.body_min_rate_grace = Duration::from_secs(2);
        s.server.max_connections_per_ip = 0;
    })
    .await;
    let addr = app.addr();
    let head = |length: usize| {
        format!(
            "POST /v1/merchants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
             Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
    };
    let started = Instant::now();
    let trickled = trickled_bodies(addr, 100, &head(10_000), 60).await;
    let elapsed = started.elapsed();
    // As in the body-timeout test: every connection is cut; what was read is the 408 problem
    // (a reset may discard it before it is read).
    assert!(
        trickled.iter().all(|(_, closed)| *closed),
        "every trickled body is cut by the rate"
    );
    let answered: Vec<_> = trickled.iter().filter(|(a, _)| !a.is_empty()).collect();
    assert!(!answered.is_empty());
    for (a, _) in &answered {
        assert!(
            a.starts_with("HTTP/1.1 408") && a.contains("application/problem+json"),
            "{a}"
        );
    }
    eprintln!("100 bodies at 1 byte/s cut by the minimum rate within {elapsed:?}");

    // About 2 KiB/s (512 bytes every 250 ms) for 4 s: JSON after 8 KiB of leading whitespace.
    let json = br#"{"name":"Steady uploader"}"#;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(head(16 * 512 + json.len()).as_bytes())
        .await
        .unwrap();
    for _ in 0..16 {
        c.write_all(&[b' '; 512]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    c.write_all(json).await.unwrap();
    let response = read_response(&mut c).await;
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(response.contains("Steady uploader"), "{response}");
    app.stop().await;
}

/// Opens `connections` connections that each send `head`, then one body byte a second for up
/// to `seconds`, and reads each one's answer until the server closes it (within 30 s: generous,
/// a loaded machine may take seconds to accept a thousand connections). Returns each answer as
/// text and whether the connection was closed.
async fn trickled_bodies(
    addr: std::net::SocketAddr,
    connections: usize,
    head: &str,
    seconds: usize,
) -> Vec<(String, bool)> {
    futures::future::join_all((0..connections).map(|_| async move {
        let c = TcpStream::connect(addr).await.unwrap();
        let (mut rd, mut wr) = c.into_split();
        wr.write_all(head.as_bytes()).await.unwrap();
        let trickle = tokio::spawn(async move {
            for _ in 0..seconds {
                if wr.write_all(b" ").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let (answer, closed) = read_until_closed(&mut rd, Duration::from_secs(30)).await;
        trickle.abort();
        (String::from_utf8_lossy(&answer).into_owned(), closed)
    }))
    .await
}

/// A client on another loopback address, as a well-behaved gateway next to a flood.
fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(Some(local.parse().unwrap()))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_past_the_caps_leaves_the_api_and_the_probes_answering() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.server.max_connections_per_ip = 100;
        s.server.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    let addr = app.addr();
    // 500 idle connections from 127.0.0.1: 100 admitted, the rest over the per-address cap.
    let mut flood = Vec::new();
    for _ in 0..500 {
        flood.push(TcpStream::connect(addr).await.unwrap());
    }
    // Overflow connections get a short header timeout: wait until those slots are free again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Over the cap, the probes still answer; anything else is 503 problem+json.
    let over = |path: &'static str| async move {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        String::from_utf8(read_until_closed(&mut c, Duration::from_secs(5)).await.0).unwrap()
    };
    let health = over("/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let ready = over("/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let api = over("/v1/merchants").await;
    assert!(
        api.starts_with("HTTP/1.1 503") && api.contains("application/problem+json"),
        "{api}"
    );
    // A client from another address is served as usual, flood or not.
    let gateway = client_from("127.0.0.2");
    let url = format!("{}/v1/merchants", app.base);
    let mut latencies = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let r = gateway.get(&url).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(r.status(), 200);
        latencies.push(t.elapsed());
    }
    latencies.sort();
    eprintln!(
        "beside a 500-connection flood: p50 {:?}, p99 {:?} over 200 requests",
        latencies[100], latencies[197]
    );
    let text = metrics_text(&app.base).await;
    let refused = metric(&text, "blockhook_http_connections_refused_total");
    assert!(refused >= 400.0, "refused counted: {refused}\n{text}");
    drop(flood);
    app.stop().await;
}

/// A request on a new connection, read until the server closes it (connections over a cap are
/// not kept alive).
async fn on_a_new_connection(addr: std::net::SocketAddr, path: &str) -> String {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    String::from_utf8(read_until_closed(&mut c, Duration::from_secs(5)).await.0).unwrap()
}

/// Past `server.max_connections` (300 here; no per-address cap): a gateway's keep-alive
/// connection opened before the flood keeps being served, a new connection gets the probes
/// only (503 for the rest), and the refusals are counted under the total cap's kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_past_max_connections_leaves_open_connections_and_the_probes_answering() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.server.max_connections = 300;
        s.server.max_connections_per_ip = 0;
        s.server.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    let addr = app.addr();
    // One keep-alive connection (not a client's pool, which may open a new connection when
    // the pooled one is not back yet).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut gateway = socket.connect(addr).await.unwrap();
    let mut ask = async |path: &str| {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\r\n");
        gateway.write_all(request.as_bytes()).await.unwrap();
        read_response(&mut gateway).await
    };
    let first = ask("/v1/merchants").await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // 500 idle connections: the free places go first, then the overflow slots (which close
    // after their short header timeout), then the rest are closed at once.
    let mut flood = Vec::new();
    for _ in 0..500 {
        flood.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let health = on_a_new_connection(addr, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let ready = on_a_new_connection(addr, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let api = on_a_new_connection(addr, "/v1/merchants").await;
    assert!(
        api.starts_with("HTTP/1.1 503") && api.contains("application/problem+json"),
        "{api}"
    );
    // The gateway's connection predates the flood: it is served as usual.
    let mut latencies = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        let r = ask("/v1/merchants").await;
        latencies.push(t.elapsed());
        assert!(r.starts_with("HTTP/1.1 200"), "request {i}: {r}");
    }
    latencies.sort();
    eprintln!(
        "past max_connections (a 500-connection flood, cap 300): p50 {:?}, p99 {:?} over 200 \
         requests on a connection opened before it",
        latencies[100], latencies[197]
    );
    let text = ask("/metrics").await;
    let total = metric(
        &text,
        "blockhook_http_connections_refused_total{kind=\"max_connections\"}",
    );
    let per_ip = metric(
        &text,
        "blockhook_http_connections_refused_total{kind=\"max_connections_per_ip\"}",
    );
    assert!(
        total >= 200.0,
        "refusals by the total cap counted: {total}\n{text}"
    );
    assert_eq!(per_ip, 0.0, "none by the per-address cap\n{text}");
    drop(flood);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_opening_streams_without_end_is_held_to_the_stream_cap() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.server.http2_max_concurrent_streams = 20;
        s.server.body_read_timeout = Duration::from_millis(500);
    })
    .await;
    let addr = app.addr();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    // A first request lets the server's SETTINGS arrive.
    let (first, _) = client
        .send_request(
            http::Request::get(format!("{}/healthz", app.base))
                .body(())
                .unwrap(),
            true,
        )
        .unwrap();
    assert_eq!(first.await.unwrap().status(), 200);
    assert_eq!(
        client.current_max_send_streams(),
        20,
        "the server's stream cap"
    );
    // 100 streams whose bodies never end: the server works on 20 at a time, cuts each at the
    // body timeout, and answers every one.
    let started = Instant::now();
    let mut pending = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..100 {
        client = client.ready().await.unwrap();
        let req = http::Request::post(format!("{}/v1/events", app.base))
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        let (response, mut body) = client.send_request(req, false).unwrap();
        body.send_data(bytes::Bytes::from_static(b"{"), false)
            .unwrap();
        bodies.push(body);
        pending.push(response);
    }
    let statuses = futures::future::join_all(pending).await;
    let cut = statuses
        .into_iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status() == 408))
        .count();
    assert_eq!(cut, 100);
    eprintln!(
        "100 endless HTTP/2 streams, 20 at a time, answered in {:?}",
        started.elapsed()
    );
    drop(bodies);
    app.stop().await;
}

/// `server.http2_max_header_list_bytes`: set below the router's 16 KiB header limit, so the
/// refusal of a 10 KiB header list comes from the HTTP/2 layer; a 4 KiB one is served, and the
/// connection stays usable after the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_header_list_over_the_cap_is_refused() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.server.http2_max_header_list_bytes = 8 * 1024;
    })
    .await;
    let tcp = TcpStream::connect(app.addr()).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let request = |filler: usize| {
        http::Request::get(format!("{}/healthz", app.base))
            .header("x-filler", "a".repeat(filler))
            .body(())
            .unwrap()
    };
    let mut client = client.ready().await.unwrap();
    let (small, _) = client.send_request(request(4 * 1024), true).unwrap();
    assert_eq!(small.await.unwrap().status(), 200);
    client = client.ready().await.unwrap();
    let (large, _) = client.send_request(request(10 * 1024), true).unwrap();
    // h2 answers 431 and resets the stream: the client sees the 431, or the reset if it came
    // first. Either way the request never reached a handler.
    match large.await {
        Ok(response) => assert_eq!(response.status(), 431),
        Err(e) => assert!(e.is_reset(), "{e}"),
    }
    client = client.ready().await.unwrap();
    let (after, _) = client.send_request(request(0), true).unwrap();
    assert_eq!(after.await.unwrap().status(), 200);
    app.stop().await;
}

/// A CA made here, and certificates for 127.0.0.1/localhost signed by it.
struct Pki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "blockhook edge test CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        Self { ca, ca_key }
    }

    /// A leaf certificate (PEM chain, PEM key, DER); `expired` puts its validity in the past.
    fn leaf(&self, expired: bool) -> (String, String, Vec<u8>) {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

/// Builds and runs an app with TLS from `dir/cert.pem` and `dir/key.pem`.
async fn spawn_tls(dir: &std::path::Path) -> Result<(String, CancellationToken), String> {
    let ca = crate::receiver::TestCa::new();
    let url = crate::helpers::store_url(Backend::Sqlite, dir).await;
    let mut settings: Settings = crate::helpers::test_settings(dir, url, &ca);
    settings.server.tls_cert = dir.join("cert.pem");
    settings.server.tls_key = dir.join("key.pem");
    let app = Application::build(settings)
        .await
        .map_err(|e| e.to_string())?;
    let addr = app.local_addr().unwrap();
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move { app.run_until_stopped(token).await.unwrap() });
    Ok((format!("https://localhost:{}", addr.port()), stop))
}

/// A TLS connection to `port` (as `localhost`, checked against the CA in `ca_pem`) offering
/// `versions` and the ALPN protocols `alpn`.
async fn tls_connect(
    port: u16,
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// The certificate a fresh TLS connection to `port` is served.
async fn served_certificate(port: u16, ca_pem: &str) -> Vec<u8> {
    let tls = tls_connect(port, ca_pem, rustls::DEFAULT_VERSIONS, &[]).await;
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Waits (up to `within`) until new connections are served `der`; returns how long it took.
async fn until_served(port: u16, ca_pem: &str, der: &[u8], within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if served_certificate(port, ca_pem).await == der {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "the new certificate is not served after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `GET /healthz` on an HTTP/2 connection that stays open; its status.
async fn healthz_on(held: &mut h2::client::SendRequest<bytes::Bytes>, base: &str) -> u16 {
    let mut ready = held.clone().ready().await.unwrap();
    let request = http::Request::get(format!("{base}/healthz"))
        .body(())
        .unwrap();
    let (response, _) = ready.send_request(request, true).unwrap();
    *held = ready;
    response.await.unwrap().status().as_u16()
}

/// Puts a certificate and its key where `spawn_tls` reads them: the key first, so a reload
/// check between the two writes sees a key that does not match the old certificate and keeps
/// the old pair, never a new certificate with the old key.
fn install(dir: &std::path::Path, cert: &str, key: &str) {
    std::fs::write(dir.join("key.pem"), key).unwrap();
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_ingest_and_the_dashboard_over_http2_and_reloads_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (cert, key, first_der) = pki.leaf(false);
    install(dir.path(), &cert, &key);
    let (base, stop) = spawn_tls(dir.path()).await.unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca.pem().as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Ingest over HTTPS, HTTP/2 negotiated by ALPN.
    let merchant = client
        .post(format!("{base}/v1/merchants"))
        .bearer_auth(ADMIN)
        .json(&json!({ "name": "TLS merchant" }))
        .send()
        .await
        .unwrap();
    assert_eq!(merchant.version(), reqwest::Version::HTTP_2);
    let merchant: serde_json::Value = merchant.json().await.unwrap();
    let published = client
        .post(format!("{base}/v1/events"))
        .bearer_auth(ADMIN)
        .json(&json!({
            "merchant_id": merchant["id"],
            "event_type": "Payment",
            "payload": { "orderNo": "TLS-1" }
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 202);

    // Dashboard sign-in: the session cookie is Secure, even on a loopback host.
    let login = client
        .post(format!("{base}/ui/login"))
        .form(&[("token", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303, "signed in");
    let cookie = login
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.contains("; Secure"), "{cookie}");
    // The session works over HTTPS: a dashboard page, signed in (not a redirect to the login).
    let session = cookie.split(';').next().unwrap();
    let page = client
        .get(format!("{base}/ui/operator"))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.version(), reqwest::Version::HTTP_2);
    let html = page.text().await.unwrap();
    assert!(html.contains("Sign out"), "{html}");

    // A connection opened before the reloads, kept across them: HTTP/2 by ALPN, with the
    // first certificate.
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    let ca_pem = pki.ca.pem();
    let tls = tls_connect(port, &ca_pem, rustls::DEFAULT_VERSIONS, &[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(
        tls.get_ref().1.peer_certificates().unwrap()[0].as_ref(),
        first_der
    );
    let (mut held, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    assert_eq!(healthz_on(&mut held, &base).await, 200);
    assert_eq!(served_certificate(port, &ca_pem).await, first_der);

    // A certificate swapped on disk is served to new connections without a signal: the files
    // are compared every 10 s, and a check between the two writes (the key not matching the
    // old certificate) keeps the old pair until the next one, hence the 25 s bound. This comes
    // before the SIGHUP below, which would reload it at once (as any app of this process).
    let (cert, key, second_der) = pki.leaf(false);
    install(dir.path(), &cert, &key);
    let took = until_served(port, &ca_pem, &second_der, Duration::from_secs(25)).await;
    eprintln!("a certificate changed on disk served after {took:?}");
    assert_eq!(
        healthz_on(&mut held, &base).await,
        200,
        "the connection opened before the reload still serves"
    );

    // On SIGHUP the files are read at once.
    let (cert, key, third_der) = pki.leaf(false);
    install(dir.path(), &cert, &key);
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    until_served(port, &ca_pem, &third_der, Duration::from_secs(10)).await;
    assert_eq!(healthz_on(&mut held, &base).await, 200);
    // The client's pooled connection was not dropped either.
    let again = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(again.status(), 200);
    stop.cancel();
}

/// TLS 1.2 and TLS 1.3 clients both connect. Older versions cannot be tested from here: the
/// rustls client has no TLS 1.0/1.1 either; the server refuses them because rustls implements
/// neither (and the server config names 1.2 and 1.3 only).
#[tokio::test]
async fn tls_1_2_and_1_3_clients_connect() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (cert, key, _) = pki.leaf(false);
    install(dir.path(), &cert, &key);
    let (base, stop) = spawn_tls(dir.path()).await.unwrap();
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    let ca_pem = pki.ca.pem();
    for (version, expected) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let mut tls = tls_connect(port, &ca_pem, &[version], &[b"http/1.1"]).await;
        assert_eq!(tls.get_ref().1.protocol_version(), Some(expected));
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let response = read_response(&mut tls).await;
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "{expected:?}: {response}"
        );
    }
    stop.cancel();
}

#[tokio::test]
async fn an_expired_certificate_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (cert, key, _) = pki.leaf(true);
    install(dir.path(), &cert, &key);
    let err = spawn_tls(dir.path()).await.unwrap_err();
    assert!(err.contains("cert.pem") && err.contains("expired"), "{err}");
    // And a key that is not the certificate's.
    let (cert, _, _) = pki.leaf(false);
    let (_, other_key, _) = pki.leaf(false);
    install(dir.path(), &cert, &other_key);
    let err = spawn_tls(dir.path()).await.unwrap_err();
    assert!(err.contains("does not match"), "{err}");
}

/// Reads one HTTP/1.1 response (headers and a `Content-Length` body) from a raw connection.
async fn read_response(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .unwrap();
        assert!(n > 0, "closed before a whole response: {got:?}");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

/// The header timeout times a request's headers from its first byte: a keep-alive connection
/// idle for several header timeouts still takes its next request, and only the idle timeout
/// ends it; a request started and left unfinished is still cut.
#[tokio::test]
async fn an_idle_keep_alive_connection_outlives_the_header_timeout() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.server.header_read_timeout = Duration::from_secs(1);
        s.server.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let mut c = TcpStream::connect(app.addr()).await.unwrap();
    for round in 0..3 {
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let response = read_response(&mut c).await;
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "round {round}: {response}"
        );
        // Idle for three header timeouts (well inside the idle timeout).
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (got, closed) = read_until_closed(&mut c, Duration::from_secs(20)).await;
    assert!(closed, "an unfinished request is cut");
    assert!(got.is_empty(), "and answered nothing: {got:?}");
    app.stop().await;
}

/// `server.unix_socket`: the API on a Unix socket beside TCP, owner and group only, a stale
/// socket file replaced at the next start, anything else at that path refused.
#[tokio::test]
async fn the_api_is_served_on_a_unix_socket_for_a_local_proxy() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    for run in 0..2 {
        let path = socket.clone();
        let app = TestApp::spawn_with(Backend::Sqlite, move |s| s.server.unix_socket = path).await;
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660, "run {run}");
        let mut c = tokio::net::UnixStream::connect(&socket).await.unwrap();
        c.write_all(
            format!(
                "GET /v1/merchants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let response = read_response(&mut c).await;
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "run {run}: {response}"
        );
        assert!(response.contains("\"data\""), "{response}");
        // The same app still answers on TCP.
        let r = reqwest::get(format!("{}/healthz", app.base)).await.unwrap();
        assert_eq!(r.status(), 200);
        app.stop().await;
        // The socket file stays behind (as after a crash): the next start replaces it.
        assert!(socket.exists());
    }

    std::fs::remove_file(&socket).unwrap();
    std::fs::write(&socket, "not a socket").unwrap();
    let data = tempfile::tempdir().unwrap();
    let url = crate::helpers::store_url(Backend::Sqlite, data.path()).await;
    let ca = crate::receiver::TestCa::new();
    let mut s = crate::helpers::test_settings(data.path(), url, &ca);
    s.server.unix_socket = socket.clone();
    let err = match Application::build(s).await {
        Ok(_) => panic!("a regular file at server.unix_socket must stop the start"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "not a socket");
}
