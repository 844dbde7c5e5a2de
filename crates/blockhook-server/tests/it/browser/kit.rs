//! What every dashboard test in a real headless Chromium needs: chromedriver and a browser
//! session ([`Browser::start`], which skips politely when Chromium is not installed and fails
//! under `CI`), signing in with a fresh merchant key, waiting for elements and texts, and
//! screenshots under `target/ui-screenshots/` (copied to `docs/img/` for the README by the
//! tests that own those images).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::helpers::{ADMIN, TestApp};

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

pub(crate) fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// chromedriver on a free loopback port, killed when dropped.
pub(crate) struct Driver {
    _child: tokio::process::Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Driver {
    pub(crate) async fn start(binary: &Path) -> Self {
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

    pub(crate) async fn browser(&self, chromium: &Path) -> Client {
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

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub(crate) struct Shots {
    dir: PathBuf,
    n: u32,
}

impl Shots {
    /// Screenshots of one test, under `target/ui-screenshots/{test}/`.
    pub(crate) fn new(test: &str) -> Self {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| workspace_root().join("target"), PathBuf::from);
        let dir = target.join("ui-screenshots").join(test);
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir, n: 0 }
    }

    /// Saves the current page as `NN-name.png`; returns its path.
    pub(crate) async fn take(&mut self, c: &Client, name: &str) -> PathBuf {
        self.n += 1;
        let png = c.screenshot().await.unwrap();
        let path = self.dir.join(format!("{:02}-{name}.png", self.n));
        std::fs::write(&path, png).unwrap();
        path
    }
}

pub(crate) async fn css(c: &Client, selector: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("no {selector}: {e}"))
}

/// The text of the element `selector` matches. Found again if the page replaced it between
/// finding and reading (a redirect after a form lands while the old page is still queried).
pub(crate) async fn text_of(c: &Client, selector: &str) -> String {
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
pub(crate) async fn text_containing(c: &Client, selector: &str, needle: &str) -> String {
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
pub(crate) async fn wait_count(c: &Client, url: &str, selector: &str, n: usize) {
    for _ in 0..100 {
        c.goto(url).await.unwrap();
        if c.find_all(Locator::Css(selector)).await.unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{url}: fewer than {n} of {selector}");
}

/// A Chromium session driven by its own chromedriver; both end when this is dropped.
pub(crate) struct Browser {
    pub(crate) c: Client,
    _driver: Driver,
}

impl Browser {
    /// Chromium under chromedriver, or `None` (with a skip line naming `test`) when they are not
    /// installed outside CI; under `CI` their absence fails the test.
    pub(crate) async fn start(test: &str) -> Option<Self> {
        let (Some(chromium), Some(chromedriver)) = (
            which(&["chromium", "chromium-browser", "google-chrome"]),
            which(&["chromedriver"]),
        ) else {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "chromium and chromedriver are required in CI (apt-get install -y chromium chromium-driver)"
                );
            }
            eprintln!("SKIPPED {test}: chromium/chromedriver not installed");
            return None;
        };
        let driver = Driver::start(&chromedriver).await;
        let c = driver.browser(&chromium).await;
        Some(Self { c, _driver: driver })
    }

    /// Signs in at `base` with a merchant API key; returns once the endpoints page is shown.
    pub(crate) async fn sign_in(&self, base: &str, key: &str) {
        let c = &self.c;
        c.goto(&format!("{base}/ui/login")).await.unwrap();
        css(c, "#token").await.send_keys(key).await.unwrap();
        css(c, "form[action='/ui/login'] button")
            .await
            .click()
            .await
            .unwrap();
        css(c, "form[action='/ui/endpoints']").await;
    }
}

/// A fresh API key of `merchant`, issued through the admin API.
pub(crate) async fn merchant_key(app: &TestApp, merchant: &str) -> String {
    let r = app
        .post(
            &format!("/v1/merchants/{merchant}/api-keys"),
            ADMIN,
            &json!({}),
        )
        .await;
    r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned()
}
