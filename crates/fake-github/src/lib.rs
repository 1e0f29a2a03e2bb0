//! Fake GitHub REST server (axum) for tests.
//!
//! [`FakeGitHub::start`] serves on `127.0.0.1:0` (or under a prefix such as
//! `/api/v3` for the GitHub Enterprise Server layout, [`FakeGitHub::start_with_prefix`])
//! the endpoints spotrunner uses, over in-memory state:
//!
//! | endpoint name (for [`FakeGitHub::calls`]) | route |
//! | --- | --- |
//! | `access_tokens` | `POST /app/installations/{id}/access_tokens` (App JWT; the token's `permissions` are its installation's) |
//! | `installation` | `GET /orgs/{org}/installation`, `GET /repos/{o}/{r}/installation` (App JWT) |
//! | `runner-groups` | `GET /orgs/{org}/actions/runner-groups` |
//! | `generate-jitconfig` | `POST /orgs/{org}/actions/runners/generate-jitconfig`, repo alike |
//! | `list-runners` | `GET /orgs/{org}/actions/runners`, repo alike |
//! | `get-runner` | `GET /orgs/{org}/actions/runners/{id}`, repo alike |
//! | `delete-runner` | `DELETE /orgs/{org}/actions/runners/{id}`, repo alike |
//! | `get-job` | `GET /repos/{o}/{r}/actions/jobs/{id}` |
//! | `list-deliveries` | `GET /app/hook/deliveries` (App JWT), `GET /orgs/{org}/hooks/{id}/deliveries`, repo alike (cursor paging) |
//! | `get-delivery` | `GET /app/hook/deliveries/{delivery_id}`, org and repo hooks alike |
//! | `redeliver` | `POST /app/hook/deliveries/{delivery_id}/attempts`, org and repo hooks alike (re-POSTs before answering 202) |
//! | `list-installations` | `GET /app/installations` (App JWT; each with the App's events and permissions, or its own permissions) |
//! | `installation` | also `GET /users/{user}/installation` (App JWT) |
//! | `installation-repositories` | `GET /installation/repositories` (installation token) |
//! | `get-repository` | `GET /repos/{o}/{r}` |
//! | `owner-repositories` | `GET /orgs/{org}/repos`, `GET /users/{user}/repos` |
//! | `list-runs` | `GET /repos/{o}/{r}/actions/runs` (`status` filter) |
//! | `list-run-jobs` | `GET /repos/{o}/{r}/actions/runs/{run_id}/jobs` (`filter=latest|all`) |
//! | `get-run` | `GET /repos/{o}/{r}/actions/runs/{run_id}` (its latest attempt) |
//! | `rerun-job` | `POST /repos/{o}/{r}/actions/jobs/{id}/rerun`: 403 while the run is not completed; else the run's next attempt gets the job under a new id, `queued`, and its `workflow_job` `queued` webhook is delivered before the 201 |
//! | `get-release` | `GET /repos/{o}/{r}/releases/latest`, `GET /repos/{o}/{r}/releases/tags/{tag}` (public: no credentials checked) |
//! | `download-asset` | `GET /{o}/{r}/releases/download/{tag}/{name}` (a release's `browser_download_url`): 302 to `asset-object` |
//! | `asset-object` | `GET /_objects/{id}`: the asset's bytes (`releases.rs`) |
//! | `new-app` | `POST /settings/apps/new`, `POST /organizations/{org}/settings/apps/new` (the manifest flow's web form, at the server's root even under a prefix, no credentials): `302` to the manifest's `redirect_url` with `code` and `state`, or an HTML `422` (`app.rs`) |
//! | `manifest-conversion` | `POST /app-manifests/{code}/conversions` (no credentials): `201` with the App, `pem`, `webhook_secret`…; a code works once, for an hour |
//! | `get-app` | `GET /app` (App JWT) |
//! | `hook-config` | `GET /app/hook/config`, `PATCH /app/hook/config` (App JWT; the secret masked) |
//! | (not counted) | `POST /_fake/runners/{name}/acquire`, `POST /_fake/runners/{name}/complete`: a runner takes the oldest queued job that fits it and finishes it (test hooks, no credentials; `dispatch.rs`, [`FakeGitHub::queue_job`]) |
//!
//! The App (`app.rs`): one, [`APP_ID`]; created from a manifest (the web form,
//! then the code's conversion) it takes the manifest's name, owner,
//! permissions, events and hook; installations show its permissions and
//! events unless a test gave one its own ([`FakeGitHub::set_installation_permissions`]).
//!
//! Webhooks ([`FakeGitHub::set_webhook`], [`FakeGitHub::deliver`]): the fake POSTs
//! signed payloads the way GitHub does, records every attempt in the hook's
//! delivery log, and redelivers only when asked to (`…/attempts`). Every answer
//! carries `x-ratelimit-*` headers; every authenticated call spends one of the
//! window's calls (15 000 an hour by default, [`FakeGitHub::set_rate_limit`]).
//!
//! It checks what GitHub checks: App JWTs (RS256 with the test key in
//! `testdata/github/`, `iss`, a lifetime of at most 10 minutes, a `jti` never
//! seen before), installation tokens (unexpired, and only for their
//! installation's account) or the configured PAT; JIT bodies (name ≤ 64
//! characters without `" / : < > \ | * ?`, 1 to 100 labels, an integer
//! `runner_group_id` of an existing group → 422; a taken name → 409). Lists honour
//! `per_page` and `page` and send `Link` headers. Tests can make the next N calls
//! of an endpoint fail with any status, headers and body ([`FakeGitHub::fail_next`]).
//!
//! Like GitHub, the fake keeps time by the wall clock (tokens' expiry, rate-limit
//! windows, `created_at`, deliveries): a test that drives the handlers against it
//! passes them the wall clock too, and an age it sets up (a release published
//! N days ago) is counted back from the wall clock (`spotrunner_core::clock`).

