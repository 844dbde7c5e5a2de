//! [`Client::send`]: one POST to a merchant endpoint, every failure returned as a value.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::header::{HeaderValue, RETRY_AFTER};
use ipnet::IpNet;
use tokio::time::timeout_at;
use url::{Host, Url};

use crate::error::{Error, FailClass, classify, describe, truncate};
use crate::ip::AddressPolicy;
use crate::resolver::VettingResolver;
use crate::tls;

/// How the egress client behaves. [`Default`] gives production settings.
#[derive(Debug, Clone)]
pub struct EgressConfig {
    /// Limit on establishing the TCP connection (and TLS handshake). Default 5 s.
    pub connect_timeout: Duration,
    /// Limit on the whole attempt: connect, send, response head and reading the capped body.
    /// Default 15 s.
    pub total_timeout: Duration,
    /// Allow `http://` URLs. Default false: they are refused as [`FailClass::Blocked`].
    pub allow_http: bool,
    /// Networks exempt from the address policy (tests use `127.0.0.0/8` and `::1/128`).
    pub allow_nets: Vec<IpNet>,
    /// PEM bytes of extra trust anchors, added to the webpki roots.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Read at most this many bytes of a response body; then stop and drop the connection.
    /// Default 64 KiB.
    pub max_response_bytes: usize,
    /// The `User-Agent` sent unless the request sets its own. Default `blockhook/<version>`.
    pub user_agent: String,
    /// Like curl's `--resolve`: a host name and the addresses it resolves to, instead of DNS.
    /// These addresses are still vetted by the address policy.
    pub resolve_overrides: Vec<(String, Vec<IpAddr>)>,
    /// Idle keep-alive connections kept per host for reuse. Default 32.
    pub pool_max_idle_per_host: usize,
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(15),
            allow_http: false,
            allow_nets: Vec::new(),
            extra_ca_pem: None,
            max_response_bytes: 64 * 1024,
            user_agent: concat!("blockhook/", env!("CARGO_PKG_VERSION")).to_owned(),
            resolve_overrides: Vec::new(),
            pool_max_idle_per_host: 32,
        }
    }
}

/// One webhook POST: the target, the headers (signature and all) and the body, sent as given.
#[derive(Debug, Clone)]
pub struct Request {
    /// The endpoint URL; must be `https` (or `http` when allowed), with no credentials.
    pub url: Url,
    /// Headers sent as given; `Content-Length` and `Host` are set by the client.
    pub headers: HeaderMap,
    /// The body, byte for byte.
    pub body: Bytes,
}

/// What came of one attempt. `failure` is `None` exactly when an HTTP response head was
/// received, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The response status, when a response was received.
    pub status: Option<u16>,
    /// The response headers in order (values decoded lossily as UTF-8).
    pub headers: Vec<(String, String)>,
    /// The first `max_response_bytes` of the body.
    pub body: Bytes,
    /// The body was longer than the cap, or reading it stopped early (see `detail`).
    pub truncated: bool,
    /// From the start of `send` until it returned (body read included).
    pub latency: Duration,
    /// Why there is no response, if there is none.
    pub failure: Option<FailClass>,
    /// Short human text about a failure, or about a response body that could not be read in
    /// full. Never contains the URL.
    pub detail: Option<String>,
    /// The parsed `Retry-After` header (delta-seconds or HTTP-date), when present and valid.
    pub retry_after: Option<Duration>,
    /// The address actually connected to, when known.
    pub remote_addr: Option<SocketAddr>,
}

impl Response {
    fn failed(class: FailClass, detail: String, started: Instant) -> Self {
        Self {
            status: None,
            headers: Vec::new(),
            body: Bytes::new(),
            truncated: false,
            latency: started.elapsed(),
            failure: Some(class),
            detail: Some(detail),
            retry_after: None,
            remote_addr: None,
        }
    }
}

