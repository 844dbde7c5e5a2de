//! The failure alert banner in a real headless Chromium: two endpoints answer 503 on a
//! `ManualClock`; one reaches the streak (failing), the other also passes `disable_after`
//! (disabled automatically). Every merchant page shows both in the banner, each linking to its
//! endpoint page, which says why and since when. Screenshot: `docs/img/ui-alerts.png`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use blockhook_core::{EndpointId, ManualClock, MerchantId, Timestamp};

use super::kit::{Browser, Shots, css, merchant_key, text_containing, text_of, workspace_root};
use crate::helpers::{ADMIN, Backend, PAYMENT, TestApp, store_url, test_settings};
use crate::outbox::eventually;
use crate::receiver::{Receiver, TestCa, now_ms};

async fn health_state(app: &TestApp, merchant: &str, ep: &str, want: &str) {
    let mut v = Value::Null;
    for _ in 0..400 {
        v = app
            .get(&format!("/v1/merchants/{merchant}/endpoints/{ep}"), ADMIN)
            .await
            .json()
            .await
            .unwrap();
        if v["health"]["state"] == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("endpoint {ep} never reached {want}: {v}");
}

/// Waits until `n` attempts of endpoint `ep` are in the attempt log, before the test jumps the
/// clock past the watch's settle time (a real clock would give the dispatcher that time).
async fn logged(app: &TestApp, merchant: &str, ep: &str, n: u64) {
    let (m, ep) = (
        MerchantId::parse(merchant).unwrap(),
        EndpointId::parse(ep).unwrap(),
    );
    for _ in 0..400 {
        let h = app
            .state
            .store
            .endpoint_health(&m, &ep, Timestamp::from_ms(0))
            .await
            .unwrap();
        if h.attempts >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the attempts of {ep} were not logged");
}

/// Waits for the watch's first pass. Until then it has no cursor, and its first pass looks back
/// one `disable_after` from the clock of that moment: a test that jumps the clock an hour ahead
/// before the watch has run once would hide the failures it just caused from it (a real clock
/// gives the watch its interval long before an hour has passed).
async fn watching(app: &TestApp) {
    let store = app.state.store.clone();
    eventually("the endpoint watch's first pass", move || {
        let store = store.clone();
        async move { store.watch_cursor().await.unwrap().is_some() }
    })
    .await;
}

#[tokio::test]
async fn alert_banner_lists_failing_and_disabled_endpoints() {
    let Some(browser) = Browser::start("alert_banner_lists_failing_and_disabled_endpoints").await
    else {
        return;
    };
    let clock = ManualClock::at(Timestamp::from_ms(now_ms() as i64));
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new());
    let url = store_url(Backend::Sqlite, dir.path()).await;
    let mut s = test_settings(dir.path(), url, &ca);
    s.alerts.interval = Duration::from_millis(100);
    s.alerts.failure_streak = 3;
    s.alerts.disable_after = Duration::from_secs(3600);
    let app = TestApp::start_with_clock(Backend::Sqlite, s, ca, dir, Arc::new(clock.clone())).await;
    let m = app.merchant().await;
    let key = merchant_key(&app, &m).await;
    let down = Receiver::scripted(Some(&app.ca), Arc::new(|_| 503), Duration::ZERO).await;
    let down_too = Receiver::scripted(Some(&app.ca), Arc::new(|_| 503), Duration::ZERO).await;
    let old = app
        .endpoint(
            &m,
            &down.url(),
            json!({ "event_types": ["Payment"], "label": "cashier:91" }),
        )
        .await;
    let new = app
        .endpoint(
            &m,
            &down_too.url(),
            json!({ "event_types": ["Payout"], "label": "payout-contract:200910" }),
        )
        .await;
    let (old_id, new_id) = (
        old["id"].as_str().unwrap().to_owned(),
        new["id"].as_str().unwrap().to_owned(),
    );

    // `old` fails first; 59 minutes later `new` starts failing; 2 minutes on, `old` has had no
    // success for an hour and is disabled, `new` is failing.
    for _ in 0..3 {
        app.publish(&m, "Payment", PAYMENT).await;
    }
    down.wait_for(3, Duration::from_secs(10)).await;
    logged(&app, &m, &old_id, 3).await;
    watching(&app).await;
    clock.advance(Duration::from_secs(59 * 60));
    for _ in 0..3 {
        app.publish(&m, "Payout", PAYMENT).await;
    }
    down_too.wait_for(3, Duration::from_secs(10)).await;
    logged(&app, &m, &new_id, 3).await;
    clock.advance(Duration::from_secs(120));
    health_state(&app, &m, &old_id, "disabled").await;
    health_state(&app, &m, &new_id, "failing").await;

    let c = &browser.c;
    let base = &app.base;
    let mut shots = Shots::new("alerts");
    browser.sign_in(base, &key).await;
    c.goto(&format!("{base}/ui/events")).await.unwrap();
    let banner = text_of(c, ".alert-banner").await;
    assert!(banner.contains("Endpoints need attention"), "{banner}");
    assert!(
        banner.contains(&old_id) && banner.contains("disabled automatically"),
        "{banner}"
    );
    assert!(
        banner.contains(&new_id) && banner.contains("failing since"),
        "{banner}"
    );
    assert!(banner.contains("503"), "the last error is shown: {banner}");
    let png = shots.take(c, "banner").await;
    let img = workspace_root().join("docs/img");
    std::fs::create_dir_all(&img).unwrap();
    std::fs::copy(png, img.join("ui-alerts.png")).unwrap();

    // The banner links to the endpoint page, which says why and when it was disabled.
    css(
        c,
        &format!(".alert-banner a[href='/ui/endpoints/{old_id}']"),
    )
    .await
    .click()
    .await
    .unwrap();
    text_containing(c, "h1", "cashier:91").await;
    let why = text_of(c, "#disabled-why").await;
    assert!(why.contains("no successful delivery for 1h"), "{why}");
    shots.take(c, "disabled-endpoint").await;
    // The banner is on this page too (every merchant page).
    assert!(text_of(c, ".alert-banner").await.contains(&new_id));
    app.stop().await;
}
