//! The address policy at work: forbidden targets are refused before any connection.
//!
//! Only loopback is ever actually dialled here. For other forbidden addresses the tests assert
//! the `Blocked` outcome alone, which is decided before a socket exists.

use std::net::IpAddr;

use blockhook_egress::{Client, EgressConfig, FailClass, Response};

use crate::support::{Server, app, config, post, url};

/// Settings with the production policy (nothing exempt), `http://` allowed so the address is
/// what gets refused, not the scheme.
fn strict() -> EgressConfig {
    EgressConfig {
        allow_nets: Vec::new(),
        ..config()
    }
}

fn assert_blocked(resp: &Response, what: &str) {
    assert_eq!(
        resp.failure,
        Some(FailClass::Blocked),
        "{what}: {:?}",
        resp.detail
    );
    assert_eq!(resp.status, None, "{what}");
    assert_eq!(resp.remote_addr, None, "{what}");
    assert!(resp.detail.is_some(), "{what}");
}

#[test]
fn the_url_crate_normalises_numeric_hosts() {
    for raw in [
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://0x7f.1/",
    ] {
        assert_eq!(url(raw).host_str(), Some("127.0.0.1"), "{raw}");
    }
    assert_eq!(
        url("http://[::ffff:127.0.0.1]/").host_str(),
        Some("[::ffff:7f00:1]")
    );
}

#[tokio::test]
async fn forbidden_ip_literals_are_blocked() {
    let client = Client::new(strict()).unwrap();
    let targets = [
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "[fd00::1]",
        "[fe80::1]",
        "[::]",
        "[::ffff:10.0.0.1]",
        "[64:ff9b::a9fe:a9fe]",
        "[2002:a9fe:a9fe::1]",
    ];
    for target in targets {
        for scheme in ["http", "https"] {
            let raw = format!("{scheme}://{target}/latest/meta-data/");
            let resp = client.send(post(url(&raw), "{}")).await;
            assert_blocked(&resp, &raw);
            let detail = resp.detail.unwrap_or_default();
            assert!(
                detail.contains("forbidden by the address policy"),
                "{raw}: {detail}"
            );
        }
    }
}

#[tokio::test]
async fn loopback_in_every_spelling_is_blocked_without_connecting() {
    let v4 = Server::counter("127.0.0.1:0").await;
    let v6 = Server::counter("[::1]:0").await;
    let (p4, p6) = (v4.addr.port(), v6.addr.port());
    let client = Client::new(strict()).unwrap();
    let targets = [
        format!("http://127.0.0.1:{p4}/"),
        format!("https://127.0.0.1:{p4}/"),
        format!("http://127.0.0.2:{p4}/"),
        format!("http://2130706433:{p4}/"),
        format!("http://0177.0.0.1:{p4}/"),
        format!("http://127.1:{p4}/"),
        format!("http://0x7f000001:{p4}/"),
        format!("http://127.0.0.1.:{p4}/"),
        format!("http://[::ffff:127.0.0.1]:{p4}/"),
        format!("http://[::1]:{p6}/"),
        format!("https://[::1]:{p6}/"),
    ];
    for raw in &targets {
        let resp = client.send(post(url(raw), "{}")).await;
        assert_blocked(&resp, raw);
    }
    assert_eq!(v4.connections_seen().await, 0, "nothing reached 127.0.0.1");
    assert_eq!(v6.connections_seen().await, 0, "nothing reached ::1");
}

#[tokio::test]
async fn a_public_name_resolving_to_loopback_is_blocked_in_the_resolver() {
    let server = Server::http(app()).await;
    let port = server.addr.port();
    let overrides = vec![(
        "merchant.example".to_owned(),
        vec![IpAddr::from([127, 0, 0, 1])],
    )];
    let target = url(&format!("http://merchant.example:{port}/echo"));

    let client = Client::new(EgressConfig {
        resolve_overrides: overrides.clone(),
        ..strict()
    })
    .unwrap();
    let resp = client.send(post(target.clone(), "{}")).await;
    assert_blocked(&resp, "merchant.example -> 127.0.0.1");
    let detail = resp.detail.unwrap_or_default();
    assert!(detail.contains("merchant.example"), "{detail}");
    assert_eq!(
        server.connections_seen().await,
        0,
        "no connection was opened"
    );

    // The same name with loopback exempt is delivered.
    let client = Client::new(EgressConfig {
        resolve_overrides: overrides,
        ..config()
    })
    .unwrap();
    let resp = client.send(post(target, "delivered")).await;
    assert_eq!(resp.failure, None, "{:?}", resp.detail);
    assert_eq!(resp.status, Some(200));
    assert_eq!(&resp.body[..], b"delivered");
    assert_eq!(resp.remote_addr, Some(server.addr));
}

#[tokio::test]
async fn localhost_by_name_is_blocked_by_the_system_resolver_path() {
    let server = Server::counter("127.0.0.1:0").await;
    let port = server.addr.port();
    let client = Client::new(strict()).unwrap();

    let resp = client
        .send(post(url(&format!("http://localhost:{port}/")), "{}"))
        .await;

    assert_blocked(&resp, "localhost");
    assert_eq!(server.connections_seen().await, 0);
}

#[tokio::test]
async fn plain_http_is_refused_unless_allowed() {
    let server = Server::http(app()).await;
    let client = Client::new(EgressConfig {
        allow_http: false,
        ..config() // loopback exempt: only the scheme is wrong
    })
    .unwrap();

    let resp = client.send(post(server.url("/echo"), "{}")).await;

    assert_blocked(&resp, "http://");
    assert!(resp.detail.unwrap_or_default().contains("https only"));
    assert_eq!(server.connections_seen().await, 0);

    // The default configuration refuses it too.
    let resp = Client::new(EgressConfig {
        allow_nets: crate::support::loopback_nets(),
        ..EgressConfig::default()
    })
    .unwrap()
    .send(post(server.url("/echo"), "{}"))
    .await;
    assert_blocked(&resp, "http:// with defaults");
    assert_eq!(server.connections_seen().await, 0);
}

#[tokio::test]
async fn credentials_and_other_schemes_are_refused() {
    let server = Server::http(app()).await;
    let port = server.addr.port();
    let client = Client::new(config()).unwrap();
    let targets = [
        format!("http://user:secret@127.0.0.1:{port}/echo"),
        format!("http://user@127.0.0.1:{port}/echo"),
        format!("http://:secret@127.0.0.1:{port}/echo"),
        format!("ftp://127.0.0.1:{port}/echo"),
        format!("ws://127.0.0.1:{port}/echo"),
        "file:///etc/passwd".to_owned(),
    ];
    for raw in &targets {
        let resp = client.send(post(url(raw), "{}")).await;
        assert_blocked(&resp, raw);
        let detail = resp.detail.unwrap_or_default();
        assert!(
            !detail.contains("secret"),
            "{raw}: no credentials in the detail: {detail}"
        );
    }
    assert_eq!(server.connections_seen().await, 0);
}
