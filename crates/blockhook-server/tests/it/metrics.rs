//! `/metrics` after a known scenario, read with a real Prometheus text parser: exact counters
//! (events, attempts and deliveries by kind, attempt histogram count) and settled queue gauges.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::helpers::{PAYMENT, TestApp, backends};
use crate::receiver::Receiver;

/// The scalar value of every sample named `metric` whose labels include `kind` (or any
/// sample when `kind` is `None`), summed.
fn value(scrape: &prometheus_parse::Scrape, metric: &str, kind: Option<&str>) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| kind.is_none_or(|k| s.labels.get("kind") == Some(k)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            other => panic!("{metric} is not a scalar: {other:?}"),
        })
        .sum()
}

async fn scrape(app: &TestApp) -> (String, prometheus_parse::Scrape) {
    let url = format!("{}/metrics", app.base);
    let r = match app.http.get(&url).send().await {
        Ok(r) => r,
        Err(e) => panic!("GET {url}: {e}"),
    };
    assert_eq!(r.status(), 200);
    let text = match r.text().await {
        Ok(t) => t,
        Err(e) => panic!("reading /metrics: {e}"),
    };
    let lines = text.lines().map(|l| Ok(l.to_owned())).collect::<Vec<_>>();
    let parsed = match prometheus_parse::Scrape::parse(lines.into_iter()) {
        Ok(p) => p,
        Err(e) => panic!("parsing /metrics: {e}\n{text}"),
    };
    (text, parsed)
}

#[tokio::test]
async fn metrics_count_exactly_what_happened() {
    for backend in backends() {
        let app = TestApp::spawn_with(backend, |s| s.delivery.retry_schedule = vec![]).await;
        let ok = Receiver::ok(Some(&app.ca)).await;
        let broken = Receiver::scripted(Some(&app.ca), Arc::new(|_| 500), Duration::ZERO).await;
        let good_merchant = app.merchant().await;
        let bad_merchant = app.merchant().await;
        app.endpoint(&good_merchant, &ok.url(), json!({})).await;
        app.endpoint(&bad_merchant, &broken.url(), json!({})).await;
        for _ in 0..3 {
            app.publish(&good_merchant, "Payment", PAYMENT).await;
        }
        app.publish(&bad_merchant, "Payment", PAYMENT).await;
        ok.wait_for(3, Duration::from_secs(15)).await;
        broken.wait_for(1, Duration::from_secs(15)).await;

        // The decisions are recorded after the answers arrive: wait for the store to settle.
        let mut settled = None;
        for _ in 0..200 {
            let (text, s) = scrape(&app).await;
            let decided = value(&s, "blockhook_deliveries_total", None);
            let open = value(&s, "blockhook_queue_due", None)
                + value(&s, "blockhook_queue_scheduled", None)
                + value(&s, "blockhook_queue_in_flight", None);
            if decided >= 4.0 && open == 0.0 {
                settled = Some((text, s));
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (text, s) = settled.unwrap_or_else(|| panic!("{backend:?}: metrics never settled"));
        let ctx = format!("{backend:?}:\n{text}");

        assert_eq!(
            value(&s, "blockhook_events_ingested_total", None),
            4.0,
            "{ctx}"
        );
        assert_eq!(
            value(&s, "blockhook_attempts_total", Some("success")),
            3.0,
            "{ctx}"
        );
        assert_eq!(
            value(&s, "blockhook_attempts_total", Some("bad_status")),
            1.0,
            "{ctx}"
        );
        assert_eq!(
            value(&s, "blockhook_attempts_total", None),
            4.0,
            "only those two kinds: {ctx}"
        );
        assert_eq!(
            value(&s, "blockhook_deliveries_total", Some("succeeded")),
            3.0,
            "{ctx}"
        );
        assert_eq!(
            value(&s, "blockhook_deliveries_total", Some("failed")),
            1.0,
            "{ctx}"
        );
        assert_eq!(
            value(&s, "blockhook_deliveries_total", None),
            4.0,
            "only those two kinds: {ctx}"
        );
        assert_eq!(value(&s, "blockhook_queue_due", None), 0.0, "{ctx}");
        assert_eq!(value(&s, "blockhook_queue_scheduled", None), 0.0, "{ctx}");
        assert_eq!(value(&s, "blockhook_queue_in_flight", None), 0.0, "{ctx}");
        assert_eq!(
            value(&s, "blockhook_oldest_due_age_milliseconds", None),
            0.0,
            "{ctx}"
        );
        assert_eq!(
            value(&s, "blockhook_in_flight_requests", None),
            0.0,
            "{ctx}"
        );
        assert_eq!(
            value(&s, "blockhook_failing_endpoints", Some("1")),
            1.0,
            "{ctx}"
        );
        assert_eq!(value(&s, "blockhook_failing_endpoints", None), 1.0, "{ctx}");
        let attempts_observed = s
            .samples
            .iter()
            .find(|x| x.metric == "blockhook_attempt_duration_seconds_count")
            .map(|x| match x.value {
                prometheus_parse::Value::Untyped(v) | prometheus_parse::Value::Counter(v) => v,
                _ => -1.0,
            });
        assert_eq!(attempts_observed, Some(4.0), "{ctx}");
        app.stop().await;
    }
}
