//! Every way an attempt can fail to get a response, and its class.

use std::convert::Infallible;
use std::net::IpAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use blockhook_egress::{Client, EgressConfig, FailClass};
use bytes::Bytes;
use futures::StreamExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::support::{Server, config, post as post_req, read_request, url, write_raw};

/// Short timeouts for the failure tests.
fn quick() -> EgressConfig {
    EgressConfig {
        connect_timeout: Duration::from_millis(300),
        total_timeout: Duration::from_millis(300),
        ..config()
    }
}

#[tokio::test]
async fn connection_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener); // nothing listens there now
    let client = Client::new(config()).unwrap();

    let resp = client
        .send(post_req(url(&format!("http://{addr}/hook")), "{}"))
        .await;

    assert_eq!(
        resp.failure,
        Some(FailClass::ConnectRefused),
        "{:?}",
        resp.detail
    );
    assert_eq!(resp.status, None);
    let detail = resp.detail.unwrap_or_default();
    assert!(detail.to_lowercase().contains("refused"), "{detail}");
    assert!(!detail.contains("/hook"), "no URL in the detail: {detail}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_timeout() {
    let server = Server::raw(|mut tcp| async move {
        read_request(&mut tcp).await;
        tokio::time::sleep(Duration::from_secs(60)).await; // hold the connection, say nothing
        drop(tcp);
    })
    .await;
    let client = Client::new(quick()).unwrap();

    let resp = client.send(post_req(server.url("/"), "{}")).await;

    assert_eq!(resp.failure, Some(FailClass::Timeout), "{:?}", resp.detail);
    assert_eq!(resp.status, None);
    assert!(
        resp.latency >= Duration::from_millis(290),
        "{:?}",
        resp.latency
    );
    assert!(resp.latency < Duration::from_secs(2), "{:?}", resp.latency);
}

#[tokio::test]
async fn a_connect_that_hangs_is_a_timeout() {
    // A listener that never accepts, with its accept queue filled: Linux then drops further
    // SYNs, so the next connect hangs (on loopback, without leaving the machine).
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => fillers.push(tcp),
            Ok(Err(e)) => panic!("filling the backlog: {e}"),
            Err(_) => break, // SYNs are being dropped now
        }
        assert!(fillers.len() < 64, "the accept queue never filled");
    }
    let client = Client::new(EgressConfig {
        connect_timeout: Duration::from_millis(300),
        total_timeout: Duration::from_secs(5),
        ..config()
    })
    .unwrap();

    let resp = client
        .send(post_req(url(&format!("http://{addr}/")), "{}"))
        .await;

    assert_eq!(resp.failure, Some(FailClass::Timeout), "{:?}", resp.detail);
    assert!(
        resp.latency < Duration::from_secs(2),
        "the connect timeout, not the total one: {:?}",
        resp.latency
    );
    drop((listener, fillers));
}

#[tokio::test]
async fn broken_responses_are_protocol_failures() {
    // What the server does after reading the request.
    async fn reset(mut tcp: TcpStream) {
        read_request(&mut tcp).await;
        tcp.set_zero_linger().unwrap();
        drop(tcp); // RST
    }
    async fn close_silently(mut tcp: TcpStream) {
        read_request(&mut tcp).await;
        drop(tcp); // FIN, no response
    }
    async fn close_mid_head(mut tcp: TcpStream) {
        read_request(&mut tcp).await;
        write_raw(&mut tcp, b"HTTP/1.1 200 OK\r\nContent-Le").await;
    }
    async fn garbage(mut tcp: TcpStream) {
        read_request(&mut tcp).await;
        write_raw(&mut tcp, b"SPLAT \x00\x01 NOT HTTP\r\n\r\n").await;
    }

    let servers = [
        ("reset", Server::raw(reset).await),
        ("close silently", Server::raw(close_silently).await),
        ("close mid head", Server::raw(close_mid_head).await),
        ("garbage", Server::raw(garbage).await),
    ];
    let client = Client::new(config()).unwrap();
    for (what, server) in &servers {
        let resp = client.send(post_req(server.url("/"), "{}")).await;
        assert_eq!(
            resp.failure,
            Some(FailClass::Protocol),
            "{what}: {:?}",
            resp.detail
        );
        assert_eq!(resp.status, None, "{what}");
        assert!(resp.detail.is_some(), "{what}");
    }
}

#[tokio::test]
async fn a_body_cut_short_keeps_the_status_and_what_was_read() {
    let server = Server::raw(|mut tcp| async move {
        read_request(&mut tcp).await;
        write_raw(
            &mut tcp,
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial",
        )
        .await;
        drop(tcp);
    })
    .await;
    let client = Client::new(config()).unwrap();

    let resp = client.send(post_req(server.url("/"), "{}")).await;

    assert_eq!(resp.status, Some(200));
    assert_eq!(resp.failure, None, "a response head arrived");
    assert_eq!(&resp.body[..], b"partial");
    assert!(resp.truncated);
    let detail = resp.detail.unwrap_or_default();
    assert!(detail.starts_with("response body incomplete"), "{detail}");
}

#[tokio::test]
async fn a_body_that_stalls_is_cut_at_the_total_timeout() {
    let app = Router::new().route(
        "/",
        post(|| async {
            let first = futures::stream::once(async {
                Ok::<_, Infallible>(Bytes::from_static(b"partial"))
            });
            Body::from_stream(first.chain(futures::stream::pending()))
        }),
    );
    let server = Server::http(app).await;
    let client = Client::new(EgressConfig {
        total_timeout: Duration::from_millis(500),
        ..config()
    })
    .unwrap();

    let resp = client.send(post_req(server.url("/"), "{}")).await;

    assert_eq!(resp.status, Some(200));
    assert_eq!(resp.failure, None);
    assert_eq!(&resp.body[..], b"partial");
    assert!(resp.truncated);
    assert_eq!(
        resp.detail.as_deref(),
        Some("timed out reading the response body")
    );
    assert!(
        resp.latency >= Duration::from_millis(490),
        "{:?}",
        resp.latency
    );
    assert!(resp.latency < Duration::from_secs(2), "{:?}", resp.latency);
}

#[tokio::test]
async fn an_unresolvable_name_is_a_dns_failure() {
    let client = Client::new(config()).unwrap();
    // `.invalid` never resolves (RFC 6761).
    let resp = client
        .send(post_req(url("https://merchant.invalid/hook"), "{}"))
        .await;
    assert_eq!(resp.failure, Some(FailClass::Dns), "{:?}", resp.detail);

    // An override with no address is a name that resolves to nothing.
    let client = Client::new(EgressConfig {
        resolve_overrides: vec![("nowhere.example".into(), Vec::<IpAddr>::new())],
        ..config()
    })
    .unwrap();
    let resp = client
        .send(post_req(url("https://nowhere.example/hook"), "{}"))
        .await;
    assert_eq!(resp.failure, Some(FailClass::Dns), "{:?}", resp.detail);
    let detail = resp.detail.unwrap_or_default();
    assert!(
        detail.contains("nowhere.example resolved to no address"),
        "{detail}"
    );
}
