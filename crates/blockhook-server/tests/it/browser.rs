//! The dashboard end to end in a real headless Chromium, driven over WebDriver (chromedriver):
//! sign in, create an endpoint, send a test webhook, find a published event, open it, resend
//! it, rotate the secret, sign out. A screenshot of each page goes to `target/ui-screenshots/`;
//! the events list and event detail are also copied to `docs/img/` for the README.
//!
//! Needs `chromium` and `chromedriver` (Debian: `chromium chromium-driver`). Without them the
//! test fails under `CI` and prints a skip line elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::helpers::{ADMIN, Backend, PAYMENT, TestApp};
use crate::receiver::Receiver;

const CHROME_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
];

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    _child: tokio::process::Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Driver {
    async fn start(binary: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http
                .get(format!("{url}/status"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Self {
                    _child: child,
                    url,
                    _profile: tempfile::tempdir().unwrap(),
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not answer on {url}");
    }

    async fn browser(&self, chromium: &Path) -> Client {
        let mut args: Vec<String> = CHROME_ARGS.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!(
            "--user-data-dir={}",
            self._profile.path().display()
        ));
        let caps = json!({
            "goog:chromeOptions": { "binary": chromium.display().to_string(), "args": args }
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

struct Shots {
    dir: PathBuf,
    n: u32,
}

impl Shots {
    fn new() -> Self {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| workspace_root().join("target"), PathBuf::from);
        let dir = target.join("ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir, n: 0 }
    }

    /// Saves the current page as `NN-name.png`; returns its path.
    async fn take(&mut self, c: &Client, name: &str) -> PathBuf {
        self.n += 1;
        let png = c.screenshot().await.unwrap();
        let path = self.dir.join(format!("{:02}-{name}.png", self.n));
        std::fs::write(&path, png).unwrap();
        path
    }
}

async fn css(c: &Client, selector: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("no {selector}: {e}"))
}

/// The text of the element `selector` matches. Found again if the page replaced it between
/// finding and reading (a redirect after a form lands while the old page is still queried).
async fn text_of(c: &Client, selector: &str) -> String {
    for _ in 0..20 {
        match css(c, selector).await.text().await {
            Ok(text) => return text,
            Err(fantoccini::error::CmdError::Standard(e))
                if e.error == fantoccini::error::ErrorStatus::StaleElementReference =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("text of {selector}: {e}"),
        }
    }
    panic!("{selector} kept going stale")
}

/// The text of `selector` once it contains `needle`: after a click the old page may still be
/// shown (its `h1`, say) until the browser has navigated, so the text is read again until the
/// new page's arrives (or 15 s pass, and the last text read is in the failure).
async fn text_containing(c: &Client, selector: &str, needle: &str) -> String {
    let mut last = String::new();
    for _ in 0..150 {
        last = text_of(c, selector).await;
        if last.contains(needle) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{selector} never contained {needle:?}; last: {last:?}")
}

/// Reloads `url` until `selector` matches at least `n` elements.
async fn wait_count(c: &Client, url: &str, selector: &str, n: usize) {
    for _ in 0..100 {
        c.goto(url).await.unwrap();
        if c.find_all(Locator::Css(selector)).await.unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{url}: fewer than {n} of {selector}");
}

#[tokio::test]
async fn dashboard_end_to_end_in_headless_chromium() {
    let (Some(chromium), Some(chromedriver)) = (
        which(&["chromium", "chromium-browser", "google-chrome"]),
        which(&["chromedriver"]),
    ) else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "chromium and chromedriver are required in CI (apt-get install -y chromium chromium-driver)"
            );
        }
        eprintln!(
            "SKIPPED dashboard_end_to_end_in_headless_chromium: chromium/chromedriver not installed"
        );
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite).await;
    let rx = Receiver::ok(Some(&app.ca)).await;
    let merchant = app.merchant().await;
    let r = app
        .post(
            &format!("/v1/merchants/{merchant}/api-keys"),
            ADMIN,
            &json!({}),
        )
        .await;
    let key = r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();

    let driver = Driver::start(&chromedriver).await;
    let c = driver.browser(&chromium).await;
    let mut shots = Shots::new();
    let base = &app.base;

    // Sign in.
    c.goto(&format!("{base}/ui/login")).await.unwrap();
    css(&c, "#token").await.send_keys(&key).await.unwrap();
    shots.take(&c, "login").await;
    css(&c, "form[action='/ui/login'] button")
        .await
        .click()
        .await
        .unwrap();
    css(&c, "form[action='/ui/endpoints']").await;
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/ui/endpoints")
    );

    // Create an endpoint pointing at the loopback receiver.
    css(&c, "#new-url")
        .await
        .send_keys(&rx.url())
        .await
        .unwrap();
    css(&c, "#new-label")
        .await
        .send_keys("browser-shop")
        .await
        .unwrap();
    shots.take(&c, "endpoints").await;
    css(&c, "form[action='/ui/endpoints'] button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    text_containing(&c, "h1", "browser-shop").await;
    let endpoint_url = c.current_url().await.unwrap().to_string();

    // Send a test webhook and see the response.
    css(&c, "form[action$='/test'] button")
        .await
        .click()
        .await
        .unwrap();
    let verdict = text_of(&c, "#test-verdict").await;
    assert!(verdict.contains("200 accepted"), "{verdict}");
    assert!(text_of(&c, "#test-result").await.contains("answer 0: 200"));
    shots.take(&c, "test-webhook").await;

    // Publish an event through the API; find it in the list and open it.
    let published = app.publish(&merchant, "Payment", PAYMENT).await;
    let event = published["event_id"].as_str().unwrap().to_owned();
    rx.wait_for(2, Duration::from_secs(10)).await;
    c.goto(&format!("{base}/ui/events")).await.unwrap();
    assert!(text_of(&c, "table").await.contains("OrderNo_202504010023"));
    let events_png = shots.take(&c, "events").await;
    css(&c, &format!("a[href='/ui/events/{event}']"))
        .await
        .click()
        .await
        .unwrap();
    let detail_url = format!("{base}/ui/events/{event}");
    wait_count(&c, &detail_url, "tr.attempt", 1).await;
    let detail_png = shots.take(&c, "event-detail").await;

    // Resend it and see the new attempt.
    css(&c, "form[action$='/resend'] button")
        .await
        .click()
        .await
        .unwrap();
    text_containing(&c, ".notice", "Resend queued").await;
    wait_count(&c, &detail_url, "tr.attempt", 2).await;
    assert_eq!(rx.wait_for(3, Duration::from_secs(10)).await.len(), 3);
    shots.take(&c, "event-resent").await;

    // Health page renders its chart.
    c.goto(&format!("{base}/ui/health")).await.unwrap();
    css(&c, "svg.chart").await;
    shots.take(&c, "health").await;

    // Rotate the secret.
    c.goto(&endpoint_url).await.unwrap();
    css(&c, "form[action$='/rotate'] button")
        .await
        .click()
        .await
        .unwrap();
    assert!(text_of(&c, "#secret").await.starts_with("sck_"));
    shots.take(&c, "secret-rotated").await;

    // Sign out: back to the sign-in page, and the dashboard is closed again.
    css(&c, "nav form[action='/ui/logout'] button")
        .await
        .click()
        .await
        .unwrap();
    css(&c, "#token").await;
    c.goto(&format!("{base}/ui/events")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/ui/login"));
    shots.take(&c, "signed-out").await;
    c.close().await.unwrap();

    let img = workspace_root().join("docs/img");
    std::fs::create_dir_all(&img).unwrap();
    std::fs::copy(events_png, img.join("ui-events.png")).unwrap();
    std::fs::copy(detail_png, img.join("ui-event-detail.png")).unwrap();
    app.stop().await;
}
