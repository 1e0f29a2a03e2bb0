//! The GitHub App the fake hosts (one: [`APP_ID`], key [`super::APP_PRIVATE_KEY_PEM`]),
//! its creation from a manifest, and its App-level endpoints.
//!
//! - The manifest flow's web half (GitHub's web UI, at the server's root even
//!   under an API prefix, as GitHub Enterprise Server serves it):
//!   `POST /settings/apps/new?state=S` (a personal account) and
//!   `POST /organizations/{org}/settings/apps/new?state=S`, a form with a JSON
//!   `manifest`. GitHub shows a confirmation page where the person may edit
//!   the name; the fake answers the form at once: `302` to
//!   `{redirect_url}?code={code}&state={S}` (no `state` when none came), or an
//!   HTML `422` page naming every problem of the manifest. `GET` on those
//!   paths is GitHub's other registration flow (URL parameters, no
//!   `manifest`): the fake answers `405`.
//! - Registration sends the new App's hook a `ping` (`hook.app_id`, the
//!   manifest's events and URL, the secret masked), signed with the webhook
//!   secret the conversion will hand out — as GitHub does, before anyone has
//!   that secret. It is logged as a delivery of the App's hook. An inactive
//!   hook (`hook_attributes.active: false`) gets no ping.
//! - `POST /app-manifests/{code}/conversions` (no credentials): `201` with
//!   the App, `client_id`, `client_secret`, `webhook_secret` (`null` without a
//!   hook) and `pem`. A code works once and for an hour; else `404`. The App
//!   then takes the manifest's name, owner, permissions, events and hook.
//! - `GET /app`, `GET`/`PATCH /app/hook/config` (App JWT): the App, its hook's
//!   configuration with the secret masked as `********` (`null` when unset).
//!
//! Installations show the App's permissions and events, unless a test set an
//! installation's own permissions ([`FakeGitHub::set_installation_permissions`]:
//! an owner who has not yet accepted new permissions keeps the old ones).

use super::manifest::{Registration, http_url, slug, validate};
use super::{
    APP_ID, FakeGitHub, HeaderMap, Response, State, StatusCode, endpoint, err, nonce, ok_json,
};
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

/// How GitHub shows a webhook secret that is set.
pub const MASKED_SECRET: &str = "********";
/// A manifest code is good for one hour (GitHub: all three steps of the flow
/// within one hour).
const CODE_TTL: Duration = Duration::from_secs(3600);
/// The personal account that posts the form (the web session's user).
pub const WEB_USER: &str = "octocat";

/// The App's webhook as deliveries use it ([`FakeGitHub::app_hook`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeAppHook {
    /// Where deliveries go (`None`: no webhook URL).
    pub url: Option<String>,
    /// What they are signed with (empty: none).
    pub secret: String,
    /// `json` or `form`.
    pub content_type: String,
    /// An inactive hook gets no deliveries.
    pub active: bool,
}

/// The App's owner: a user or an organisation.
#[derive(Debug, Clone)]
struct Owner {
    login: String,
    kind: &'static str,
}

/// A registration waiting for its code's conversion.
struct Pending {
    reg: Registration,
    owner: Owner,
    webhook_secret: Option<String>,
    created: SystemTime,
}

/// The App (its hook's configuration lives in `hooks::Hooks`).
pub(crate) struct App {
    name: String,
    slug: String,
    description: Option<String>,
    external_url: String,
    owner: Owner,
    permissions: BTreeMap<String, String>,
    events: Vec<String>,
    client_id: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Installations whose owner has not accepted the App's permissions.
    installation_permissions: HashMap<u64, BTreeMap<String, String>>,
    pending: HashMap<String, Pending>,
    manifests: Vec<Value>,
    conversions: usize,
}

fn now_secs() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now)
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// 40 hex digits (GitHub's codes and secrets look like SHA-1s).
fn hex40() -> String {
    format!("{}{}{}", nonce(), nonce(), &nonce()[..8])
}

