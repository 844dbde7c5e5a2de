//! `blockhook listen`: a local webhook receiver for development, in the spirit of `stripe listen`.
//!
//! Every request (any method, any path) is verified with `blockhook-receiver` and printed as one
//! readable block: event type, request time and its skew against the local clock, the signature
//! verdict (with the precise reason when it fails), event id and attempt, and the body pretty
//! printed with its number literals untouched. The answer is `200`, or `401 <reason>: <detail>`;
//! with `--forward URL` the original request (same method, same body bytes, same headers except
//! hop-by-hop ones and `Host`) is relayed to the developer's app and the app's answer is returned,
//! whatever the verdict, so the app's own verification can be exercised too.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use reqwest::Url;

use super::output::pretty_json;
use super::when::iso8601;
use blockhook_receiver::{
    Error, EventKind, HeaderSource, Scheme, Verifier, VerifyMode, Webhook, headers,
};
use blockhook_sig::standard;

/// The largest body accepted (blockhook's payloads are far smaller).
const MAX_BODY: usize = 10 * 1024 * 1024;
/// How much of a body, or of the forwarded app's answer, is printed.
const PRINT_BODY_LIMIT: usize = 64 * 1024;
const PRINT_ANSWER_LIMIT: usize = 2 * 1024;

/// Flags of `listen`.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = "Example:\n  blockhook listen --secret sck_... --forward http://127.0.0.1:3000/webhooks/blockatm\n  \
blockhook send --url http://127.0.0.1:9000/ --secret sck_... --event Payment"
)]
pub struct Args {
    /// The endpoint's webhook secret, as shown (repeatable: any of them may match, as during a
    /// rotation).
    #[arg(
        long = "secret",
        value_name = "SECRET",
        required = true,
        env = "BLOCKATM_WEBHOOK_SECRET"
    )]
    pub secrets: Vec<String>,
    /// Port to listen on (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 9000)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The endpoint's signing mode: sorted, raw, either (sorted or raw), or standard (Standard
    /// Webhooks headers, whsec_ secrets).
    #[arg(long, value_enum, default_value_t = ListenMode::Sorted)]
    pub mode: ListenMode,
    /// Time window in seconds: requests whose time is this far from the local clock are refused.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub window: u64,
    /// Refuse an exact repeat of an accepted request (off by default, so that a request can be
    /// replayed by hand while developing).
    #[arg(long)]
    pub reject_replays: bool,
    /// Relay every request to this URL (exactly this URL) and answer with the app's response.
    #[arg(long, value_name = "URL")]
    pub forward: Option<Url>,
}

/// What `--mode` takes: the endpoint's signing mode, or `either` of the BlockATM ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListenMode {
    /// `BlockATM-Signature-V2`, sorted message.
    Sorted,
    /// `BlockATM-Signature-V2`, raw body.
    Raw,
    /// `BlockATM-Signature-V2`, either message form.
    Either,
    /// Standard Webhooks (`webhook-signature`).
    Standard,
}

impl ListenMode {
    /// The receiver's scheme and BlockATM mode for this flag.
    fn verifier(self) -> (Scheme, VerifyMode) {
        match self {
            Self::Sorted => (Scheme::BlockAtm, VerifyMode::Sorted),
            Self::Raw => (Scheme::BlockAtm, VerifyMode::Raw),
            Self::Either => (Scheme::BlockAtm, VerifyMode::Either),
            Self::Standard => (Scheme::Standard, VerifyMode::Raw),
        }
    }
}

/// Runs until Ctrl-C.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (scheme, mode) = args.mode.verifier();
    let verifier = Verifier::builder()
        .secrets(&args.secrets)
        .scheme(scheme)
        .mode(mode)
        .window(Duration::from_secs(args.window))
        .replay_protection(args.reject_replays)
        .build()
        .context("invalid --secret")?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?;
    let listen = Arc::new(Listen {
        verifier,
        forward: args.forward,
        client,
        seq: AtomicU64::new(0),
    });
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(serve(listen, &args.host, args.port))?;
    Ok(ExitCode::SUCCESS)
}

/// Shared by every request.
struct Listen {
    verifier: Verifier,
    forward: Option<Url>,
    client: reqwest::Client,
    seq: AtomicU64,
}

async fn serve(listen: Arc<Listen>, host: &str, port: u16) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .with_context(|| format!("cannot listen on {host}:{port}"))?;
    let addr = listener.local_addr()?;
    let v = &listen.verifier;
    println!("listening on http://{addr}");
    let what = match v.scheme() {
        Scheme::BlockAtm => format!("BlockATM-Signature-V2: mode {}", v.mode()),
        Scheme::Standard => "Standard Webhooks (webhook-signature)".to_owned(),
    };
    println!(
        "verifying {what}, {} secret(s), window {} s{}",
        v.secret_count(),
        v.window().as_secs(),
        if v.replay_protection() {
            ", replays refused"
        } else {
            ""
        }
    );
    match &listen.forward {
        Some(url) => println!("forwarding every request to {url}"),
        None => println!("answering 200 to valid requests, 401 to the others"),
    }
    println!("press Ctrl-C to stop");
    let app = Router::new().fallback(receive).with_state(listen);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .context("serving HTTP")
}