// Handlers return early with an axum `Response` as the error; size does not matter here.
#![allow(clippy::result_large_err)]

mod actions;
mod app;
mod dispatch;
mod hooks;
mod manifest;
mod releases;

pub use actions::FakeWorkflowJob;
pub use app::{FakeAppHook, MASKED_SECRET, WEB_USER};
pub use dispatch::{FakeAssignment, dispatch_runner_script};
pub use hooks::{APP_HOOK_ID, FakeDelivery};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Serialize;
use serde_json::{Value, json};
use spotrunner_core::ports::RunnerScope;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The App id the fake expects as the JWT `iss`.
pub const APP_ID: &str = "123456";
/// TEST-ONLY private key of the fake's App (PKCS#1 PEM).
pub const APP_PRIVATE_KEY_PEM: &str = include_str!("../../../testdata/github/test-app-key.pem");
/// Its public key, with which the fake verifies JWTs.
pub const APP_PUBLIC_KEY_PEM: &str = include_str!("../../../testdata/github/test-app-key.pub.pem");
/// A TEST-ONLY key that is not the App's (JWTs signed with it are refused).
pub const OTHER_PRIVATE_KEY_PEM: &str = include_str!("../../../testdata/github/test-other-key.pem");

/// Endpoint names, as counted by [`FakeGitHub::calls`].
pub mod endpoint {
    pub const ACCESS_TOKENS: &str = "access_tokens";
    pub const INSTALLATION: &str = "installation";
    pub const RUNNER_GROUPS: &str = "runner-groups";
    pub const GENERATE_JITCONFIG: &str = "generate-jitconfig";
    pub const LIST_RUNNERS: &str = "list-runners";
    pub const GET_RUNNER: &str = "get-runner";
    pub const DELETE_RUNNER: &str = "delete-runner";
    pub const GET_JOB: &str = "get-job";
    pub const LIST_DELIVERIES: &str = "list-deliveries";
    pub const GET_DELIVERY: &str = "get-delivery";
    pub const REDELIVER: &str = "redeliver";
    pub const LIST_INSTALLATIONS: &str = "list-installations";
    pub const INSTALLATION_REPOSITORIES: &str = "installation-repositories";
    pub const GET_REPOSITORY: &str = "get-repository";
    pub const OWNER_REPOSITORIES: &str = "owner-repositories";
    pub const LIST_RUNS: &str = "list-runs";
    pub const LIST_RUN_JOBS: &str = "list-run-jobs";
    pub const GET_RUN: &str = "get-run";
    pub const RERUN_JOB: &str = "rerun-job";
    pub const GET_RELEASE: &str = "get-release";
    pub const DOWNLOAD_ASSET: &str = "download-asset";
    pub const ASSET_OBJECT: &str = "asset-object";
    pub const NEW_APP: &str = "new-app";
    pub const MANIFEST_CONVERSION: &str = "manifest-conversion";
    pub const GET_APP: &str = "get-app";
    pub const HOOK_CONFIG: &str = "hook-config";
}

/// A runner registered with the fake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FakeRunner {
    pub id: u64,
    pub name: String,
    #[serde(skip)]
    pub scope: RunnerScope,
    pub status: String,
    pub busy: bool,
    pub labels: Vec<String>,
    pub runner_group_id: u64,
    #[serde(skip)]
    pub work_folder: String,
}

/// A workflow job known to the fake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FakeJob {
    pub id: u64,
    pub status: String,
    pub conclusion: Option<String>,
    pub runner_name: Option<String>,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub endpoint: &'static str,
    pub method: String,
    /// Path without the prefix, e.g. `/orgs/o/actions/runners`.
    pub path: String,
    pub query: Option<String>,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
}

/// An injected failure: the status, headers and JSON body to answer with.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Failure {
    pub fn new(status: u16, message: &str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: json!({ "message": message, "documentation_url": "https://docs.github.com/rest" }),
        }
    }
    pub fn header(mut self, name: &str, value: impl ToString) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    /// A primary rate-limit answer: 403, remaining 0, reset at `reset_epoch`.
    pub fn rate_limited(reset_epoch: u64) -> Self {
        Self::new(403, "API rate limit exceeded for installation ID 1.")
            .header("x-ratelimit-limit", 5000)
            .header("x-ratelimit-remaining", 0)
            .header("x-ratelimit-used", 5000)
            .header("x-ratelimit-reset", reset_epoch)
    }
    /// A secondary rate-limit answer without any rate-limit header.
    pub fn secondary_rate_limited() -> Self {
        Self::new(
            403,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        )
    }
}

