//! Webhooks: delivering payloads the way GitHub does, the delivery log of the
//! App's hook (and of registered organisation and repository hooks), and
//! redelivery on request.
//!
//! - [`FakeGitHub::deliver`] POSTs one payload to the configured URL with
//!   GitHub's headers (`X-GitHub-Event`, `X-GitHub-Delivery`,
//!   `X-Hub-Signature-256`, `User-Agent: GitHub-Hookshot/fake`), waits at most
//!   10 s (GitHub's timeout) and records the attempt, answered or not. Like
//!   GitHub, the fake never redelivers by itself.
//! - `GET …/deliveries` lists attempts newest first (by id), `per_page` (default
//!   30, at most 100) and an opaque `cursor` (`v1_<id>`: the first attempt of the
//!   page), with a `Link: <…&cursor=…>; rel="next"` while older ones remain.
//! - `POST …/deliveries/{id}/attempts` re-POSTs that attempt's payload with the
//!   same GUID, signed with the **current** secret, records it as a new attempt
//!   (`redelivery: true`) and only then answers `202 {}` (so a test sees the
//!   redelivery as soon as the call returns).
//! - The App's hook has GitHub's configuration (`GET`/`PATCH /app/hook/config`,
//!   `app.rs`): `url`, `secret`, `content_type` (`json`, or `form`: the payload
//!   is sent as `payload=<url-encoded JSON>`, signed as sent), `insecure_ssl`
//!   and `active` (an inactive App hook gets no deliveries and logs none).

use super::{
    Caller, FakeGitHub, Response, RunnerScope, State, StatusCode, allowed, err, ok_json,
    query_param,
};
use axum::http::HeaderValue;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use spotrunner_core::ports::HookRef;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The id GitHub would show for the App's own hook (`X-GitHub-Hook-ID`).
pub const APP_HOOK_ID: u64 = 400_000_001;
/// GitHub gives up on a delivery after 10 seconds.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an answer's body the log keeps.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// One delivery attempt as the fake recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeDelivery {
    /// Unique per attempt, increasing (a redelivery gets a new one).
    pub id: u64,
    /// The hook it went through.
    pub hook: HookRef,
    /// `X-GitHub-Delivery`: the same for an attempt and its redeliveries.
    pub guid: String,
    /// When the attempt started, to the second (as GitHub shows it).
    pub delivered_at: DateTime<Utc>,
    pub redelivery: bool,
    /// Seconds the attempt took.
    pub duration: f64,
    /// `OK`, `Invalid HTTP Response: 503`, `failed to connect to host`, `timed out`.
    pub status: String,
    /// The answer's status code; 0 when there was none (refused, timed out).
    pub status_code: u16,
    pub event: String,
    /// The payload's `action`, if it has one.
    pub action: Option<String>,
    /// The payload's `installation.id`, if any.
    pub installation_id: Option<u64>,
    /// The payload's `repository.id`, if any.
    pub repository_id: Option<u64>,
    /// Where it was sent.
    pub url: String,
    /// The headers sent (names as GitHub spells them).
    pub request_headers: Vec<(String, String)>,
    /// The payload (JSON): the exact bytes sent, except through a hook whose
    /// content type is `form`, which sends them as `payload=<url-encoded>`.
    pub payload: Vec<u8>,
    /// The answer's headers (lower-case names).
    pub response_headers: Vec<(String, String)>,
    /// The answer's body (at most 64 KiB, lossy UTF-8).
    pub response_body: String,
}

