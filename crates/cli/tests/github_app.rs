//! `spotrunner github-app create` end to end: the setup page in a real
//! headless Chromium, the fake GitHub's manifest flow (form → redirect with a
//! code → conversion), the credentials in moto's SSM, and nothing secret on the
//! terminal, in the logs or on the page.

mod common;

use common::{BIN, moto_env};
use spotrunner_testkit::browser::Browser;
use spotrunner_testkit::fake_github::{APP_ID, APP_PRIVATE_KEY_PEM, FakeGitHub};
use spotrunner_testkit::moto;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A webhook URL nothing listens on: the registration ping is refused at once.
const HOOK: &str = "http://127.0.0.1:9/webhook";
/// The shortest webhook secret a configuration accepts.
const MIN_WEBHOOK_SECRET: usize = 32;

/// Start `github-app create ARGS`, return it and the setup page's URL.
fn start_create(args: &[&str], moto_url: &str) -> (Child, String, std::thread::JoinHandle<String>) {
    let mut cmd = Command::new(BIN);
    cmd.args(["github-app", "create"]).args(args);
    cmd.envs(moto_env(moto_url));
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spotrunner runs");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Read the whole stdout on a thread; hand the page URL over when it appears.
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.trim().strip_prefix("http://127.0.0.1:") {
                let _ = tx.send(format!("http://127.0.0.1:{url}"));
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("github-app create printed its page's URL");
    (child, url, reader)
}

fn finish(mut child: Child, reader: std::thread::JoinHandle<String>) -> (bool, String, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "github-app create did not finish"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.success(), reader.join().unwrap(), err)
}

/// Open the page, press the button, and wait for the page GitHub's redirect leads to.
async fn click_through(page: &str) -> (String, String) {
    let browser = Browser::start().await;
    browser.goto(page).await;
    browser.click("#create").await;
    let Some(created) = browser.text("#created", Duration::from_secs(30)).await else {
        panic!(
            "no confirmation page at {}:\n{}",
            browser.current_url().await,
            browser.source().await
        );
    };
    let source = browser.source().await;
    browser.quit().await;
    (created, source)
}