struct Installation {
    id: u64,
    scope: RunnerScope,
}

struct TokenInfo {
    installation: u64,
    expires_at: SystemTime,
}

struct State {
    base_url: String,
    /// The root, without the prefix (GitHub's web UI).
    web_url: String,
    prefix: String,
    /// The App: name, owner, permissions, events, manifest codes (app.rs).
    app: app::App,
    installations: Vec<Installation>,
    tokens: HashMap<String, TokenInfo>,
    tokens_minted: usize,
    token_ttl: Duration,
    /// Every credential handed out (installation tokens, JIT configs), so that
    /// tests can look for them where they must never be.
    issued_secrets: Vec<String>,
    jtis: HashSet<String>,
    pat: Option<String>,
    groups: HashMap<String, Vec<(u64, String)>>,
    /// (org, group name), lowercase: groups that allow public repositories.
    public_groups: std::collections::HashSet<(String, String)>,
    next_group_id: u64,
    runners: Vec<FakeRunner>,
    next_runner_id: u64,
    /// One record per workflow job: what `set_job` sets plus its run and labels.
    jobs: HashMap<(String, u64), actions::JobRecord>,
    /// Jobs re-run (`rerun-job` accepted), in order: (repository, job id).
    reruns: Vec<(String, u64)>,
    repos: actions::Repos,
    hooks: hooks::Hooks,
    /// GitHub's dispatch of queued jobs to runners (dispatch.rs).
    dispatch: dispatch::Dispatch,
    rate: actions::RateLimit,
    calls: HashMap<&'static str, usize>,
    failures: HashMap<&'static str, VecDeque<Failure>>,
    requests: Vec<RecordedRequest>,
    releases: releases::Releases,
    link_headers: bool,
    latency: Duration,
    in_flight: usize,
    max_in_flight: usize,
}

/// A running fake GitHub; the server stops when this is dropped.
pub struct FakeGitHub {
    state: Arc<Mutex<State>>,
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// 16 hex digits that differ on every call (secrets must be unique to be found).
fn nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(epoch_nanos());
    format!("{:016x}", h.finish())
}

fn epoch_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn scope_key(scope: &RunnerScope) -> String {
    match scope {
        RunnerScope::Org { org } => format!("orgs/{}", org.to_ascii_lowercase()),
        RunnerScope::Repo { owner, repo } => format!(
            "repos/{}/{}",
            owner.to_ascii_lowercase(),
            repo.to_ascii_lowercase()
        ),
    }
}

fn same_scope(a: &RunnerScope, b: &RunnerScope) -> bool {
    scope_key(a) == scope_key(b)
}

impl FakeGitHub {
    /// Serve at the root, like `https://api.github.com`.
    pub async fn start() -> FakeGitHub {
        Self::start_with_prefix("").await
    }

