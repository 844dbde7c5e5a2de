//! The delivery engine end to end: fan-out, signatures, retries, success policy, 410, fresh times.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use blockhook_core::{DeliveryState, EventId, MerchantId, Timestamp};
use blockhook_sig::{VerifyMode, VerifyOptions};

use crate::helpers::{PAYMENT, TestApp, backends};
use crate::receiver::{Receiver, now_ms};

fn secret_of(endpoint: &Value) -> String {
    endpoint["secret"].as_str().unwrap().to_owned()
}

/// Checks the contract headers of a received request and that its signature verifies with
/// `secret` at the moment it arrived.
fn assert_signed(r: &crate::receiver::Received, secret: &str, mode: VerifyMode) {
    assert_eq!(r.header("content-type"), Some("application/json"));
    let time: u64 = r.header("blockatm-request-time").unwrap().parse().unwrap();
    assert!(
        r.at_ms.abs_diff(time) < 2_000,
        "request time is fresh: sent {time}, arrived {}",
        r.at_ms
    );
    let opts = VerifyOptions {
        mode,
        window_ms: 300_000,
    };
    let verified = blockhook_sig::verify(&r.headers, &r.body, &[secret.as_bytes()], &opts, r.at_ms);
    assert!(verified.is_ok(), "signature verifies: {verified:?}");
}

async fn delivery_states(app: &TestApp, merchant: &str, event: &str) -> Vec<DeliveryState> {
    let m = MerchantId::parse(merchant).unwrap();
    let e = EventId::parse(event).unwrap();
    let now = Timestamp::from_ms(now_ms() as i64);
    app.state
        .store
        .list_deliveries(&m, &e, now)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.state)
        .collect()
}

async fn wait_states(app: &TestApp, merchant: &str, event: &str, want: &[DeliveryState]) {
    for _ in 0..300 {
        let mut got = delivery_states(app, merchant, event).await;
        got.sort_by_key(|s| s.as_str());
        let mut w = want.to_vec();
        w.sort_by_key(|s| s.as_str());
        if got == w {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "deliveries never reached {want:?}: {:?}",
        delivery_states(app, merchant, event).await
    );
}

#[tokio::test]
async fn one_event_fans_out_to_exactly_the_matching_endpoints_over_https() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let (a, b, c) = (
            Receiver::ok(Some(&app.ca)).await,
            Receiver::ok(Some(&app.ca)).await,
            Receiver::ok(Some(&app.ca)).await,
        );
        let m = app.merchant().await;
        let ea = app.endpoint(&m, &a.url(), json!({})).await;
        let eb = app
            .endpoint(
                &m,
                &b.url(),
                json!({ "event_types": ["payment"], "signing_mode": "raw" }),
            )
            .await;
        app.endpoint(&m, &c.url(), json!({ "event_types": ["Payout"] }))
            .await;
        let published = app.publish(&m, "Payment", PAYMENT).await;
        assert_eq!(published["deliveries"], 2, "{backend:?}");
        let got_a = a.wait_for(1, Duration::from_secs(10)).await;
        let got_b = b.wait_for(1, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(c.count(), 0, "filtered-out endpoint receives nothing");
        assert_eq!((a.count(), b.count()), (1, 1));
        assert_signed(&got_a[0], &secret_of(&ea), VerifyMode::Sorted);
        assert_signed(&got_b[0], &secret_of(&eb), VerifyMode::Raw);
        // The wrong secret must not verify.
        let opts = VerifyOptions::default();
        let wrong = blockhook_sig::verify(
            &got_a[0].headers,
            &got_a[0].body,
            &[secret_of(&eb).as_bytes()],
            &opts,
            got_a[0].at_ms,
        );
        assert!(wrong.is_err());
        for r in [&got_a[0], &got_b[0]] {
            assert_eq!(
                r.body.as_ref(),
                PAYMENT.as_bytes(),
                "payload relayed byte for byte"
            );
            assert_eq!(r.header("blockatm-event"), Some("Payment"));
            assert_eq!(
                r.header("blockhook-event-id"),
                published["event_id"].as_str()
            );
            assert_eq!(r.header("blockhook-attempt"), Some("1"));
        }
        let event = published["event_id"].as_str().unwrap();
        wait_states(
            &app,
            &m,
            event,
            &[DeliveryState::Succeeded, DeliveryState::Succeeded],
        )
        .await;
        app.stop().await;
    }
}

