//! The dashboard end to end in a real headless Chromium, driven over WebDriver (chromedriver):
//! sign in, create an endpoint, send a test webhook, find a published event, open it, resend
//! it, rotate the secret, sign out. A screenshot of each page goes to `target/ui-screenshots/`;
//! the events list and event detail are also copied to `docs/img/` for the README.
//!
//! Needs `chromium` and `chromedriver` (Debian: `chromium chromium-driver`). Without them the
//! test fails under `CI` and prints a skip line elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use super::kit::{
    Browser, Shots, css, merchant_key, text_containing, text_of, wait_count, workspace_root,
};
use crate::helpers::{Backend, PAYMENT, TestApp};
use crate::receiver::Receiver;

#[tokio::test]
async fn dashboard_end_to_end_in_headless_chromium() {
    let Some(browser) = Browser::start("dashboard_end_to_end_in_headless_chromium").await else {
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite).await;
    let rx = Receiver::ok(Some(&app.ca)).await;
    let merchant = app.merchant().await;
    let key = merchant_key(&app, &merchant).await;
    let c = &browser.c;
    let mut shots = Shots::new("dashboard");
    let base = &app.base;

    // Sign in.
    c.goto(&format!("{base}/ui/login")).await.unwrap();
    shots.take(c, "login").await;
    browser.sign_in(base, &key).await;
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/ui/endpoints")
    );

    // Create an endpoint pointing at the loopback receiver.
    css(c, "#new-url").await.send_keys(&rx.url()).await.unwrap();
    css(c, "#new-label")
        .await
        .send_keys("browser-shop")
        .await
        .unwrap();
    shots.take(c, "endpoints").await;
    css(c, "form[action='/ui/endpoints'] button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    text_containing(c, "h1", "browser-shop").await;
    let endpoint_url = c.current_url().await.unwrap().to_string();

    // Send a test webhook and see the response.
    css(c, "form[action$='/test'] button")
        .await
        .click()
        .await
        .unwrap();
    let verdict = text_of(c, "#test-verdict").await;
    assert!(verdict.contains("200 accepted"), "{verdict}");
    assert!(text_of(c, "#test-result").await.contains("answer 0: 200"));
    shots.take(c, "test-webhook").await;

    // Publish an event through the API; find it in the list and open it.
    let published = app.publish(&merchant, "Payment", PAYMENT).await;
    let event = published["event_id"].as_str().unwrap().to_owned();
    rx.wait_for(2, Duration::from_secs(10)).await;
    c.goto(&format!("{base}/ui/events")).await.unwrap();
    assert!(text_of(c, "table").await.contains("OrderNo_202504010023"));
    let events_png = shots.take(c, "events").await;
    css(c, &format!("a[href='/ui/events/{event}']"))
        .await
        .click()
        .await
        .unwrap();
    let detail_url = format!("{base}/ui/events/{event}");
    wait_count(c, &detail_url, "tr.attempt", 1).await;
    let detail_png = shots.take(c, "event-detail").await;

    // Resend it and see the new attempt.
    css(c, "form[action$='/resend'] button")
        .await
        .click()
        .await
        .unwrap();
    text_containing(c, ".notice", "Resend queued").await;
    wait_count(c, &detail_url, "tr.attempt", 2).await;
    assert_eq!(rx.wait_for(3, Duration::from_secs(10)).await.len(), 3);
    shots.take(c, "event-resent").await;

    // Health page renders its chart.
    c.goto(&format!("{base}/ui/health")).await.unwrap();
    css(c, "svg.chart").await;
    shots.take(c, "health").await;

    // Rotate the secret.
    c.goto(&endpoint_url).await.unwrap();
    css(c, "form[action$='/rotate'] button")
        .await
        .click()
        .await
        .unwrap();
    assert!(text_of(c, "#secret").await.starts_with("sck_"));
    let copy = css(c, "button[data-copy='#secret']").await;
    assert!(
        copy.is_displayed().await.unwrap(),
        "a copy button beside it"
    );
    shots.take(c, "secret-rotated").await;

    // Sign out: back to the sign-in page, and the dashboard is closed again.
    css(c, "nav form[action='/ui/logout'] button")
        .await
        .click()
        .await
        .unwrap();
    css(c, "#token").await;
    c.goto(&format!("{base}/ui/events")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/ui/login"));
    shots.take(c, "signed-out").await;
    browser.c.clone().close().await.unwrap();

    let img = workspace_root().join("docs/img");
    std::fs::create_dir_all(&img).unwrap();
    std::fs::copy(events_png, img.join("ui-events.png")).unwrap();
    std::fs::copy(detail_png, img.join("ui-event-detail.png")).unwrap();
    app.stop().await;
}
