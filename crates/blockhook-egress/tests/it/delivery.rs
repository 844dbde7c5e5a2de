//! Responses of every status come back as they are; bodies are capped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::http::header::{LOCATION, RETRY_AFTER};
use axum::routing::post;
use blockhook_egress::{Client, EgressConfig, Request};
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue};

use crate::support::{Server, TestCa, app, config, header, post as post_req};

#[tokio::test]
async fn statuses_pass_through_and_are_not_failures() {
    let server = Server::http(app()).await;
    let client = Client::new(config()).unwrap();
    for code in [200u16, 201, 204, 400, 404, 410, 429, 500, 503] {
        let resp = client
            .send(post_req(server.url(&format!("/status/{code}")), "{}"))
            .await;
        assert_eq!(resp.status, Some(code));
        assert_eq!(resp.failure, None, "{code}");
        assert_eq!(resp.detail, None, "{code}");
        assert_eq!(resp.retry_after, None, "{code}");
    }
}

#[tokio::test]
async fn headers_and_body_are_sent_as_given_with_our_user_agent() {
    let server = Server::http(app()).await;
    let client = Client::new(config()).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        "blockatm-signature-v2",
        HeaderValue::from_static("t=1,v2=abc"),
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let body = Bytes::from_static(br#"{"b":1,"a":[1.50,"x"]}"#);

    let resp = client
        .send(Request {
            url: server.url("/echo"),
            headers,
            body: body.clone(),
        })
        .await;

    assert_eq!(resp.status, Some(200));
    assert_eq!(resp.body, body, "the body arrived byte for byte");
    assert_eq!(header(&resp, "x-signature"), Some("t=1,v2=abc"));
    let ua = header(&resp, "x-user-agent").unwrap_or_default();
    assert_eq!(ua, format!("blockhook/{}", env!("CARGO_PKG_VERSION")));

    // A configured user agent replaces the default.
    let client = Client::new(EgressConfig {
        user_agent: "acme-hooks/2".into(),
        ..config()
    })
    .unwrap();
    let resp = client.send(post_req(server.url("/echo"), "x")).await;
    assert_eq!(header(&resp, "x-user-agent"), Some("acme-hooks/2"));
}

#[tokio::test]
async fn retry_after_in_seconds() {
    let app = Router::new().route(
        "/busy",
        post(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(RETRY_AFTER, "7")],
                "busy",
            )
        }),
    );
    let server = Server::http(app).await;
    let client = Client::new(config()).unwrap();

    let resp = client.send(post_req(server.url("/busy"), "{}")).await;

    assert_eq!(resp.status, Some(503));
    assert_eq!(resp.failure, None);
    assert_eq!(resp.retry_after, Some(Duration::from_secs(7)));
    assert_eq!(header(&resp, "retry-after"), Some("7"));
    assert_eq!(&resp.body[..], b"busy");
}

#[tokio::test]
async fn retry_after_as_http_date() {
    let app = Router::new().route(
        "/busy",
        post(|| async {
            let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
            (StatusCode::TOO_MANY_REQUESTS, [(RETRY_AFTER, at)])
        }),
    );
    let server = Server::http(app).await;
    let client = Client::new(config()).unwrap();

    let resp = client.send(post_req(server.url("/busy"), "{}")).await;

    assert_eq!(resp.status, Some(429));
    let wait = resp.retry_after.expect("Retry-After parsed");
    // Whole seconds on the wire, and a little time passes: 118..=120 s.
    assert!(
        (Duration::from_secs(118)..=Duration::from_secs(120)).contains(&wait),
        "{wait:?}"
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let target = Server::counter("127.0.0.1:0").await;
    let location = target.url("/elsewhere").to_string();
    let app = Router::new().route(
        "/moved",
        post(move || {
            let location = location.clone();
            async move { (StatusCode::FOUND, [(LOCATION, location)]) }
        }),
    );
    let server = Server::http(app).await;
    let client = Client::new(config()).unwrap();

    let resp = client.send(post_req(server.url("/moved"), "{}")).await;

    assert_eq!(resp.status, Some(302));
    assert_eq!(resp.failure, None);
    let location = header(&resp, "location").unwrap_or_default();
    assert!(location.ends_with("/elsewhere"), "{location}");
    assert_eq!(
        target.connections_seen().await,
        0,
        "the redirect target saw nothing"
    );
}

/// A 50 MiB body, produced lazily in 64 KiB chunks; counts what was produced.
fn huge_app(produced: Arc<AtomicUsize>) -> Router {
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 800; // 50 MiB
    Router::new().route(
        "/huge",
        post(move || {
            let produced = Arc::clone(&produced);
            async move {
                let chunk = Bytes::from(vec![b'x'; CHUNK]);
                let stream = futures::stream::iter(0..CHUNKS).map(move |_| {
                    produced.fetch_add(CHUNK, Ordering::SeqCst);
                    Ok::<_, std::convert::Infallible>(chunk.clone())
                });
                Body::from_stream(stream)
            }
        }),
    )
}

#[tokio::test]
async fn a_huge_body_is_capped_and_the_connection_dropped() {
    let ca = TestCa::new();
    let produced = Arc::new(AtomicUsize::new(0));
    let plain = Server::http(huge_app(Arc::clone(&produced))).await;
    let tls = Server::https(huge_app(Arc::clone(&produced)), ca.server_h2()).await;
    let client = Client::new(ca.config()).unwrap();

    for server in [&plain, &tls] {
        let started = Instant::now();
        let resp = client.send(post_req(server.url("/huge"), "{}")).await;
        let took = started.elapsed();

        assert_eq!(resp.status, Some(200), "{:?}", resp.detail);
        assert_eq!(resp.failure, None);
        assert_eq!(resp.body.len(), 64 * 1024);
        assert!(resp.body.iter().all(|&b| b == b'x'));
        assert!(resp.truncated);
        assert_eq!(resp.detail, None);
        assert!(took < Duration::from_secs(3), "returned promptly: {took:?}");
    }
    // The servers stop producing once the client has gone: far less than 2 × 50 MiB.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let total = produced.load(Ordering::SeqCst);
    assert!(total < 50 * 1024 * 1024, "produced {total} bytes");
}

#[tokio::test]
async fn bodies_up_to_the_cap_are_whole() {
    let app = Router::new().route(
        "/sized/{n}",
        post(|axum::extract::Path(n): axum::extract::Path<usize>| async move { vec![b'y'; n] }),
    );
    let server = Server::http(app).await;
    let client = Client::new(EgressConfig {
        max_response_bytes: 1000,
        ..config()
    })
    .unwrap();

    for (n, truncated) in [
        (0, false),
        (999, false),
        (1000, false),
        (1001, true),
        (5000, true),
    ] {
        let resp = client
            .send(post_req(server.url(&format!("/sized/{n}")), "{}"))
            .await;
        assert_eq!(resp.status, Some(200));
        assert_eq!(resp.body.len(), n.min(1000), "{n}");
        assert_eq!(resp.truncated, truncated, "{n}");
    }
}