/// Ingests racing the dispatcher's own claims for a few delivery slots: every delivery goes out
/// without waiting for a lease to expire. (A claim used to come back with more leases than free
/// slots when hand-offs at ingest took slots meanwhile; the extra leases lay unsent until they
/// expired.) The lease is an hour here, so a lost lease is a delivery that does not arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingests_racing_claims_for_few_slots_lose_no_lease() {
    const PUBLISHERS: usize = 16;
    const EACH: usize = 25;
    const ENDPOINTS: usize = 3;
    for backend in backends() {
        let app = TestApp::spawn_with(backend, |s| {
            s.delivery.concurrency = 4;
            s.delivery.lease = Duration::from_secs(3600);
        })
        .await;
        let rx =
            Receiver::scripted(Some(&app.ca), Arc::new(|_| 200), Duration::from_millis(1)).await;
        let m = app.merchant().await;
        for _ in 0..ENDPOINTS {
            app.endpoint(&m, &rx.url(), json!({})).await;
        }
        futures::future::join_all((0..PUBLISHERS).map(|_| async {
            for _ in 0..EACH {
                app.publish(&m, "Payment", PAYMENT).await;
            }
        }))
        .await;
        let want = PUBLISHERS * EACH * ENDPOINTS;
        rx.wait_for(want, Duration::from_secs(120)).await;
        app.stop().await;
    }
}

/// Retries falling due while new events keep every delivery slot busy still go out while the
/// flood lasts: once the dispatcher finds more due than it can take, new events stop taking
/// freed slots at ingest (the hand-off) until it has caught up, so a backlog is served in due
/// order instead of waiting for the flood to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_falling_due_during_a_flood_go_out_while_it_lasts() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const RETRIES: usize = 10;
    const PUBLISHERS: usize = 8;
    const FLOOD_AT_MOST: Duration = Duration::from_secs(30);
    for backend in backends() {
        let app = TestApp::spawn_with(backend, |s| {
            s.delivery.concurrency = 6;
            s.delivery.per_endpoint_concurrency = 6;
        })
        .await;
        // Fails the first attempt of each of the first events: each comes due again 1 s later
        // (the tests' retry schedule).
        let failing = Receiver::scripted(
            Some(&app.ca),
            Arc::new(|n| if n < RETRIES { 500 } else { 200 }),
            Duration::ZERO,
        )
        .await;
        let slow =
            Receiver::scripted(Some(&app.ca), Arc::new(|_| 200), Duration::from_millis(10)).await;
        let (a, b) = (app.merchant().await, app.merchant().await);
        app.endpoint(&a, &failing.url(), json!({})).await;
        app.endpoint(&b, &slow.url(), json!({})).await;
        for _ in 0..RETRIES {
            app.publish(&a, "Payment", PAYMENT).await;
        }
        failing.wait_for(RETRIES, Duration::from_secs(30)).await;

        let flooding = AtomicBool::new(true);
        let still = || flooding.load(Ordering::Relaxed);
        let publishers = futures::future::join_all((0..PUBLISHERS).map(|_| async {
            while still() {
                app.publish(&b, "Payment", PAYMENT).await;
            }
        }));
        let watch = async {
            let deadline = tokio::time::Instant::now() + FLOOD_AT_MOST;
            while failing.count() < 2 * RETRIES && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            flooding.store(false, Ordering::Relaxed);
        };
        futures::future::join(publishers, watch).await;
        assert_eq!(
            failing.count(),
            2 * RETRIES,
            "{backend:?}: the retries waited behind the flood ({} of {RETRIES} in {FLOOD_AT_MOST:?})",
            failing.count() - RETRIES
        );
        assert!(
            slow.count() > 0,
            "{backend:?}: the flood was delivered meanwhile"
        );
        app.stop().await;
    }
}