/// Every secret the fake GitHub handed out, and the key's lines.
fn secrets(github: &FakeGitHub) -> Vec<String> {
    let mut s = github.issued_secrets();
    s.push(github.app_hook().secret);
    s.extend(
        APP_PRIVATE_KEY_PEM
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 20)
            .map(str::to_string),
    );
    s.retain(|x| !x.is_empty());
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_is_created_in_a_browser_and_its_credentials_land_in_ssm_unseen() {
    let moto = moto::shared().await;
    let github = FakeGitHub::start_with_prefix("/api/v3").await;
    let (child, page, reader) = start_create(
        &[
            "--org",
            "acme",
            "--webhook-url",
            HOOK,
            "--api-url",
            &github.url(),
            "--web-url",
            &github.web_url(),
            "--ssm-prefix",
            "/ga1",
            "--name",
            "sr-acme-ci",
        ],
        moto.url(),
    );
    let (created, source) = click_through(&page).await;
    let (ok, out, err) = finish(child, reader);
    assert!(ok, "github-app create failed:\n{out}\n{err}");
    assert!(created.contains(&format!("App id {APP_ID}")), "{created}");

    // The manifest asked for exactly what spotrunner uses.
    let manifests = github.manifests();
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    let m = &manifests[0];
    assert_eq!(m["name"], "sr-acme-ci");
    assert_eq!(m["hook_attributes"]["url"], HOOK);
    assert_eq!(m["public"], false);
    assert_eq!(m["default_events"], serde_json::json!(["workflow_job"]));
    assert_eq!(
        m["default_permissions"],
        serde_json::json!({
            "organization_self_hosted_runners": "write",
            "actions": "write",
            "metadata": "read",
        })
    );
    assert_eq!(github.conversions(), 1);

    // SSM holds the id, and the key and secret as SecureStrings.
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let get = |name: &'static str| {
        let ssm = ssm.clone();
        async move {
            let p = ssm
                .get_parameter()
                .name(name)
                .with_decryption(true)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{name}: {e:?}"))
                .parameter
                .unwrap();
            (p.r#type.unwrap().as_str().to_string(), p.value.unwrap())
        }
    };
    assert_eq!(
        get("/ga1/github/app-id").await,
        ("String".into(), APP_ID.into())
    );
    assert_eq!(
        get("/ga1/github/app-private-key").await,
        ("SecureString".into(), APP_PRIVATE_KEY_PEM.into())
    );
    let hook = github.app_hook();
    assert!(
        hook.secret.len() >= MIN_WEBHOOK_SECRET,
        "a webhook secret of {} characters",
        hook.secret.len()
    );
    assert_eq!(
        get("/ga1/webhook/secret").await,
        ("SecureString".into(), hook.secret.clone())
    );
    assert_eq!(hook.url.as_deref(), Some(HOOK));

    // What the user sees: references and the install link, never a secret.
    assert!(
        out.contains("stored the private key: ssm:/ga1/github/app-private-key (SecureString)"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{}/apps/sr-acme-ci/installations/new",
            github.web_url()
        )),
        "{out}"
    );
    let secrets = secrets(&github);
    assert!(secrets.len() >= 4, "{secrets:?}");
    for s in &secrets {
        assert!(!out.contains(s.as_str()), "stdout shows a secret");
        assert!(!err.contains(s.as_str()), "stderr shows a secret");
        assert!(!source.contains(s.as_str()), "the page shows a secret");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locally_the_credentials_are_private_files_the_printed_configuration_names() {
    let _moto = moto::shared().await;
    let github = FakeGitHub::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("secrets");
    let dir_s = dir.to_str().unwrap().to_string();
    let (child, page, reader) = start_create(
        &[
            "--webhook-url",
            HOOK,
            "--api-url",
            &github.url(),
            "--backend",
            "local",
            "--out",
            &dir_s,
            "--no-reruns",
        ],
        "http://127.0.0.1:9",
    );
    click_through(&page).await;
    let (ok, out, err) = finish(child, reader);
    assert!(ok, "{out}\n{err}");
    // A personal account: repository administration, actions read only.
    assert_eq!(
        github.manifests()[0]["default_permissions"],
        serde_json::json!({ "administration": "write", "actions": "read", "metadata": "read" })
    );
    use std::os::unix::fs::PermissionsExt;
    for f in ["app-private-key.pem", "webhook-secret"] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let secret = std::fs::read_to_string(dir.join("webhook-secret")).unwrap();
    assert_eq!(secret, github.app_hook().secret);
    assert!(
        secret.len() >= MIN_WEBHOOK_SECRET,
        "a webhook secret of {} characters",
        secret.len()
    );
    let key = std::fs::canonicalize(dir.join("app-private-key.pem")).unwrap();
    assert!(
        out.contains(&format!("private_key = \"file:{}\"", key.display())),
        "{out}"
    );
    for s in secrets(&github) {
        assert!(
            !out.contains(&s) && !err.contains(&s),
            "a secret was printed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_credentials_are_never_overwritten_and_a_forged_callback_changes_nothing() {
    let moto = moto::shared().await;
    let github = FakeGitHub::start().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    ssm.put_parameter()
        .name("/ga3/github/app-private-key")
        .value("an older key")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "github-app",
        "create",
        "--org",
        "acme",
        "--webhook-url",
        HOOK,
        "--api-url",
        &github.url(),
        "--ssm-prefix",
        "/ga3",
    ]);
    cmd.envs(moto_env(moto.url()));
    let o = cmd.output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("/ga3/github/app-private-key") && err.contains("--overwrite"),
        "{err}"
    );
    assert!(github.manifests().is_empty(), "no App was started");

    // A callback without the page's state is refused; the flow goes on waiting.
    let (mut child, page, _reader) = start_create(
        &[
            "--org",
            "acme",
            "--webhook-url",
            HOOK,
            "--api-url",
            &github.url(),
            "--ssm-prefix",
            "/ga4",
        ],
        moto.url(),
    );
    let resp = reqwest::get(format!("{page}callback?code=abc&state=forged"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(
        child.try_wait().unwrap().is_none(),
        "a forged callback ended the flow"
    );
    assert_eq!(github.conversions(), 0);
    let missing = ssm.get_parameter().name("/ga4/github/app-id").send().await;
    assert!(missing.is_err(), "nothing stored");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn bad_input_is_refused_naming_the_flag_before_anything_starts() {
    for (args, expect) in [
        (vec!["--webhook-url", "not a url"], "--webhook-url"),
        (vec!["--webhook-url", "ftp://x/webhook"], "http(s)"),
        (vec!["--webhook-url", HOOK, "--org", "bad org"], "--org"),
        (
            vec![
                "--webhook-url",
                HOOK,
                "--name",
                "a-name-far-longer-than-thirty-four-characters",
            ],
            "--name",
        ),
        (
            vec![
                "--webhook-url",
                HOOK,
                "--listen",
                "0.0.0.0:0",
                "--backend",
                "local",
                "--out",
                "/nonexistent-dir-never",
            ],
            "loopback",
        ),
    ] {
        let o = Command::new(BIN)
            .args(["github-app", "create"])
            .args(&args)
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_REGION", "us-east-1")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}

/// Undo the setup page's HTML escaping of an attribute.
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The attribute `attr="…"` that follows `after` in `html`, unescaped.
fn attribute(html: &str, after: &str, attr: &str) -> String {
    let start = html
        .find(after)
        .unwrap_or_else(|| panic!("{after} in {html}"));
    let rest = &html[start..];
    let open = format!("{attr}=\"");
    let at = rest
        .find(&open)
        .unwrap_or_else(|| panic!("{attr} in {rest}"))
        + open.len();
    let end = rest[at..].find('"').unwrap() + at;
    unescape(&rest[at..end])
}

/// What the setup page gives the browser: the form's state and the manifest.
async fn read_form(page: &str) -> (String, String) {
    let html = reqwest::get(page).await.unwrap().text().await.unwrap();
    let action = reqwest::Url::parse(&attribute(&html, "<form", "action")).unwrap();
    let state = action
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("the form posts a state");
    (state, attribute(&html, "name=\"manifest\"", "value"))
}

/// Post `manifest` to the fake GitHub's "new App" form (an organisation's, or
/// the web user's) with `state`, as a browser would; the address GitHub
/// sends the browser back to (the callback with a one-use code).
async fn github_redirect(
    github: &FakeGitHub,
    org: Option<&str>,
    manifest: &str,
    state: &str,
) -> String {
    let path = match org {
        Some(org) => format!("organizations/{org}/settings/apps/new"),
        None => "settings/apps/new".into(),
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .post(format!("{}/{path}?state={state}", github.web_url()))
        .form(&[("manifest", manifest)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302, "{}", r.text().await.unwrap());
    r.headers()["location"].to_str().unwrap().to_string()
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_under_another_host_name_is_refused_and_its_code_stays_unconverted() {
    let github = FakeGitHub::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("secrets");
    let (child, page, reader) = start_create(
        &[
            "--org",
            "acme",
            "--name",
            "sr-acme",
            "--webhook-url",
            HOOK,
            "--api-url",
            &github.url(),
            "--backend",
            "local",
            "--out",
            dir.to_str().unwrap(),
        ],
        "http://127.0.0.1:9",
    );
    let port = reqwest::Url::parse(&page).unwrap().port().unwrap();
    let (state, manifest) = read_form(&page).await;
    let callback = github_redirect(&github, Some("acme"), &manifest, &state).await;
    let http = reqwest::Client::new();

    // A page whose name resolves to 127.0.0.1 (DNS rebinding) is another origin:
    // neither the form (it holds the state) nor the callback answers it.
    for (url, host) in [
        (page.clone(), format!("evil.example:{port}")),
        (callback.clone(), format!("evil.example:{port}")),
        (callback.clone(), "evil.example".to_string()),
        (callback.clone(), format!("127.0.0.1.evil.example:{port}")),
        (
            callback.clone(),
            format!("localhost:{}", port.wrapping_add(1)),
        ),
    ] {
        let r = http.get(&url).header("host", &host).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 403, "Host: {host}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains("Host") && body.contains(&format!("127.0.0.1:{port}")),
            "Host: {host}: {body}"
        );
        assert!(
            !body.contains(&state),
            "Host: {host}: the page shows the state"
        );
    }
    assert_eq!(
        github.conversions(),
        0,
        "a refused callback converted the code"
    );
    assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));

    // The same code under the page's own name (localhost works too) goes through.
    let r = http
        .get(&callback)
        .header("host", format!("localhost:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let (ok, out, err) = finish(child, reader);
    assert!(ok, "{out}\n{err}");
    assert_eq!(github.conversions(), 1);
    let secret = std::fs::read_to_string(dir.join("webhook-secret")).unwrap();
    assert_eq!(secret, github.app_hook().secret);
    assert!(
        secret.len() >= MIN_WEBHOOK_SECRET,
        "{} characters",
        secret.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_of_another_owner_or_name_is_refused_and_nothing_is_stored() {
    /// What the command asks for, what GitHub's code turns out to be, and
    /// what the error names as expected and as returned.
    struct Stray {
        org: Option<&'static str>,
        name: &'static str,
        got_org: &'static str,
        got_name: &'static str,
        expected: &'static str,
        returned: &'static str,
    }
    let cases = [
        // Another organisation's App.
        Stray {
            org: Some("acme"),
            name: "sr-acme",
            got_org: "evil",
            got_name: "sr-acme",
            expected: "organisation acme",
            returned: "organisation evil",
        },
        // Renamed on GitHub's confirmation page.
        Stray {
            org: Some("acme"),
            name: "sr-acme",
            got_org: "acme",
            got_name: "sr-acme-2",
            expected: "named \"sr-acme\"",
            returned: "named \"sr-acme-2\"",
        },
        // Asked for a personal account's App, got an organisation's.
        Stray {
            org: None,
            name: "sr-mine",
            got_org: "acme",
            got_name: "sr-mine",
            expected: "your personal account",
            returned: "organisation acme",
        },
    ];
    for Stray {
        org,
        name,
        got_org,
        got_name,
        expected,
        returned,
    } in cases
    {
        let github = FakeGitHub::start().await;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("secrets");
        let api = github.url();
        let mut args = vec![
            "--name",
            name,
            "--webhook-url",
            HOOK,
            "--api-url",
            &api,
            "--backend",
            "local",
            "--out",
            dir.to_str().unwrap(),
        ];
        if let Some(org) = org {
            args.extend(["--org", org]);
        }
        let (child, page, reader) = start_create(&args, "http://127.0.0.1:9");
        let (state, manifest) = read_form(&page).await;
        let mut m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
        m["name"] = got_name.into();
        let callback = github_redirect(&github, Some(got_org), &m.to_string(), &state).await;
        let r = reqwest::get(&callback).await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_ne!(status, 200, "{body}");
        assert!(body.contains("not the App"), "{body}");
        let (ok, out, err) = finish(child, reader);
        assert!(!ok, "{name}: a stray App was accepted:\n{out}");
        // The code was one-use: GitHub made the App; say which and where to delete it.
        assert_eq!(github.conversions(), 1);
        let settings = format!(
            "{}/organizations/{}/settings/apps/{got_name}/advanced",
            github.web_url(),
            got_org
        );
        for needle in [
            expected,
            returned,
            settings.as_str(),
            "delete",
            "nothing was stored",
        ] {
            assert!(err.contains(needle), "{needle:?} not in {err}");
        }
        assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));
        for s in secrets(&github) {
            assert!(!out.contains(&s) && !err.contains(&s) && !body.contains(&s));
        }
    }
}