/// The webhook configuration and every hook's delivery log.
pub(crate) struct Hooks {
    pub url: Option<String>,
    pub secret: String,
    /// `json` or `form`.
    pub content_type: String,
    /// `0` (verify the certificate) or `1`; recorded only.
    pub insecure_ssl: String,
    /// An inactive App hook delivers nothing.
    pub active: bool,
    timeout: Duration,
    /// Registered organisation and repository hooks (names lower-cased); the
    /// App's hook always exists.
    registered: Vec<HookRef>,
    log: Vec<FakeDelivery>,
    next_id: u64,
    redelivery_requests: usize,
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            url: None,
            secret: String::new(),
            content_type: "json".into(),
            insecure_ssl: "0".into(),
            active: true,
            timeout: DEFAULT_TIMEOUT,
            registered: Vec::new(),
            log: Vec::new(),
            next_id: 1,
            redelivery_requests: 0,
        }
    }
}

fn normalized(hook: &HookRef) -> HookRef {
    match hook {
        HookRef::App => HookRef::App,
        HookRef::Org { org, id } => HookRef::Org {
            org: org.to_ascii_lowercase(),
            id: *id,
        },
        HookRef::Repo { owner, repo, id } => HookRef::Repo {
            owner: owner.to_ascii_lowercase(),
            repo: repo.to_ascii_lowercase(),
            id: *id,
        },
    }
}

fn hook_id(hook: &HookRef) -> u64 {
    match hook {
        HookRef::App => APP_HOOK_ID,
        HookRef::Org { id, .. } | HookRef::Repo { id, .. } => *id,
    }
}

fn target_type(hook: &HookRef) -> &'static str {
    match hook {
        HookRef::App => "integration",
        HookRef::Org { .. } => "organization",
        HookRef::Repo { .. } => "repository",
    }
}

fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("webhook HTTP client")
    })
}

/// A new `X-GitHub-Delivery` GUID (a UUID v4, as GitHub's are).
fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// What one POST to the webhook URL produced.
struct Outcome {
    delivered_at: DateTime<Utc>,
    duration: f64,
    status: String,
    status_code: u16,
    url: String,
    request_headers: Vec<(String, String)>,
    response_headers: Vec<(String, String)>,
    response_body: String,
}

/// What a delivery is about, from its payload.
struct About {
    action: Option<String>,
    installation_id: Option<u64>,
    repository_id: Option<u64>,
}

fn about(payload: &[u8]) -> About {
    let v: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
    About {
        action: v.get("action").and_then(Value::as_str).map(str::to_string),
        installation_id: v.pointer("/installation/id").and_then(Value::as_u64),
        repository_id: v.pointer("/repository/id").and_then(Value::as_u64),
    }
}

/// Where and how a delivery goes: a snapshot of the hook's configuration.
struct Target {
    url: Option<String>,
    secret: String,
    /// `content_type` `form`: `payload=<url-encoded JSON>`.
    form: bool,
    timeout: Duration,
}

impl Hooks {
    /// The current configuration (every hook shares the App's).
    fn target(&self) -> Target {
        Target {
            url: self.url.clone(),
            secret: self.secret.clone(),
            form: self.content_type == "form",
            timeout: self.timeout,
        }
    }
}

/// `payload=<url-encoded JSON>`, as GitHub sends to a `form` hook.
fn form_body(payload: &[u8]) -> Vec<u8> {
    let mut u = reqwest::Url::parse("http://x/").expect("static URL");
    u.query_pairs_mut()
        .append_pair("payload", &String::from_utf8_lossy(payload));
    u.query().unwrap_or_default().as_bytes().to_vec()
}

