//! A real headless browser for tests: Debian's Chromium driven through
//! ChromeDriver's W3C WebDriver HTTP API (no extra crate: a handful of JSON
//! calls). `scripts/install-test-deps.sh` installs both (`chromium`,
//! `chromium-driver`); a test that needs them fails loudly when they are absent.

use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C WebDriver element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser session. Call [`Browser::quit`] at the end; dropping it kills
/// the driver (and with it the browser) as a fallback.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    /// A fresh, empty browser profile, removed on drop.
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    /// Start ChromeDriver and a headless Chromium session.
    pub async fn start() -> Browser {
        for bin in [CHROMIUM, "/usr/bin/chromedriver"] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: run scripts/install-test-deps.sh (Debian packages chromium, chromium-driver)"
            );
        }
        let port = free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::Builder::new()
            .prefix("spotrunner-browser-")
            .tempdir()
            .expect("browser profile dir");
        // As the probe of this machine found: no sandbox as root, and no
        // background networking (this machine's network is closed).
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        }}});
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            http,
            _profile: profile,
        };
        let v = browser
            .call(reqwest::Method::POST, "/session", Some(caps))
            .await;
        browser.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {v}"))
            .to_string();
        browser
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut rb = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if method == reqwest::Method::POST {
            rb = rb.json(&body.unwrap_or_else(|| json!({})));
        }
        let resp = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "webdriver {method} {path} answered {status}: {v}"
        );
        v["value"].clone()
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Open `url` (returns once the page has loaded).
    pub async fn goto(&self, url: &str) {
        self.call(
            reqwest::Method::POST,
            &self.s("/url"),
            Some(json!({ "url": url })),
        )
        .await;
    }

    /// The element matching `css`, waiting up to `timeout` for it to appear.
    pub async fn find(&self, css: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let resp = self
                .http
                .post(format!("{}{}", self.base, self.s("/element")))
                .json(&json!({ "using": "css selector", "value": css }))
                .send()
                .await
                .ok()?;
            if resp.status().is_success() {
                let v: Value = resp.json().await.ok()?;
                return v["value"][ELEMENT].as_str().map(str::to_string);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Click the element matching `css` (it must exist within 10 s).
    pub async fn click(&self, css: &str) {
        let id = self
            .find(css, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no element {css:?} on the page"));
        self.call(
            reqwest::Method::POST,
            &self.s(&format!("/element/{id}/click")),
            Some(json!({})),
        )
        .await;
    }

    /// The visible text of the element matching `css`, once it exists.
    pub async fn text(&self, css: &str, timeout: Duration) -> Option<String> {
        let id = self.find(css, timeout).await?;
        self.call(
            reqwest::Method::GET,
            &self.s(&format!("/element/{id}/text")),
            None,
        )
        .await
        .as_str()
        .map(str::to_string)
    }

    pub async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, &self.s("/url"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, &self.s("/source"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// End the session (the browser exits) and stop the driver.
    pub async fn quit(mut self) {
        let _ = self
            .http
            .delete(format!("{}{}", self.base, self.s("")))
            .send()
            .await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
