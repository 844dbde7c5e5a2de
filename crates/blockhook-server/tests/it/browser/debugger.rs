//! The signature debugger in a real headless Chromium: two REAL deliveries (one endpoint in
//! `sorted` mode, one in `raw`) are captured at loopback receivers, then the page is fed each
//! usual mistake made with them (a re-serialised body, the wrong mode, the time in seconds, the
//! secret without its prefix) and must name it. The "Debug this signature" link of an event's
//! attempt pre-fills the form and the untouched delivery is valid. The page with a diagnosis is
//! copied to `docs/img/ui-debugger.png` for the README.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fantoccini::Client;
use serde_json::json;

use super::kit::{Browser, Shots, css, merchant_key, text_containing, wait_count, workspace_root};
use crate::helpers::{Backend, PAYMENT, TestApp};
use crate::receiver::{Received, Receiver};

/// Replaces the value of the field `selector` with `value`.
async fn fill(c: &Client, selector: &str, value: &str) {
    let el = css(c, selector).await;
    el.clear().await.unwrap();
    if !value.is_empty() {
        el.send_keys(value).await.unwrap();
    }
}

/// Chooses the option `value` of the select `selector`.
async fn choose(c: &Client, selector: &str, value: &str) {
    css(c, &format!("{selector} option[value='{value}']"))
        .await
        .click()
        .await
        .unwrap();
}

/// Opens an empty debugger, fills it from `rx` (with the changes the caller then makes) and
/// submits; returns the text of the mistakes list once the result is shown.
struct Case<'a> {
    body: String,
    time: String,
    signature: String,
    endpoint: &'a str,
    secret: &'a str,
    receiver_mode: &'a str,
}

impl<'a> Case<'a> {
    fn from(rx: &Received, endpoint: &'a str) -> Self {
        Self {
            body: String::from_utf8(rx.body.to_vec()).unwrap(),
            time: rx.header("BlockATM-Request-Time").unwrap().to_owned(),
            signature: rx.header("BlockATM-Signature-V2").unwrap().to_owned(),
            endpoint,
            secret: "",
            receiver_mode: "",
        }
    }

    async fn run(&self, c: &Client, base: &str) {
        c.goto(&format!("{base}/ui/debugger")).await.unwrap();
        fill(c, "#debug-body", &self.body).await;
        fill(c, "#debug-time", &self.time).await;
        fill(c, "#debug-sig", &self.signature).await;
        choose(c, "#debug-endpoint", self.endpoint).await;
        fill(c, "#debug-secret", self.secret).await;
        choose(c, "#debug-mode", self.receiver_mode).await;
        css(c, "#debug-form button[type=submit]")
            .await
            .click()
            .await
            .unwrap();
        css(c, "#result").await;
    }
}

/// The text of the mistake `code` (it must be listed).
async fn mistake(c: &Client, code: &str) -> String {
    text_containing(c, &format!("li.mistake[data-code='{code}']"), "Fix:").await
}

/// Re-serialises compact JSON the way Python's `json.dumps` does (", " and ": "), keys kept in
/// order: what a receiver that parsed the body and dumped it again would verify.
fn python_dumps(compact: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(compact).unwrap();
    assert!(v.is_object());
    compact.replace(",\"", ", \"").replace("\":", "\": ")
}