/// POST `payload` as GitHub would. Never holds the state's lock.
async fn post(target: Target, hook: &HookRef, event: &str, guid: &str, payload: &[u8]) -> Outcome {
    let Target {
        url,
        secret,
        form,
        timeout,
    } = target;
    let now = Utc::now();
    let delivered_at = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
    let (body, content_type) = if form {
        (form_body(payload), "application/x-www-form-urlencoded")
    } else {
        (payload.to_vec(), "application/json")
    };
    let signature = spotrunner_core::webhook::sign(secret.as_bytes(), &body);
    let request_headers: Vec<(String, String)> = vec![
        ("Accept".into(), "*/*".into()),
        ("Content-Type".into(), content_type.into()),
        ("User-Agent".into(), "GitHub-Hookshot/fake".into()),
        ("X-GitHub-Delivery".into(), guid.to_string()),
        ("X-GitHub-Event".into(), event.to_string()),
        ("X-GitHub-Hook-ID".into(), hook_id(hook).to_string()),
        (
            "X-GitHub-Hook-Installation-Target-Type".into(),
            target_type(hook).into(),
        ),
        ("X-Hub-Signature-256".into(), signature),
    ];
    let started = Instant::now();
    let mut out = Outcome {
        delivered_at,
        duration: 0.0,
        status: String::new(),
        status_code: 0,
        url: url.clone().unwrap_or_default(),
        request_headers: request_headers.clone(),
        response_headers: Vec::new(),
        response_body: String::new(),
    };
    let Some(url) = url else {
        out.status = "No webhook URL configured".into();
        return out;
    };
    let mut rb = http().post(&url).timeout(timeout).body(body);
    for (k, v) in &request_headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    match rb.send().await {
        Ok(resp) => {
            let code = resp.status().as_u16();
            out.response_headers = resp
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            match resp.bytes().await {
                Ok(body) => {
                    let end = body.len().min(MAX_RESPONSE_BODY);
                    out.response_body = String::from_utf8_lossy(&body[..end]).into_owned();
                    out.status_code = code;
                    out.status = if (200..300).contains(&code) {
                        "OK".into()
                    } else {
                        format!("Invalid HTTP Response: {code}")
                    };
                }
                // The answer's body never came in time: GitHub counts that as a timeout.
                Err(e) if e.is_timeout() => out.status = "timed out".into(),
                Err(_) => out.status = "failed to read the response".into(),
            }
        }
        Err(e) if e.is_timeout() => out.status = "timed out".into(),
        Err(_) => out.status = "failed to connect to host".into(),
    }
    out.duration = started.elapsed().as_secs_f64();
    out
}

/// What was POSTed, for the log.
struct Sent<'a> {
    hook: HookRef,
    guid: String,
    event: &'a str,
    payload: &'a [u8],
    redelivery: bool,
}

fn record(s: &mut State, sent: Sent<'_>, out: Outcome) -> FakeDelivery {
    let d = delivery(s.hooks.next_id, sent, out);
    s.hooks.next_id += 1;
    s.hooks.log.push(d.clone());
    d
}

/// The attempt as the log shows it (with id `id`).
fn delivery(id: u64, sent: Sent<'_>, out: Outcome) -> FakeDelivery {
    let about = about(sent.payload);
    FakeDelivery {
        id,
        hook: sent.hook,
        guid: sent.guid,
        delivered_at: out.delivered_at,
        redelivery: sent.redelivery,
        duration: out.duration,
        status: out.status,
        status_code: out.status_code,
        event: sent.event.to_string(),
        action: about.action,
        installation_id: about.installation_id,
        repository_id: about.repository_id,
        url: out.url,
        request_headers: out.request_headers,
        payload: sent.payload.to_vec(),
        response_headers: out.response_headers,
        response_body: out.response_body,
    }
}

impl FakeGitHub {
    /// Configure the App's webhook: where deliveries go and the secret they are
    /// signed with. Registered organisation and repository hooks share it.
    /// The hook becomes active (its content type and `insecure_ssl` stay).
    pub fn set_webhook(&self, url: &str, secret: &str) {
        let mut s = self.st();
        s.hooks.url = Some(url.to_string());
        s.hooks.secret = secret.to_string();
        s.hooks.active = true;
    }

    /// How long a delivery waits for an answer (GitHub: 10 s, the default).
    pub fn set_delivery_timeout(&self, timeout: Duration) {
        self.st().hooks.timeout = timeout;
    }

