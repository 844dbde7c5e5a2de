//! The NATS JetStream source against the real server on loopback: messages in both forms
//! (the body of `POST /v1/events`; a raw payload with `Blockhook-*` headers) become events with
//! deliveries, payloads byte for byte, on SQLite and PostgreSQL; malformed messages are
//! dead-lettered with their reasons and terminated; a message published twice with one
//! idempotency key is one event; every message is acknowledged; the metrics count it all.
//!
//! Each test creates a stream of its own (`BH_<uuid>`) on the server named by
//! `BLOCKHOOK_TEST_NATS_URL` (with JetStream); without it the tests say they were skipped.

use std::time::Duration;

use async_nats::jetstream;
use serde_json::{Value, json};

use crate::helpers::{ADMIN, PAYMENT, TestApp, backends};
use crate::outbox::eventually;
use crate::receiver::Receiver;

/// The NATS server, or `None` (the test is skipped) without the variable.
fn nats_url() -> Option<String> {
    let url = std::env::var("BLOCKHOOK_TEST_NATS_URL").ok();
    if url.is_none() {
        eprintln!("NATS tests skipped: BLOCKHOOK_TEST_NATS_URL not set");
    }
    url
}

/// A fresh stream over `bh.<uuid>.>`.
async fn stream(url: &str) -> (jetstream::Context, String, String) {
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (name, subjects) = (format!("BH_{id}"), format!("bh.{id}"));
    js.create_stream(jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![format!("{subjects}.>")],
        ..Default::default()
    })
    .await
    .unwrap();
    (js, name, subjects)
}

async fn publish(js: &jetstream::Context, subject: String, body: String) {
    js.publish(subject, body.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test]
async fn messages_become_events_and_malformed_ones_are_dead_lettered() {
    let Some(url) = nats_url() else { return };
    for backend in backends() {
        let (js, name, subjects) = stream(&url).await;
        let (source_url, stream_name) = (url.clone(), name.clone());
        let app = TestApp::spawn_with(backend, |s| {
            s.sources.nats = vec![blockhook_server::config::NatsSource {
                url: source_url,
                stream: stream_name,
                consumer: "blockhook".into(),
                subject: String::new(),
                batch: 3,
                max_deliver: 5,
            }];
        })
        .await;
        let receiver = Receiver::ok(Some(&app.ca)).await;
        let merchant = app.merchant().await;
        app.endpoint(&merchant, &receiver.url(), json!({})).await;

        // The JSON form: the body of POST /v1/events, payload bytes kept as published.
        let spaced = r#"{ "b": 2,  "a": "1.50" }"#;
        publish(
            &js,
            format!("{subjects}.payments"),
            format!(r#"{{"merchant_id":"{merchant}","event_type":"Payment","payload":{PAYMENT}}}"#),
        )
        .await;
        for _ in 0..2 {
            // Twice, one idempotency key: one event.
            publish(
                &js,
                format!("{subjects}.payouts"),
                format!(
                    r#"{{"merchant_id":"{merchant}","event_type":"Payout","payload":{spaced},"idempotency_key":"pay-1","ordering_key":"order-1"}}"#
                ),
            )
            .await;
        }
        // The header form: the raw payload.
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Blockhook-Merchant", merchant.as_str());
        headers.insert("Blockhook-Event-Type", "QR-Payment");
        js.publish_with_headers(format!("{subjects}.qr"), headers, "{\"n\":3}".into())
            .await
            .unwrap()
            .await
            .unwrap();
        // Malformed, each for another reason, between good ones.
        for bad in [
            "not json".to_owned(),
            r#"{"merchant_id":"mch_00000000000000000000000000","event_type":"Payment","payload":{}}"#.to_owned(),
            format!(r#"{{"merchant_id":"{merchant}","event_type":"bad type","payload":{{}}}}"#),
            format!(r#"{{"merchant_id":"{merchant}","event_type":"Payment","payload":[1]}}"#),
        ] {
            publish(&js, format!("{subjects}.bad"), bad).await;
        }

        let got = receiver.wait_for(3, Duration::from_secs(120)).await;
        let mut bodies: Vec<&[u8]> = got.iter().map(|r| &r.body[..]).collect();
        bodies.sort();
        let mut want: Vec<&[u8]> = vec![PAYMENT.as_bytes(), spaced.as_bytes(), b"{\"n\":3}"];
        want.sort();
        assert_eq!(bodies, want, "{backend:?}: payloads byte for byte");

        let store = app.state.store.clone();
        let store_ref = &store;
        eventually("four dead letters", move || async move {
            store_ref.dead_letters(100).await.unwrap().len() == 4
        })
        .await;
        let dead = store.dead_letters(100).await.unwrap();
        let source = format!("nats:{name}");
        let mut reasons: Vec<(u64, String)> = dead
            .iter()
            .map(|d| {
                assert_eq!(d.source, source);
                (d.reference.parse().unwrap(), d.reason.clone())
            })
            .collect();
        reasons.sort();
        // Stream sequences 5 to 8, each with the field at fault named.
        let want = [
            (5, "not an event"),
            (6, "merchant_id"),
            (7, "event_type"),
            (8, "payload"),
        ];
        for ((seq, reason), (want_seq, field)) in reasons.iter().zip(want) {
            assert_eq!(*seq, want_seq, "{backend:?}: {reasons:?}");
            assert!(reason.starts_with(field), "{backend:?}: {reason}");
        }
        assert_eq!(
            dead.iter().find(|d| d.reference == "5").unwrap().body,
            b"not json"
        );

        // Three events, under the keys they were stored with.
        let r = app
            .get(&format!("/v1/merchants/{merchant}/events?limit=50"), ADMIN)
            .await;
        let page: Value = r.json().await.unwrap();
        let mut keys: Vec<String> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["idempotency_key"].as_str().unwrap_or_default().to_owned())
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            vec![
                format!("nats:{name}:1"),
                format!("nats:{name}:4"),
                "pay-1".to_owned()
            ],
            "{backend:?}"
        );

        // Every message settled (acknowledged or terminated): nothing pending, nothing waiting
        // for an ack.
        let stream = js.get_stream(&name).await.unwrap();
        let stream_ref = &stream;
        eventually("every message settled", move || async move {
            let mut consumer: jetstream::consumer::PullConsumer =
                stream_ref.get_consumer("blockhook").await.unwrap();
            let info = consumer.info().await.unwrap();
            info.num_pending == 0 && info.num_ack_pending == 0
        })
        .await;

        let app_ref = &app;
        let label = name.clone();
        let label_ref = &label;
        eventually("the counters settled", move || async move {
            let text = app_ref
                .http
                .get(format!("{}/metrics", app_ref.base))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let m = |metric: &str| {
                text.lines()
                    .find(|l| {
                        l.starts_with(metric) && l.contains(&format!("stream=\"{label_ref}\""))
                    })
                    .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            };
            m("blockhook_nats_messages_ingested_total") == Some(4.0)
                && m("blockhook_nats_messages_dead_lettered_total") == Some(4.0)
                && m("blockhook_nats_messages_read_total") == Some(8.0)
        })
        .await;
        app.stop().await;
        js.delete_stream(&name).await.unwrap();
    }
}
