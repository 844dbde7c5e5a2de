//! OpenTelemetry export: with `log.otlp_endpoint` set, a delivery's attempt span reaches an
//! OTLP/HTTP collector (a loopback server decoding the protobuf request), carrying the event,
//! endpoint, delivery and attempt number, and never the endpoint secret or the payload.
//!
//! Its own test binary: it installs the process-wide tracing subscriber.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

#[allow(dead_code)]
#[path = "it/receiver.rs"]
mod receiver;

#[allow(dead_code)]
#[path = "it/helpers.rs"]
mod helpers;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;
use serde_json::json;

use blockhook_server::{Settings, telemetry};
use helpers::{Backend, PAYMENT, TestApp};
use receiver::Receiver;

/// Requests the collector decoded, and the content types they came with.
type Collected = Arc<Mutex<Vec<(String, ExportTraceServiceRequest)>>>;

/// A loopback OTLP/HTTP collector; returns its base URL.
async fn collector(seen: Collected) -> String {
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let seen = seen.clone();
            async move {
                let content_type = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let request = ExportTraceServiceRequest::decode(body).unwrap();
                seen.lock().unwrap().push((content_type, request));
                (
                    [("content-type", "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a KeyValue> {
    attrs.iter().find(|kv| kv.key == key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempt_spans_reach_an_otlp_collector() {
    let seen = Collected::default();
    let mut log = Settings::defaults().unwrap().log;
    log.otlp_endpoint = collector(seen.clone()).await;
    log.service_name = "blockhook-otlp-test".into();
    log.filter = "info".into();
    let telemetry = telemetry::init(&log);
    assert!(
        telemetry.exports(),
        "the subscriber was installed with the exporter"
    );

    let app = TestApp::spawn(Backend::Sqlite).await;
    let rx = Receiver::ok(Some(&app.ca)).await;
    let merchant = app.merchant().await;
    let endpoint = app.endpoint(&merchant, &rx.url(), json!({})).await;
    let endpoint_id = endpoint["id"].as_str().unwrap().to_owned();
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    let published = app.publish(&merchant, "Payment", PAYMENT).await;
    let event_id = published["event_id"].as_str().unwrap().to_owned();
    rx.wait_for(1, Duration::from_secs(10)).await;
    app.stop().await;
    // Flushes the batch still buffered, so everything above has been POSTed when this returns.
    telemetry.shutdown().await;

    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty(), "the collector received no export request");
    for (content_type, _) in seen.iter() {
        assert_eq!(content_type, "application/x-protobuf");
    }
    let mut attempts = Vec::new();
    for (_, request) in seen.iter() {
        for resource_spans in &request.resource_spans {
            let resource = resource_spans.resource.as_ref().unwrap();
            let service = attr(&resource.attributes, "service.name").unwrap();
            assert_eq!(text(&service.value), "blockhook-otlp-test");
            for scope in &resource_spans.scope_spans {
                for span in &scope.spans {
                    // Nothing exported may carry the secret or the payload.
                    let dump = format!("{span:?}");
                    assert!(
                        !dump.contains(&secret),
                        "span {} carries the secret",
                        span.name
                    );
                    assert!(
                        !dump.contains("0x7614a9840d"),
                        "span {} carries the payload",
                        span.name
                    );
                    if span.name == "attempt" {
                        attempts.push(span.clone());
                    }
                }
            }
        }
    }
    assert_eq!(attempts.len(), 1, "one attempt, one span");
    let span = &attempts[0];
    let get = |k: &str| text(&attr(&span.attributes, k).unwrap().value);
    assert_eq!(get("event"), event_id);
    assert_eq!(get("endpoint"), endpoint_id);
    assert!(get("delivery").starts_with("dlv_"), "{}", get("delivery"));
    assert_eq!(get("attempt"), "1");
    assert!(span.end_time_unix_nano > span.start_time_unix_nano);
    assert_eq!(span.trace_id.len(), 16);
}