    /// Serve under `prefix` (e.g. `/api/v3`, like GitHub Enterprise Server);
    /// requests outside it answer 404.
    pub async fn start_with_prefix(prefix: &str) -> FakeGitHub {
        let prefix = prefix.trim_end_matches('/').to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let web_url = format!("http://{addr}");
        let url = format!("{web_url}{prefix}");
        let state = Arc::new(Mutex::new(State {
            base_url: url.clone(),
            app: app::App::new(&web_url),
            web_url,
            prefix,
            installations: Vec::new(),
            tokens: HashMap::new(),
            tokens_minted: 0,
            issued_secrets: Vec::new(),
            token_ttl: Duration::from_secs(3600),
            jtis: HashSet::new(),
            pat: None,
            groups: HashMap::new(),
            public_groups: Default::default(),
            next_group_id: 2,
            runners: Vec::new(),
            next_runner_id: 1,
            jobs: HashMap::new(),
            reruns: Vec::new(),
            repos: actions::Repos::default(),
            hooks: hooks::Hooks::default(),
            dispatch: dispatch::Dispatch::default(),
            rate: actions::RateLimit::default(),
            calls: HashMap::new(),
            failures: HashMap::new(),
            requests: Vec::new(),
            releases: releases::Releases::default(),
            link_headers: true,
            latency: Duration::ZERO,
            in_flight: 0,
            max_in_flight: 0,
        }));
        let st = state.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let st = st.clone();
                async move {
                    let latency = {
                        let mut s = st.lock().unwrap();
                        s.in_flight += 1;
                        s.max_in_flight = s.max_in_flight.max(s.in_flight);
                        s.latency
                    };
                    if !latency.is_zero() {
                        tokio::time::sleep(latency).await;
                    }
                    let mut resp = handle(&st, method, uri, headers, body);
                    hooks::after(&st, &mut resp).await;
                    let mut s = st.lock().unwrap();
                    actions::stamp_rate_limit(&mut s, &mut resp);
                    s.in_flight -= 1;
                    resp
                }
            },
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGitHub { state, url, task }
    }

    /// The API base URL (with the prefix, without a trailing slash).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Install the App on `scope`; returns the installation id.
    pub fn add_installation(&self, scope: RunnerScope) -> u64 {
        let mut s = self.st();
        let id = 1000 + s.installations.len() as u64 + 1;
        s.installations.push(Installation { id, scope });
        id
    }

    /// Accept `token` as a personal access token (valid for every scope).
    pub fn set_pat(&self, token: &str) {
        self.st().pat = Some(token.to_string());
    }

    /// Lifetime of the installation tokens minted from now on (default 1 h).
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.st().token_ttl = ttl;
    }

    /// How many installation tokens were minted.
    pub fn tokens_minted(&self) -> usize {
        self.st().tokens_minted
    }

    /// How many distinct App JWTs (by `jti`) were accepted.
    pub fn jwts_seen(&self) -> usize {
        self.st().jtis.len()
    }

    /// Turn GitHub's "Allow public repositories" on (or off) for runner group
    /// `name` of `org` (`Default` included); every group starts with it off.
    pub fn set_runner_group_allows_public(&self, org: &str, name: &str, allows: bool) {
        let mut s = self.st();
        let key = (org.to_ascii_lowercase(), name.to_ascii_lowercase());
        if allows {
            s.public_groups.insert(key);
        } else {
            s.public_groups.remove(&key);
        }
    }

    /// Add a runner group to `org` (every org also has `Default`, id 1).
    pub fn add_runner_group(&self, org: &str, name: &str) -> u64 {
        let mut s = self.st();
        let id = s.next_group_id;
        s.next_group_id += 1;
        s.groups
            .entry(org.to_ascii_lowercase())
            .or_default()
            .push((id, name.to_string()));
        id
    }

    /// Register a runner directly (as if it had existed before); returns its id.
    pub fn add_runner(&self, scope: RunnerScope, name: &str, status: &str, busy: bool) -> u64 {
        let mut s = self.st();
        let id = s.next_runner_id;
        s.next_runner_id += 1;
        s.runners.push(FakeRunner {
            id,
            name: name.to_string(),
            scope,
            status: status.to_string(),
            busy,
            labels: vec!["self-hosted".into()],
            runner_group_id: 1,
            work_folder: "_work".into(),
        });
        id
    }

    /// Every runner, in creation order.
    /// Change a registered runner's status and busy flag (as GitHub would when its
    /// machine goes away or takes a job).
    pub fn set_runner_status(&self, name: &str, status: &str, busy: bool) {
        let mut s = self.st();
        for r in s.runners.iter_mut().filter(|r| r.name == name) {
            r.status = status.to_string();
            r.busy = busy;
        }
    }

    pub fn runners(&self) -> Vec<FakeRunner> {
        self.st().runners.clone()
    }

    /// Every credential this server handed out, oldest first: installation
    /// access tokens and encoded JIT configs (each unique).
    pub fn issued_secrets(&self) -> Vec<String> {
        self.st().issued_secrets.clone()
    }

    /// Add (or replace) job `id` of repository `repo` (`owner/name`).
    pub fn add_job(&self, repo: &str, id: u64, status: &str) {
        self.set_job(
            repo,
            FakeJob {
                id,
                status: status.to_string(),
                conclusion: None,
                runner_name: None,
            },
        );
    }

    /// Add (or replace) a job with every field given. A job added with
    /// [`FakeGitHub::add_workflow_job`] keeps its run, attempt and labels.
    pub fn set_job(&self, repo: &str, job: FakeJob) {
        actions::upsert_job(&mut self.st().jobs, repo, job);
    }

    /// Calls received by `endpoint` (see [`endpoint`]), failed ones included.
    pub fn calls(&self, endpoint: &str) -> usize {
        self.st().calls.get(endpoint).copied().unwrap_or(0)
    }

    /// Calls received, by endpoint name (see [`endpoint`]), failed ones included.
    pub fn calls_by_endpoint(&self) -> std::collections::BTreeMap<&'static str, usize> {
        self.st().calls.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Calls received in all.
    pub fn total_calls(&self) -> usize {
        self.st().calls.values().sum()
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.st().requests.clone()
    }

    /// Send `Link` headers on lists (default true; false mimics a proxy that drops
    /// them, so clients must count pages).
    pub fn set_link_headers(&self, on: bool) {
        self.st().link_headers = on;
    }

    /// Delay every answer by `latency` (to observe concurrency).
    pub fn set_latency(&self, latency: Duration) {
        self.st().latency = latency;
    }

    /// The most requests ever in progress at once.
    pub fn max_in_flight(&self) -> usize {
        self.st().max_in_flight
    }

    /// The next `times` calls of `endpoint` answer `failure` (before any check).
    pub fn fail_next(&self, endpoint: &'static str, times: usize, failure: Failure) {
        let mut s = self.st();
        let q = s.failures.entry(endpoint).or_default();
        for _ in 0..times {
            q.push_back(failure.clone());
        }
    }
}

fn err(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest",
        })),
    )
        .into_response()
}