#[tokio::test]
async fn debugger_diagnoses_each_mistake_from_a_real_delivery() {
    let Some(browser) =
        Browser::start("debugger_diagnoses_each_mistake_from_a_real_delivery").await
    else {
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite).await;
    let rx_sorted = Receiver::ok(Some(&app.ca)).await;
    let rx_raw = Receiver::ok(Some(&app.ca)).await;
    let merchant = app.merchant().await;
    let key = merchant_key(&app, &merchant).await;
    let sorted = app
        .endpoint(
            &merchant,
            &rx_sorted.url(),
            json!({ "label": "shop-sorted" }),
        )
        .await;
    let raw = app
        .endpoint(
            &merchant,
            &rx_raw.url(),
            json!({ "label": "shop-raw", "signing_mode": "raw" }),
        )
        .await;
    let sorted_id = sorted["id"].as_str().unwrap();
    let raw_id = raw["id"].as_str().unwrap();
    let sorted_secret = sorted["secret"].as_str().unwrap();
    let raw_secret = raw["secret"].as_str().unwrap();
    let event = app.publish(&merchant, "Payment", PAYMENT).await["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let got_sorted = rx_sorted.wait_for(1, Duration::from_secs(10)).await[0].clone();
    let got_raw = rx_raw.wait_for(1, Duration::from_secs(10)).await[0].clone();

    let c = &browser.c;
    let base = &app.base;
    let mut shots = Shots::new("debugger");
    browser.sign_in(base, &key).await;

    // From the event's page: "Debug this signature" pre-fills the form from the attempt; the
    // delivery as sent is valid in its endpoint's mode.
    let detail_url = format!("{base}/ui/events/{event}");
    wait_count(c, &detail_url, "a.debug-link", 2).await;
    let href = css(c, "a.debug-link")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    c.goto(&format!("{base}{href}")).await.unwrap();
    let prefilled = css(c, "#debug-sig")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(
        [&got_sorted, &got_raw]
            .iter()
            .any(|g| g.header("BlockATM-Signature-V2") == Some(prefilled.as_str())),
        "pre-filled with a signature that was sent: {prefilled}"
    );
    css(c, "#debug-form button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    let verdict = text_containing(c, "#verdict", "match").await;
    assert!(
        verdict.contains("match: the signature is valid in"),
        "{verdict}"
    );
    css(c, "#no-mistakes").await;
    shots.take(c, "prefilled-valid").await;

    // Re-serialised JSON: the raw endpoint's delivery, the body as `json.dumps` gives it back.
    let mut case = Case::from(&got_raw, raw_id);
    case.body = python_dumps(&case.body);
    case.run(c, base).await;
    let text = mistake(c, "reserialised-body").await;
    assert!(text.contains("Re-serialised JSON"), "{text}");
    assert!(text.contains("raw request body"), "{text}");
    assert!(
        text_containing(c, "#verdict", "no match")
            .await
            .contains("not valid")
    );
    let diagnosis_png = shots.take(c, "reserialised").await;

    // Wrong mode: the sorted endpoint's delivery, checked the way a raw receiver does.
    let mut case = Case::from(&got_sorted, sorted_id);
    case.receiver_mode = "raw";
    case.run(c, base).await;
    let text = mistake(c, "wrong-mode").await;
    assert!(text.contains("matches in sorted mode"), "{text}");
    assert!(text.contains("receiver checks raw mode"), "{text}");
    shots.take(c, "wrong-mode").await;

    // Time in seconds instead of milliseconds.
    let mut case = Case::from(&got_sorted, sorted_id);
    let ms: u64 = case.time.parse().unwrap();
    case.time = (ms / 1000).to_string();
    case.run(c, base).await;
    mistake(c, "time-units").await;
    // Every time-units finding: the 10-digit shape always, and a variant that matched when the
    // delivery's milliseconds happened to end in 000.
    let mut text = String::new();
    for li in c
        .find_all(fantoccini::Locator::Css(
            "li.mistake[data-code='time-units']",
        ))
        .await
        .unwrap()
    {
        text.push_str(&li.text().await.unwrap());
        text.push('\n');
    }
    assert!(text.contains("looks like Unix seconds"), "{text}");
    assert!(text.contains("milliseconds"), "{text}");
    shots.take(c, "seconds").await;

    // The secret without its prefix, pasted (no endpoint chosen).
    let bare = sorted_secret.strip_prefix("sck_").unwrap();
    let mut case = Case::from(&got_sorted, "");
    case.secret = bare;
    case.run(c, base).await;
    let text = mistake(c, "secret-form").await;
    assert!(text.contains("sck_ added in front of the secret"), "{text}");
    shots.take(c, "unprefixed-secret").await;

    // The page shows neither endpoint's secret (ui.rs checks the answers to endpoint posts).
    let source = c.source().await.unwrap();
    assert!(!source.contains(sorted_secret) && !source.contains(raw_secret));

    browser.c.clone().close().await.unwrap();
    let img = workspace_root().join("docs/img");
    std::fs::create_dir_all(&img).unwrap();
    std::fs::copy(diagnosis_png, img.join("ui-debugger.png")).unwrap();
    app.stop().await;
}
