//! Test servers on loopback: an axum app served over plain TCP or rustls (h2 + http/1.1 via
//! hyper-util's auto builder), raw TCP servers that misbehave on purpose, and a test CA.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use blockhook_egress::{EgressConfig, Request};
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use url::Url;

/// `127.0.0.0/8` and `::1/128`: what tests exempt from the address policy.
pub fn loopback_nets() -> Vec<IpNet> {
    vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]
}

/// Test settings: loopback allowed, `http://` allowed, short timeouts.
pub fn config() -> EgressConfig {
    EgressConfig {
        connect_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(5),
        allow_http: true,
        allow_nets: loopback_nets(),
        ..EgressConfig::default()
    }
}

/// A POST of `body` to `url` with no extra headers.
pub fn post(url: Url, body: &'static str) -> Request {
    Request {
        url,
        headers: http::HeaderMap::new(),
        body: Bytes::from_static(body.as_bytes()),
    }
}

pub fn url(s: &str) -> Url {
    Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// A CA made for this test run, and a server certificate it signed for `localhost`,
/// `127.0.0.1` and `::1`.
pub struct TestCa {
    pub ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "blockhook egress test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();

        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_params = rcgen::CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ])
        .unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();

        Self {
            ca_pem: ca.pem(),
            chain: vec![leaf.der().clone(), ca.der().clone()],
            key_der: leaf_key.serialize_der(),
        }
    }

    /// A server configuration offering the given ALPN protocols.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// Offers h2 and http/1.1.
    pub fn server_h2(&self) -> Arc<ServerConfig> {
        self.server_config(&[b"h2", b"http/1.1"])
    }

    /// Test settings that trust this CA.
    pub fn config(&self) -> EgressConfig {
        EgressConfig {
            extra_ca_pem: Some(self.ca_pem.clone().into_bytes()),
            ..config()
        }
    }
}

/// A loopback server that counts the TCP connections it accepts. Aborted on drop.
pub struct Server {
    pub addr: SocketAddr,
    scheme: &'static str,
    accepted: Arc<AtomicUsize>,
    sentinels: AtomicUsize,
    task: JoinHandle<()>,
}

impl Server {
    /// Serve `app` over plain HTTP (h1, or h2 with prior knowledge) on 127.0.0.1.
    pub async fn http(app: Router) -> Self {
        Self::start("127.0.0.1:0", app, None).await
    }

    /// Serve `app` over TLS on 127.0.0.1.
    pub async fn https(app: Router, tls: Arc<ServerConfig>) -> Self {
        Self::start("127.0.0.1:0", app, Some(tls)).await
    }

    pub async fn start(bind: &str, app: Router, tls: Option<Arc<ServerConfig>>) -> Self {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let acceptor = tls.map(TlsAcceptor::from);
        Self::accept_loop(bind, scheme, move |tcp| {
            let app = app.clone();
            let acceptor = acceptor.clone();
            async move {
                let service = TowerToHyperService::new(app);
                let builder = auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                    }
                }
            }
        })
        .await
    }

    /// A raw TCP server: `handle` gets each accepted connection.
    pub async fn raw<F, Fut>(handle: F) -> Self
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::accept_loop("127.0.0.1:0", "http", handle).await
    }

    /// A listener that only counts connections (and closes them), on `bind`.
    pub async fn counter(bind: &str) -> Self {
        Self::accept_loop(bind, "http", |tcp| async move { drop(tcp) }).await
    }

    async fn accept_loop<F, Fut>(bind: &str, scheme: &'static str, handle: F) -> Self
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(handle(tcp));
            }
        });
        Self {
            addr,
            scheme,
            accepted,
            sentinels: AtomicUsize::new(0),
            task,
        }
    }

    /// `scheme://ip:port{path}`.
    pub fn url(&self, path: &str) -> Url {
        url(&format!("{}://{}{}", self.scheme, self.addr, path))
    }

    /// Connections accepted so far (may lag an in-flight connect; see `connections_seen`).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// How many connections anyone else made, with no race: connect once ourselves and wait
    /// until that sentinel is counted (sentinels are not counted in the result). The accept queue is FIFO, so every connection made
    /// before it has been counted by then.
    pub async fn connections_seen(&self) -> usize {
        let before = self.accepted();
        let sentinel = TcpStream::connect(self.addr).await.unwrap();
        let wait = async {
            while self.accepted() <= before {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .expect("sentinel connection was never accepted");
        drop(sentinel);
        let sentinels = self.sentinels.fetch_add(1, Ordering::SeqCst) + 1;
        self.accepted() - sentinels
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Read one HTTP/1.1 request (head and `Content-Length` body) from a raw connection.
pub async fn read_request(tcp: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return buf;
            }
        }
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return buf,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Write raw bytes and ignore errors (the peer may already be gone).
pub async fn write_raw(tcp: &mut TcpStream, bytes: &[u8]) {
    let _ = tcp.write_all(bytes).await;
    let _ = tcp.flush().await;
}

/// The usual receiver: `/echo` answers 200 with the request body, and reports what it saw in
/// `x-version`, `x-user-agent` and `x-signature`; `/status/{code}` answers that status.
pub fn app() -> Router {
    use axum::extract::Path;
    use axum::http::{HeaderMap, StatusCode, Version, header::USER_AGENT};
    use axum::routing::post;

    async fn echo(version: Version, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
        let seen = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        (
            [
                ("x-version", format!("{version:?}")),
                ("x-user-agent", seen(USER_AGENT.as_str())),
                ("x-signature", seen("blockatm-signature-v2")),
            ],
            body,
        )
    }

    async fn status(Path(code): Path<u16>) -> StatusCode {
        StatusCode::from_u16(code).unwrap()
    }

    Router::new()
        .route("/echo", post(echo))
        .route("/status/{code}", post(status))
}

/// The value of header `name` in an egress response.
pub fn header<'a>(resp: &'a blockhook_egress::Response, name: &str) -> Option<&'a str> {
    resp.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}
