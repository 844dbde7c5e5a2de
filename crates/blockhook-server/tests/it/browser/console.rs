//! The merchant's console in a real headless Chromium: the endpoint page (figures, stacked
//! charts, newest deliveries, recovery with its preview, custom headers), the event page (exact
//! bytes, a `curl` command that really replays an attempt, copy buttons, retry of one
//! delivery), and the polish that shows in use: the merchant's name in the header, the favicon,
//! the delivery state on a 375 px screen, keyboard-only use, and the Origin check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use fantoccini::Locator;
use fantoccini::key::Key;
use serde_json::{Value, json};

use blockhook_sig::{VerifyMode, VerifyOptions};

use super::kit::{
    Browser, Shots, css, merchant_key, text_containing, text_of, wait_count, workspace_root,
};
use crate::helpers::{Backend, PAYMENT, TestApp};
use crate::receiver::{Receiver, now_ms};

async fn count(c: &fantoccini::Client, selector: &str) -> usize {
    c.find_all(Locator::Css(selector)).await.unwrap().len()
}

#[tokio::test]
async fn console_pages_in_headless_chromium() {
    let Some(browser) = Browser::start("console_pages_in_headless_chromium").await else {
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite).await;
    let good = Receiver::ok(Some(&app.ca)).await;
    let down = Receiver::scripted(Some(&app.ca), Arc::new(|_| 503), Duration::ZERO).await;
    let merchant = app.merchant().await;
    let key = merchant_key(&app, &merchant).await;
    app.endpoint(&merchant, &good.url(), json!({ "label": "shop" }))
        .await;
    let flaky = app
        .endpoint(&merchant, &down.url(), json!({ "label": "flaky-shop" }))
        .await;
    let flaky_id = flaky["id"].as_str().unwrap().to_owned();
    let secret = flaky["secret"].as_str().unwrap().to_owned();
    let mut events = Vec::new();
    for _ in 0..3 {
        let e = app.publish(&merchant, "Payment", PAYMENT).await;
        events.push(e["event_id"].as_str().unwrap().to_owned());
    }
    // Three attempts each (retries after 1 s and 1 s in tests), then failed for good.
    down.wait_for(9, Duration::from_secs(30)).await;
    good.wait_for(3, Duration::from_secs(10)).await;

    let c = &browser.c;
    let base = &app.base;
    let mut shots = Shots::new("console");
    browser.sign_in(base, &key).await;
    assert_eq!(
        text_of(c, "nav .who").await,
        "Test merchant",
        "the merchant's name, not its id"
    );

    // The endpoint page: figures, charts and the newest deliveries, once all three failed.
    let page = format!("{base}/ui/endpoints/{flaky_id}");
    wait_count(c, &page, "#recent .badge.bad", 3).await;
    let streak = text_of(c, "#fig-streak").await;
    assert!(
        streak.contains("9"),
        "nine failed attempts in a row: {streak}"
    );
    assert!(streak.contains("no success logged"), "{streak}");
    assert!(text_of(c, "#fig-queue").await.contains("0 due now"));
    assert_eq!(count(c, "#chart-hours rect.seg.bad").await, 1);
    assert_eq!(count(c, "#chart-days rect.seg.bad").await, 1);
    let title = css(c, "#chart-days svg")
        .await
        .attr("aria-label")
        .await
        .unwrap();
    assert!(
        title
            .unwrap_or_default()
            .contains("0 succeeded, 3 failed, 0 retrying"),
        "the chart says its figures to screen readers"
    );
    assert_eq!(count(c, "#recent tr.delivery-row").await, 3);
    let endpoint_png = shots.take(c, "endpoint").await;

    // Custom headers can be set and seen in the UI.
    css(c, "#ep-headers")
        .await
        .send_keys("X-Shop-Id: 42")
        .await
        .unwrap();
    css(
        c,
        &format!("form[action='/ui/endpoints/{flaky_id}'] button[type=submit]"),
    )
    .await
    .click()
    .await
    .unwrap();
    text_containing(c, ".notice", "Saved").await;
    assert!(text_of(c, "dl.facts").await.contains("X-Shop-Id"));
    assert_eq!(
        css(c, "#ep-headers")
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap()
            .trim(),
        "X-Shop-Id: 42"
    );

    // Recover with a preview: nothing is resent until confirmed.
    css(c, "form[action$='/recover'] button")
        .await
        .click()
        .await
        .unwrap();
    let preview = text_of(c, "#recover-preview").await;
    assert!(
        preview.contains("3 deliveries failed for good"),
        "{preview}"
    );
    shots.take(c, "recover-preview").await;
    assert_eq!(down.count(), 9, "a preview resends nothing");
    css(c, "form[method=post][action$='/recover'] button")
        .await
        .click()
        .await
        .unwrap();
    text_containing(c, ".notice", "Recovery queued: 3 deliveries").await;
    down.wait_for(10, Duration::from_secs(10)).await;
    let resent = down.received();
    assert!(
        resent[9..]
            .iter()
            .all(|r| r.header("x-shop-id") == Some("42")),
        "the custom header is sent"
    );

    // The event page: exact bytes, a replayable curl command, retry of one delivery.
    let event = &events[0];
    let event_page = format!("{base}/ui/events/{event}");
    c.goto(&event_page).await.unwrap();
    assert_eq!(
        text_of(c, "#payload-exact").await,
        PAYMENT,
        "the bytes as received"
    );
    let copy = css(c, "button[data-copy='#payload-exact']").await;
    assert!(
        copy.is_displayed().await.unwrap(),
        "shown once the script runs"
    );
    let copy_id = css(c, "button[data-copy='#event-id']").await;
    copy_id.click().await.unwrap();
    // The copy settles when the clipboard's promise does; the label goes back after 2 s, the
    // attribute stays.
    let mut copied = None;
    for _ in 0..100 {
        copied = copy_id.attr("data-copied").await.unwrap();
        if copied.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        matches!(copied.as_deref(), Some("true" | "false")),
        "the copy button never reported: {copied:?}"
    );

    // The flaky endpoint's section: its attempts were signed with `secret`.
    let mut flaky_section = None;
    for section in c.find_all(Locator::Css("section.delivery")).await.unwrap() {
        if section.text().await.unwrap().contains("flaky-shop") {
            flaky_section = Some(section);
            break;
        }
    }
    let flaky_section = flaky_section.expect("a delivery to flaky-shop");
    let curl = flaky_section
        .find(Locator::Css("pre.curl"))
        .await
        .unwrap()
        .prop("textContent")
        .await
        .unwrap()
        .unwrap();
    assert!(curl.contains("BlockATM-Signature-V2"), "{curl}");
    let local = Receiver::ok(None).await;
    let replay = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(curl.replace("http://127.0.0.1:9000/", &local.url()))
        .output()
        .await
        .unwrap();
    assert!(replay.status.success(), "curl: {replay:?}");
    let got = local.wait_for(1, Duration::from_secs(5)).await.remove(0);
    assert_eq!(got.body.as_ref(), PAYMENT.as_bytes(), "the exact payload");
    assert_eq!(
        got.header("x-shop-id"),
        None,
        "sent before the header was set"
    );
    let opts = VerifyOptions {
        mode: VerifyMode::Sorted,
        window_ms: 600_000,
    };
    // The replay carries the attempt's own time and signature, made for exactly these bytes.
    let verified = blockhook_sig::verify(
        &got.headers,
        &got.body,
        &[secret.as_bytes()],
        &opts,
        now_ms(),
    );
    assert!(
        verified.is_ok(),
        "the replayed request verifies: {verified:?}"
    );

    let sections = count(c, "section.delivery").await;
    flaky_section
        .find(Locator::Css("form[action$='/retry'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_containing(c, ".notice", "Retry queued: 1 new delivery.").await;
    wait_count(c, &event_page, "section.delivery", sections + 1).await;
    assert!(
        text_of(c, "dl.facts").await.contains("1 of 3"),
        "counted as a resend"
    );
    let detail_png = shots.take(c, "event-exact-bytes").await;

    // Keyboard only: from the skip link, Tab reaches the test-send button and Enter sends.
    c.goto(&page).await.unwrap();
    let body = css(c, "body").await;
    let target = css(c, "form[action$='/test'] button").await;
    let mut reached = false;
    for _ in 0..40 {
        body.send_keys(&Key::Tab.to_string()).await.unwrap();
        let active = c.active_element().await.unwrap();
        if active.element_id() == target.element_id() {
            reached = true;
            break;
        }
    }
    assert!(reached, "the test button is reachable with Tab");
    c.active_element()
        .await
        .unwrap()
        .send_keys(&Key::Enter.to_string())
        .await
        .unwrap();
    let verdict = text_of(c, "#test-verdict").await;
    assert!(verdict.contains("503"), "{verdict}");

    // 375 px: the state of each delivery stays on screen.
    c.set_window_size(375, 800).await.unwrap();
    for (url, badge) in [
        (format!("{base}/ui/events"), "tbody .badge"),
        (page.clone(), "#recent .badge"),
    ] {
        c.goto(&url).await.unwrap();
        css(c, badge).await;
        let fits = c
            .execute(
                "var b = document.querySelector(arguments[0]).getBoundingClientRect(); \
                 return b.right <= window.innerWidth && b.left >= 0;",
                vec![Value::String(badge.to_owned())],
            )
            .await
            .unwrap();
        assert_eq!(
            fits,
            Value::Bool(true),
            "{url}: {badge} on screen at 375 px"
        );
    }
    shots.take(c, "events-375px").await;
    c.set_window_size(1280, 1000).await.unwrap();

    // The favicon is served (no 404 in every browser console).
    let icon = app
        .http
        .get(format!("{base}/favicon.ico"))
        .send()
        .await
        .unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");

    // A state-changing post from another site is refused, even with the session and token.
    let cookie = c.get_named_cookie("bh_session").await.unwrap();
    c.goto(&page).await.unwrap();
    let csrf = css(c, "input[name=csrf]")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    let post = |origin: &'static str| {
        app.http
            .post(format!("{base}/ui/endpoints/{flaky_id}/enabled?on=false"))
            .header("cookie", format!("bh_session={}", cookie.value()))
            .header("origin", origin)
            .form(&[("csrf", csrf.as_str())])
            .send()
    };
    let refused = post("https://evil.example").await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("Cross-site request refused")
    );
    let enabled = || async {
        app.get(
            &format!("/v1/merchants/{merchant}/endpoints/{flaky_id}"),
            crate::helpers::ADMIN,
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["enabled"]
            .as_bool()
            .unwrap()
    };
    assert!(enabled().await, "the refused post changed nothing");
    let same = post(Box::leak(base.clone().into_boxed_str()))
        .await
        .unwrap();
    assert!(
        same.status().is_success(),
        "the dashboard's own origin passes"
    );
    assert!(!enabled().await);

    browser.c.clone().close().await.unwrap();
    let img = workspace_root().join("docs/img");
    std::fs::copy(endpoint_png, img.join("ui-endpoint.png")).unwrap();
    std::fs::copy(detail_png, img.join("ui-event-exact-bytes.png")).unwrap();
    app.stop().await;
}
