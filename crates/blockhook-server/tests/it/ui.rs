//! The web dashboard, at the HTTP level: sign-in, sessions, CSRF, pages, tenancy, sign-out.
//! Cookies are handled by hand so each test sees exactly what the server sets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use blockhook_core::{EventId, MerchantId, SealedSecret};

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

/// Lifetime of the sessions in the expiry test (`ui.session_lifetime`).
const SHORT_LIFETIME: Duration = Duration::from_secs(2);

/// Signs in and loads `page` within the session's lifetime; returns the page, the moment the
/// session had surely started, and the `Set-Cookie` header. Should the machine be so slow that
/// the page came after the session expired, signs in again: only expiry may explain a redirect.
async fn fresh_session(web: &mut Browser, token: &str, page: &str) -> (String, Instant, String) {
    loop {
        let set = web.login(token).await;
        let signed_in = Instant::now();
        let r = web.get(page).await;
        if r.status() == 200 {
            return (r.text().await.unwrap(), signed_in, set);
        }
        assert!(
            signed_in.elapsed() >= SHORT_LIFETIME,
            "GET {page} right after sign-in: {}",
            r.status()
        );
    }
}

/// Asserts the answer is the sign-in redirect (what the dashboard answers without a valid session)
/// and shows none of `secrets`.
async fn sent_to_sign_in(what: &str, r: reqwest::Response, secrets: &[&str]) {
    assert_eq!(r.status(), 303, "{what}: sign-in redirect");
    assert_eq!(r.headers()["location"], "/ui/login", "{what}");
    assert_eq!(r.headers()["cache-control"], "no-store", "{what}");
    let body = r.text().await.unwrap();
    for s in secrets {
        assert!(!body.contains(s), "{what}: answer shows {s}");
    }
}

/// What an expired session must not be able to change.
#[derive(Debug, PartialEq)]
struct Snapshot {
    merchants: usize,
    merchant_status: String,
    keys_revoked: Vec<bool>,
    endpoints: Vec<(String, i64, bool, Option<String>, SealedSecret)>,
    deliveries_of_event: usize,
}

/// A POST form: its path and its fields (without the CSRF token).
type Form = (String, Vec<(String, String)>);

/// Every state-changing form of the dashboard, the merchant's and the operator's, aimed at this
/// endpoint, event, merchant and key; `tag` marks what a form would create.
fn every_form(ep_id: &str, ev: &str, m: &str, key_id: &str, tag: &str) -> (Vec<Form>, Vec<Form>) {
    let ep_path = format!("/ui/endpoints/{ep_id}");
    let m_path = format!("/ui/operator/merchants/{m}");
    let form = |path: String, fields: &[(&str, &str)]| -> Form {
        let fields = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        (path, fields)
    };
    let merchant = vec![
        form(
            "/ui/endpoints".into(),
            &[("url", "https://localhost:1/new"), ("label", tag)],
        ),
        form(
            ep_path.clone(),
            &[("url", "https://localhost:1/changed"), ("label", tag)],
        ),
        form(format!("{ep_path}/enabled?on=false"), &[]),
        form(format!("{ep_path}/secret"), &[]),
        form(format!("{ep_path}/rotate"), &[]),
        form(format!("{ep_path}/test"), &[("event_type", "Payment")]),
        form(
            format!("{ep_path}/ordering/release"),
            &[("key", "OrderNo_1")],
        ),
        form(format!("{ep_path}/delete"), &[]),
        form(format!("/ui/events/{ev}/resend"), &[("endpoint", ep_id)]),
        form(
            "/ui/debugger".into(),
            &[("body", "{}"), ("request_time", "1"), ("endpoint", ep_id)],
        ),
        form("/ui/logout".into(), &[]),
    ];
    let operator = vec![
        form(
            "/ui/operator/merchants".into(),
            &[
                ("name", &format!("{tag} co")),
                ("id", &format!("mch_{tag}")),
            ],
        ),
        form(format!("{m_path}/status?to=suspended"), &[]),
        form(format!("{m_path}/keys"), &[]),
        form(format!("{m_path}/keys/{key_id}/revoke"), &[]),
        form("/ui/operator/act".into(), &[("merchant", m)]),
        form("/ui/logout".into(), &[]),
    ];
    (merchant, operator)
}

