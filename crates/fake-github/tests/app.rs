//! The GitHub App in the fake: creation from a manifest (the web form, the
//! code's conversion), `GET /app`, the hook's configuration, the `ping`, and
//! installations' permissions — over HTTP, as a client sees them.

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use spotrunner_core::ports::RunnerScope;
use spotrunner_fake_github::{
    APP_ID, APP_PRIVATE_KEY_PEM, FakeAppHook, FakeGitHub, MASKED_SECRET, endpoint,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// What a webhook receiver got: (headers, body).
type Got = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A receiver that records every POST; returns its URL.
async fn receiver(got: Got) -> String {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let got = got.clone();
            async move {
                got.lock().unwrap().push((headers, body));
                axum::http::StatusCode::ACCEPTED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/hook")
}

/// An App JWT as spotrunner mints one (RS256, backdated 30 s, 9 minutes, a jti).
fn jwt() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iat": now - 30,
        "exp": now + 540,
        "iss": APP_ID,
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(APP_PRIVATE_KEY_PEM.as_bytes()).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn manifest(hook_url: &str) -> Value {
    json!({
        "name": "Spotrunner Acme",
        "url": "https://example.com/spotrunner",
        "description": "Ephemeral runners",
        "hook_attributes": { "url": hook_url },
        "redirect_url": "http://127.0.0.1:9/callback",
        "public": false,
        "default_permissions": {
            "actions": "read",
            "organization_self_hosted_runners": "write",
            "administration": "read",
        },
        "default_events": ["workflow_job"],
    })
}

/// POST the form as a browser would (`application/x-www-form-urlencoded`).
async fn post_form(form_url: &str, manifest: &Value) -> reqwest::Response {
    client()
        .post(form_url)
        .form(&[("manifest", manifest.to_string())])
        .send()
        .await
        .unwrap()
}

/// The redirect's query parameters.
fn redirect_params(resp: &reqwest::Response) -> (String, BTreeMap<String, String>) {
    assert_eq!(resp.status().as_u16(), 302);
    let loc = resp.headers()["location"].to_str().unwrap();
    let url = reqwest::Url::parse(loc).unwrap();
    let base = format!("{}://{}{}", url.scheme(), url.authority(), url.path());
    (base, url.query_pairs().into_owned().collect())
}

/// Form post + conversion: the conversion's body.
async fn create_app(github: &FakeGitHub, form_path: &str, manifest: &Value) -> Value {
    let resp = post_form(&format!("{}{form_path}", github.web_url()), manifest).await;
    let (_, params) = redirect_params(&resp);
    let conv = client()
        .post(format!(
            "{}/app-manifests/{}/conversions",
            github.url(),
            params["code"]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(conv.status().as_u16(), 201);
    conv.json().await.unwrap()
}

async fn get_app(github: &FakeGitHub, path: &str) -> (u16, Value) {
    let r = client()
        .get(format!("{}{path}", github.url()))
        .bearer_auth(jwt())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn signature(headers: &HeaderMap) -> String {
    headers["x-hub-signature-256"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn the_form_redirects_to_redirect_url_with_a_code_and_the_state() {
    let github = FakeGitHub::start().await;
    let resp = post_form(
        &format!("{}/settings/apps/new?state=abc%20123", github.web_url()),
        &manifest("https://example.com/hook"),
    )
    .await;
    let (base, params) = redirect_params(&resp);
    assert_eq!(base, "http://127.0.0.1:9/callback");
    assert_eq!(params["state"], "abc 123");
    let code = &params["code"];
    assert_eq!(code.len(), 40, "{code}");
    assert!(code.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(github.calls(endpoint::NEW_APP), 1);
    assert_eq!(github.manifests(), [manifest("https://example.com/hook")]);
    assert_eq!(github.conversions(), 0);

    // Without a state, none comes back; every code is new.
    let resp = post_form(
        &format!("{}/settings/apps/new", github.web_url()),
        &manifest("https://example.com/hook"),
    )
    .await;
    let (_, again) = redirect_params(&resp);
    assert!(!again.contains_key("state"), "{again:?}");
    assert_ne!(&again["code"], code);
}

#[tokio::test]
async fn the_owner_is_the_organisation_or_the_user_who_posted() {
    let github = FakeGitHub::start().await;
    let m = manifest("https://example.com/hook");
    let org = create_app(&github, "/organizations/Acme/settings/apps/new", &m).await;
    assert_eq!(org["owner"]["login"], "Acme");
    assert_eq!(org["owner"]["type"], "Organization");
    let user = create_app(&github, "/settings/apps/new", &m).await;
    assert_eq!(user["owner"]["login"], spotrunner_fake_github::WEB_USER);
    assert_eq!(user["owner"]["type"], "User");
    assert_eq!(github.conversions(), 2);
}

#[tokio::test]
async fn an_invalid_manifest_is_a_422_page_naming_the_problem_and_no_code() {
    let github = FakeGitHub::start().await;
    let form = format!("{}/settings/apps/new?state=s", github.web_url());
    let cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut m = manifest("https://example.com/hook");
                m.as_object_mut().unwrap().remove("url");
                m
            },
            "url wasn&#39;t supplied",
        ),
        (
            {
                let mut m = manifest("https://example.com/hook");
                m["default_permissions"]["actions"] = json!("admin");
                m
            },
            "default_permissions.actions",
        ),
        (
            {
                let mut m = manifest("https://example.com/hook");
                m["hook_attributes"] = json!({ "active": true });
                m
            },
            "hook_attributes.url wasn&#39;t supplied",
        ),
        (
            {
                let mut m = manifest("https://example.com/hook");
                m["default_permissions"] = json!({ "organization_self_hosted_runners": "write" });
                m
            },
            "workflow_job needs at least read access to actions",
        ),
    ];
    for (m, needle) in &cases {
        let resp = post_form(&form, m).await;
        assert_eq!(resp.status().as_u16(), 422, "{m}");
        assert!(resp.headers().get("location").is_none());
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let page = resp.text().await.unwrap();
        assert!(page.contains(needle), "{needle:?} not in {page}");
    }
    // Not JSON at all.
    let resp = client()
        .post(&form)
        .form(&[("manifest", "{not json")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    assert_eq!(github.manifests().len(), cases.len() + 1);
    assert_eq!(github.conversions(), 0);
    assert_eq!(github.calls(endpoint::NEW_APP), cases.len() + 1);
}

#[tokio::test]
async fn get_on_the_form_is_not_the_manifest_flow() {
    let github = FakeGitHub::start().await;
    let m = manifest("https://example.com/hook").to_string();
    let resp = client()
        .get(format!("{}/settings/apps/new", github.web_url()))
        .query(&[("manifest", m.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    assert!(github.manifests().is_empty());
}

#[tokio::test]
async fn the_conversion_answers_the_documented_app_once() {
    let github = FakeGitHub::start().await;
    let m = manifest("https://example.com/hook");
    let resp = post_form(
        &format!("{}/organizations/acme/settings/apps/new", github.web_url()),
        &m,
    )
    .await;
    let (_, params) = redirect_params(&resp);
    let url = format!(
        "{}/app-manifests/{}/conversions",
        github.url(),
        params["code"]
    );
    let r = client().post(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let app: Value = r.json().await.unwrap();
    assert_eq!(app["id"], json!(APP_ID.parse::<u64>().unwrap()));
    assert_eq!(app["slug"], "spotrunner-acme");
    assert_eq!(app["name"], "Spotrunner Acme");
    assert_eq!(app["description"], "Ephemeral runners");
    assert_eq!(app["external_url"], "https://example.com/spotrunner");
    assert_eq!(
        app["html_url"],
        format!("{}/apps/spotrunner-acme", github.web_url())
    );
    assert!(app["node_id"].as_str().is_some_and(|n| !n.is_empty()));
    for field in [
        "login",
        "id",
        "node_id",
        "type",
        "url",
        "html_url",
        "avatar_url",
    ] {
        assert!(!app["owner"][field].is_null(), "owner.{field}");
    }
    for field in ["created_at", "updated_at"] {
        let t = app[field].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(t).unwrap();
    }
    assert_eq!(
        app["permissions"],
        json!({
            "actions": "read",
            "administration": "read",
            "organization_self_hosted_runners": "write",
            "metadata": "read",
        })
    );
    assert_eq!(app["events"], json!(["workflow_job"]));
    assert!(app["client_id"].as_str().unwrap().starts_with("Iv1."));
    let client_secret = app["client_secret"].as_str().unwrap();
    let webhook_secret = app["webhook_secret"].as_str().unwrap();
    assert_eq!(webhook_secret.len(), 40);
    assert_ne!(client_secret, webhook_secret);
    assert_eq!(app["pem"], APP_PRIVATE_KEY_PEM);
    assert!(
        github
            .issued_secrets()
            .contains(&webhook_secret.to_string())
    );
    assert_eq!(github.conversions(), 1);

    // The App's hook is the manifest's, with the secret just handed out.
    assert_eq!(
        github.app_hook(),
        FakeAppHook {
            url: Some("https://example.com/hook".into()),
            secret: webhook_secret.into(),
            content_type: "json".into(),
            active: true,
        }
    );

    // Once only; an unknown code alike.
    for u in [
        url.clone(),
        format!("{}/app-manifests/nope/conversions", github.url()),
    ] {
        let r = client().post(&u).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["message"], "Not Found");
    }
    assert_eq!(github.calls(endpoint::MANIFEST_CONVERSION), 3);
    assert_eq!(github.conversions(), 1);
}

#[tokio::test]
async fn a_manifest_without_a_hook_has_no_webhook_secret() {
    let github = FakeGitHub::start().await;
    let mut m = manifest("https://example.com/hook");
    m.as_object_mut().unwrap().remove("hook_attributes");
    let app = create_app(&github, "/settings/apps/new", &m).await;
    assert_eq!(app["webhook_secret"], Value::Null);
    let (status, config) = get_app(&github, "/app/hook/config").await;
    assert_eq!(status, 200);
    assert_eq!(config["url"], Value::Null);
    assert_eq!(config["secret"], Value::Null);
    assert!(github.deliveries().is_empty(), "no hook, no ping");
}

#[tokio::test]
async fn get_app_shows_the_defaults_then_the_manifest() {
    let github = FakeGitHub::start().await;
    github.add_installation(RunnerScope::Org { org: "acme".into() });
    let (status, app) = get_app(&github, "/app").await;
    assert_eq!(status, 200);
    assert_eq!(app["name"], "spotrunner-fake");
    assert_eq!(
        app["permissions"],
        json!({
            "actions": "write",
            "administration": "write",
            "organization_self_hosted_runners": "write",
            "metadata": "read",
        })
    );
    assert_eq!(app["events"], json!(["workflow_job"]));
    assert_eq!(app["installations_count"], 1);

    let mut m = manifest("https://example.com/hook");
    m["default_permissions"] = json!({ "actions": "write", "checks": "read" });
    m["default_events"] = json!(["workflow_job", "check_run"]);
    create_app(&github, "/settings/apps/new", &m).await;
    let (status, app) = get_app(&github, "/app").await;
    assert_eq!(status, 200);
    assert_eq!(app["name"], "Spotrunner Acme");
    assert_eq!(app["slug"], "spotrunner-acme");
    assert_eq!(
        app["permissions"],
        json!({ "actions": "write", "checks": "read", "metadata": "read" })
    );
    assert_eq!(app["events"], json!(["workflow_job", "check_run"]));
    assert_eq!(github.app_events(), ["workflow_job", "check_run"]);
    assert_eq!(github.app_permissions()["checks"], "read");
    assert_eq!(github.calls(endpoint::GET_APP), 2);

    // An App JWT only.
    let r = client()
        .get(format!("{}/app", github.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    github.set_pat("pat");
    let r = client()
        .get(format!("{}/app", github.url()))
        .bearer_auth("pat")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn the_hook_is_pinged_then_gets_deliveries_signed_with_the_webhook_secret() {
    let github = FakeGitHub::start().await;
    let got: Got = Arc::default();
    let hook = receiver(got.clone()).await;
    let app = create_app(&github, "/settings/apps/new", &manifest(&hook)).await;
    let secret = app["webhook_secret"].as_str().unwrap().to_string();

    // The ping: at registration, to the manifest's URL, signed with the secret.
    {
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 1);
        let (headers, body) = &got[0];
        assert_eq!(headers["x-github-event"], "ping");
        assert_eq!(
            signature(headers),
            spotrunner_core::webhook::sign(secret.as_bytes(), body)
        );
        let ping: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            ping["hook"]["app_id"],
            json!(APP_ID.parse::<u64>().unwrap())
        );
        assert_eq!(ping["hook"]["type"], "App");
        assert_eq!(ping["hook"]["events"], json!(["workflow_job"]));
        assert_eq!(ping["hook"]["config"]["url"], hook);
        assert_eq!(ping["hook"]["config"]["secret"], MASKED_SECRET);
        assert_eq!(ping["hook_id"], ping["hook"]["id"]);
        assert!(ping["zen"].as_str().is_some_and(|z| !z.is_empty()));
    }
    let log = github.deliveries();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].event, "ping");
    assert_eq!(log[0].status_code, 202);

    // The config: the URL, the secret masked.
    let (status, config) = get_app(&github, "/app/hook/config").await;
    assert_eq!(status, 200);
    assert_eq!(
        config,
        json!({ "content_type": "json", "insecure_ssl": "0", "url": hook, "secret": MASKED_SECRET })
    );

    // A later delivery: same URL, same secret.
    let payload = br#"{"action":"queued","workflow_job":{"id":7}}"#;
    assert_eq!(github.deliver("workflow_job", payload).await, 202);
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 2);
    let (headers, body) = &got[1];
    assert_eq!(headers["x-github-event"], "workflow_job");
    assert_eq!(&body[..], payload);
    assert_eq!(
        signature(headers),
        spotrunner_core::webhook::sign(secret.as_bytes(), payload)
    );
}

#[tokio::test]
async fn an_inactive_hook_is_neither_pinged_nor_delivered_to() {
    let github = FakeGitHub::start().await;
    let got: Got = Arc::default();
    let hook = receiver(got.clone()).await;
    let mut m = manifest(&hook);
    m["hook_attributes"]["active"] = json!(false);
    let app = create_app(&github, "/settings/apps/new", &m).await;
    assert!(app["webhook_secret"].is_string());
    assert!(!github.app_hook().active);
    assert_eq!(github.deliver("workflow_job", b"{}").await, 0);
    assert!(got.lock().unwrap().is_empty());
    assert!(github.deliveries().is_empty());
}

#[tokio::test]
async fn patch_changes_where_deliveries_go_and_their_secret() {
    let github = FakeGitHub::start().await;
    let old: Got = Arc::default();
    let new: Got = Arc::default();
    let old_url = receiver(old.clone()).await;
    let new_url = receiver(new.clone()).await;
    create_app(&github, "/settings/apps/new", &manifest(&old_url)).await;

    let patch = |body: Value| {
        client()
            .patch(format!("{}/app/hook/config", github.url()))
            .bearer_auth(jwt())
            .json(&body)
            .send()
    };
    let r = patch(json!({ "url": new_url, "secret": "s3cret", "insecure_ssl": 0 }))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let config: Value = r.json().await.unwrap();
    assert_eq!(
        config,
        json!({ "content_type": "json", "insecure_ssl": "0", "url": new_url, "secret": MASKED_SECRET })
    );
    assert_eq!(github.app_hook().secret, "s3cret");
    assert_eq!(github.calls(endpoint::HOOK_CONFIG), 1);

    assert_eq!(github.deliver("workflow_job", b"{\"a\":1}").await, 202);
    let (headers, body) = new.lock().unwrap()[0].clone();
    assert_eq!(
        signature(&headers),
        spotrunner_core::webhook::sign(b"s3cret", &body)
    );
    assert_eq!(old.lock().unwrap().len(), 1, "the ping only");

    // Invalid values change nothing.
    for bad in [
        json!({ "content_type": "xml" }),
        json!({ "insecure_ssl": "2" }),
        json!({ "url": "not a url", "secret": "other" }),
    ] {
        let r = patch(bad.clone()).await.unwrap();
        assert_eq!(r.status().as_u16(), 422, "{bad}");
    }
    assert_eq!(github.app_hook().secret, "s3cret");
    assert_eq!(github.app_hook().url.as_deref(), Some(new_url.as_str()));

    // A `form` hook gets `payload=…`, signed as sent.
    let r = patch(json!({ "content_type": "form" })).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(github.deliver("workflow_job", b"{\"a\":2}").await, 202);
    let (headers, body) = new.lock().unwrap()[1].clone();
    assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
    assert_eq!(&body[..], b"payload=%7B%22a%22%3A2%7D");
    assert_eq!(
        signature(&headers),
        spotrunner_core::webhook::sign(b"s3cret", &body)
    );
}

#[tokio::test]
async fn installations_show_the_apps_permissions_unless_they_kept_their_own() {
    let github = FakeGitHub::start().await;
    let acme = github.add_installation(RunnerScope::Org { org: "acme".into() });
    let other = github.add_installation(RunnerScope::Org {
        org: "other".into(),
    });
    let old: BTreeMap<String, String> = [("organization_self_hosted_runners", "write")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    github.set_installation_permissions(acme, old.clone());
    let mut m = manifest("https://example.com/hook");
    m["default_events"] = json!(["workflow_job", "workflow_run"]);
    let app = create_app(&github, "/settings/apps/new", &m).await;

    let (status, list) = get_app(&github, "/app/installations").await;
    assert_eq!(status, 200);
    let by_id = |id: u64| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id(acme)["permissions"], json!(old));
    assert_eq!(by_id(other)["permissions"], app["permissions"]);
    for id in [acme, other] {
        assert_eq!(by_id(id)["events"], json!(["workflow_job", "workflow_run"]));
    }

    // An installation token carries its installation's permissions.
    let r = client()
        .post(format!(
            "{}/app/installations/{acme}/access_tokens",
            github.url()
        ))
        .bearer_auth(jwt())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let token: Value = r.json().await.unwrap();
    assert_eq!(token["permissions"], json!(old));

    // The App's own changes reach those without their own.
    let mut perms = github.app_permissions();
    perms.insert("checks".into(), "write".into());
    github.set_app_permissions(perms.clone());
    github.set_app_events(vec!["workflow_job".into()]);
    let (_, list) = get_app(&github, "/app/installations").await;
    let other_now = list
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == other)
        .unwrap()
        .clone();
    assert_eq!(other_now["permissions"], json!(perms));
    assert_eq!(other_now["events"], json!(["workflow_job"]));
}

#[tokio::test]
async fn under_a_prefix_the_form_is_at_the_root_and_the_api_under_the_prefix() {
    let github = FakeGitHub::start_with_prefix("/api/v3").await;
    let web = github.web_url();
    assert_eq!(format!("{web}/api/v3"), github.url());
    let m = manifest("https://example.com/hook");

    let r = post_form(&format!("{}/settings/apps/new", github.url()), &m).await;
    assert_eq!(r.status().as_u16(), 404, "no web UI under the API prefix");
    let r = post_form(&format!("{web}/organizations/acme/settings/apps/new"), &m).await;
    let (_, params) = redirect_params(&r);

    let r = client()
        .post(format!(
            "{web}/app-manifests/{}/conversions",
            params["code"]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "no API at the root");
    let r = client()
        .post(format!(
            "{}/app-manifests/{}/conversions",
            github.url(),
            params["code"]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let app: Value = r.json().await.unwrap();
    assert_eq!(app["html_url"], format!("{web}/apps/spotrunner-acme"));

    let (status, got) = get_app(&github, "/app").await;
    assert_eq!(status, 200);
    assert_eq!(got["owner"]["login"], "acme");
    let requests = github.requests();
    let form = requests
        .iter()
        .find(|r| r.endpoint == endpoint::NEW_APP)
        .unwrap();
    assert_eq!(form.path, "/organizations/acme/settings/apps/new");
}