impl App {
    /// The App before any manifest: what existing tests rely on.
    pub(crate) fn new(web_url: &str) -> App {
        let now = now_secs();
        App {
            name: "spotrunner-fake".into(),
            slug: "spotrunner-fake".into(),
            description: None,
            external_url: format!("{web_url}/spotrunner"),
            owner: Owner {
                login: "spotrunner".into(),
                kind: "Organization",
            },
            permissions: [
                ("actions", "write"),
                ("administration", "write"),
                ("organization_self_hosted_runners", "write"),
                ("metadata", "read"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            events: vec!["workflow_job".into()],
            client_id: format!("Iv1.{}", nonce()),
            created_at: now,
            updated_at: now,
            installation_permissions: HashMap::new(),
            pending: HashMap::new(),
            manifests: Vec::new(),
            conversions: 0,
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn html(status: StatusCode, title: &str, items: &[String]) -> Response {
    let list: String = items
        .iter()
        .map(|i| format!("<li>{}</li>", escape(i)))
        .collect();
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>{t}</title></head><body>\
         <h1>{t}</h1><ul>{list}</ul></body></html>\n",
        t = escape(title)
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The fields of an `application/x-www-form-urlencoded` body or query.
fn form_fields(encoded: &str) -> Vec<(String, String)> {
    match reqwest::Url::parse("http://x/") {
        Ok(mut u) => {
            u.set_query(Some(encoded));
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        }
        Err(_) => Vec::new(),
    }
}

/// The web form's path: `Some(None)` for a personal account, `Some(Some(org))`
/// for an organisation.
fn web_route(path: &str) -> Option<Option<String>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["settings", "apps", "new"] => Some(None),
        ["organizations", org, "settings", "apps", "new"] if !org.is_empty() => {
            Some(Some(org.to_string()))
        }
        _ => None,
    }
}

/// The web half of the manifest flow (at the root, whatever the API prefix):
/// `None` when `path` is not one of its pages.
pub(crate) fn web(
    s: &mut State,
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Response> {
    let org = web_route(path)?;
    if let Some(failure) = super::count_call(s, endpoint::NEW_APP, method, path, query, headers) {
        return Some(failure);
    }
    if method != "POST" {
        let mut resp = html(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed",
            &[
                "A GitHub App manifest is POSTed (as the form field `manifest`); \
               GET is the URL-parameter registration form, which takes no manifest."
                    .into(),
            ],
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return Some(resp);
    }
    let owner = match org {
        Some(org) if super::actions::is_user(s, &org) => {
            return Some(html(StatusCode::NOT_FOUND, "Not Found", &[]));
        }
        Some(org) => Owner {
            login: org,
            kind: "Organization",
        },
        None => Owner {
            login: WEB_USER.into(),
            kind: "User",
        },
    };
    let fields = form_fields(&String::from_utf8_lossy(body));
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let state = query
        .and_then(|q| {
            form_fields(q)
                .into_iter()
                .find(|(k, _)| k == "state")
                .map(|(_, v)| v)
        })
        .or_else(|| field("state"))
        .filter(|st| !st.is_empty());
    let Some(raw) = field("manifest") else {
        return Some(html(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid GitHub App manifest",
            &["manifest wasn't supplied (a form field holding the manifest's JSON)".into()],
        ));
    };
    let manifest = match serde_json::from_str::<Value>(&raw) {
        Ok(v) => v,
        Err(e) => {
            s.app.manifests.push(Value::String(raw));
            return Some(html(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid GitHub App manifest",
                &[format!("the manifest is not JSON: {e}")],
            ));
        }
    };
    s.app.manifests.push(manifest.clone());
    let reg = match validate(&manifest) {
        Ok(r) => r,
        Err(problems) => {
            return Some(html(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid GitHub App manifest",
                &problems,
            ));
        }
    };
    let code = hex40();
    let webhook_secret = reg.hook.as_ref().map(|_| hex40());
    let mut location = reqwest::Url::parse(&reg.redirect_url).expect("validated URL");
    location.query_pairs_mut().append_pair("code", &code);
    if let Some(st) = &state {
        location.query_pairs_mut().append_pair("state", st);
    }
    let ping = match (&reg.hook, &webhook_secret) {
        (Some((url, true)), Some(secret)) => Some(super::hooks::DirectDelivery {
            url: url.clone(),
            secret: secret.clone(),
            event: "ping".into(),
            payload: serde_json::to_vec(&ping_payload(s, url, &reg.events)).unwrap_or_default(),
        }),
        _ => None,
    };
    s.app.pending.insert(
        code,
        Pending {
            reg,
            owner,
            webhook_secret,
            created: SystemTime::now(),
        },
    );
    let mut resp = (
        StatusCode::FOUND,
        [(header::LOCATION, location.to_string())],
    )
        .into_response();
    if let Some(p) = ping {
        resp.extensions_mut().insert(p);
    }
    Some(resp)
}

/// Some of GitHub's zen (`GET /zen`), which a `ping` carries.
const ZEN: &[&str] = &[
    "Keep it logically awesome.",
    "Design for failure.",
    "Anything added dilutes everything else.",
    "Speak like a human.",
    "Favor focus over features.",
    "Practicality beats purity.",
    "Approachable is better than simple.",
    "Mind your words, they are important.",
];

/// The `ping` GitHub sends to a new App's hook.
fn ping_payload(s: &State, url: &str, events: &[String]) -> Value {
    let now = time(&now_secs());
    let pick = usize::from_str_radix(&nonce()[..4], 16).unwrap_or(0) % ZEN.len();
    json!({
        "zen": ZEN[pick],
        "hook_id": super::APP_HOOK_ID,
        "hook": {
            "type": "App",
            "id": super::APP_HOOK_ID,
            "name": "web",
            "active": true,
            "events": events,
            "config": {
                "content_type": "json",
                "insecure_ssl": "0",
                "secret": MASKED_SECRET,
                "url": url,
            },
            "updated_at": now,
            "created_at": now,
            "app_id": app_id(),
            "deliveries_url": format!("{}/app/hook/deliveries", s.base_url),
        },
    })
}

fn app_id() -> u64 {
    APP_ID.parse().unwrap_or(0)
}

/// `POST /app-manifests/{code}/conversions`: the route's code.
pub(crate) fn public_route(method: &str, segs: &[&str]) -> Option<(&'static str, String)> {
    match (method, segs) {
        ("POST", ["app-manifests", code, "conversions"]) => {
            Some((endpoint::MANIFEST_CONVERSION, code.to_string()))
        }
        _ => None,
    }
}

/// Is a code created at `created` past its hour at `now`?
fn expired(created: SystemTime, now: SystemTime) -> bool {
    now.duration_since(created).unwrap_or_default() > CODE_TTL
}

/// Exchange a code: the App becomes what the manifest described.
pub(crate) fn convert(s: &mut State, code: &str) -> Response {
    let Some(p) = s.app.pending.remove(code) else {
        return err(StatusCode::NOT_FOUND, "Not Found");
    };
    if expired(p.created, SystemTime::now()) {
        return err(StatusCode::NOT_FOUND, "Not Found");
    }
    let now = now_secs();
    let reg = p.reg;
    let a = &mut s.app;
    a.slug = slug(&reg.name);
    a.name = reg.name;
    a.description = reg.description;
    a.external_url = reg.url;
    a.owner = p.owner;
    a.permissions = reg.permissions;
    a.events = reg.events;
    a.client_id = format!("Iv1.{}", nonce());
    a.created_at = now;
    a.updated_at = now;
    a.conversions += 1;
    let client_secret = hex40();
    match (&reg.hook, &p.webhook_secret) {
        (Some((url, active)), Some(secret)) => {
            s.hooks.url = Some(url.clone());
            s.hooks.secret = secret.clone();
            s.hooks.active = *active;
        }
        _ => {
            s.hooks.url = None;
            s.hooks.secret = String::new();
            s.hooks.active = false;
        }
    }
    s.hooks.content_type = "json".into();
    s.hooks.insecure_ssl = "0".into();
    s.issued_secrets.push(client_secret.clone());
    if let Some(w) = &p.webhook_secret {
        s.issued_secrets.push(w.clone());
    }
    let mut body = app_json(s);
    body["client_id"] = json!(s.app.client_id);
    body["client_secret"] = json!(client_secret);
    body["webhook_secret"] = json!(p.webhook_secret);
    body["pem"] = json!(super::APP_PRIVATE_KEY_PEM);
    if let Some(o) = body.as_object_mut() {
        o.remove("installations_count");
    }
    ok_json(StatusCode::CREATED, body)
}

/// A `simple-user` for an account (user or organisation).
fn owner_json(s: &State, o: &Owner) -> Value {
    let id = super::actions::account_id(&o.login);
    let api = format!("{}/users/{}", s.base_url, o.login);
    let prefix = if o.kind == "Organization" {
        "MDEyOk9yZ2FuaXphdGlvbj"
    } else {
        "MDQ6VXNlcj"
    };
    json!({
        "login": o.login,
        "id": id,
        "node_id": format!("{prefix}{id}"),
        "avatar_url": format!("{}/avatars/{}", s.web_url, o.login),
        "gravatar_id": "",
        "url": api,
        "html_url": format!("{}/{}", s.web_url, o.login),
        "followers_url": format!("{api}/followers"),
        "following_url": format!("{api}/following{{/other_user}}"),
        "gists_url": format!("{api}/gists{{/gist_id}}"),
        "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{api}/subscriptions"),
        "organizations_url": format!("{api}/orgs"),
        "repos_url": format!("{api}/repos"),
        "events_url": format!("{api}/events{{/privacy}}"),
        "received_events_url": format!("{api}/received_events"),
        "type": o.kind,
        "site_admin": false,
    })
}

/// The `integration` (GitHub App) object, with `installations_count`.
fn app_json(s: &State) -> Value {
    let a = &s.app;
    let node_id = base64::engine::general_purpose::STANDARD
        .encode(format!("03:Integration{APP_ID}").as_bytes());
    json!({
        "id": app_id(),
        "slug": a.slug,
        "node_id": node_id,
        "client_id": a.client_id,
        "owner": owner_json(s, &a.owner),
        "name": a.name,
        "description": a.description,
        "external_url": a.external_url,
        "html_url": format!("{}/apps/{}", s.web_url, a.slug),
        "created_at": time(&a.created_at),
        "updated_at": time(&a.updated_at),
        "permissions": a.permissions,
        "events": a.events,
        "installations_count": s.installations.len(),
    })
}

/// The hook's `webhook-config`, the secret masked.
fn hook_config_json(s: &State) -> Value {
    let h = &s.hooks;
    json!({
        "content_type": h.content_type,
        "insecure_ssl": h.insecure_ssl,
        "url": h.url,
        "secret": if h.secret.is_empty() { Value::Null } else { json!(MASKED_SECRET) },
    })
}

/// What an App-JWT route asks for.
pub(crate) enum Kind {
    GetApp,
    GetHookConfig,
    PatchHookConfig,
}

pub(crate) struct Route {
    pub endpoint: &'static str,
    kind: Kind,
}

/// `GET /app`, `GET`/`PATCH /app/hook/config` (all take an App JWT).
pub(crate) fn route(method: &str, segs: &[&str]) -> Option<Route> {
    let (endpoint, kind) = match (method, segs) {
        ("GET", ["app"]) => (endpoint::GET_APP, Kind::GetApp),
        ("GET", ["app", "hook", "config"]) => (endpoint::HOOK_CONFIG, Kind::GetHookConfig),
        ("PATCH", ["app", "hook", "config"]) => (endpoint::HOOK_CONFIG, Kind::PatchHookConfig),
        _ => return None,
    };
    Some(Route { endpoint, kind })
}

pub(crate) fn handle(s: &mut State, r: Route, body: &[u8]) -> Response {
    match r.kind {
        Kind::GetApp => ok_json(StatusCode::OK, app_json(s)),
        Kind::GetHookConfig => ok_json(StatusCode::OK, hook_config_json(s)),
        Kind::PatchHookConfig => patch_hook_config(s, body),
    }
}

fn invalid(message: String) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({
            "message": "Validation Failed",
            "errors": [message],
            "documentation_url": "https://docs.github.com/rest/apps/webhooks#update-a-webhook-configuration-for-an-app",
        })),
    )
        .into_response()
}

/// `PATCH /app/hook/config`: `url`, `content_type` (`json`, `form`),
/// `secret`, `insecure_ssl` (`"0"`, `"1"`, or the numbers), each optional;
/// answers the new configuration. Nothing changes unless all are valid.
fn patch_hook_config(s: &mut State, body: &[u8]) -> Response {
    let Ok(Value::Object(v)) = serde_json::from_slice::<Value>(body) else {
        return err(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let v: Map<String, Value> = v;
    let url = match v.get("url") {
        None => None,
        Some(u) => {
            let mut problems = Vec::new();
            match http_url(u, "url", &mut problems) {
                Some(u) => Some(u),
                None => return invalid(problems.join("; ")),
            }
        }
    };
    let content_type = match v.get("content_type") {
        None => None,
        Some(Value::String(c)) if c == "json" || c == "form" => Some(c.clone()),
        Some(c) => return invalid(format!("content_type {c} is not one of json, form")),
    };
    let secret = match v.get("secret") {
        None => None,
        Some(Value::String(x)) => Some(x.clone()),
        Some(Value::Null) => Some(String::new()),
        Some(x) => return invalid(format!("secret {x} is not a string")),
    };
    let insecure_ssl = match v.get("insecure_ssl") {
        None => None,
        Some(Value::String(x)) if x == "0" || x == "1" => Some(x.clone()),
        Some(Value::Number(n)) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => {
            Some(n.to_string())
        }
        Some(x) => return invalid(format!("insecure_ssl {x} is not one of \"0\", \"1\"")),
    };
    let h = &mut s.hooks;
    if let Some(u) = url {
        h.url = Some(u);
    }
    if let Some(c) = content_type {
        h.content_type = c;
    }
    if let Some(x) = secret {
        h.secret = x;
    }
    if let Some(x) = insecure_ssl {
        h.insecure_ssl = x;
    }
    ok_json(StatusCode::OK, hook_config_json(s))
}

/// The permissions installation `id` shows (its own, else the App's).
pub(crate) fn installation_permissions(s: &State, id: u64) -> BTreeMap<String, String> {
    s.app
        .installation_permissions
        .get(&id)
        .cloned()
        .unwrap_or_else(|| s.app.permissions.clone())
}

/// The events the App (and so every installation) subscribes to.
pub(crate) fn events(s: &State) -> Vec<String> {
    s.app.events.clone()
}

impl FakeGitHub {
    /// The web root (GitHub's web UI: the manifest flow's form), without the
    /// API prefix and without a trailing slash; the same as [`FakeGitHub::url`]
    /// when there is no prefix.
    pub fn web_url(&self) -> String {
        self.st().web_url.clone()
    }

    /// The webhook events the App subscribes to (default `["workflow_job"]`).
    pub fn app_events(&self) -> Vec<String> {
        self.st().app.events.clone()
    }

    /// Change the App's events (installations show them too).
    pub fn set_app_events(&self, events: Vec<String>) {
        let mut s = self.st();
        s.app.events = events;
        s.app.updated_at = now_secs();
    }

    /// The App's permissions (default `actions`, `administration`,
    /// `organization_self_hosted_runners`: `write`, `metadata`: `read`).
    pub fn app_permissions(&self) -> BTreeMap<String, String> {
        self.st().app.permissions.clone()
    }

    /// Change the App's permissions (installations without their own follow).
    pub fn set_app_permissions(&self, permissions: BTreeMap<String, String>) {
        let mut s = self.st();
        s.app.permissions = permissions;
        s.app.updated_at = now_secs();
    }

    /// Give installation `installation_id` permissions of its own (its owner
    /// has not accepted the App's current ones): `GET /app/installations`
    /// and its access tokens show these.
    pub fn set_installation_permissions(
        &self,
        installation_id: u64,
        permissions: BTreeMap<String, String>,
    ) {
        self.st()
            .app
            .installation_permissions
            .insert(installation_id, permissions);
    }

    /// The App's webhook as deliveries use it (the secret in clear).
    pub fn app_hook(&self) -> FakeAppHook {
        let s = self.st();
        FakeAppHook {
            url: s.hooks.url.clone(),
            secret: s.hooks.secret.clone(),
            content_type: s.hooks.content_type.clone(),
            active: s.hooks.active,
        }
    }

    /// Every manifest the web form received, valid or not, oldest first (one
    /// that is not JSON as a JSON string).
    pub fn manifests(&self) -> Vec<Value> {
        self.st().app.manifests.clone()
    }

    /// How many manifest codes were converted (successfully).
    pub fn conversions(&self) -> usize {
        self.st().app.conversions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_lower_case_with_single_dashes() {
        assert_eq!(slug("Octocat App"), "octocat-app");
        assert_eq!(slug("  spotrunner (acme) -- CI!  "), "spotrunner-acme-ci");
        assert_eq!(slug("ÄBC_def.9"), "bc-def-9");
    }

    #[test]
    fn codes_expire_after_an_hour() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert!(!expired(t, t + Duration::from_secs(3600)));
        assert!(expired(t, t + Duration::from_secs(3601)));
    }

    fn manifest() -> Value {
        json!({
            "name": "spotrunner-acme",
            "url": "https://example.com",
            "redirect_url": "http://127.0.0.1:1/cb",
            "hook_attributes": { "url": "https://example.com/hook" },
            "default_permissions": { "actions": "read", "organization_self_hosted_runners": "write" },
            "default_events": ["workflow_job"],
        })
    }

    #[test]
    fn a_valid_manifest_gets_metadata_and_its_events() {
        let r = validate(&manifest()).unwrap();
        assert_eq!(r.permissions["metadata"], "read");
        assert_eq!(r.events, ["workflow_job"]);
        assert_eq!(r.hook, Some(("https://example.com/hook".into(), true)));
    }

    #[test]
    fn every_problem_is_named() {
        let mut m = manifest();
        m["url"] = Value::Null;
        m["hook_attributes"] = json!({ "active": false });
        m["default_permissions"] = json!({ "checks": "admin" });
        m["default_events"] = json!(["workflow_job", "check_run"]);
        m["name"] = json!("x".repeat(35));
        let problems = validate(&m).unwrap_err();
        let all = problems.join("\n");
        for needle in [
            "url wasn't supplied",
            "hook_attributes.url wasn't supplied",
            "default_permissions.checks",
            "workflow_job needs at least read access to actions",
            "check_run needs",
            "too long",
        ] {
            assert!(all.contains(needle), "{needle:?} not in {all}");
        }
    }

    #[tokio::test]
    async fn a_code_older_than_an_hour_is_not_found() {
        let github = FakeGitHub::start().await;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = http
            .post(format!("{}/settings/apps/new", github.web_url()))
            .form(&[("manifest", manifest().to_string())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 302);
        let loc = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        let code = loc
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        for p in github.st().app.pending.values_mut() {
            p.created -= CODE_TTL + Duration::from_secs(1);
        }
        let r = http
            .post(format!("{}/app-manifests/{code}/conversions", github.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404);
        assert_eq!(github.conversions(), 0);
        assert!(github.st().app.pending.is_empty());
    }

    #[test]
    fn events_without_a_known_rule_are_stored_as_given() {
        let mut m = manifest();
        m["default_events"] = json!(["workflow_job", "label", "installation_target", "label"]);
        let r = validate(&m).unwrap();
        assert_eq!(r.events, ["workflow_job", "label", "installation_target"]);
    }
}