/// With every delivery slot reserved by ingests still writing and nothing in flight, the
/// dispatcher loop waits for a slot to come back instead of spinning. On a runtime of one thread
/// (as here) a loop that never yields would starve everything else, the slots' holders included,
/// for good: that is how this was found, as a test that hung under load. A watchdog turns such a
/// hang into a failure.
#[tokio::test(flavor = "current_thread")]
async fn the_dispatcher_waits_while_hand_offs_hold_every_slot() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const WATCHDOG: Duration = Duration::from_secs(60);
    let finished = Arc::new(AtomicBool::new(false));
    let watched = Arc::clone(&finished);
    std::thread::spawn(move || {
        std::thread::sleep(WATCHDOG);
        if !watched.load(Ordering::Relaxed) {
            eprintln!("the dispatcher loop never yielded while hand-offs held every slot");
            std::process::exit(1);
        }
    });
    for backend in backends() {
        let app = TestApp::spawn_with(backend, |s| s.delivery.concurrency = 6).await;
        let rx = Receiver::ok(Some(&app.ca)).await;
        let m = app.merchant().await;
        app.endpoint(&m, &rx.url(), json!({})).await;

        // Every slot, as ingests reserve them before they write (once the dispatcher is up).
        let mut held = Vec::new();
        while held.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
            while let Some(reserved) = app.state.handoff.reserve() {
                held.push(reserved);
            }
        }
        // The loop runs meanwhile, with no free slot and nothing in flight.
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(held);

        // Given back, the slots serve deliveries again.
        app.publish(&m, "Payment", PAYMENT).await;
        rx.wait_for(1, Duration::from_secs(15)).await;
        app.stop().await;
    }
    finished.store(true, Ordering::Relaxed);
}

#[tokio::test]
async fn failing_twice_then_200_takes_exactly_three_attempts_at_the_configured_spacing() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let rx = Receiver::scripted(
            Some(&app.ca),
            Arc::new(|n| if n < 2 { 500 } else { 200 }),
            Duration::ZERO,
        )
        .await;
        let m = app.merchant().await;
        let ep = app.endpoint(&m, &rx.url(), json!({})).await;
        let published = app.publish(&m, "Payment", PAYMENT).await;
        let got = rx.wait_for(3, Duration::from_secs(15)).await;
        let event = published["event_id"].as_str().unwrap();
        wait_states(&app, &m, event, &[DeliveryState::Succeeded]).await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(rx.count(), 3, "{backend:?}: no attempt after the 200");
        let times: Vec<u64> = got
            .iter()
            .map(|r| r.header("blockatm-request-time").unwrap().parse().unwrap())
            .collect();
        for pair in times.windows(2) {
            assert!(
                pair[1] - pair[0] >= 1_000,
                "retry waited the configured 1s: {times:?}"
            );
            assert!(
                pair[1] - pair[0] < 5_000,
                "retry came reasonably soon: {times:?}"
            );
        }
        for (i, r) in got.iter().enumerate() {
            assert_eq!(
                r.header("blockhook-attempt"),
                Some((i + 1).to_string().as_str())
            );
            assert_signed(r, &secret_of(&ep), VerifyMode::Sorted);
            assert_eq!(r.body, got[0].body, "same body bytes on every attempt");
        }
        // Every attempt is logged, with the response.
        let m_id = MerchantId::parse(&m).unwrap();
        let now = Timestamp::from_ms(now_ms() as i64);
        let deliveries = app
            .state
            .store
            .list_deliveries(&m_id, &EventId::parse(event).unwrap(), now)
            .await
            .unwrap();
        let attempts = app
            .state
            .store
            .list_attempts(&m_id, &deliveries[0].id)
            .await
            .unwrap();
        let statuses: Vec<Option<u16>> = attempts.iter().map(|a| a.status).collect();
        assert_eq!(statuses, vec![Some(500), Some(500), Some(200)]);
        assert!(
            attempts.iter().all(|a| !a
                .request_headers
                .iter()
                .any(|(_, v)| v.contains(&secret_of(&ep)))),
            "no secret in logged headers"
        );
        // The log holds every header exactly as each attempt sent it, and each attempt (each
        // HTTP request) carries its own attempt id, the log's.
        for (a, r) in attempts.iter().zip(&got) {
            let mut logged: Vec<(String, String)> = a
                .request_headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect();
            let mut received: Vec<(String, String)> = r
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect();
            logged.sort();
            received.sort();
            assert_eq!(logged, received, "{backend:?}: logged exactly as sent");
            assert_eq!(r.header("blockhook-attempt-id"), Some(a.id.as_str()));
        }
        let ids: std::collections::HashSet<_> = got
            .iter()
            .map(|r| r.header("blockhook-attempt-id").unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 3, "a new attempt id on every request");
        app.stop().await;
    }
}