/// The egress client. Cheap to clone (one `Arc`); share one per process so keep-alive
/// connections are reused.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    policy: Arc<AddressPolicy>,
    allow_http: bool,
    total_timeout: Duration,
    max_response_bytes: usize,
}

impl Client {
    /// Build a client. Fails only on configuration errors (CA bundle, user agent).
    pub fn new(cfg: EgressConfig) -> Result<Self, Error> {
        let policy = Arc::new(AddressPolicy::new(cfg.allow_nets));
        let resolver = VettingResolver::new(Arc::clone(&policy), cfg.resolve_overrides);
        let tls = tls::client_config(cfg.extra_ca_pem.as_deref())?;
        let user_agent = HeaderValue::from_str(&cfg.user_agent).map_err(|_| Error::UserAgent)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .dns_resolver(Arc::new(resolver))
            // A proxy would do its own resolution and dial past the policy; env proxies are off.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .https_only(!cfg.allow_http)
            .connect_timeout(cfg.connect_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
            .user_agent(user_agent)
            .build()
            .map_err(Error::Build)?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                policy,
                allow_http: cfg.allow_http,
                total_timeout: cfg.total_timeout,
                max_response_bytes: cfg.max_response_bytes,
            }),
        })
    }

    /// POST `req.body` to `req.url`. Never fails: a failed attempt is a [`Response`] with
    /// `failure` set. Redirects are not followed.
    pub async fn send(&self, req: Request) -> Response {
        let started = Instant::now();
        let now = tokio::time::Instant::now();
        // An absurd total_timeout (Duration::MAX) must not overflow the clock: cap at ~a century.
        let deadline = now
            .checked_add(self.inner.total_timeout)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));

        if let Err(refusal) = self.vet_url(&req.url) {
            tracing::debug!(host = req.url.host_str(), %refusal, "refused before connecting");
            return Response::failed(FailClass::Blocked, refusal, started);
        }

        // The request is built whole, not through a builder, whose `headers` rebuilds the map
        // entry by entry.
        let mut request = reqwest::Request::new(http::Method::POST, req.url);
        *request.headers_mut() = req.headers;
        *request.body_mut() = Some(req.body.into());
        let attempt = self.inner.http.execute(request);
        let mut resp = match timeout_at(deadline, attempt).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(err)) => {
                let class = classify(&err);
                let detail = describe(err);
                tracing::debug!(failure = %class, %detail, "attempt failed");
                return Response::failed(class, detail, started);
            }
            Err(_) => {
                let detail = format!(
                    "no response within {} ms",
                    self.inner.total_timeout.as_millis()
                );
                return Response::failed(FailClass::Timeout, detail, started);
            }
        };

        let status = resp.status().as_u16();
        let remote_addr = resp.remote_addr();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| parse_retry_after(v.as_bytes(), SystemTime::now()));
        let headers = resp
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        let capped = read_capped(&mut resp, self.inner.max_response_bytes, deadline).await;
        // Dropping an unfinished response closes its connection instead of pooling it.
        drop(resp);

        Response {
            status: Some(status),
            headers,
            body: capped.body,
            truncated: capped.truncated,
            latency: started.elapsed(),
            failure: None,
            detail: capped.note,
            retry_after,
            remote_addr,
        }
    }

    /// The checks that need no connection: scheme, credentials, and IP-literal hosts (which
    /// never reach the resolver).
    fn vet_url(&self, url: &Url) -> Result<(), String> {
        match url.scheme() {
            "https" => {}
            "http" if self.inner.allow_http => {}
            "http" => return Err("http:// URLs are not allowed (https only)".into()),
            other => return Err(truncate(format!("scheme {other:?} is not allowed"))),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("credentials in the URL are not allowed".into());
        }
        let ip: IpAddr = match url.host() {
            None => return Err("the URL has no host".into()),
            Some(Host::Domain(_)) => return Ok(()),
            Some(Host::Ipv4(v4)) => v4.into(),
            Some(Host::Ipv6(v6)) => v6.into(),
        };
        if self.inner.policy.permits(ip) {
            Ok(())
        } else {
            Err(format!("address {ip} is forbidden by the address policy"))
        }
    }
}