    /// Register an organisation or repository hook with id `id` (for example
    /// `HookRef::Org { org, id }`): its deliveries go to the App's webhook URL
    /// with the App's secret, and are listed under its own routes.
    /// [`HookRef::App`] always exists.
    pub fn add_hook(&self, hook: HookRef) {
        let hook = normalized(&hook);
        let mut s = self.st();
        if hook != HookRef::App && !s.hooks.registered.contains(&hook) {
            s.hooks.registered.push(hook);
        }
    }

    /// Deliver `payload` as event `event` through the App's hook: one POST, one
    /// recorded attempt. Returns the answer's status code, 0 if none came.
    pub async fn deliver(&self, event: &str, payload: &[u8]) -> u16 {
        self.deliver_via(&HookRef::App, event, payload).await.0
    }

    /// Deliver through `hook` (registered with [`FakeGitHub::add_hook`]).
    /// Returns the answer's status code and the recorded attempt. An inactive
    /// App hook (a manifest's `hook_attributes.active: false`) delivers
    /// nothing: 0 and an attempt that is not in the log (id 0, status
    /// `Hook is inactive`).
    ///
    /// # Panics
    /// If `hook` was never registered (a mistake in the test).
    pub async fn deliver_via(
        &self,
        hook: &HookRef,
        event: &str,
        payload: &[u8],
    ) -> (u16, FakeDelivery) {
        let hook = normalized(hook);
        let (target, active) = {
            let s = self.st();
            assert!(
                hook == HookRef::App || s.hooks.registered.contains(&hook),
                "fake GitHub: {hook} was never registered (add_hook)"
            );
            (s.hooks.target(), s.hooks.active || hook != HookRef::App)
        };
        let guid = new_guid();
        if !active {
            let now = Utc::now();
            let out = Outcome {
                delivered_at: DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now),
                duration: 0.0,
                status: "Hook is inactive".into(),
                status_code: 0,
                url: target.url.unwrap_or_default(),
                request_headers: Vec::new(),
                response_headers: Vec::new(),
                response_body: String::new(),
            };
            let sent = Sent {
                hook,
                guid,
                event,
                payload,
                redelivery: false,
            };
            return (0, delivery(0, sent, out));
        }
        let out = post(target, &hook, event, &guid, payload).await;
        let code = out.status_code;
        let sent = Sent {
            hook,
            guid,
            event,
            payload,
            redelivery: false,
        };
        let d = record(&mut self.st(), sent, out);
        (code, d)
    }

    /// Every recorded attempt (all hooks), oldest first.
    pub fn deliveries(&self) -> Vec<FakeDelivery> {
        self.st().hooks.log.clone()
    }

    /// How many redeliveries were asked for (and performed).
    pub fn redelivery_requests(&self) -> usize {
        self.st().hooks.redelivery_requests
    }
}

/// A hook route: which endpoint, which hook, which delivery.
pub(crate) struct Route {
    pub endpoint: &'static str,
    hook: HookRef,
    delivery: Option<u64>,
}

impl Route {
    /// The App's hook takes an App JWT; organisation and repository hooks a PAT
    /// or an installation token.
    pub fn jwt(&self) -> bool {
        self.hook == HookRef::App
    }
}

pub(crate) fn route(method: &str, segs: &[&str]) -> Option<Route> {
    use super::endpoint::{GET_DELIVERY, LIST_DELIVERIES, REDELIVER};
    let (hook, rest) = match segs {
        ["app", "hook", "deliveries", rest @ ..] => (HookRef::App, rest),
        ["orgs", org, "hooks", id, "deliveries", rest @ ..] => (
            HookRef::Org {
                org: org.to_string(),
                id: id.parse().ok()?,
            },
            rest,
        ),
        ["repos", owner, repo, "hooks", id, "deliveries", rest @ ..] => (
            HookRef::Repo {
                owner: owner.to_string(),
                repo: repo.to_string(),
                id: id.parse().ok()?,
            },
            rest,
        ),
        _ => return None,
    };
    let hook = normalized(&hook);
    let (endpoint, delivery) = match (method, rest) {
        ("GET", []) => (LIST_DELIVERIES, None),
        ("GET", [id]) => (GET_DELIVERY, Some(id.parse().ok()?)),
        ("POST", [id, "attempts"]) => (REDELIVER, Some(id.parse().ok()?)),
        _ => return None,
    };
    Some(Route {
        endpoint,
        hook,
        delivery,
    })
}