/// Verifies, prints, answers (or forwards).
async fn receive(
    State(listen): State<Arc<Listen>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            println!(
                "!! {} {} from {peer}: body not read: {e}",
                parts.method, parts.uri
            );
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body not read: {e}\n"),
            )
                .into_response();
        }
    };
    let n = listen.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let now = now_ms();
    let verdict = listen.verifier.verify_at(&parts.headers, &body, now);
    let config = Config {
        secrets: listen.verifier.secret_count(),
        scheme: listen.verifier.scheme(),
        mode: listen.verifier.mode(),
    };
    let mut block = report(n, peer, &parts, &body, &verdict, now, config);
    let response = match &listen.forward {
        Some(url) => forward(&listen.client, url, &parts, body, &mut block).await,
        None => local_answer(&verdict, &mut block),
    };
    println!("{block}");
    response
}

/// `200 ok`, or `401 <reason>: <detail>`.
fn local_answer(verdict: &Result<Webhook, Error>, block: &mut String) -> Response {
    let (status, text) = match verdict {
        Ok(_) => (StatusCode::OK, "ok\n".to_owned()),
        Err(e) if e.is_config() => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}: {e}\n", e.reason()),
        ),
        Err(e) => (StatusCode::UNAUTHORIZED, format!("{}: {e}\n", e.reason())),
    };
    line(block, "answered", status.to_string());
    (status, text).into_response()
}

/// Relays the request to `url` and returns the app's answer (`502` if it cannot be reached).
async fn forward(
    client: &reqwest::Client,
    url: &Url,
    parts: &Parts,
    body: Bytes,
    block: &mut String,
) -> Response {
    let started = Instant::now();
    let sent = client
        .request(parts.method.clone(), url.clone())
        .headers(end_to_end(&parts.headers))
        .body(body)
        .send()
        .await;
    let answer = match sent {
        Ok(resp) => {
            let status = resp.status();
            let headers = end_to_end(resp.headers());
            resp.bytes().await.map(|b| (status, headers, b))
        }
        Err(e) => Err(e),
    };
    let ms = started.elapsed().as_millis();
    match answer {
        Ok((status, headers, bytes)) => {
            line(
                block,
                "forwarded",
                format!("{} {url} -> {status} in {ms} ms", parts.method),
            );
            if !bytes.is_empty() {
                line(block, "app said", excerpt(&bytes, PRINT_ANSWER_LIMIT));
            }
            (status, headers, bytes).into_response()
        }
        Err(e) => {
            let why = format!("{:#}", anyhow::Error::from(e));
            line(
                block,
                "forwarded",
                format!("{} {url} -> FAILED after {ms} ms: {why}", parts.method),
            );
            line(block, "answered", StatusCode::BAD_GATEWAY.to_string());
            let text = format!("blockhook listen could not reach {url}: {why}\n");
            (StatusCode::BAD_GATEWAY, text).into_response()
        }
    }
}

