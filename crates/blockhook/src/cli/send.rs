//! `blockhook send`: send one correctly signed webhook to a URL and show the exchange.
//!
//! The request carries the contract headers (`Content-Type`, `BlockATM-Event`,
//! `BlockATM-Request-Time` taken now, `BlockATM-Signature-V2`) plus `BlockHook-Event-Id` (fresh)
//! and `BlockHook-Attempt: 1`, exactly as blockhook's dispatcher sends them; with `--mode
//! standard`, the Standard Webhooks headers instead of the BlockATM ones. The body is a file,
//! stdin, or a sample payload for the event type (contract section 4). Exit code: 0 when the
//! receiver answered `200` (the only acknowledgement), 1 for any other status, 2 on errors.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use reqwest::Url;

use blockhook_sig::standard::{self, StandardSecret};
use blockhook_sig::{Mode, headers, samples, sign};

/// Flags of `send`.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = "Examples:\n  blockhook send --url http://127.0.0.1:9000/ --secret sck_... --event Payout\n  \
blockhook send --url https://localhost:8443/hook --ca-file dev-ca.pem --secret sck_... order.json\n  \
blockhook send --url http://127.0.0.1:3000/hook --secret sck_... --header 'BlockATM-Event: payment' -\n\n\
Exit status: 0 when the receiver answered 200, 1 for any other status, 2 on errors."
)]
pub struct Args {
    /// Receiver URL (http:// is allowed: this is a development tool).
    #[arg(long)]
    pub url: Url,
    /// The endpoint's webhook secret, as shown (used as-is, not decoded).
    #[arg(long, env = "BLOCKATM_WEBHOOK_SECRET")]
    pub secret: String,
    /// Event type sent as BlockATM-Event: Payment, Payout, QR-Payment, QR-Payout or your own.
    #[arg(long, default_value = "Payment")]
    pub event: String,
    /// Signing mode of the endpoint: sorted or raw (BlockATM headers), or standard (Standard
    /// Webhooks headers; --secret is then a whsec_ secret).
    #[arg(long, value_enum, default_value_t = SendMode::Sorted)]
    pub mode: SendMode,
    /// Extra header "Name: value" (repeatable); it replaces a header of the same name, so a
    /// contract header can be altered to test the receiver's checks.
    #[arg(long = "header", value_name = "K:V", value_parser = parse_header)]
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// PEM file of CA certificate(s) to trust, for a receiver with a self-signed setup (e.g.
    /// mkcert's rootCA.pem). Trust the CA that signed the server's certificate: a certificate
    /// that is both CA and server (plain `openssl req -x509`) is refused by the TLS library.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Use this BlockATM-Request-Time (Unix ms) instead of now, e.g. to test the window check.
    #[arg(long, value_name = "MS")]
    pub time: Option<u64>,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
    /// JSON body: a file, or - for stdin (sent byte for byte). Default: a sample for --event.
    #[arg(value_name = "FILE|-")]
    pub file: Option<PathBuf>,
}

/// What `--mode` takes: an endpoint's signing mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SendMode {
    /// `BlockATM-Signature-V2`, sorted message.
    Sorted,
    /// `BlockATM-Signature-V2`, raw body.
    Raw,
    /// Standard Webhooks (`webhook-signature`).
    Standard,
}

/// Sends the webhook and prints the exchange.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let body = read_body(args.file.as_ref(), &args.event)?;
    let headers = request_headers(&args, &body)?;
    let client = client(args.ca_file.as_ref(), args.timeout)?;
    let rt = tokio::runtime::Runtime::new()?;
    let status = rt.block_on(exchange(&client, &args.url, headers, body))?;
    Ok(if status == 200 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The contract headers, signed now (or at `--time`), then the `--header` overrides.
fn request_headers(args: &Args, body: &[u8]) -> anyhow::Result<HeaderMap> {
    let time_ms = args.time.unwrap_or_else(now_ms);
    let event_id = format!("evt_{}", uuid::Uuid::now_v7().simple());
    let mut contract = vec![(header::CONTENT_TYPE.as_str(), "application/json".to_owned())];
    match args.mode {
        SendMode::Sorted | SendMode::Raw => {
            let mode = if args.mode == SendMode::Raw {
                Mode::Raw
            } else {
                Mode::Sorted
            };
            let signature = sign(args.secret.as_bytes(), mode, body, time_ms)
                .with_context(|| format!("cannot sign this body in {mode} mode"))?;
            contract.extend([
                (headers::EVENT, args.event.clone()),
                (headers::REQUEST_TIME, time_ms.to_string()),
                (headers::SIGNATURE_V2, signature.to_string()),
                (headers::EVENT_ID, event_id),
            ]);
        }
        SendMode::Standard => {
            let secret = StandardSecret::parse_lenient(&args.secret)
                .context("--secret must be a whsec_ secret in mode standard")?;
            let time_s = time_ms / 1000;
            let signature = standard::sign(secret.key(), &event_id, time_s, body)?;
            contract.extend([
                (standard::WEBHOOK_ID, event_id),
                (standard::WEBHOOK_TIMESTAMP, time_s.to_string()),
                (standard::WEBHOOK_SIGNATURE, signature),
                (headers::EVENT_TYPE, args.event.clone()),
            ]);
        }
    }
    contract.extend([
        (headers::ATTEMPT, "1".to_owned()),
        (
            headers::ATTEMPT_ID,
            format!("att_{}", uuid::Uuid::now_v7().simple()),
        ),
    ]);
    let mut out = HeaderMap::new();
    for (name, value) in contract {
        let value =
            HeaderValue::from_str(&value).with_context(|| format!("invalid {name} value"))?;
        out.insert(HeaderName::from_bytes(name.as_bytes())?, value);
    }
    for (name, value) in &args.headers {
        out.insert(name.clone(), value.clone());
    }
    Ok(out)
}

/// Prints the request, sends it, prints the response; returns the status.
async fn exchange(
    client: &reqwest::Client,
    url: &Url,
    headers: HeaderMap,
    body: Vec<u8>,
) -> anyhow::Result<u16> {
    println!("> POST {url}");
    print_headers('>', &headers);
    println!(">");
    println!("{}", String::from_utf8_lossy(&body));
    println!();
    let started = Instant::now();
    let resp = client
        .post(url.clone())
        .headers(headers)
        .body(body)
        .send()
        .await
        .with_context(|| format!("POST {url} failed"))?;
    let status = resp.status();
    let response_headers = resp.headers().clone();
    let text = resp.bytes().await.context("reading the response body")?;
    println!("< {status} ({} ms)", started.elapsed().as_millis());
    print_headers('<', &response_headers);
    println!("<");
    if !text.is_empty() {
        println!("{}", String::from_utf8_lossy(&text).trim_end());
    }
    if status != 200 {
        eprintln!("blockhook: the receiver answered {status}: only 200 acknowledges a webhook");
    }
    Ok(status.as_u16())
}

fn print_headers(prefix: char, headers: &HeaderMap) {
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        let name = if prefix == '>' {
            display_name(name.as_str())
        } else {
            name.as_str()
        };
        println!("{prefix} {name}: {value}");
    }
}