#[tokio::test]
async fn an_endpoint_that_always_fails_ends_failed_after_the_configured_attempts() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let rx = Receiver::scripted(Some(&app.ca), Arc::new(|_| 503), Duration::ZERO).await;
        let m = app.merchant().await;
        app.endpoint(&m, &rx.url(), json!({})).await;
        let published = app.publish(&m, "Payout", PAYMENT).await;
        let event = published["event_id"].as_str().unwrap();
        wait_states(&app, &m, event, &[DeliveryState::Failed]).await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(
            rx.count(),
            3,
            "{backend:?}: schedule of 2 delays = 3 attempts"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn status_201_fails_by_default_and_succeeds_with_the_2xx_policy() {
    for backend in backends() {
        let app = TestApp::spawn_with(backend, |s| s.delivery.retry_schedule = vec![]).await;
        let strict = Receiver::scripted(Some(&app.ca), Arc::new(|_| 201), Duration::ZERO).await;
        let lenient = Receiver::scripted(Some(&app.ca), Arc::new(|_| 201), Duration::ZERO).await;
        let m = app.merchant().await;
        app.endpoint(&m, &strict.url(), json!({})).await;
        app.endpoint(&m, &lenient.url(), json!({ "success_policy": "2xx" }))
            .await;
        let published = app.publish(&m, "Payment", PAYMENT).await;
        let event = published["event_id"].as_str().unwrap();
        wait_states(
            &app,
            &m,
            event,
            &[DeliveryState::Failed, DeliveryState::Succeeded],
        )
        .await;
        app.stop().await;
    }
}

#[tokio::test]
async fn gone_410_disables_the_endpoint_with_a_reason() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let rx = Receiver::scripted(Some(&app.ca), Arc::new(|_| 410), Duration::ZERO).await;
        let m = app.merchant().await;
        let ep = app.endpoint(&m, &rx.url(), json!({})).await;
        let published = app.publish(&m, "Payment", PAYMENT).await;
        wait_states(
            &app,
            &m,
            published["event_id"].as_str().unwrap(),
            &[DeliveryState::Failed],
        )
        .await;
        let view: Value = app
            .get(
                &format!("/v1/merchants/{m}/endpoints/{}", ep["id"].as_str().unwrap()),
                crate::helpers::ADMIN,
            )
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(view["enabled"], false, "{backend:?}");
        assert!(view["disabled_reason"].as_str().unwrap().contains("410"));
        // A disabled endpoint gets no new deliveries.
        let second = app.publish(&m, "Payment", PAYMENT).await;
        assert_eq!(second["deliveries"], 0);
        assert_eq!(rx.count(), 1);
        app.stop().await;
    }
}