fn ok_json(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

/// An injected failure as an answer.
fn failure_response(f: Failure) -> Response {
    let mut resp = ok_json(
        StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        f.body,
    );
    for (k, v) in f.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::from_str(&v)) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

/// Count a call of `ep` and record its request; the injected failure to
/// answer with, if one is queued.
fn count_call(
    s: &mut State,
    ep: &'static str,
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Option<Response> {
    *s.calls.entry(ep).or_default() += 1;
    s.requests.push(RecordedRequest {
        endpoint: ep,
        method: method.to_string(),
        path: path.to_string(),
        query: query.map(str::to_string),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
    });
    let f = s.failures.get_mut(ep).and_then(VecDeque::pop_front)?;
    Some(failure_response(f))
}

/// A route served by `app.rs`, `hooks.rs` or `actions.rs`.
enum Ext {
    App(app::Route),
    Hook(hooks::Route),
    Actions(actions::Route),
}

impl Ext {
    fn endpoint(&self) -> &'static str {
        match self {
            Ext::App(r) => r.endpoint,
            Ext::Hook(r) => r.endpoint,
            Ext::Actions(r) => r.endpoint,
        }
    }
    /// Does it take an App JWT (rather than a PAT or an installation token)?
    fn jwt(&self) -> bool {
        match self {
            Ext::App(_) => true,
            Ext::Hook(r) => r.jwt(),
            Ext::Actions(r) => r.jwt(),
        }
    }
}

/// Who a request is from.
enum Caller {
    App,
    Installation(u64),
    Pat,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .or_else(|| v.strip_prefix("token "))
}

#[derive(serde::Deserialize)]
struct Claims {
    iat: u64,
    exp: u64,
    #[allow(dead_code)]
    iss: String,
    #[serde(default)]
    jti: Option<String>,
}

fn check_jwt(s: &mut State, token: &str) -> Result<Caller, Response> {
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(APP_PUBLIC_KEY_PEM.as_bytes())
        .expect("test public key");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_issuer(&[APP_ID]);
    v.set_required_spec_claims(&["exp", "iat", "iss"]);
    v.leeway = 0;
    let data = jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(|e| {
        err(
            StatusCode::UNAUTHORIZED,
            &format!("A JSON web token could not be decoded ({e})"),
        )
    })?;
    let c = data.claims;
    let now = epoch(SystemTime::now());
    if c.exp < c.iat || c.exp - c.iat > 600 {
        return Err(err(
            StatusCode::UNAUTHORIZED,
            "'Expiration time' claim ('exp') is too far in the future",
        ));
    }
    if c.iat > now + 60 {
        return Err(err(
            StatusCode::UNAUTHORIZED,
            "'Issued at' claim ('iat') must be an Integer representing a time in the past",
        ));
    }
    let Some(jti) = c.jti.filter(|j| !j.is_empty()) else {
        return Err(err(
            StatusCode::UNAUTHORIZED,
            "JWT has no 'jti' (fake GitHub insists)",
        ));
    };
    if !s.jtis.insert(jti) {
        return Err(err(StatusCode::UNAUTHORIZED, "JWT 'jti' was used before"));
    }
    Ok(Caller::App)
}

fn check_token(s: &State, token: &str) -> Result<Caller, Response> {
    if s.pat.as_deref() == Some(token) {
        return Ok(Caller::Pat);
    }
    match s.tokens.get(token) {
        Some(t) if t.expires_at > SystemTime::now() => Ok(Caller::Installation(t.installation)),
        _ => Err(err(StatusCode::UNAUTHORIZED, "Bad credentials")),
    }
}

/// May `caller` act on `scope`?
fn allowed(s: &State, caller: &Caller, scope: &RunnerScope) -> bool {
    match caller {
        Caller::Pat => true,
        Caller::App => false,
        Caller::Installation(id) => s.installations.iter().any(|i| {
            i.id == *id
                && match (&i.scope, scope) {
                    (RunnerScope::Org { org }, RunnerScope::Org { org: o }) => {
                        org.eq_ignore_ascii_case(o)
                    }
                    (RunnerScope::Org { org }, RunnerScope::Repo { owner, .. }) => {
                        org.eq_ignore_ascii_case(owner)
                    }
                    (RunnerScope::Repo { .. }, RunnerScope::Repo { .. }) => {
                        same_scope(&i.scope, scope)
                    }
                    (RunnerScope::Repo { .. }, RunnerScope::Org { .. }) => false,
                }
        }),
    }
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// One page of `items` plus the `Link` header GitHub would send.
fn paginate<T: Clone>(
    s: &State,
    path: &str,
    query: Option<&str>,
    items: &[T],
) -> Result<(Vec<T>, Option<String>), Response> {
    let per_page = match query_param(query, "per_page") {
        Some(p) => p
            .parse::<usize>()
            .map_err(|_| {
                err(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "per_page must be an integer",
                )
            })?
            .clamp(1, 100),
        None => 30,
    };
    let page = match query_param(query, "page") {
        Some(p) => p
            .parse::<usize>()
            .map_err(|_| err(StatusCode::UNPROCESSABLE_ENTITY, "page must be an integer"))?
            .max(1),
        None => 1,
    };
    let last = items.len().div_ceil(per_page).max(1);
    let start = (page - 1) * per_page;
    let slice = items.iter().skip(start).take(per_page).cloned().collect();
    let link_to = |p: usize, rel: &str| {
        format!(
            "<{}{path}?per_page={per_page}&page={p}>; rel=\"{rel}\"",
            s.base_url
        )
    };
    let mut links = Vec::new();
    if page < last {
        links.push(link_to(page + 1, "next"));
        links.push(link_to(last, "last"));
    }
    if page > 1 {
        links.push(link_to(1, "first"));
        links.push(link_to(page - 1, "prev"));
    }
    let link = (s.link_headers && !links.is_empty()).then(|| links.join(", "));
    Ok((slice, link))
}

fn with_link(mut resp: Response, link: Option<String>) -> Response {
    if let Some(l) = link
        && let Ok(v) = HeaderValue::from_str(&l)
    {
        resp.headers_mut().insert("link", v);
    }
    resp
}

fn runner_json(r: &FakeRunner) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "os": "linux",
        "status": r.status,
        "busy": r.busy,
        "runner_group_id": r.runner_group_id,
        "labels": r.labels.iter().enumerate().map(|(i, l)| json!({
            "id": i + 1, "name": l, "type": if l == "self-hosted" { "read-only" } else { "custom" }
        })).collect::<Vec<_>>(),
    })
}

