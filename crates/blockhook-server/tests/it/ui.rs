//! The web dashboard, at the HTTP level: sign-in, sessions, CSRF, pages, tenancy, sign-out.
//! Cookies are handled by hand so each test sees exactly what the server sets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use crate::helpers::{ADMIN, Backend, PAYMENT, TestApp};
use crate::receiver::Receiver;

/// A browser-ish client: no redirects followed, one session cookie.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

impl Browser {
    fn new(app: &TestApp) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            http,
            base: app.base.clone(),
            cookie: None,
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", format!("bh_session={c}"));
        }
        req.send().await.unwrap()
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.http.post(format!("{}{path}", self.base)).form(form);
        if let Some(c) = &self.cookie {
            req = req.header("cookie", format!("bh_session={c}"));
        }
        req.send().await.unwrap()
    }

    /// Signs in and keeps the session cookie; returns the `Set-Cookie` header.
    async fn login(&mut self, token: &str) -> String {
        let r = self.post("/ui/login", &[("token", token)]).await;
        assert_eq!(r.status(), 303, "login redirects");
        let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        let value = set
            .strip_prefix("bh_session=")
            .unwrap()
            .split(';')
            .next()
            .unwrap();
        self.cookie = Some(value.to_owned());
        set
    }

    /// A page's HTML, asserting its status.
    async fn page(&self, path: &str, status: u16) -> String {
        let r = self.get(path).await;
        assert_eq!(r.status(), status, "GET {path}");
        r.text().await.unwrap()
    }
}

/// The CSRF token embedded in a page's forms.
fn csrf(html: &str) -> String {
    let at = html
        .find(r#"name="csrf" value=""#)
        .expect("page has a CSRF field")
        + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

async fn issue_key(app: &TestApp, merchant: &str) -> String {
    let r = app
        .post(
            &format!("/v1/merchants/{merchant}/api-keys"),
            ADMIN,
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn merchant_signs_in_sees_own_data_only_and_signs_out() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let rx = Receiver::ok(Some(&app.ca)).await;
    let (a, b) = (app.merchant().await, app.merchant().await);
    let ep_a = app
        .endpoint(&a, &rx.url(), json!({ "label": "shop-a" }))
        .await;
    let ep_b = app
        .endpoint(&b, &rx.url(), json!({ "label": "shop-b" }))
        .await;
    let ev_a = app.publish(&a, "Payment", PAYMENT).await["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ev_b = app.publish(&b, "Payment", PAYMENT).await["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key_a = issue_key(&app, &a).await;

    let mut web = Browser::new(&app);
    // Not signed in: every page sends to the sign-in form.
    let r = web.get("/ui/endpoints").await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/login");
    assert!(web.page("/ui/login", 200).await.contains(r#"name="token""#));
    assert_eq!(
        web.post("/ui/login", &[("token", "bhk_wrong")])
            .await
            .status(),
        401
    );

    let set = web.login(&key_a).await;
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/ui"),
        "{set}"
    );
    assert!(!set.contains(&key_a), "the key never goes into the cookie");

    let list = web.page("/ui/endpoints", 200).await;
    assert!(list.contains("shop-a") && !list.contains("shop-b"));
    assert!(!list.contains(&key_a), "the key never appears in a page");
    let token = csrf(&list);

    // A POST without (or with a wrong) CSRF token is refused and changes nothing.
    let form = [("url", "https://localhost:1/new"), ("label", "sneaky")];
    assert_eq!(web.post("/ui/endpoints", &form).await.status(), 403);
    assert_eq!(
        web.post(
            "/ui/endpoints",
            &[("csrf", "nope"), ("url", "https://localhost:1/x")]
        )
        .await
        .status(),
        403
    );
    assert!(!web.page("/ui/endpoints", 200).await.contains("sneaky"));
    let r = web
        .post(
            "/ui/endpoints",
            &[
                ("csrf", &token),
                ("url", "https://localhost:1/new"),
                ("label", "created-in-ui"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let created = r.headers()["location"].to_str().unwrap().to_owned();
    let detail = web.page(&created, 200).await;
    assert!(detail.contains("created-in-ui") && detail.contains("Endpoint created"));

    // Events list: payload fields and per-endpoint state; detail: payload and deliveries.
    let events = web.page("/ui/events", 200).await;
    assert!(events.contains("OrderNo_202504010023") && events.contains("CustNo_00240101"));
    assert!(events.contains(&format!("/ui/events/{ev_a}")) && !events.contains(&ev_b));
    let filtered = web.page("/ui/events?type=Payout", 200).await;
    assert!(filtered.contains("No events match"));
    let event = web.page(&format!("/ui/events/{ev_a}"), 200).await;
    assert!(event.contains("Payload") && event.contains("shop-a") && event.contains("Resend"));
    assert!(web.page("/ui/health", 200).await.contains("<svg"));

    // Another merchant's event or endpoint is not found, like an unknown one.
    web.page(&format!("/ui/events/{ev_b}"), 404).await;
    web.page(
        &format!("/ui/endpoints/{}", ep_b["id"].as_str().unwrap()),
        404,
    )
    .await;
    web.page("/ui/events/evt_doesnotexist", 404).await;
    web.page("/ui/operator", 403).await;

    // Revealing the secret is a POST with the token.
    let ep_path = format!("/ui/endpoints/{}", ep_a["id"].as_str().unwrap());
    let shown = web
        .post(&format!("{ep_path}/secret"), &[("csrf", &token)])
        .await;
    assert_eq!(shown.status(), 200);
    assert!(
        shown
            .text()
            .await
            .unwrap()
            .contains(ep_a["secret"].as_str().unwrap())
    );

    // Sign out: the cookie is cleared and the old session no longer works.
    let r = web.post("/ui/logout", &[("csrf", &token)]).await;
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let r = web.get("/ui/endpoints").await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/login");
    app.stop().await;
}

#[tokio::test]
async fn operator_manages_merchants_and_acts_as_one() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut web = Browser::new(&app);
    web.login(ADMIN).await;
    let op = web.page("/ui/operator", 200).await;
    let token = csrf(&op);
    let r = web
        .post(
            "/ui/operator/merchants",
            &[("csrf", &token), ("name", "Acme"), ("id", "mch_acme")],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert!(web.page("/ui/operator", 200).await.contains("Acme"));

    // Without a merchant picked, merchant pages send the operator here.
    let r = web.get("/ui/events").await;
    assert_eq!(r.headers()["location"], "/ui/operator");

    // Issue a key: shown once, and it signs in.
    let issued = web
        .post("/ui/operator/merchants/mch_acme/keys", &[("csrf", &token)])
        .await
        .text()
        .await
        .unwrap();
    let at = issued.find(r#"id="issued-key">"#).unwrap() + 16;
    let key = issued[at..].split('<').next().unwrap().to_owned();
    assert!(key.starts_with("bhk_"));
    assert!(
        !web.page("/ui/operator", 200).await.contains(&key),
        "shown only once"
    );
    let mut merchant = Browser::new(&app);
    merchant.login(&key).await;

    // Act as the merchant.
    let r = web
        .post(
            "/ui/operator/act",
            &[("csrf", &token), ("merchant", "mch_acme")],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert!(
        web.page("/ui/endpoints", 200)
            .await
            .contains("acting as mch_acme")
    );

    // Suspending the merchant ends its sessions at the next request.
    let r = web
        .post(
            "/ui/operator/merchants/mch_acme/status?to=suspended",
            &[("csrf", &token)],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(merchant.get("/ui/endpoints").await.status(), 303);
    app.stop().await;
}
