//! HTTPS against a server whose certificate comes from a CA made in the test.

use std::net::IpAddr;

use blockhook_egress::{Client, EgressConfig, Error, FailClass};

use crate::support::{Server, TestCa, app, config, header, post, url};

#[tokio::test]
async fn https_200_with_the_test_ca_as_extra_anchor() {
    let ca = TestCa::new();
    let server = Server::https(app(), ca.server_h2()).await;
    let client = Client::new(ca.config()).unwrap();

    let resp = client.send(post(server.url("/echo"), "hello")).await;

    assert_eq!(resp.failure, None, "{:?}", resp.detail);
    assert_eq!(resp.status, Some(200));
    assert_eq!(&resp.body[..], b"hello");
    assert!(!resp.truncated);
    assert_eq!(resp.detail, None);
    assert_eq!(resp.retry_after, None);
    assert_eq!(resp.remote_addr, Some(server.addr));
    assert!(resp.latency > std::time::Duration::ZERO);
}

#[tokio::test]
async fn https_by_name_goes_through_the_resolver() {
    let ca = TestCa::new();
    let server = Server::https(app(), ca.server_h2()).await;
    let client = Client::new(ca.config()).unwrap();
    let port = server.addr.port();

    let resp = client
        .send(post(
            url(&format!("https://localhost:{port}/echo")),
            "by name",
        ))
        .await;

    assert_eq!(resp.failure, None, "{:?}", resp.detail);
    assert_eq!(resp.status, Some(200));
    assert_eq!(&resp.body[..], b"by name");
}

#[tokio::test]
async fn the_same_server_without_the_ca_is_a_tls_failure() {
    let ca = TestCa::new();
    let server = Server::https(app(), ca.server_h2()).await;
    let client = Client::new(config()).unwrap(); // webpki roots only

    let resp = client.send(post(server.url("/echo"), "hello")).await;

    assert_eq!(resp.failure, Some(FailClass::Tls), "{:?}", resp.detail);
    assert_eq!(resp.status, None);
    let detail = resp.detail.unwrap_or_default();
    assert!(detail.contains("certificate"), "{detail}");
}

#[tokio::test]
async fn a_certificate_for_another_name_is_a_tls_failure() {
    let ca = TestCa::new();
    let server = Server::https(app(), ca.server_h2()).await;
    let client = Client::new(EgressConfig {
        resolve_overrides: vec![(
            "merchant.example".into(),
            vec![IpAddr::from([127, 0, 0, 1])],
        )],
        ..ca.config()
    })
    .unwrap();
    let port = server.addr.port();

    let resp = client
        .send(post(
            url(&format!("https://merchant.example:{port}/echo")),
            "x",
        ))
        .await;

    assert_eq!(resp.failure, Some(FailClass::Tls), "{:?}", resp.detail);
    assert_eq!(
        server.connections_seen().await,
        1,
        "the handshake was attempted"
    );
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_a_tls_failure() {
    let server = Server::http(app()).await;
    let client = Client::new(config()).unwrap();
    let port = server.addr.port();

    let resp = client
        .send(post(url(&format!("https://127.0.0.1:{port}/echo")), "x"))
        .await;

    assert_eq!(resp.failure, Some(FailClass::Tls), "{:?}", resp.detail);
}

#[tokio::test]
async fn http2_is_negotiated_when_offered() {
    let ca = TestCa::new();
    let server = Server::https(app(), ca.server_h2()).await;
    let client = Client::new(ca.config()).unwrap();

    let resp = client.send(post(server.url("/echo"), "h2")).await;

    assert_eq!(resp.status, Some(200), "{:?}", resp.detail);
    assert_eq!(header(&resp, "x-version"), Some("HTTP/2.0"));
}

#[tokio::test]
async fn http1_is_used_when_the_server_offers_only_http1() {
    let ca = TestCa::new();
    let server = Server::https(app(), ca.server_config(&[b"http/1.1"])).await;
    let client = Client::new(ca.config()).unwrap();

    let resp = client.send(post(server.url("/echo"), "h1")).await;

    assert_eq!(resp.status, Some(200), "{:?}", resp.detail);
    assert_eq!(header(&resp, "x-version"), Some("HTTP/1.1"));
}

#[tokio::test]
async fn plain_http_uses_http1() {
    let server = Server::http(app()).await;
    let client = Client::new(config()).unwrap();

    let resp = client.send(post(server.url("/echo"), "h1")).await;

    assert_eq!(resp.status, Some(200), "{:?}", resp.detail);
    assert_eq!(header(&resp, "x-version"), Some("HTTP/1.1"));
}

#[tokio::test]
async fn keep_alive_connections_are_reused_over_h2_and_http1() {
    let ca = TestCa::new();
    for alpn in [&[&b"h2"[..], b"http/1.1"][..], &[b"http/1.1"]] {
        let server = Server::https(app(), ca.server_config(alpn)).await;
        let client = Client::new(ca.config()).unwrap();
        for i in 0..3 {
            let resp = client.send(post(server.url("/echo"), "again")).await;
            assert_eq!(resp.status, Some(200), "request {i}: {:?}", resp.detail);
        }
        assert_eq!(
            server.connections_seen().await,
            1,
            "ALPN {alpn:?}: one connection"
        );
    }
}

#[tokio::test]
async fn an_unusable_extra_ca_is_a_construction_error() {
    let cfg = EgressConfig {
        extra_ca_pem: Some(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
        ),
        ..EgressConfig::default()
    };
    let err = Client::new(cfg).err();
    assert!(matches!(err, Some(Error::ExtraCa(_))), "{err:?}");

    let cfg = EgressConfig {
        extra_ca_pem: Some(b"no pem here".to_vec()),
        ..EgressConfig::default()
    };
    assert!(matches!(Client::new(cfg), Err(Error::ExtraCa(_))));
}
