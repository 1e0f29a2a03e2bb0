//! The REST client: auth (App installation tokens or PAT), rate limits, paging.

use crate::config::{Auth, ClientConfig, Clock, SystemClock};
use crate::jwt::app_jwt;
use crate::ratelimit::{next_link, throttle_delay};
use async_trait::async_trait;
use jsonwebtoken::EncodingKey;
use reqwest::header::{ACCEPT, HeaderMap, LINK, USER_AGENT};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use spotrunner_core::names::{MAX_RUNNER_NAME, label_problem, name_part_problem};
use spotrunner_core::ports::{
    GitHubApi, GitHubJob, GitHubRun, GitHubRunner, GitHubTarget, JitConfig, JitRequest, PortError,
    RateLimitState, RerunAnswer, RunnerScope,
};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{OnceCell, Semaphore};

pub(crate) const SERVICE: &str = "github";
/// Installation tokens are renewed this long before GitHub's `expires_at`.
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// GitHub's REST API version we speak.
pub const API_VERSION: &str = "2022-11-28";
/// Page size for list calls (GitHub's maximum).
pub const PER_PAGE: usize = 100;
/// Safety stop for a list that never ends (100 000 items).
const MAX_PAGES: usize = 1000;
/// GitHub's maximum number of labels on a JIT runner.
pub const MAX_LABELS: usize = 100;
/// The id of every organisation's (and repository's) default runner group.
pub const DEFAULT_RUNNER_GROUP_ID: u64 = 1;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid GitHub API URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid GitHub App private key: {0}")]
    InvalidKey(String),
    #[error("invalid GitHub client setting: {0}")]
    Invalid(String),
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// Is a token expiring at `expires_at` still good to use at `now`?
pub fn token_is_fresh(expires_at: SystemTime, now: SystemTime) -> bool {
    expires_at > now + TOKEN_REFRESH_MARGIN
}

/// A GitHub REST client implementing [`GitHubApi`]. Cheap to clone; clones share
/// the token cache, the caches of installations and runner groups, the
/// concurrency bound and the rate-limit block.
#[derive(Clone)]
pub struct GitHubClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for GitHubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubClient")
            .field("api_url", &self.inner.base)
            .field(
                "auth",
                &match self.inner.creds {
                    Credentials::App { .. } => "app",
                    Credentials::Pat(_) => "pat",
                },
            )
            .finish_non_exhaustive()
    }
}

enum Credentials {
    Pat(String),
    App { app_id: String, key: EncodingKey },
}

#[derive(Clone)]
struct CachedToken {
    token: String,
    expires_at: SystemTime,
}

type TokenSlot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;
/// A value looked up once (concurrent askers wait for the one lookup).
type Lookup = Arc<OnceCell<u64>>;

struct Inner {
    http: reqwest::Client,
    /// The API base URL without a trailing slash.
    base: String,
    creds: Credentials,
    clock: Arc<dyn Clock>,
    permits: Semaphore,
    /// No call to GitHub before this instant (a rate limit told us so).
    blocked_until: Mutex<Option<SystemTime>>,
    tokens: Mutex<HashMap<u64, TokenSlot>>,
    installations: Mutex<HashMap<RunnerScope, Lookup>>,
    /// (org, group name), both lower-cased.
    groups: Mutex<HashMap<(String, String), Lookup>>,
    /// `x-ratelimit-remaining` / `-limit` of the last answer that had them.
    rate: Mutex<Option<RateLimitState>>,
    /// Owners (lower-cased) known to be users, not organisations (`repos.rs`).
    user_owners: Mutex<HashSet<String>>,
}

/// One HTTP answer, read whole.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, PortError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            PortError::unavailable(SERVICE, format!("unexpected answer for {what}: {e}"))
        })
    }
}