/// A redelivery to perform before answering (see [`after`]).
#[derive(Clone)]
struct Pending {
    hook: HookRef,
    guid: String,
    event: String,
    payload: Vec<u8>,
}

pub(crate) fn handle(
    s: &mut State,
    r: Route,
    caller: &Caller,
    path: &str,
    query: Option<&str>,
) -> Response {
    let scope = match &r.hook {
        HookRef::App => None,
        HookRef::Org { org, .. } => Some(RunnerScope::Org { org: org.clone() }),
        HookRef::Repo { owner, repo, .. } => Some(RunnerScope::Repo {
            owner: owner.clone(),
            repo: repo.clone(),
        }),
    };
    match (&scope, caller) {
        (None, Caller::App) => {}
        (None, _) => {
            return err(
                StatusCode::UNAUTHORIZED,
                "A JSON web token could not be decoded",
            );
        }
        (Some(scope), caller) => {
            if !allowed(s, caller, scope) {
                return err(
                    StatusCode::FORBIDDEN,
                    "Resource not accessible by integration",
                );
            }
            if !s.hooks.registered.contains(&r.hook) {
                return err(StatusCode::NOT_FOUND, "Not Found");
            }
        }
    }
    match r.endpoint {
        super::endpoint::LIST_DELIVERIES => list(s, &r.hook, path, query),
        super::endpoint::GET_DELIVERY => {
            match s
                .hooks
                .log
                .iter()
                .find(|d| Some(d.id) == r.delivery && d.hook == r.hook)
            {
                Some(d) => ok_json(StatusCode::OK, delivery_json(d)),
                None => err(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        _ => {
            let Some(d) = s
                .hooks
                .log
                .iter()
                .find(|d| Some(d.id) == r.delivery && d.hook == r.hook)
            else {
                return err(StatusCode::NOT_FOUND, "Not Found");
            };
            let pending = Pending {
                hook: d.hook.clone(),
                guid: d.guid.clone(),
                event: d.event.clone(),
                payload: d.payload.clone(),
            };
            s.hooks.redelivery_requests += 1;
            let mut resp = ok_json(StatusCode::ACCEPTED, json!({}));
            resp.extensions_mut().insert(pending);
            resp
        }
    }
}

/// A new delivery a handler's action caused (a job re-run's `queued`).
#[derive(Clone)]
pub(crate) struct NewDelivery {
    pub event: String,
    pub payload: Vec<u8>,
}

/// A delivery through the App's hook to a URL and with a secret of its own:
/// a new App's `ping`, which GitHub sends on registration to the manifest's
/// hook URL (before anyone holds the App's webhook secret).
#[derive(Clone)]
pub(crate) struct DirectDelivery {
    pub url: String,
    pub secret: String,
    pub event: String,
    pub payload: Vec<u8>,
}

/// POST one new delivery through the App's hook and log it.
async fn deliver_new(st: &Mutex<State>, target: Target, event: &str, payload: &[u8]) {
    let guid = new_guid();
    let out = post(target, &HookRef::App, event, &guid, payload).await;
    let sent = Sent {
        hook: HookRef::App,
        guid,
        event,
        payload,
        redelivery: false,
    };
    record(&mut st.lock().unwrap(), sent, out);
}

/// Perform the redelivery (or new delivery) a handler asked for, before its
/// answer goes out.
pub(crate) async fn after(st: &Mutex<State>, resp: &mut Response) {
    if let Some(d) = resp.extensions_mut().remove::<DirectDelivery>() {
        let timeout = st.lock().unwrap().hooks.timeout;
        let target = Target {
            url: Some(d.url),
            secret: d.secret,
            form: false,
            timeout,
        };
        deliver_new(st, target, &d.event, &d.payload).await;
    }
    if let Some(d) = resp.extensions_mut().remove::<NewDelivery>() {
        let (target, active) = {
            let s = st.lock().unwrap();
            (s.hooks.target(), s.hooks.active)
        };
        if active {
            deliver_new(st, target, &d.event, &d.payload).await;
        }
    }
    let Some(p) = resp.extensions_mut().remove::<Pending>() else {
        return;
    };
    let target = st.lock().unwrap().hooks.target();
    let out = post(target, &p.hook, &p.event, &p.guid, &p.payload).await;
    let sent = Sent {
        hook: p.hook,
        guid: p.guid,
        event: &p.event,
        payload: &p.payload,
        redelivery: true,
    };
    record(&mut st.lock().unwrap(), sent, out);
}

fn list(s: &State, hook: &HookRef, path: &str, query: Option<&str>) -> Response {
    let per_page = match query_param(query, "per_page") {
        Some(p) => match p.parse::<usize>() {
            Ok(n) => n.clamp(1, 100),
            Err(_) => {
                return err(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "per_page must be an integer",
                );
            }
        },
        None => 30,
    };
    let redelivery = match query_param(query, "redelivery").as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            return err(
                StatusCode::UNPROCESSABLE_ENTITY,
                "redelivery must be true or false",
            );
        }
    };
    let start = match query_param(query, "cursor") {
        None => u64::MAX,
        Some(c) => match c.strip_prefix("v1_").and_then(|n| n.parse::<u64>().ok()) {
            Some(n) => n,
            None => return err(StatusCode::BAD_REQUEST, "Invalid cursor"),
        },
    };
    let mut mine: Vec<&FakeDelivery> = s
        .hooks
        .log
        .iter()
        .filter(|d| &d.hook == hook && d.id <= start)
        .filter(|d| redelivery.is_none_or(|r| d.redelivery == r))
        .collect();
    mine.sort_by_key(|d| std::cmp::Reverse(d.id));
    let page: Vec<Value> = mine.iter().take(per_page).map(|d| item_json(d)).collect();
    let mut resp = ok_json(StatusCode::OK, Value::Array(page));
    if let Some(next) = mine.get(per_page)
        && s.link_headers
    {
        let filter = redelivery
            .map(|r| format!("&redelivery={r}"))
            .unwrap_or_default();
        let link = format!(
            "<{}{path}?per_page={per_page}&cursor=v1_{}{filter}>; rel=\"next\"",
            s.base_url, next.id
        );
        if let Ok(v) = HeaderValue::from_str(&link) {
            resp.headers_mut().insert("link", v);
        }
    }
    resp
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A `hook-delivery-item`.
fn item_json(d: &FakeDelivery) -> Value {
    json!({
        "id": d.id,
        "guid": d.guid,
        "delivered_at": time(&d.delivered_at),
        "redelivery": d.redelivery,
        "duration": d.duration,
        "status": d.status,
        "status_code": d.status_code,
        "event": d.event,
        "action": d.action,
        "installation_id": d.installation_id,
        "repository_id": d.repository_id,
        "throttled_at": null,
    })
}

/// A `hook-delivery`: the item plus the request and the response.
fn delivery_json(d: &FakeDelivery) -> Value {
    let headers = |h: &[(String, String)]| -> Value {
        Value::Object(
            h.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    };
    let mut v = item_json(d);
    v["url"] = json!(d.url);
    v["request"] = json!({
        "headers": headers(&d.request_headers),
        "payload": serde_json::from_slice::<Value>(&d.payload).unwrap_or(Value::Null),
    });
    v["response"] = json!({
        "headers": headers(&d.response_headers),
        "payload": if d.status_code == 0 { Value::Null } else { json!(d.response_body) },
    });
    v
}