/// `headers` without the hop-by-hop ones (RFC 9110 section 7.6.1, plus those named in
/// `Connection`), `Host` and `Content-Length` (recomputed for the same bytes).
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    const HOP_BY_HOP: [&str; 8] = [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ];
    let named_in_connection: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let dropped = |name: &HeaderName| {
        let n = name.as_str();
        HOP_BY_HOP.contains(&n)
            || name == header::TRANSFER_ENCODING
            || name == header::HOST
            || name == header::CONTENT_LENGTH
            || named_in_connection.iter().any(|c| c == n)
    };
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if !dropped(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The printed block for one request (the answer lines are appended later).
fn report(
    n: u64,
    peer: SocketAddr,
    parts: &Parts,
    body: &[u8],
    verdict: &Result<Webhook, Error>,
    now: u64,
    config: Config,
) -> String {
    let h = &parts.headers;
    let standard = config.scheme == Scheme::Standard;
    let (event_header, id_header) = if standard {
        (headers::EVENT_TYPE, standard::WEBHOOK_ID)
    } else {
        (headers::EVENT, headers::EVENT_ID)
    };
    let mut out = format!(
        "--- #{n} {} {} from {peer} at {}\n",
        parts.method,
        parts.uri,
        i64::try_from(now)
            .ok()
            .and_then(iso8601)
            .unwrap_or_default()
    );
    let event = match h.header(event_header) {
        Some(raw) => {
            let kind = EventKind::parse(raw);
            match &kind {
                EventKind::Other(_) => format!("{raw} (not a built-in event type)"),
                k if k.as_str() == raw => raw.to_owned(),
                k => format!("{k} (sent as {raw:?})"),
            }
        }
        None => format!("(no {event_header} header)"),
    };
    line(&mut out, "event", event);
    let (time_header, unit) = if standard {
        (standard::WEBHOOK_TIMESTAMP, 1000)
    } else {
        (headers::REQUEST_TIME, 1)
    };
    let time = match h.header(time_header) {
        Some(raw) => match raw.parse::<u64>().map(|t| t.saturating_mul(unit)) {
            Ok(t) if raw.bytes().all(|b| b.is_ascii_digit()) => {
                format!(
                    "{raw} = {}, {}",
                    i64::try_from(t).ok().and_then(iso8601).unwrap_or_default(),
                    skew(t, now)
                )
            }
            _ if standard => format!("{raw:?} (not a plain integer of seconds)"),
            _ => format!("{raw:?} (not a plain integer of milliseconds)"),
        },
        None => format!("(no {time_header} header)"),
    };
    line(&mut out, "time", time);
    let signature = match verdict {
        Ok(hook) if standard => format!(
            "valid (Standard Webhooks, secret #{} of {})",
            hook.secret_index() + 1,
            config.secrets
        ),
        Ok(hook) => format!(
            "valid (mode {}, secret #{} of {})",
            hook.mode(),
            hook.secret_index() + 1,
            config.secrets
        ),
        Err(e) => format!("REJECTED {}: {e}{}", e.reason(), hint(e, config)),
    };
    line(&mut out, "signature", signature);
    if let Some(id) = h.header(id_header) {
        line(&mut out, "event id", id.to_owned());
    }
    if let Some(attempt) = h.header(headers::ATTEMPT) {
        line(&mut out, "attempt", attempt.to_owned());
    }
    let _ = writeln!(out, "  body ({} bytes):", body.len());
    for l in render_body(body).lines() {
        let _ = writeln!(out, "    {l}");
    }
    out
}

/// What the verifier checks, for the printed report.
#[derive(Debug, Clone, Copy)]
struct Config {
    secrets: usize,
    scheme: Scheme,
    mode: VerifyMode,
}

/// What to try next, for the failures a developer can fix from `listen`'s flags.
fn hint(e: &Error, config: Config) -> String {
    let mode = config.mode;
    if config.scheme == Scheme::Standard {
        return match e.reason() {
            "missing_header" => {
                " (listening for Standard Webhooks; is the endpoint's signing mode standard?)"
                    .to_owned()
            }
            "mismatch" => " (is --secret the endpoint's whsec_ secret?)".to_owned(),
            "too_old" | "too_new" => " (--window widens the window; check both clocks)".to_owned(),
            _ => String::new(),
        };
    }
    match (e.reason(), mode) {
        ("mismatch", VerifyMode::Either) => " (tried both modes with every --secret)".to_owned(),
        ("mismatch", _) => format!(
            " (listening in mode {mode}; is the endpoint's mode the same? --mode either tries both)"
        ),
        ("not_json_object", VerifyMode::Sorted) => " (mode sorted needs a JSON object)".to_owned(),
        ("too_old" | "too_new", _) => " (--window widens the window; check both clocks)".to_owned(),
        _ => String::new(),
    }
}

fn line(out: &mut String, label: &str, value: String) {
    let _ = writeln!(out, "  {:<11}{value}", format!("{label}:"));
}

/// How far `t` is from `now`, in words.
fn skew(t: u64, now: u64) -> String {
    if t <= now {
        format!("{} s ago (local clock)", seconds(now - t))
    } else {
        format!("{} s in the FUTURE (local clock behind?)", seconds(t - now))
    }
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The body for printing: JSON re-indented with every literal kept as received, else text.
fn render_body(body: &[u8]) -> String {
    if body.is_empty() {
        return "(empty)".to_owned();
    }
    match std::str::from_utf8(body) {
        Ok(text) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => {
            let pretty = pretty_json(text);
            truncate(&pretty, PRINT_BODY_LIMIT)
        }
        _ => excerpt(body, PRINT_BODY_LIMIT),
    }
}

/// Lossy text of `bytes`, cut at `limit` bytes.
fn excerpt(bytes: &[u8], limit: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    truncate(&text, limit)
}

fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.trim_end().to_owned();
    }
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}... ({} more bytes)", &text[..cut], text.len() - cut)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn render_body_falls_back_to_text() {
        assert_eq!(render_body(b""), "(empty)");
        assert_eq!(render_body(b"not json"), "not json");
        assert_eq!(render_body(b"{\"a\":1}"), "{\n  \"a\": 1\n}");
        assert!(render_body(&vec![b'x'; PRINT_BODY_LIMIT + 5]).ends_with("... (5 more bytes)"));
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("host", "127.0.0.1:9000"),
            ("content-length", "10"),
            ("transfer-encoding", "chunked"),
            ("blockatm-signature-v2", "ab"),
            ("x-multi", "1"),
            ("x-multi", "2"),
        ] {
            h.append(HeaderName::from_static(k), v.parse().unwrap());
        }
        let out = end_to_end(&h);
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["blockatm-signature-v2", "x-multi"]);
        assert_eq!(out.get_all("x-multi").iter().count(), 2);
    }

    #[test]
    fn skew_words() {
        assert_eq!(skew(1_000, 3_500), "2.500 s ago (local clock)");
        assert_eq!(
            skew(5_000, 4_999),
            "0.001 s in the FUTURE (local clock behind?)"
        );
    }
}