/// GitHub's error text: `message` plus the details of `errors`, if any.
fn github_message(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        let s = String::from_utf8_lossy(body);
        return s.chars().take(200).collect();
    };
    let mut msg = v
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(errs) = v.get("errors").and_then(Value::as_array) {
        let details: Vec<String> = errs
            .iter()
            .map(|e| match e {
                Value::String(s) => s.clone(),
                other => other
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| other.to_string()),
            })
            .collect();
        if !details.is_empty() {
            msg = format!("{msg} ({})", details.join("; "));
        }
    }
    msg
}

/// A path segment (org, owner, repo) we are willing to put into a URL.
pub(crate) fn segment<'a>(s: &'a str, what: &str) -> Result<&'a str, PortError> {
    let ok = !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(s)
    } else {
        Err(PortError::rejected(
            SERVICE,
            format!("invalid {what} name {s:?}"),
        ))
    }
}

/// `/orgs/{org}` or `/repos/{owner}/{repo}`.
fn scope_path(scope: &RunnerScope) -> Result<String, PortError> {
    Ok(match scope {
        RunnerScope::Org { org } => format!("/orgs/{}", segment(org, "organisation")?),
        RunnerScope::Repo { owner, repo } => format!(
            "/repos/{}/{}",
            segment(owner, "owner")?,
            segment(repo, "repository")?
        ),
    })
}

fn scope_text(scope: &RunnerScope) -> String {
    match scope {
        RunnerScope::Org { org } => format!("organisation {org}"),
        RunnerScope::Repo { owner, repo } => format!("repository {owner}/{repo}"),
    }
}

/// Check a JIT request against GitHub's rules before spending a call on it.
pub fn validate_jit_request(req: &JitRequest) -> Result<(), PortError> {
    let n = req.name.chars().count();
    if n > MAX_RUNNER_NAME {
        return Err(PortError::rejected(
            SERVICE,
            format!(
                "runner name {:?} is {n} characters long; GitHub allows at most {MAX_RUNNER_NAME}",
                req.name
            ),
        ));
    }
    if let Some(p) = name_part_problem(&req.name) {
        return Err(PortError::rejected(SERVICE, format!("runner name {p}")));
    }
    if req.labels.is_empty() || req.labels.len() > MAX_LABELS {
        return Err(PortError::rejected(
            SERVICE,
            format!(
                "runner {:?} has {} labels; GitHub needs 1 to {MAX_LABELS}",
                req.name,
                req.labels.len()
            ),
        ));
    }
    if let Some(p) = req.labels.iter().find_map(|l| label_problem(l)) {
        return Err(PortError::rejected(SERVICE, format!("runner label {p}")));
    }
    Ok(())
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: String,
    expires_at: String,
}

#[derive(Deserialize)]
struct IdAnswer {
    id: u64,
}

#[derive(Deserialize)]
struct GroupAnswer {
    id: u64,
    name: String,
    /// GitHub's switch "Allow public repositories" (off by default).
    #[serde(default)]
    allows_public_repositories: bool,
}

/// A runner group of an organisation, as the doctor reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerGroupInfo {
    pub id: u64,
    pub name: String,
    pub allows_public_repositories: bool,
}

#[derive(Deserialize)]
struct LabelAnswer {
    name: String,
}

#[derive(Deserialize)]
struct RunnerAnswer {
    id: u64,
    name: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    busy: bool,
    #[serde(default)]
    labels: Vec<LabelAnswer>,
}

impl From<RunnerAnswer> for GitHubRunner {
    fn from(r: RunnerAnswer) -> Self {
        GitHubRunner {
            id: r.id,
            name: r.name,
            status: r.status,
            busy: r.busy,
            labels: r.labels.into_iter().map(|l| l.name).collect(),
        }
    }
}

#[derive(Deserialize)]
struct JitAnswer {
    runner: IdAnswer,
    encoded_jit_config: String,
}

