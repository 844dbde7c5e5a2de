//! "Find a payment" in a real headless Chromium, on each store: publish several events, type an
//! order number into the events page's search form and submit it with the keyboard, see the one
//! match; then search by type, page forwards and back with the filters kept. The search result
//! is copied to `docs/img/ui-search.png` for the README.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fantoccini::Locator;
use fantoccini::key::Key;

use super::kit::{Browser, Shots, css, merchant_key, text_containing, workspace_root};
use crate::helpers::{TestApp, backends};

/// Rows of the events table on the page shown.
async fn rows(c: &fantoccini::Client) -> usize {
    c.find_all(Locator::Css("table tbody tr"))
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn search_finds_an_order_by_its_order_number_in_headless_chromium() {
    let Some(browser) =
        Browser::start("search_finds_an_order_by_its_order_number_in_headless_chromium").await
    else {
        return;
    };
    let c = &browser.c;
    let mut shots = Shots::new("search");
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let merchant = app.merchant().await;
        let key = merchant_key(&app, &merchant).await;
        // 27 payments (one page is 25) and a payout.
        for i in 0..27 {
            let payload = format!(
                r#"{{"orderNo":"OrderNo_2025{i:04}","amount":"{i}.00","status":"SUCCESS"}}"#
            );
            app.publish(&merchant, "Payment", &payload).await;
        }
        app.publish(&merchant, "Payout", r#"{"orderNo":"OrderNo_PAYOUT"}"#)
            .await;
        let base = &app.base;
        browser.sign_in(base, &key).await;

        // Find one order by its number, submitting with Enter.
        c.goto(&format!("{base}/ui/events")).await.unwrap();
        text_containing(c, "p.total", "28 matches").await;
        let value = css(c, "#f-value").await;
        value.send_keys("OrderNo_20250013").await.unwrap();
        value
            .send_keys(&char::from(Key::Enter).to_string())
            .await
            .unwrap();
        text_containing(c, "p.total", "1 match").await;
        let table = text_containing(c, "table", "OrderNo_20250013").await;
        assert!(!table.contains("OrderNo_20250012"), "{backend:?}: {table}");
        assert_eq!(rows(c).await, 1);
        let shot = shots.take(c, &format!("{backend:?}-found")).await;
        if backend == crate::helpers::Backend::Sqlite {
            let img = workspace_root().join("docs/img");
            std::fs::create_dir_all(&img).unwrap();
            std::fs::copy(&shot, img.join("ui-search.png")).unwrap();
        }

        // Nothing found says so.
        c.goto(&format!("{base}/ui/events?value=OrderNo_NOPE"))
            .await
            .unwrap();
        text_containing(c, "p.empty", "No events match").await;
        text_containing(c, "p.total", "0 matches").await;

        // Payments only: 27 matches over two pages; Next and Previous keep the filter.
        c.goto(&format!("{base}/ui/events?type=Payment"))
            .await
            .unwrap();
        text_containing(c, "p.total", "27 matches").await;
        assert_eq!(rows(c).await, 25);
        assert!(
            c.find_all(Locator::Css("a[rel=prev]"))
                .await
                .unwrap()
                .is_empty(),
            "the first page has no Previous"
        );
        css(c, "a[rel=next]").await.click().await.unwrap();
        text_containing(c, "nav.pager", "Previous").await;
        assert_eq!(rows(c).await, 2);
        let url = c.current_url().await.unwrap();
        assert!(url.query().unwrap().contains("type=Payment"), "{url}");
        assert!(
            !text_containing(c, "table", "OrderNo_2025")
                .await
                .contains("PAYOUT")
        );
        shots.take(c, &format!("{backend:?}-page-2")).await;
        css(c, "a[rel=prev]").await.click().await.unwrap();
        text_containing(c, "nav.pager", "Next").await;
        assert_eq!(rows(c).await, 25);
        assert!(
            c.find_all(Locator::Css("a[rel=prev]"))
                .await
                .unwrap()
                .is_empty(),
            "back on the first page"
        );
        app.stop().await;
    }
    browser.c.clone().close().await.unwrap();
}