/// The contract's spelling of our headers (`HeaderMap` lower-cases names; HTTP/1 sends them
/// as given here, and receivers match case-insensitively anyway).
fn display_name(name: &str) -> &str {
    [
        headers::EVENT,
        headers::REQUEST_TIME,
        headers::SIGNATURE_V2,
        headers::EVENT_ID,
        headers::EVENT_TYPE,
        headers::ATTEMPT,
        headers::ATTEMPT_ID,
        "Content-Type",
    ]
    .into_iter()
    .find(|known| known.eq_ignore_ascii_case(name))
    .unwrap_or(name)
}

fn client(ca_file: Option<&PathBuf>, timeout_secs: u64) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(timeout_secs));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} holds no usable PEM certificate", path.display()))?;
        anyhow::ensure!(
            !certs.is_empty(),
            "{} holds no PEM certificate",
            path.display()
        );
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder.build()?)
}

/// The body: the file's bytes, stdin's, or the sample for `event`.
fn read_body(file: Option<&PathBuf>, event: &str) -> anyhow::Result<Vec<u8>> {
    match file {
        Some(path) if path.as_os_str() == "-" => {
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .context("reading the body from stdin")?;
            Ok(body)
        }
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display())),
        None => Ok(sample(event).into_bytes()),
    }
}

/// A realistic payload for `event` (compared case-insensitively, like receivers do).
fn sample(event: &str) -> String {
    use blockhook_receiver::EventKind;
    match EventKind::parse(event) {
        EventKind::Payment => samples::PAYMENT.to_owned(),
        EventKind::Payout => samples::PAYOUT.to_owned(),
        EventKind::QrPayment => samples::QR_PAYMENT.to_owned(),
        EventKind::QrPayout => samples::QR_PAYOUT.to_owned(),
        EventKind::Other(name) => serde_json::json!({
            "event": name,
            "test": true,
            "note": "sample payload sent by `blockhook send`",
            "createTime": now_ms(),
        })
        .to_string(),
    }
}

/// Parses `Name: value` (or `Name:value`).
fn parse_header(raw: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = raw
        .split_once(':')
        .ok_or_else(|| format!("{raw:?} is not Name:value"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{:?} is not a valid header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of {name} is not a valid header value"))?;
    Ok((name, value))
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
    fn samples_are_signable_json_objects() {
        for event in [
            "Payment",
            "payout",
            "QR-Payment",
            "qr_payout",
            "Refund \"x\"",
        ] {
            let body = sample(event);
            blockhook_sig::json::validate_object(body.as_bytes()).unwrap();
            sign(b"k", Mode::Sorted, body.as_bytes(), 1).unwrap();
        }
        assert!(sample("Payment").contains("\"orderNo\":\"OrderNo_202504010023\""));
        assert!(sample("Payout").contains("\"bizOrderNo\":\"B202505220012\""));
        assert!(sample("QR-Payout").contains("detailList"));
        assert!(sample("Refund").contains("\"event\":\"Refund\""));
    }

    #[test]
    fn header_flags() {
        let (n, v) = parse_header("X-Debug: 1").unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("x-debug", "1"));
        let (n, v) = parse_header("BlockATM-Event:payment").unwrap();
        assert_eq!(
            (n.as_str(), v.to_str().unwrap()),
            ("blockatm-event", "payment")
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: 1").is_err());
        assert!(parse_header("X: a\nb").is_err());
    }

    #[test]
    fn display_names_follow_the_contract() {
        assert_eq!(
            display_name("blockatm-signature-v2"),
            "BlockATM-Signature-V2"
        );
        assert_eq!(display_name("content-type"), "Content-Type");
        assert_eq!(display_name("x-other"), "x-other");
    }
}