impl GitHubClient {
    /// A client on the real clock.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A client reading time from `clock` (tests move it instead of sleeping).
    pub fn with_clock(config: ClientConfig, clock: Arc<dyn Clock>) -> Result<Self, ClientError> {
        let base = config.api_url.trim().trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&base).map_err(|e| ClientError::InvalidUrl {
            url: config.api_url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
            return Err(ClientError::InvalidUrl {
                url: config.api_url.clone(),
                reason: "expected http(s)://HOST[/api/v3] without a query".into(),
            });
        }
        let creds = match config.auth {
            Auth::Pat { token } => {
                if token.trim().is_empty() {
                    return Err(ClientError::Invalid("empty personal access token".into()));
                }
                Credentials::Pat(token.trim().to_string())
            }
            Auth::App {
                app_id,
                private_key_pem,
            } => {
                if app_id.trim().is_empty() {
                    return Err(ClientError::Invalid("empty GitHub App id".into()));
                }
                let key = EncodingKey::from_rsa_pem(private_key_pem.as_bytes())
                    .map_err(|e| ClientError::InvalidKey(e.to_string()))?;
                Credentials::App {
                    app_id: app_id.trim().to_string(),
                    key,
                }
            }
        };
        let user_agent = if config.user_agent.trim().is_empty() {
            crate::config::DEFAULT_USER_AGENT.to_string()
        } else {
            config.user_agent
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            "application/vnd.github+json"
                .parse()
                .expect("static header"),
        );
        headers.insert(
            "x-github-api-version",
            API_VERSION.parse().expect("static header"),
        );
        headers.insert(
            USER_AGENT,
            user_agent
                .parse()
                .map_err(|_| ClientError::Invalid(format!("bad user agent {user_agent:?}")))?,
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                creds,
                clock,
                permits: Semaphore::new(config.max_concurrent_calls.max(1)),
                blocked_until: Mutex::new(None),
                tokens: Mutex::new(HashMap::new()),
                installations: Mutex::new(HashMap::new()),
                groups: Mutex::new(HashMap::new()),
                rate: Mutex::new(None),
                user_owners: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// The API base URL in use (no trailing slash).
    pub fn api_url(&self) -> &str {
        &self.inner.base
    }

    /// Until when this client refuses to call GitHub (a rate limit), if it does.
    pub fn blocked_until(&self) -> Option<SystemTime> {
        let until = *self.inner.blocked_until.lock().unwrap();
        until.filter(|u| *u > self.inner.clock.now())
    }

    fn check_blocked(&self) -> Result<(), PortError> {
        let now = self.inner.clock.now();
        match *self.inner.blocked_until.lock().unwrap() {
            Some(until) if until > now => Err(PortError::Throttled {
                service: SERVICE,
                retry_after: until.duration_since(now).unwrap_or_default(),
            }),
            _ => Ok(()),
        }
    }

    fn block_for(&self, d: Duration) {
        let until = self.inner.clock.now() + d;
        let mut g = self.inner.blocked_until.lock().unwrap();
        if g.is_none_or(|u| u < until) {
            *g = Some(until);
        }
    }

    /// One HTTP call. `url_or_path` is a path under the base URL, or a full URL
    /// (a `Link` target, already checked to be under the base URL).
    pub(crate) async fn send(
        &self,
        method: Method,
        url_or_path: &str,
        bearer: &str,
        body: Option<&Value>,
    ) -> Result<Reply, PortError> {
        let url = if url_or_path.starts_with('/') {
            format!("{}{url_or_path}", self.inner.base)
        } else {
            url_or_path.to_string()
        };
        let path = url
            .strip_prefix(&self.inner.base)
            .unwrap_or(&url)
            .to_string();
        self.check_blocked()?;
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| PortError::unavailable(SERVICE, "client is shutting down"))?;
        // A rate limit may have been hit while we waited for a permit.
        self.check_blocked()?;
        let mut rb = self
            .inner
            .http
            .request(method.clone(), &url)
            .bearer_auth(bearer);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let started = std::time::Instant::now();
        let resp = rb.send().await.map_err(|e| {
            tracing::warn!(%method, %path, error = %e, "github call failed");
            PortError::unavailable(SERVICE, format!("{method} {path}: {e}"))
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        self.record_rate_limit(&headers);
        let body = resp
            .bytes()
            .await
            .map_err(|e| PortError::unavailable(SERVICE, format!("{method} {path}: {e}")))?
            .to_vec();
        tracing::debug!(
            %method,
            %path,
            status = status.as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "github call"
        );
        let now = self.inner.clock.now();
        let message = if status.is_success() {
            String::new()
        } else {
            github_message(&body)
        };
        if let Some(d) = throttle_delay(status.as_u16(), &headers, &message, now) {
            self.block_for(d);
            tracing::warn!(
                %method,
                %path,
                status = status.as_u16(),
                retry_after_s = d.as_secs(),
                github_message = %message,
                "github rate limit: no calls until it resets"
            );
            return Err(PortError::Throttled {
                service: SERVICE,
                retry_after: d,
            });
        }
        if !status.is_success() {
            tracing::info!(%method, %path, status = status.as_u16(), github_message = %message, "github error");
        }
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// Remember the primary rate limit an answer reported (`x-ratelimit-*`).
    fn record_rate_limit(&self, headers: &HeaderMap) {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let (Some(remaining), Some(limit)) =
            (num("x-ratelimit-remaining"), num("x-ratelimit-limit"))
        {
            *self.inner.rate.lock().unwrap() = Some(RateLimitState { remaining, limit });
        }
    }

    /// The primary rate limit as of the last answer that reported it.
    pub(crate) fn last_rate_limit(&self) -> Option<RateLimitState> {
        *self.inner.rate.lock().unwrap()
    }

    /// The error for a non-success answer about `what`.
    pub(crate) fn error_for(&self, reply: &Reply, what: &str) -> PortError {
        let msg = github_message(&reply.body);
        let code = reply.status.as_u16();
        match code {
            401 => PortError::rejected(SERVICE, format!("bad credentials (401) for {what}: {msg}")),
            403 => PortError::rejected(SERVICE, format!("forbidden (403) for {what}: {msg}")),
            404 => PortError::NotFound {
                service: SERVICE,
                what: what.to_string(),
            },
            409 => PortError::Conflict {
                service: SERVICE,
                message: format!("{what}: {msg}"),
            },
            422 => PortError::rejected(SERVICE, format!("{what}: validation failed (422): {msg}")),
            500..=599 => PortError::unavailable(SERVICE, format!("{what}: {code} {msg}")),
            _ => PortError::rejected(SERVICE, format!("{what}: unexpected {code}: {msg}")),
        }
    }

    // ---- App auth -------------------------------------------------------------

    pub(crate) fn jwt(&self) -> Result<String, PortError> {
        match &self.inner.creds {
            Credentials::App { app_id, key } => app_jwt(app_id, key, self.inner.clock.now())
                .map_err(|e| PortError::rejected(SERVICE, format!("cannot sign App JWT: {e}"))),
            Credentials::Pat(_) => Err(PortError::rejected(
                SERVICE,
                "App JWT asked for with PAT credentials",
            )),
        }
    }

    async fn lookup_installation(&self, scope: &RunnerScope) -> Result<u64, PortError> {
        let path = format!("{}/installation", scope_path(scope)?);
        let what = format!("GitHub App installation on {}", scope_text(scope));
        let reply = self.send(Method::GET, &path, &self.jwt()?, None).await?;
        if !reply.status.is_success() {
            return Err(self.error_for(&reply, &what));
        }
        let id = reply.json::<IdAnswer>(&what)?.id;
        tracing::info!(scope = %scope_text(scope), installation_id = id, "found GitHub App installation");
        Ok(id)
    }

    /// The App installation on `scope` (looked up once, then cached).
    pub(crate) async fn installation_for(&self, scope: &RunnerScope) -> Result<u64, PortError> {
        let cell = self
            .inner
            .installations
            .lock()
            .unwrap()
            .entry(scope.clone())
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.lookup_installation(scope))
            .await
            .copied()
    }

    /// Remember the installation on `scope` (found without a lookup), unless known.
    pub(crate) fn remember_installation(&self, scope: RunnerScope, id: u64) {
        let cell = self
            .inner
            .installations
            .lock()
            .unwrap()
            .entry(scope)
            .or_default()
            .clone();
        let _ = cell.set(id);
    }

    /// Is `owner` known to be a user account (its `/orgs/…` answered 404)?
    pub(crate) fn known_user(&self, owner: &str) -> bool {
        let owner = owner.to_ascii_lowercase();
        self.inner.user_owners.lock().unwrap().contains(&owner)
    }

    pub(crate) fn remember_user(&self, owner: &str) {
        let owner = owner.to_ascii_lowercase();
        self.inner.user_owners.lock().unwrap().insert(owner);
    }

    /// Does this client use a GitHub App (rather than a PAT)?
    pub(crate) fn is_app(&self) -> bool {
        matches!(self.inner.creds, Credentials::App { .. })
    }

    async fn mint_token(&self, installation_id: u64) -> Result<CachedToken, PortError> {
        let path = format!("/app/installations/{installation_id}/access_tokens");
        let what = format!("access token for App installation {installation_id}");
        let reply = self.send(Method::POST, &path, &self.jwt()?, None).await?;
        if !reply.status.is_success() {
            return Err(self.error_for(&reply, &what));
        }
        let t: TokenAnswer = reply.json(&what)?;
        let expires_at = chrono::DateTime::parse_from_rfc3339(&t.expires_at)
            .map_err(|e| {
                PortError::unavailable(
                    SERVICE,
                    format!("{what}: bad expires_at {:?}: {e}", t.expires_at),
                )
            })?
            .with_timezone(&chrono::Utc);
        tracing::info!(installation_id, expires_at = %expires_at, "minted installation token");
        Ok(CachedToken {
            token: t.token,
            expires_at: expires_at.into(),
        })
    }

    /// A usable installation token: the cached one, or a new one when the cached
    /// one is within [`TOKEN_REFRESH_MARGIN`] of expiry. Concurrent callers for
    /// the same installation wait for one mint.
    async fn installation_token(&self, installation_id: u64) -> Result<String, PortError> {
        let slot = self
            .inner
            .tokens
            .lock()
            .unwrap()
            .entry(installation_id)
            .or_default()
            .clone();
        let mut guard = slot.lock().await;
        if let Some(t) = guard.as_ref()
            && token_is_fresh(t.expires_at, self.inner.clock.now())
        {
            return Ok(t.token.clone());
        }
        let t = self.mint_token(installation_id).await?;
        let token = t.token.clone();
        *guard = Some(t);
        Ok(token)
    }

    /// Drop a cached token GitHub refused (revoked, or the App lost access).
    async fn forget_token(&self, installation_id: u64, token: &str) {
        let slot = self
            .inner
            .tokens
            .lock()
            .unwrap()
            .get(&installation_id)
            .cloned();
        if let Some(slot) = slot {
            let mut g = slot.lock().await;
            if g.as_ref().is_some_and(|t| t.token == token) {
                *g = None;
            }
        }
    }

    /// The bearer for calls on `target`, and the installation it belongs to.
    async fn bearer_for(&self, target: &GitHubTarget) -> Result<(String, Option<u64>), PortError> {
        match &self.inner.creds {
            Credentials::Pat(t) => Ok((t.clone(), None)),
            Credentials::App { .. } => {
                let (id, looked_up) = match target.installation_id {
                    Some(id) => (id, false),
                    None => (self.installation_for(&target.scope).await?, true),
                };
                match self.installation_token(id).await {
                    Ok(t) => Ok((t, Some(id))),
                    Err(e @ PortError::NotFound { .. }) if looked_up => {
                        // Uninstalled (and maybe reinstalled): look it up again next time.
                        self.inner
                            .installations
                            .lock()
                            .unwrap()
                            .remove(&target.scope);
                        Err(e)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// A call on `target`'s behalf; with App auth, a 401 (revoked token) drops the
    /// cached token and the call is tried once more with a fresh one.
    pub(crate) async fn authed(
        &self,
        target: &GitHubTarget,
        method: Method,
        url_or_path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, PortError> {
        let (bearer, installation) = self.bearer_for(target).await?;
        let reply = self
            .send(method.clone(), url_or_path, &bearer, body)
            .await?;
        match installation {
            Some(id) if reply.status == StatusCode::UNAUTHORIZED => {
                tracing::warn!(
                    installation_id = id,
                    "installation token refused; minting a new one"
                );
                self.forget_token(id, &bearer).await;
                let (bearer, _) = self.bearer_for(target).await?;
                self.send(method, url_or_path, &bearer, body).await
            }
            _ => Ok(reply),
        }
    }

    /// Every item of a paginated list: `GET path?per_page=100`, following
    /// `Link: rel="next"` until the last page (or, without a `Link` header,
    /// counting pages until a short page or `total_count` items). `field` names
    /// the array in each page.
    async fn get_all<T: DeserializeOwned>(
        &self,
        target: &GitHubTarget,
        path: &str,
        field: &str,
        what: &str,
    ) -> Result<Vec<T>, PortError> {
        let mut out = Vec::new();
        let mut page = 1;
        let mut url = format!("{path}?per_page={PER_PAGE}&page={page}");
        for _ in 0..MAX_PAGES {
            let reply = self.authed(target, Method::GET, &url, None).await?;
            if !reply.status.is_success() {
                return Err(self.error_for(&reply, what));
            }
            let mut v: Value = reply.json(what)?;
            let total = v.get("total_count").and_then(Value::as_u64);
            let items: Vec<T> = serde_json::from_value(v[field].take()).map_err(|e| {
                PortError::unavailable(SERVICE, format!("unexpected {what} page: {e}"))
            })?;
            let n = items.len();
            out.extend(items);
            let link = reply.headers.get(LINK).and_then(|l| l.to_str().ok());
            page += 1;
            match link {
                Some(link) => match next_link(link) {
                    Some(next) if next.starts_with(&format!("{}/", self.inner.base)) => {
                        url = next.to_string();
                    }
                    // A next page elsewhere (a proxy rewriting hosts): count pages.
                    Some(_) => url = format!("{path}?per_page={PER_PAGE}&page={page}"),
                    None => return Ok(out),
                },
                // No Link header: GitHub sends none when there is one page only.
                None if n < PER_PAGE || total.is_some_and(|t| out.len() as u64 >= t) => {
                    return Ok(out);
                }
                None => url = format!("{path}?per_page={PER_PAGE}&page={page}"),
            }
        }
        Err(PortError::unavailable(
            SERVICE,
            format!("{what}: more than {MAX_PAGES} pages"),
        ))
    }

    // ---- runner groups --------------------------------------------------------

    /// Every runner group of organisation `org` (`GET /orgs/{org}/actions/runner-groups`).
    pub async fn runner_groups(
        &self,
        target: &GitHubTarget,
        org: &str,
    ) -> Result<Vec<RunnerGroupInfo>, PortError> {
        let path = format!(
            "/orgs/{}/actions/runner-groups",
            segment(org, "organisation")?
        );
        let groups: Vec<GroupAnswer> = self
            .get_all(
                target,
                &path,
                "runner_groups",
                &format!("runner groups of organisation {org}"),
            )
            .await?;
        Ok(groups
            .into_iter()
            .map(|g| RunnerGroupInfo {
                id: g.id,
                name: g.name,
                allows_public_repositories: g.allows_public_repositories,
            })
            .collect())
    }

    async fn lookup_group(
        &self,
        target: &GitHubTarget,
        org: &str,
        name: &str,
    ) -> Result<u64, PortError> {
        let groups = self.runner_groups(target, org).await?;
        if let Some(g) = groups.iter().find(|g| g.name.eq_ignore_ascii_case(name)) {
            tracing::info!(org, group = name, id = g.id, "resolved runner group");
            return Ok(g.id);
        }
        let known: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        Err(PortError::rejected(
            SERVICE,
            format!(
                "runner group {name:?} does not exist in organisation {org} (it has: {})",
                known.join(", ")
            ),
        ))
    }

    /// The id of runner group `name` for `target` (looked up once, then cached).
    /// `Default` is id 1; repositories have no runner groups, so always 1.
    pub async fn runner_group_id(
        &self,
        target: &GitHubTarget,
        name: &str,
    ) -> Result<u64, PortError> {
        let name = name.trim();
        if name.is_empty() || name.eq_ignore_ascii_case("default") {
            return Ok(DEFAULT_RUNNER_GROUP_ID);
        }
        let org = match &target.scope {
            RunnerScope::Org { org } => org,
            RunnerScope::Repo { owner, repo } => {
                tracing::debug!(%owner, %repo, group = name, "repository runners use the default group");
                return Ok(DEFAULT_RUNNER_GROUP_ID);
            }
        };
        let key = (org.to_ascii_lowercase(), name.to_ascii_lowercase());
        let cell = self
            .inner
            .groups
            .lock()
            .unwrap()
            .entry(key)
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.lookup_group(target, org, name))
            .await
            .copied()
    }
}

/// `owner/repo` for a repository given as `owner/repo` or as a bare name in
/// the target's account, each part checked.
fn repo_path(target: &GitHubTarget, repository: &str) -> Result<String, PortError> {
    match repository.split_once('/') {
        Some((owner, repo)) => Ok(format!(
            "{}/{}",
            segment(owner, "owner")?,
            segment(repo, "repository")?
        )),
        None => {
            let owner = match &target.scope {
                RunnerScope::Org { org } => org,
                RunnerScope::Repo { owner, .. } => owner,
            };
            Ok(format!(
                "{}/{}",
                segment(owner, "owner")?,
                segment(repository, "repository")?
            ))
        }
    }
}

impl GitHubClient {
    /// `GET path`: the answer's JSON, or `None` on 404.
    async fn get_optional<T: DeserializeOwned>(
        &self,
        target: &GitHubTarget,
        path: &str,
        what: &str,
    ) -> Result<Option<T>, PortError> {
        let reply = self.authed(target, Method::GET, path, None).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !reply.status.is_success() {
            return Err(self.error_for(&reply, what));
        }
        reply.json(what).map(Some)
    }
}

fn runners_path(target: &GitHubTarget) -> Result<String, PortError> {
    Ok(format!("{}/actions/runners", scope_path(&target.scope)?))
}

#[async_trait]
impl GitHubApi for GitHubClient {
    async fn create_jit_config(&self, req: &JitRequest) -> Result<JitConfig, PortError> {
        validate_jit_request(req)?;
        let path = format!("{}/generate-jitconfig", runners_path(&req.target)?);
        let group_id = self.runner_group_id(&req.target, &req.runner_group).await?;
        let work_folder = if req.work_folder.trim().is_empty() {
            "_work"
        } else {
            req.work_folder.as_str()
        };
        let body = json!({
            "name": req.name,
            "runner_group_id": group_id,
            "labels": req.labels,
            "work_folder": work_folder,
        });
        let what = format!(
            "JIT config for runner {:?} on {}",
            req.name,
            scope_text(&req.target.scope)
        );
        let reply = self
            .authed(&req.target, Method::POST, &path, Some(&body))
            .await?;
        if !reply.status.is_success() {
            return Err(self.error_for(&reply, &what));
        }
        let a: JitAnswer = reply.json(&what)?;
        tracing::info!(runner = %req.name, runner_id = a.runner.id, runner_group_id = group_id, "JIT runner registered");
        Ok(JitConfig {
            runner_id: a.runner.id,
            encoded_jit_config: a.encoded_jit_config,
        })
    }

    async fn get_job(
        &self,
        target: &GitHubTarget,
        repository: &str,
        job_id: u64,
    ) -> Result<Option<GitHubJob>, PortError> {
        let full = repo_path(target, repository)?;
        let path = format!("/repos/{full}/actions/jobs/{job_id}");
        let what = format!("job {job_id} of {full}");
        self.get_optional(target, &path, &what).await
    }

    async fn list_runners(&self, target: &GitHubTarget) -> Result<Vec<GitHubRunner>, PortError> {
        let what = format!("runners of {}", scope_text(&target.scope));
        let runners: Vec<RunnerAnswer> = self
            .get_all(target, &runners_path(target)?, "runners", &what)
            .await?;
        Ok(runners.into_iter().map(Into::into).collect())
    }

    async fn get_runner(
        &self,
        target: &GitHubTarget,
        runner_id: u64,
    ) -> Result<Option<GitHubRunner>, PortError> {
        let path = format!("{}/{runner_id}", runners_path(target)?);
        let what = format!("runner {runner_id} of {}", scope_text(&target.scope));
        let runner: Option<RunnerAnswer> = self.get_optional(target, &path, &what).await?;
        Ok(runner.map(Into::into))
    }

    async fn delete_runner(&self, target: &GitHubTarget, runner_id: u64) -> Result<(), PortError> {
        let path = format!("{}/{runner_id}", runners_path(target)?);
        let what = format!("runner {runner_id} of {}", scope_text(&target.scope));
        let reply = self.authed(target, Method::DELETE, &path, None).await?;
        if reply.status.is_success() {
            tracing::info!(runner_id, "deleted GitHub runner");
            return Ok(());
        }
        if reply.status == StatusCode::NOT_FOUND {
            tracing::debug!(runner_id, "GitHub runner already gone");
            return Ok(());
        }
        Err(self.error_for(&reply, &what))
    }

    async fn get_run(
        &self,
        target: &GitHubTarget,
        repository: &str,
        run_id: u64,
    ) -> Result<Option<GitHubRun>, PortError> {
        let full = repo_path(target, repository)?;
        let path = format!("/repos/{full}/actions/runs/{run_id}");
        let what = format!("workflow run {run_id} of {full}");
        self.get_optional(target, &path, &what).await
    }

    async fn rerun_job(
        &self,
        target: &GitHubTarget,
        repository: &str,
        job_id: u64,
    ) -> Result<RerunAnswer, PortError> {
        let full = repo_path(target, repository)?;
        let path = format!("/repos/{full}/actions/jobs/{job_id}/rerun");
        let what = format!("re-run of job {job_id} of {full}");
        let reply = self
            .authed(target, Method::POST, &path, Some(&json!({})))
            .await?;
        if reply.status.is_success() {
            tracing::info!(job_id, repository = %full, "GitHub accepted the job re-run");
            return Ok(RerunAnswer::Accepted);
        }
        // 403: the run is still running, or cannot be retried; 404/422 alike.
        // Rate limits and 5xx stay errors (`error_for` classifies them).
        let message = github_message(&reply.body);
        let throttled = throttle_delay(
            reply.status.as_u16(),
            &reply.headers,
            &message,
            self.inner.clock.now(),
        )
        .is_some();
        if matches!(reply.status.as_u16(), 403 | 404 | 422) && !throttled {
            return Ok(RerunAnswer::Refused(message));
        }
        Err(self.error_for(&reply, &what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn tokens_are_renewed_five_minutes_before_expiry() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert!(token_is_fresh(now + Duration::from_secs(3600), now));
        assert!(token_is_fresh(now + Duration::from_secs(301), now));
        assert!(!token_is_fresh(now + Duration::from_secs(300), now));
        assert!(!token_is_fresh(now - Duration::from_secs(1), now));
    }

    #[test]
    fn github_error_text_includes_details() {
        let body = br#"{"message":"Validation Failed","errors":[{"message":"bad label"},"other"]}"#;
        assert_eq!(github_message(body), "Validation Failed (bad label; other)");
        assert_eq!(github_message(b"<html>oops"), "<html>oops");
    }

    #[test]
    fn path_segments_are_checked() {
        assert!(segment("acme-inc.io_x", "org").is_ok());
        for bad in ["", "..", "a/b", "a?b", "a b", "a%2f"] {
            assert!(segment(bad, "org").is_err(), "{bad:?}");
        }
    }
}
