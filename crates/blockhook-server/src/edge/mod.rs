//! The HTTP edge: accepts connections and serves the router on them, held against hostile
//! clients. Every bound here is a `[server]` setting:
//! - admission ([`limits`]): open connections in all and per client address; past a cap only
//!   the health probes are answered, so the local supervisor still sees the process;
//! - time: the TLS handshake and each request's headers within `header_read_timeout` (from the
//!   request's first byte, so idle keep-alive connections last), each body within
//!   `body_read_timeout` and at `body_min_rate` at least ([`body`]), and no connection on which
//!   nothing moves for `idle_timeout` ([`timing::Timed`]);
//! - HTTP/2: a cap on concurrent streams, on the header list (HTTP/1 answers 431 past 16 KiB
//!   in the router), and on streams reset before the server saw them (the "rapid reset"
//!   attack), and pings to drop dead peers;
//! - TLS ([`tls`]) when a certificate is configured.
//!
//! It also decides, once per request, which address the client has ([`client::ClientAddr`]):
//! the peer, or what a trusted proxy says it is.
//!
//! axum's own `serve` sets none of these (hyper's header timeout needs a timer it does not
//! give), which is why blockhook drives hyper itself.

pub mod body;
pub mod client;
pub mod limits;
mod timing;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::config::ServerSettings;
use crate::error::ApiError;
use crate::metrics::Metrics;
use client::TrustedProxies;
use limits::{Admission, ConnectionLimits};

/// Headers of a request on an overflow connection (health probes only).
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// On shutdown, open connections get this long to finish their requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Marks requests that arrived over TLS (the dashboard then always sets `Secure` cookies).
#[derive(Debug, Clone, Copy)]
pub struct ServedOverTls;

/// What the edge serves with.
#[derive(Debug, Clone)]
pub struct Edge {
    /// Timeouts, caps.
    pub settings: ServerSettings,
    /// Counts connections.
    pub metrics: Arc<Metrics>,
    /// HTTPS, when configured.
    pub tls: Option<Arc<tls::CertStore>>,
}

/// Who is at the other end of a connection: its peer (`None` on the Unix socket) and the
/// proxies whose header names the client.
type Peer = (Option<IpAddr>, Arc<TrustedProxies>);

/// Serves one connection until it ends or a graceful shutdown completes it, with its time
/// limits: the service tells the IO when each request's handler is called ([`timing`]). Each
/// request gets its client's address here, the one place it is decided.
async fn connection<IO>(
    builder: &auto::Builder<TokioExecutor>,
    io: IO,
    (header_limit, idle_limit): (Duration, Duration),
    (service, (peer, proxies)): (Router, Peer),
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let requests = Arc::new(timing::Requests::default());
    let io = timing::Timed::new(io, header_limit, idle_limit, requests.clone());
    let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
        let handling = requests.begin(request.version() == http::Version::HTTP_2);
        if let Some(client) = proxies.client(peer, request.headers()) {
            request.extensions_mut().insert(client);
        }
        let response = service.clone().oneshot(request);
        async move {
            let response = response.await;
            drop(handling);
            response
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    watcher.watch(conn.into_owned()).await
}

/// Reads a request's whole body within its bounds ([`body`]): at most `server.max_body_bytes`
/// (413), within `server.body_read_timeout` and no slower than `server.body_min_rate` after its
/// grace (408), so a client trickling its body cannot hold a handler. Every handler reads the
/// whole body anyway; they get it from memory.
pub async fn read_body_within(
    State(limits): State<body::BodyLimits>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, incoming) = request.into_parts();
    match body::read(incoming, limits).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(body::BodyError::TooLarge) => ApiError::PayloadTooLarge.into_response(),
        Err(body::BodyError::TimedOut | body::BodyError::TooSlow) => {
            ApiError::RequestTimeout.into_response()
        }
        Err(body::BodyError::Broken(e)) => {
            ApiError::MalformedBody(format!("reading the request body: {e}")).into_response()
        }
    }
}

/// Where connections come from: the TCP listener, and a Unix socket for a local reverse proxy
/// when `server.unix_socket` is set.
#[derive(Debug)]
pub struct Listeners {
    /// `server.listen`.
    pub tcp: TcpListener,
    /// `server.unix_socket`: plain HTTP (the proxy terminates TLS), the same limits except the
    /// per-address cap (one proxy carries many clients).
    pub unix: Option<UnixListener>,
}

/// An accepted connection.
enum Accepted {
    Tcp(TcpStream, SocketAddr),
    Unix(UnixStream),
}