const FORBIDDEN: &[char] = &['"', '/', ':', '<', '>', '\\', '|', '*', '?'];

fn handle(
    st: &Mutex<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = st.lock().unwrap();
    let m = method.as_str();
    // GitHub's web UI (the manifest flow's form) is at the root (app.rs).
    if let Some(resp) = app::web(&mut s, m, uri.path(), uri.query(), &headers, &body) {
        return resp;
    }
    let Some(path) = uri
        .path()
        .strip_prefix(s.prefix.as_str())
        .map(str::to_string)
    else {
        return err(StatusCode::NOT_FOUND, "Not Found");
    };
    let query = uri.query().map(str::to_string);
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();

    // The runner side of GitHub's dispatch: test hooks, no credentials (dispatch.rs).
    if let Some(resp) = dispatch::serve(&mut s, m, &segs, &body) {
        return resp;
    }
    // A manifest code's conversion takes no credentials (app.rs).
    if let Some((ep, code)) = app::public_route(m, &segs) {
        if let Some(failure) = count_call(&mut s, ep, m, &path, query.as_deref(), &headers) {
            return failure;
        }
        return app::convert(&mut s, &code);
    }
    // Releases and their downloads are public (releases.rs).
    if let Some((ep, resp)) = releases::serve(&mut s, m, &segs) {
        *s.calls.entry(ep).or_default() += 1;
        if let Some(f) = s.failures.get_mut(ep).and_then(VecDeque::pop_front) {
            return ok_json(
                StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                f.body,
            );
        }
        return resp;
    }
    // Route: (endpoint name, scope the call acts on, id in the path).
    let scope_of = |segs: &[&str]| -> Option<(RunnerScope, usize)> {
        match segs {
            ["orgs", org, ..] => Some((
                RunnerScope::Org {
                    org: org.to_string(),
                },
                2,
            )),
            ["repos", owner, repo, ..] => Some((
                RunnerScope::Repo {
                    owner: owner.to_string(),
                    repo: repo.to_string(),
                },
                3,
            )),
            _ => None,
        }
    };
    let route: Option<(&'static str, Option<RunnerScope>, Option<u64>)> = match (m, segs.as_slice())
    {
        ("POST", ["app", "installations", id, "access_tokens"]) => {
            Some((endpoint::ACCESS_TOKENS, None, id.parse().ok()))
        }
        _ => scope_of(&segs).and_then(|(scope, n)| {
            let rest = &segs[n..];
            let e = match (m, rest) {
                ("GET", ["installation"]) => (endpoint::INSTALLATION, None),
                ("GET", ["actions", "runner-groups"])
                    if matches!(scope, RunnerScope::Org { .. }) =>
                {
                    (endpoint::RUNNER_GROUPS, None)
                }
                ("POST", ["actions", "runners", "generate-jitconfig"]) => {
                    (endpoint::GENERATE_JITCONFIG, None)
                }
                ("GET", ["actions", "runners"]) => (endpoint::LIST_RUNNERS, None),
                ("GET", ["actions", "runners", id]) => {
                    (endpoint::GET_RUNNER, Some(id.parse().ok()?))
                }
                ("DELETE", ["actions", "runners", id]) => {
                    (endpoint::DELETE_RUNNER, Some(id.parse().ok()?))
                }
                ("GET", ["actions", "jobs", id]) if matches!(scope, RunnerScope::Repo { .. }) => {
                    (endpoint::GET_JOB, Some(id.parse().ok()?))
                }
                _ => return None,
            };
            Some((e.0, Some(scope), e.1))
        }),
    };
    // Then the App (app.rs), the webhook endpoints (hooks.rs) and repositories
    // and workflow runs (actions.rs).
    let ext = match route {
        Some(_) => None,
        None => app::route(m, &segs)
            .map(Ext::App)
            .or_else(|| hooks::route(m, &segs).map(Ext::Hook))
            .or_else(|| actions::route(m, &segs).map(Ext::Actions)),
    };
    let Some((ep, scope, id)) = route.or_else(|| ext.as_ref().map(|e| (e.endpoint(), None, None)))
    else {
        return err(StatusCode::NOT_FOUND, "Not Found");
    };
    *s.calls.entry(ep).or_default() += 1;
    s.requests.push(RecordedRequest {
        endpoint: ep,
        method: m.to_string(),
        path: path.clone(),
        query: query.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
    });
    // A user is not an organisation: GitHub answers 404 to `/orgs/{user}/…`.
    if let ["orgs", login, ..] = segs.as_slice()
        && actions::account_type(&s, login) == "User"
    {
        return err(StatusCode::NOT_FOUND, "Not Found");
    }
    if let Some(f) = s.failures.get_mut(ep).and_then(VecDeque::pop_front) {
        return failure_response(f);
    }

    // Auth.
    let Some(token) = bearer(&headers).map(str::to_string) else {
        return err(StatusCode::UNAUTHORIZED, "Requires authentication");
    };
    let jwt_endpoint = ep == endpoint::ACCESS_TOKENS
        || ep == endpoint::INSTALLATION
        || ext.as_ref().is_some_and(Ext::jwt);
    let caller = if jwt_endpoint {
        check_jwt(&mut s, &token)
    } else {
        check_token(&s, &token)
    };
    let caller = match caller {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = actions::spend_rate_limit(&mut s, &caller) {
        return r;
    }
    match ext {
        Some(Ext::App(r)) => return app::handle(&mut s, r, &body),
        Some(Ext::Hook(r)) => return hooks::handle(&mut s, r, &caller, &path, query.as_deref()),
        Some(Ext::Actions(r)) => {
            return actions::handle(&mut s, r, &caller, &path, query.as_deref());
        }
        None => {}
    }

    match ep {
        endpoint::ACCESS_TOKENS => {
            let id = id.unwrap_or(0);
            if !s.installations.iter().any(|i| i.id == id) {
                return err(StatusCode::NOT_FOUND, "Not Found");
            }
            s.tokens_minted += 1;
            let token = format!("ghs_fake{:06}{}", s.tokens_minted, nonce());
            s.issued_secrets.push(token.clone());
            let expires_at = SystemTime::now() + s.token_ttl;
            s.tokens.insert(
                token.clone(),
                TokenInfo {
                    installation: id,
                    expires_at,
                },
            );
            let exp: chrono::DateTime<chrono::Utc> = expires_at.into();
            ok_json(
                StatusCode::CREATED,
                json!({
                    "token": token,
                    "expires_at": exp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "permissions": app::installation_permissions(&s, id),
                    "repository_selection": "all",
                }),
            )
        }
        endpoint::INSTALLATION => {
            let scope = scope.expect("scoped");
            // A user's installation is at /users/{user}/installation only.
            if let RunnerScope::Org { org } = &scope
                && actions::is_user(&s, org)
            {
                return err(StatusCode::NOT_FOUND, "Not Found");
            }
            let found = s
                .installations
                .iter()
                .find(|i| match (&i.scope, &scope) {
                    (RunnerScope::Org { org }, RunnerScope::Repo { owner, .. }) => {
                        org.eq_ignore_ascii_case(owner)
                    }
                    _ => same_scope(&i.scope, &scope),
                })
                .map(|i| i.id)
                .or_else(|| actions::registered_installation(&s, &scope));
            match found {
                Some(id) => ok_json(
                    StatusCode::OK,
                    json!({ "id": id, "app_id": APP_ID.parse::<u64>().unwrap_or(0) }),
                ),
                None => err(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        _ => {
            let scope = scope.expect("scoped");
            if !allowed(&s, &caller, &scope) {
                return err(
                    StatusCode::FORBIDDEN,
                    "Resource not accessible by integration",
                );
            }
            scoped(&mut s, ep, &scope, id, &path, query.as_deref(), &body)
        }
    }
}

fn scoped(
    s: &mut State,
    ep: &str,
    scope: &RunnerScope,
    id: Option<u64>,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Response {
    match ep {
        endpoint::RUNNER_GROUPS => {
            let RunnerScope::Org { org } = scope else {
                return err(StatusCode::NOT_FOUND, "Not Found");
            };
            let mut groups = vec![(1, "Default".to_string())];
            groups.extend(
                s.groups
                    .get(&org.to_ascii_lowercase())
                    .cloned()
                    .unwrap_or_default(),
            );
            let total = groups.len();
            let (page, link) = match paginate(s, path, query, &groups) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let list: Vec<Value> = page
                .iter()
                .map(|(id, name)| {
                    let public = s
                        .public_groups
                        .contains(&(org.to_ascii_lowercase(), name.to_ascii_lowercase()));
                    json!({
                        "id": id, "name": name, "visibility": "all", "default": *id == 1,
                        "allows_public_repositories": public,
                    })
                })
                .collect();
            with_link(
                ok_json(
                    StatusCode::OK,
                    json!({ "total_count": total, "runner_groups": list }),
                ),
                link,
            )
        }
        endpoint::GENERATE_JITCONFIG => generate_jitconfig(s, scope, body),
        endpoint::LIST_RUNNERS => {
            let mine: Vec<FakeRunner> = s
                .runners
                .iter()
                .filter(|r| same_scope(&r.scope, scope))
                .cloned()
                .collect();
            let total = mine.len();
            let (page, link) = match paginate(s, path, query, &mine) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let list: Vec<Value> = page.iter().map(runner_json).collect();
            with_link(
                ok_json(
                    StatusCode::OK,
                    json!({ "total_count": total, "runners": list }),
                ),
                link,
            )
        }
        endpoint::GET_RUNNER => {
            match s
                .runners
                .iter()
                .find(|r| Some(r.id) == id && same_scope(&r.scope, scope))
            {
                Some(r) => ok_json(StatusCode::OK, runner_json(r)),
                None => err(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        endpoint::DELETE_RUNNER => {
            let Some(pos) = s
                .runners
                .iter()
                .position(|r| Some(r.id) == id && same_scope(&r.scope, scope))
            else {
                return err(StatusCode::NOT_FOUND, "Not Found");
            };
            if s.runners[pos].busy {
                return err(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!(
                        "Bad request - Runner \"{}\" is still running a job\"",
                        s.runners[pos].name
                    ),
                );
            }
            s.runners.remove(pos);
            StatusCode::NO_CONTENT.into_response()
        }
        endpoint::GET_JOB => {
            let RunnerScope::Repo { owner, repo } = scope else {
                return err(StatusCode::NOT_FOUND, "Not Found");
            };
            let key = (
                format!("{owner}/{repo}").to_ascii_lowercase(),
                id.unwrap_or(0),
            );
            match s.jobs.get(&key) {
                Some(j) => ok_json(StatusCode::OK, actions::job_json(&s.base_url, &key.0, j)),
                None => err(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        _ => err(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn invalid(message: String) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({
            "message": "Invalid request.",
            "errors": [message],
            "documentation_url": "https://docs.github.com/rest/actions/self-hosted-runners",
        })),
    )
        .into_response()
}

fn generate_jitconfig(s: &mut State, scope: &RunnerScope, body: &[u8]) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return err(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let Some(name) = v.get("name").and_then(Value::as_str) else {
        return invalid("\"name\" wasn't supplied.".into());
    };
    if name.is_empty() || name.chars().count() > 64 {
        return invalid(format!(
            "{name:?} is not a valid runner name: 1 to 64 characters"
        ));
    }
    if let Some(c) = name.chars().find(|c| FORBIDDEN.contains(c)) {
        return invalid(format!(
            "{name:?} is not a valid runner name: contains {c:?}"
        ));
    }
    let Some(group) = v.get("runner_group_id").and_then(Value::as_u64) else {
        return invalid("For 'properties/runner_group_id', it is not an integer.".into());
    };
    let Some(labels) = v.get("labels").and_then(Value::as_array) else {
        return invalid("\"labels\" wasn't supplied.".into());
    };
    if labels.is_empty() || labels.len() > 100 {
        return invalid(format!(
            "For 'properties/labels', {} items is not between 1 and 100.",
            labels.len()
        ));
    }
    let Some(labels) = labels
        .iter()
        .map(|l| l.as_str().map(str::to_string))
        .collect::<Option<Vec<String>>>()
    else {
        return invalid("For 'items', labels must be strings.".into());
    };
    let work_folder = match v.get("work_folder") {
        None => "_work".to_string(),
        Some(Value::String(w)) => w.clone(),
        Some(_) => return invalid("For 'properties/work_folder', it is not a string.".into()),
    };
    let group_exists = match scope {
        RunnerScope::Org { org } => {
            group == 1
                || s.groups
                    .get(&org.to_ascii_lowercase())
                    .is_some_and(|g| g.iter().any(|(id, _)| *id == group))
        }
        RunnerScope::Repo { .. } => group == 1,
    };
    if !group_exists {
        return err(StatusCode::NOT_FOUND, "Runner group not found");
    }
    if s.runners
        .iter()
        .any(|r| same_scope(&r.scope, scope) && r.name.eq_ignore_ascii_case(name))
    {
        return err(
            StatusCode::CONFLICT,
            &format!("Already exists - A runner with the name {name} already exists."),
        );
    }
    let id = s.next_runner_id;
    s.next_runner_id += 1;
    let mut all_labels = vec!["self-hosted".to_string()];
    all_labels.extend(labels.into_iter().filter(|l| l != "self-hosted"));
    let runner = FakeRunner {
        id,
        name: name.to_string(),
        scope: scope.clone(),
        status: "offline".into(),
        busy: false,
        labels: all_labels,
        runner_group_id: group,
        work_folder,
    };
    let secret = json!({
        ".runner": { "AgentId": id, "AgentName": name },
        ".credentials": format!("fake-runner-credential-{}", nonce()),
    });
    let encoded = base64::engine::general_purpose::STANDARD.encode(secret.to_string());
    s.issued_secrets.push(encoded.clone());
    let resp = json!({ "runner": runner_json(&runner), "encoded_jit_config": encoded });
    s.runners.push(runner);
    ok_json(StatusCode::CREATED, resp)
}