struct Capped {
    body: Bytes,
    truncated: bool,
    note: Option<String>,
}

/// Read at most `cap` bytes of the body before `deadline`. Stops at the first byte past the
/// cap; a body that errors or stalls keeps what was read, marked truncated, with a note.
async fn read_capped(
    resp: &mut reqwest::Response,
    cap: usize,
    deadline: tokio::time::Instant,
) -> Capped {
    let hint = resp
        .content_length()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(8 * 1024);
    let mut buf = BytesMut::with_capacity(hint.min(cap));
    loop {
        let (truncated, note) = match timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                let room = cap - buf.len();
                if chunk.len() <= room {
                    buf.extend_from_slice(&chunk);
                    continue;
                }
                buf.extend_from_slice(&chunk[..room]);
                (true, None)
            }
            Ok(Ok(None)) => (false, None),
            Ok(Err(err)) => (
                true,
                Some(format!("response body incomplete: {}", describe(err))),
            ),
            Err(_) => (true, Some("timed out reading the response body".to_owned())),
        };
        return Capped {
            body: buf.freeze(),
            truncated,
            note,
        };
    }
}

/// `Retry-After` as delta-seconds or an HTTP-date (relative to `now`; a past date is zero).
fn parse_retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long digit strings saturate instead of failing.
        return Some(Duration::from_secs(text.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_delta_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after(b"7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(b" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(b"0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(b"99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn retry_after_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT")
            .unwrap_or_else(|e| panic!("{e}"));
        let cases: &[(&[u8], u64)] = &[
            (b"Sun, 06 Nov 1994 08:51:37 GMT", 120), // IMF-fixdate
            (b"Sunday, 06-Nov-94 08:50:37 GMT", 60), // obsolete RFC 850
            (b"Sun Nov  6 08:49:47 1994", 10),       // obsolete asctime
            (b"Sun, 06 Nov 1994 08:00:00 GMT", 0),   // in the past
        ];
        for (value, secs) in cases {
            assert_eq!(
                parse_retry_after(value, now),
                Some(Duration::from_secs(*secs)),
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn retry_after_garbage_is_none() {
        let now = SystemTime::now();
        for value in [&b""[..], b"soon", b"-5", b"1.5", b"7 seconds", b"\xff"] {
            assert_eq!(parse_retry_after(value, now), None, "{value:?}");
        }
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let cfg = EgressConfig::default();
        assert_eq!(cfg.connect_timeout, Duration::from_secs(5));
        assert_eq!(cfg.total_timeout, Duration::from_secs(15));
        assert!(!cfg.allow_http);
        assert!(cfg.allow_nets.is_empty());
        assert!(cfg.extra_ca_pem.is_none());
        assert_eq!(cfg.max_response_bytes, 65536);
        assert!(cfg.user_agent.starts_with("blockhook/"));
        assert!(cfg.resolve_overrides.is_empty());
        assert_eq!(cfg.pool_max_idle_per_host, 32);
    }

    #[test]
    fn bad_user_agent_is_a_construction_error() {
        let cfg = EgressConfig {
            user_agent: "bad\nagent".into(),
            ..EgressConfig::default()
        };
        assert!(matches!(Client::new(cfg), Err(Error::UserAgent)));
    }

    #[tokio::test]
    async fn client_is_clone_send_sync() {
        fn assert_traits<T: Clone + Send + Sync + 'static>() {}
        assert_traits::<Client>();
        let client = Client::new(EgressConfig::default()).unwrap_or_else(|e| panic!("{e}"));
        let copy = client.clone();
        assert!(Arc::ptr_eq(&client.inner, &copy.inner));
    }
}