impl Listeners {
    /// The next connection from either listener.
    async fn accept(&self) -> std::io::Result<Accepted> {
        let unix = async {
            match &self.unix {
                Some(l) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            tcp = self.tcp.accept() => tcp.map(|(s, peer)| Accepted::Tcp(s, peer)),
            unix = unix => unix,
        }
    }
}

/// Serves `app` on `listeners` until `stop`, then lets open requests finish (up to 10 s).
/// `health` is served instead of `app` on connections over a cap.
pub async fn serve(
    edge: Edge,
    listeners: Listeners,
    app: Router,
    health: Router,
    stop: CancellationToken,
) {
    let settings = edge.settings;
    let limits = ConnectionLimits::new(settings.max_connections, settings.max_connections_per_ip);
    let proxies = Arc::new(TrustedProxies::new(
        &settings.trusted_proxies,
        &settings.client_ip_header,
    ));
    let mut http = auto::Builder::new(TokioExecutor::new());
    // hyper's header timer also runs while a keep-alive connection waits for its next request,
    // cutting idle connections at the header limit: `timing` times headers instead.
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    http.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(settings.http2_max_concurrent_streams)
        .max_header_list_size(settings.http2_max_header_list_bytes)
        .max_pending_accept_reset_streams(settings.http2_max_pending_resets)
        .keep_alive_interval(settings.idle_timeout / 2)
        .keep_alive_timeout(settings.idle_timeout / 2);
    let mut overflow = auto::Builder::new(TokioExecutor::new());
    overflow
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(OVERFLOW_HEADER_TIMEOUT)
        .keep_alive(false);
    let acceptor = edge.tls.as_ref().map(|certs| {
        tokio::spawn(certs.clone().watch(stop.child_token()));
        TlsAcceptor::from(certs.server_config())
    });
    let app = match acceptor {
        Some(_) => app.layer(axum::Extension(ServedOverTls)),
        None => app,
    };
    let graceful = GracefulShutdown::new();
    let metrics = edge.metrics;
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listeners.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let peer_ip = match &accepted {
            Accepted::Tcp(stream, peer) => {
                let _ = stream.set_nodelay(true);
                Some(peer.ip())
            }
            Accepted::Unix(_) => None,
        };
        let (service, builder, first_byte, admitted) = match limits.admit(peer_ip) {
            admitted @ Admission::Full { .. } => (
                app.clone(),
                http.clone(),
                settings.header_read_timeout,
                admitted,
            ),
            admitted @ Admission::HealthOnly { reason, .. } => {
                metrics.connection_refused(reason);
                (
                    health.clone(),
                    overflow.clone(),
                    OVERFLOW_HEADER_TIMEOUT,
                    admitted,
                )
            }
            Admission::Closed { reason } => {
                metrics.connection_refused(reason);
                continue;
            }
        };
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        let deadlines = (first_byte, settings.idle_timeout);
        let service = (service, (peer_ip, proxies.clone()));
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _open = metrics.connection_opened();
            let (stream, peer) = match accepted {
                Accepted::Unix(stream) => {
                    let served = connection(&builder, stream, deadlines, service, watcher).await;
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "unix socket connection ended with an error");
                    }
                    drop(admitted);
                    return;
                }
                Accepted::Tcp(stream, peer) => (stream, peer),
            };
            let served = match acceptor {
                None => connection(&builder, stream, deadlines, service, watcher).await,
                // The handshake within the header timeout, then the first request as promptly.
                // Boxed: a TLS connection's state is larger, and every plain connection's task
                // would otherwise be sized for it (memory per idle connection, BENCHMARKS.md).
                Some(acceptor) => {
                    Box::pin(async {
                        match tokio::time::timeout(first_byte, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                connection(&builder, tls, deadlines, service, watcher).await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                Ok(())
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                Ok(())
                            }
                        }
                    })
                    .await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(admitted);
        });
    }
    drop(listeners);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("connections still open after the shutdown grace; closing them");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpSocket;

    use super::*;
    use crate::edge::client::ClientAddr;

    /// Asks `/whoami` from a socket bound to `from` (a loopback address), with `headers`;
    /// returns the client address the edge put in the request.
    async fn whoami(server: SocketAddr, from: &str, headers: &str) -> String {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let mut c = socket.connect(server).await.unwrap();
        let request =
            format!("GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n");
        c.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tokio::time::timeout(Duration::from_secs(10), c.read_to_string(&mut response))
            .await
            .unwrap()
            .unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        response.split("\r\n\r\n").nth(1).unwrap().to_owned()
    }

    /// Over real loopback connections: 127.0.0.1 is a trusted proxy, 127.0.0.2 a client that
    /// is not; the address the edge hands to the router is the one a handler (and the request
    /// log) sees.
    #[tokio::test]
    async fn the_client_address_is_read_from_the_header_of_a_trusted_proxy_only() {
        let mut settings = crate::config::Settings::defaults().unwrap().server;
        settings.trusted_proxies = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let app = Router::new().route(
            "/whoami",
            axum::routing::get(|request: Request| async move {
                request
                    .extensions()
                    .get::<ClientAddr>()
                    .map_or_else(|| "none".to_owned(), ToString::to_string)
            }),
        );
        let edge = Edge {
            settings,
            metrics: Arc::new(Metrics::new()),
            tls: None,
        };
        let stop = CancellationToken::new();
        let listeners = Listeners { tcp, unix: None };
        let server = tokio::spawn(serve(edge, listeners, app.clone(), app, stop.clone()));

        // An untrusted peer cannot name another address.
        let spoofed = whoami(addr, "127.0.0.2", "X-Forwarded-For: 203.0.113.9\r\n").await;
        assert_eq!(spoofed, "127.0.0.2");
        // A trusted proxy can; without the header the proxy is the client.
        let proxied = whoami(addr, "127.0.0.1", "X-Forwarded-For: 203.0.113.9\r\n").await;
        assert_eq!(proxied, "203.0.113.9");
        assert_eq!(whoami(addr, "127.0.0.1", "").await, "127.0.0.1");
        // A chain: a forged first entry, the client, a second trusted proxy.
        let chain = "X-Forwarded-For: 198.51.100.1, 203.0.113.9, 10.1.2.3\r\n";
        assert_eq!(whoami(addr, "127.0.0.1", chain).await, "203.0.113.9");
        // The same over several header lines.
        let lines = "X-Forwarded-For: 198.51.100.1\r\nX-Forwarded-For: 203.0.113.9, 10.1.2.3\r\n";
        assert_eq!(whoami(addr, "127.0.0.1", lines).await, "203.0.113.9");

        stop.cancel();
        server.await.unwrap();
    }
}
