//! A PostgreSQL outage as the operator sees it in the log: the real binary reaches the database
//! through a loopback TCP proxy that the test cuts and restores. While it is cut the API answers
//! 503 problem+json, and the log says so once at WARN (not an ERROR per request); when it is
//! back, "store reachable again" at INFO. PostgreSQL only: the embedded store has no network.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::common::{ADMIN, Backend, Conf, Server, backends, free_port};

/// Forwards loopback connections to `upstream`; `cut` drops every open one and refuses new ones.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (flag, list) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is closed at once
                }
                let upstream = upstream.clone();
                list.lock().await.push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self { port, up, conns }
    }

    async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().await.drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_logged_once_at_warn_and_its_return_at_info() {
    let Some(Backend::Postgres(url)) = backends().await.into_iter().nth(1) else {
        eprintln!("SKIP: BLOCKHOOK_TEST_DATABASE_URL is not set");
        return;
    };
    // postgres://user@host:port/db?…: the authority goes through the proxy.
    let start = url.find("://").unwrap() + 3;
    let start = start + url[start..].find('@').map_or(0, |i| i + 1);
    let end = start + url[start..].find('/').unwrap();
    let authority = &url[start..end];
    let upstream = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:5432")
    };
    let proxy = Proxy::start(upstream).await;
    let via = format!("{}127.0.0.1:{}{}", &url[..start], proxy.port, &url[end..]);
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(
        tmp.path(),
        "server",
        free_port(),
        Backend::Postgres(via),
        &Conf::default(),
        &["--role", "api"],
        &[("BLOCKHOOK_STORE__ACQUIRE_TIMEOUT", "300ms")],
    );
    server.ready().await;
    let http = reqwest::Client::new();
    let list = format!("{}/v1/merchants", server.base());
    let get = || http.get(&list).bearer_auth(ADMIN).send();
    assert_eq!(get().await.unwrap().status(), 200);

    proxy.cut().await;
    let mut unavailable = 0;
    for _ in 0..10 {
        let r = get().await.unwrap();
        if r.status() == 503 {
            let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
            assert_eq!(ct, "application/problem+json");
            unavailable += 1;
        }
    }
    assert!(unavailable >= 5, "503s while cut: {unavailable}");

    proxy.restore();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while get().await.unwrap().status() != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let log = String::from_utf8_lossy(&server.logs()).into_owned();
    let lines: Vec<&str> = log.lines().collect();
    let warn: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("\"WARN\"") && l.contains("store unavailable"))
        .collect();
    assert_eq!(warn.len(), 1, "one WARN for the outage:\n{log}");
    let per_request_errors = lines
        .iter()
        .filter(|l| {
            l.contains("\"ERROR\"")
                && (l.contains("response failed") || l.contains("request failed"))
        })
        .count();
    assert_eq!(per_request_errors, 0, "no ERROR per request:\n{log}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("\"INFO\"") && l.contains("store reachable again"))
            .count(),
        1,
        "{log}"
    );
}