async fn snapshot(app: &TestApp, merchant: &str, event: &str) -> Snapshot {
    let store = &app.state.store;
    let m = MerchantId::parse(merchant).unwrap();
    let endpoints = store.list_endpoints(&m, None, 100).await.unwrap().data;
    Snapshot {
        merchants: store.list_merchants(None, 100).await.unwrap().data.len(),
        merchant_status: format!("{:?}", store.get_merchant(&m).await.unwrap().status),
        keys_revoked: store
            .list_api_keys(&m)
            .await
            .unwrap()
            .iter()
            .map(|k| k.revoked_at.is_some())
            .collect(),
        endpoints: endpoints
            .iter()
            .map(|e| {
                (
                    e.id.to_string(),
                    e.updated_at.ms(),
                    e.enabled,
                    e.label.as_ref().map(|l| l.as_str().to_owned()),
                    e.secret.clone(),
                )
            })
            .collect(),
        deliveries_of_event: store
            .list_deliveries(&m, &EventId::parse(event).unwrap(), app.state.clock.now())
            .await
            .unwrap()
            .len(),
    }
}

#[tokio::test]
async fn expired_session_is_sent_to_sign_in_on_every_page_and_form() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.ui.session_lifetime = SHORT_LIFETIME;
    })
    .await;
    let rx = Receiver::ok(Some(&app.ca)).await;
    let m = app.merchant().await;
    let ep = app
        .endpoint(&m, &rx.url(), json!({ "label": "expiry-shop" }))
        .await;
    let ep_id = ep["id"].as_str().unwrap().to_owned();
    let secret = ep["secret"].as_str().unwrap().to_owned();
    let ev = app.publish(&m, "Payment", PAYMENT).await["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = issue_key(&app, &m).await;
    let key_id = app
        .state
        .store
        .list_api_keys(&MerchantId::parse(&m).unwrap())
        .await
        .unwrap()[0]
        .id
        .to_string();

    // A merchant and an operator session, each shown its data while valid.
    let mut merchant = Browser::new(&app);
    let (list, m_start, set) = fresh_session(&mut merchant, &key, "/ui/endpoints").await;
    assert!(list.contains("expiry-shop"), "valid session sees its data");
    let m_csrf = csrf(&list);
    let mut operator = Browser::new(&app);
    let (op_page, o_start, _) = fresh_session(&mut operator, ADMIN, "/ui/operator").await;
    assert!(
        op_page.contains(&m),
        "valid operator session sees the merchants"
    );
    let o_csrf = csrf(&op_page);
    assert!(
        set.split(';')
            .any(|p| p.trim() == format!("Max-Age={}", SHORT_LIFETIME.as_secs())),
        "the cookie's Max-Age follows ui.session_lifetime: {set}"
    );
    let before = snapshot(&app, &m, &ev).await;

    // Let both sessions expire (the cookies are kept: the browser still sends them).
    let expired_at = m_start.max(o_start) + SHORT_LIFETIME + Duration::from_millis(200);
    tokio::time::sleep_until(expired_at.into()).await;

    let ep_path = format!("/ui/endpoints/{ep_id}");
    let ev_path = format!("/ui/events/{ev}");
    let pages = [
        "/ui/endpoints".to_owned(),
        ep_path.clone(),
        format!("{ep_path}/delete"),
        "/ui/events".to_owned(),
        "/ui/events?type=Payment".to_owned(),
        ev_path.clone(),
        "/ui/health".to_owned(),
        "/ui/debugger".to_owned(),
        "/ui/operator".to_owned(),
    ];
    let (merchant_forms, operator_forms) = every_form(&ep_id, &ev, &m, &key_id, "expired");
    // Nothing that either session could see may appear in an answer.
    let secrets = [
        m.as_str(),
        ep_id.as_str(),
        ev.as_str(),
        secret.as_str(),
        key.as_str(),
        "expiry-shop",
        "OrderNo_202504010023",
        m_csrf.as_str(),
        o_csrf.as_str(),
    ];
    let mut checked = 0;
    for (web, forms, token) in [
        (&merchant, &merchant_forms, &m_csrf),
        (&operator, &operator_forms, &o_csrf),
    ] {
        for page in &pages {
            sent_to_sign_in(&format!("GET {page}"), web.get(page).await, &secrets).await;
            checked += 1;
        }
        for (path, fields) in forms {
            let mut form = vec![("csrf", token.as_str())];
            form.extend(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            sent_to_sign_in(
                &format!("POST {path}"),
                web.post(path, &form).await,
                &secrets,
            )
            .await;
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        2 * pages.len() + merchant_forms.len() + operator_forms.len()
    );
    assert_eq!(
        snapshot(&app, &m, &ev).await,
        before,
        "an expired session changed something"
    );

    // Signing in again works, and the secret was neither rotated nor lost.
    let (list, _, _) = fresh_session(&mut merchant, &key, "/ui/endpoints").await;
    let shown = merchant
        .post(&format!("{ep_path}/secret"), &[("csrf", &csrf(&list))])
        .await;
    assert_eq!(shown.status(), 200);
    assert!(shown.text().await.unwrap().contains(&secret));
    eprintln!(
        "expired sessions: lifetime={SHORT_LIFETIME:?} requests_checked={checked} answer=303 /ui/login store_unchanged=true"
    );
    app.stop().await;
}

/// The `Csrf<Form<_>>` extractor guards every POST form: no token or a wrong one is the "Form
/// expired" page (403) and changes nothing; the session's token lets the same form through.
#[tokio::test]
async fn every_form_refuses_a_missing_or_wrong_csrf_token() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let rx = Receiver::ok(Some(&app.ca)).await;
    let m = app.merchant().await;
    let ep = app
        .endpoint(&m, &rx.url(), json!({ "label": "csrf-shop" }))
        .await;
    let ep_id = ep["id"].as_str().unwrap().to_owned();
    let ev = app.publish(&m, "Payment", PAYMENT).await["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = issue_key(&app, &m).await;
    let key_id = app
        .state
        .store
        .list_api_keys(&MerchantId::parse(&m).unwrap())
        .await
        .unwrap()[0]
        .id
        .to_string();
    let mut merchant = Browser::new(&app);
    merchant.login(&key).await;
    let m_csrf = csrf(&merchant.page("/ui/endpoints", 200).await);
    let mut operator = Browser::new(&app);
    operator.login(ADMIN).await;
    let o_csrf = csrf(&operator.page("/ui/operator", 200).await);

    let ep_path = format!("/ui/endpoints/{ep_id}");
    let (merchant_forms, operator_forms) = every_form(&ep_id, &ev, &m, &key_id, "forged");
    let before = snapshot(&app, &m, &ev).await;
    let mut refused = 0;
    for (web, forms, token) in [
        (&merchant, &merchant_forms, &m_csrf),
        (&operator, &operator_forms, &o_csrf),
    ] {
        let other = if token == &m_csrf { &o_csrf } else { &m_csrf };
        for (path, fields) in forms {
            for bad in [None, Some(""), Some("nope"), Some(other.as_str())] {
                let mut form: Vec<(&str, &str)> = bad.map(|t| ("csrf", t)).into_iter().collect();
                form.extend(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                let r = web.post(path, &form).await;
                assert_eq!(r.status(), 403, "POST {path} with token {bad:?}");
                assert_eq!(r.headers()["cache-control"], "no-store");
                let body = r.text().await.unwrap();
                assert!(body.contains("Form expired"), "POST {path}: {body}");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 4 * (merchant_forms.len() + operator_forms.len()));
    assert_eq!(
        snapshot(&app, &m, &ev).await,
        before,
        "a forged form changed something"
    );
    // Both sessions survived (logout was refused too) and the right token passes.
    let r = merchant
        .post(
            &format!("{ep_path}/enabled?on=false"),
            &[("csrf", m_csrf.as_str())],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], ep_path.as_str());
    let r = operator
        .post(
            "/ui/operator/act",
            &[("csrf", o_csrf.as_str()), ("merchant", m.as_str())],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/endpoints");
    assert!(
        operator
            .page("/ui/endpoints", 200)
            .await
            .contains("csrf-shop")
    );
    app.stop().await;
}

/// One `auth::authenticate` decides for the API, the sign-in form and a live session: a revoked
/// key or a suspended merchant is refused by all three at once, each in its own words.
#[tokio::test]
async fn api_sign_in_and_session_share_one_authentication() {
    use blockhook_server::auth::{self, AuthError, Authenticated, Credential};
    use blockhook_server::keys::hash_api_key;

    let app = TestApp::spawn(Backend::Sqlite).await;
    let m = app.merchant().await;
    let (key, spare) = (issue_key(&app, &m).await, issue_key(&app, &m).await);
    let mid = MerchantId::parse(&m).unwrap();

    // The function itself.
    assert_eq!(
        auth::authenticate(&app.state, Credential::Token(ADMIN))
            .await
            .unwrap(),
        Authenticated::Operator
    );
    match auth::authenticate(&app.state, Credential::Token(&key))
        .await
        .unwrap()
    {
        Authenticated::Merchant {
            merchant_id,
            key_hash,
            ..
        } => {
            assert_eq!(merchant_id, mid);
            assert_eq!(key_hash, hash_api_key(&key), "what a session keeps");
            let again = auth::authenticate(&app.state, Credential::KeyHash(&key_hash))
                .await
                .unwrap();
            assert!(
                matches!(again, Authenticated::Merchant { merchant_id, .. } if merchant_id == mid)
            );
        }
        other => panic!("{other:?}"),
    }
    for cred in [
        Credential::Token("bhk_unknown"),
        Credential::Token(""),
        // A session never holds the admin token; its hash is no key.
        Credential::KeyHash(&hash_api_key(ADMIN)),
    ] {
        assert!(
            matches!(
                auth::authenticate(&app.state, cred).await,
                Err(AuthError::UnknownKey)
            ),
            "{cred:?}"
        );
    }

    // A live session, the API and the sign-in form, before and after revoking the key.
    let mut web = Browser::new(&app);
    web.login(&key).await;
    web.page("/ui/endpoints", 200).await;
    let api = |token: String| {
        let app = &app;
        let m = m.clone();
        async move {
            app.get(&format!("/v1/merchants/{m}/endpoints"), &token)
                .await
        }
    };
    assert_eq!(api(key.clone()).await.status(), 200);
    let key_id = app
        .state
        .store
        .api_key_by_hash(&hash_api_key(&key))
        .await
        .unwrap()
        .unwrap()
        .id;
    app.state
        .store
        .revoke_api_key(&mid, &key_id, app.state.clock.now())
        .await
        .unwrap();
    assert!(matches!(
        auth::authenticate(&app.state, Credential::Token(&key)).await,
        Err(AuthError::Revoked)
    ));
    let r = api(key.clone()).await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("API key revoked"));
    let r = web.get("/ui/endpoints").await;
    assert_eq!(r.status(), 303, "the session ends with the key");
    assert_eq!(r.headers()["location"], "/ui/login");
    let r = web.post("/ui/login", &[("token", &key)]).await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("That key is not valid."));

    // Suspending the merchant: the same for its other key.
    web.login(&spare).await;
    web.page("/ui/endpoints", 200).await;
    app.state
        .store
        .set_merchant_status(&mid, blockhook_core::MerchantStatus::Suspended)
        .await
        .unwrap();
    assert!(matches!(
        auth::authenticate(&app.state, Credential::Token(&spare)).await,
        Err(AuthError::Suspended)
    ));
    let r = api(spare.clone()).await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("merchant suspended"));
    let r = web.get("/ui/endpoints").await;
    assert_eq!(r.status(), 303, "the session ends with the merchant");
    assert_eq!(r.headers()["location"], "/ui/login");
    let r = web.post("/ui/login", &[("token", &spare)]).await;
    assert_eq!(r.status(), 401);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("This merchant is suspended.")
    );
    // The operator is not affected.
    assert_eq!(api(ADMIN.to_owned()).await.status(), 200);
    app.stop().await;
}

/// The endpoint page in Standard Webhooks mode: the mode can be chosen, a switch shows the
/// generated `whsec_` secret once, rotation offers an overlap and the page says until when the
/// old secret signs.
#[tokio::test]
async fn standard_mode_is_chosen_and_rotated_with_an_overlap_from_the_dashboard() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let m = app.merchant().await;
    let ep = app
        .endpoint(
            &m,
            "https://merchant.example/h",
            json!({ "label": "std-shop" }),
        )
        .await;
    let ep_path = format!("/ui/endpoints/{}", ep["id"].as_str().unwrap());
    let key = issue_key(&app, &m).await;
    let mut web = Browser::new(&app);
    web.login(&key).await;

    let page = web.page(&ep_path, 200).await;
    assert!(
        page.contains(r#"<option value="standard">"#),
        "mode offered"
    );
    assert!(
        !page.contains(r#"name="overlap""#),
        "no overlap in a BlockATM mode"
    );
    let token = csrf(&page);
    let r = web
        .post(
            &ep_path,
            &[
                ("csrf", &token),
                ("url", "https://merchant.example/h"),
                ("signing_mode", "standard"),
                ("label", "std-shop"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200, "the answer shows the new secret");
    let html = r.text().await.unwrap();
    assert!(html.contains("whsec_"), "generated secret shown");
    assert!(html.contains(r#"<option value="standard" selected>"#));

    let page = web.page(&ep_path, 200).await;
    assert!(page.contains(r#"name="overlap""#), "overlap offered");
    assert!(!page.contains("also signs until"));
    let r = web
        .post(
            &format!("{ep_path}/rotate"),
            &[("csrf", &csrf(&page)), ("overlap", "24h")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("New signing secret (rotated)"));
    assert!(html.contains("also signs until"), "the overlap is shown");
    let stored = app
        .state
        .store
        .get_endpoint(
            &MerchantId::parse(&m).unwrap(),
            &blockhook_core::EndpointId::parse(ep["id"].as_str().unwrap()).unwrap(),
        )
        .await
        .unwrap();
    let until = stored.previous_secret.expect("overlap stored").until;
    let in_a_day =
        blockhook_core::Timestamp::from_ms(crate::receiver::now_ms() as i64 + 86_400_000);
    assert!((until.ms() - in_a_day.ms()).abs() < 60_000);

    // A refused overlap is an error page, and nothing changes.
    let r = web
        .post(
            &format!("{ep_path}/rotate"),
            &[("csrf", &csrf(&page)), ("overlap", "30d")],
        )
        .await;
    assert_eq!(r.status(), 422);
    app.stop().await;
}

#[tokio::test]
async fn endpoint_page_shows_ordering_and_releases_a_held_key() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.delivery.retry_schedule = vec![]).await;
    // The first request fails for good; the key is held.
    let rx = Receiver::scripted(
        Some(&app.ca),
        std::sync::Arc::new(|n| if n == 0 { 500 } else { 200 }),
        Duration::ZERO,
    )
    .await;
    let m = app.merchant().await;
    let ep = app
        .endpoint(
            &m,
            &rx.url(),
            json!({ "ordering": { "mode": "per_key", "key_field": "orderNo", "on_final_failure": "hold" } }),
        )
        .await;
    let ep_id = ep["id"].as_str().unwrap();
    app.publish(&m, "Payment", PAYMENT).await;
    rx.wait_for(1, Duration::from_secs(10)).await;
    app.publish(&m, "Payment", PAYMENT).await;
    let key = issue_key(&app, &m).await;
    let mut web = Browser::new(&app);
    web.login(&key).await;

    let path = format!("/ui/endpoints/{ep_id}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let html = loop {
        let html = web.page(&path, 200).await;
        if html.contains("OrderNo_202504010023") {
            break html;
        }
        assert!(Instant::now() < deadline, "the key never showed as held");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(html.contains("per key, key field orderNo, on final failure: hold"));
    assert!(html.contains(r#"id="held-keys""#));
    assert!(html.contains(&format!("/ui/endpoints/{ep_id}/ordering/release")));
    assert_eq!(rx.count(), 1, "the second event waits behind the held key");

    let token = csrf(&html);
    let r = web
        .post(
            &format!("{path}/ordering/release"),
            &[("csrf", token.as_str()), ("key", "OrderNo_202504010023")],
        )
        .await;
    assert_eq!(r.status(), 303);
    rx.wait_for(2, Duration::from_secs(10)).await;
    let html = web.page(&path, 200).await;
    assert!(html.contains("No key is held."), "{html}");
    // The edit form carries the setting and saves it back unchanged.
    assert!(html.contains(r#"<option value="hold" selected>"#));
    let r = web
        .post(
            &path,
            &[
                ("csrf", token.as_str()),
                ("url", rx.url().as_str()),
                ("ordering_mode", "per_key"),
                ("ordering_key_field", "orderNo"),
                ("ordering_on_final_failure", "continue"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let (_, v) = crate::manage::json_of(
        app.get(&format!("/v1/merchants/{m}/endpoints/{ep_id}"), ADMIN)
            .await,
    )
    .await;
    assert_eq!(
        v["ordering"],
        json!({ "mode": "per_key", "key_field": "orderNo", "on_final_failure": "continue" })
    );
    app.stop().await;
}

/// The signature debugger over HTTP: an endpoint's secret is used and never shown, another
/// merchant's endpoint or attempt is not found, bad input is a clear message on the page, and
/// nothing is cached.
#[tokio::test]
async fn debugger_uses_the_endpoint_secret_without_showing_it_and_keeps_tenancy() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let rx = Receiver::ok(Some(&app.ca)).await;
    let (a, b) = (app.merchant().await, app.merchant().await);
    let ep_a = app
        .endpoint(&a, &rx.url(), json!({ "label": "dbg-a" }))
        .await;
    let ep_b = app
        .endpoint(&b, &rx.url(), json!({ "label": "dbg-b" }))
        .await;
    let secret_a = ep_a["secret"].as_str().unwrap().to_owned();
    let id_a = ep_a["id"].as_str().unwrap().to_owned();
    let id_b = ep_b["id"].as_str().unwrap().to_owned();
    let ev_b = app.publish(&b, "Payment", PAYMENT).await["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    let sent = &got[0];

    let mut web = Browser::new(&app);
    web.login(&issue_key(&app, &a).await).await;
    let r = web.get("/ui/debugger").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"href="/ui/debugger""#), "nav link");
    assert!(html.contains("Nothing you paste is stored or logged"));
    let token = csrf(&html);

    // A's endpoint, B's delivery: the signature does not match A's secret, and the page
    // never shows that secret.
    let body = std::str::from_utf8(&sent.body).unwrap();
    let form = |endpoint: &str| -> Vec<(&'static str, String)> {
        vec![
            ("csrf", token.clone()),
            ("body", body.to_owned()),
            (
                "request_time",
                sent.header("BlockATM-Request-Time").unwrap().to_owned(),
            ),
            (
                "signature_v2",
                sent.header("BlockATM-Signature-V2").unwrap().to_owned(),
            ),
            ("endpoint", endpoint.to_owned()),
        ]
    };
    let r = post_debugger(&web, form(&id_a)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"id="verdict""#), "{html}");
    assert!(html.contains("no match"), "{html}");
    assert!(html.contains("Checked against mode sorted"));
    assert!(
        !html.contains(&secret_a),
        "the endpoint's secret is never rendered"
    );

    // B's endpoint from A's session: not found, like an unknown id.
    let r = post_debugger(&web, form(&id_b)).await;
    assert_eq!(r.status(), 404);
    // B's event and attempt, pre-filled from A's session: not found either.
    let attempt = sent.header("BlockHook-Attempt-Id").unwrap();
    let r = web
        .get(&format!("/ui/debugger?event={ev_b}&attempt={attempt}"))
        .await;
    assert_eq!(r.status(), 404);

    // Neither an endpoint nor a secret, and no header: clear messages, the input kept.
    let mut none = form("");
    let r = post_debugger(&web, none.clone()).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("choose an endpoint or paste a secret"),
        "{html}"
    );
    assert!(
        html.contains("OrderNo_202504010023"),
        "the body is kept in the form"
    );
    none.retain(|(k, _)| !matches!(*k, "request_time" | "signature_v2"));
    none.push(("secret", "sck_pasted_secret_value_0123456789".to_owned()));
    let html = post_debugger(&web, none).await.text().await.unwrap();
    assert!(html.contains("give BlockATM-Request-Time"), "{html}");
    assert!(
        !html.contains("sck_pasted_secret_value_0123456789"),
        "a pasted secret is not echoed back"
    );
    app.stop().await;
}

async fn post_debugger(web: &Browser, fields: Vec<(&'static str, String)>) -> reqwest::Response {
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    web.post("/ui/debugger", &pairs).await
}
