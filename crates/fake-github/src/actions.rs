//! Installations, repositories, workflow runs and their jobs, and the primary
//! rate limit every authenticated call spends.
//!
//! A workflow job is one record (`State::jobs`): what [`FakeGitHub::set_job`]
//! sets (status, conclusion, runner) plus its run, attempt, labels and times.
//! Runs are derived from their jobs: a run's latest attempt is `queued` while
//! none of its jobs started, `completed` once all completed, `in_progress` in
//! between.

use super::{
    Caller, FakeGitHub, FakeJob, HashMap, HeaderValue, Response, RunnerScope, State, StatusCode,
    allowed, epoch, err, ok_json, query_param, same_scope,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use std::time::SystemTime;

/// The fake's default primary rate limit per hour (GitHub Enterprise Cloud's
/// installation limit; high enough for every test that does not lower it).
pub const DEFAULT_RATE_LIMIT: u64 = 15_000;
const WINDOW_SECS: u64 = 3600;

// ---- jobs -------------------------------------------------------------------------

/// One workflow job: status and runner ([`FakeJob`]) plus where it belongs.
#[derive(Debug, Clone)]
pub(crate) struct JobRecord {
    pub job: FakeJob,
    /// The job's name in its workflow (`job {id}` when the test gave none).
    pub name: Option<String>,
    pub run_id: u64,
    pub run_attempt: u32,
    pub labels: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// The runner the dispatch gave it to: (runner id, group id, group name).
    pub runner: Option<(u64, u64, String)>,
}

/// Has a job with this status been picked up by a runner?
fn started(status: &str) -> bool {
    !matches!(status, "queued" | "waiting" | "pending" | "requested")
}

fn now_secs() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now)
}

impl JobRecord {
    /// Status, conclusion and runner from `job`; times follow the status.
    fn apply(&mut self, job: FakeJob) {
        let now = now_secs().max(self.created_at);
        if started(&job.status) {
            self.started_at.get_or_insert(now);
        } else {
            self.started_at = None;
        }
        if job.status == "completed" {
            self.completed_at.get_or_insert(now);
        } else {
            self.completed_at = None;
        }
        if job.runner_name != self.job.runner_name {
            self.runner = None;
        }
        self.job = job;
    }
}

/// `set_job`: replace the job's status, keep its run and labels (a job new to
/// the fake is in run 1, labelled `self-hosted`, created now).
pub(crate) fn upsert_job(jobs: &mut HashMap<(String, u64), JobRecord>, repo: &str, job: FakeJob) {
    let key = (repo.to_ascii_lowercase(), job.id);
    let rec = jobs.entry(key).or_insert_with(|| JobRecord {
        job: job.clone(),
        name: None,
        run_id: 1,
        run_attempt: 1,
        labels: vec!["self-hosted".into()],
        created_at: now_secs(),
        started_at: None,
        completed_at: None,
        runner: None,
    });
    rec.apply(job);
}

/// A workflow job to add with [`FakeGitHub::add_workflow_job`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeWorkflowJob {
    pub id: u64,
    pub run_id: u64,
    /// Which attempt of the run (1 unless the run was re-run).
    pub run_attempt: u32,
    /// `queued`, `in_progress`, `completed`, `waiting`, …
    pub status: String,
    pub labels: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// The job's name in its workflow (`job {id}` when `None`).
    pub name: Option<String>,
}

impl FakeWorkflowJob {
    /// Job `id` of run `run_id` (attempt 1).
    pub fn new(
        run_id: u64,
        id: u64,
        status: &str,
        labels: &[&str],
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            run_id,
            run_attempt: 1,
            status: status.to_string(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            created_at,
            name: None,
        }
    }

    /// The job named `name` in its workflow.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// The same job in attempt `n` of its run.
    pub fn attempt(mut self, n: u32) -> Self {
        self.run_attempt = n;
        self
    }
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A `job` as `GET /repos/{o}/{r}/actions/jobs/{id}` and the run's job list show it.
pub(crate) fn job_json(base_url: &str, repo: &str, r: &JobRecord) -> Value {
    let j = &r.job;
    let api = format!("{base_url}/repos/{repo}/actions");
    json!({
        "id": j.id,
        "run_id": r.run_id,
        "run_url": format!("{api}/runs/{}", r.run_id),
        "run_attempt": r.run_attempt,
        "node_id": format!("CR_fake{}", j.id),
        "head_sha": "0000000000000000000000000000000000000000",
        "url": format!("{api}/jobs/{}", j.id),
        "html_url": format!("https://github.com/{repo}/actions/runs/{}/job/{}", r.run_id, j.id),
        "status": j.status,
        "conclusion": j.conclusion,
        "created_at": time(&r.created_at),
        // GitHub always fills started_at (the creation time until a runner starts).
        "started_at": time(&r.started_at.unwrap_or(r.created_at)),
        "completed_at": r.completed_at.as_ref().map(time),
        "name": r.name.clone().unwrap_or_else(|| format!("job {}", j.id)),
        "steps": [],
        "check_run_url": format!("{base_url}/repos/{repo}/check-runs/{}", j.id),
        "labels": r.labels,
        "runner_id": r.runner.as_ref().map(|x| x.0),
        "runner_name": j.runner_name,
        "runner_group_id": r.runner.as_ref().map(|x| x.1),
        "runner_group_name": r.runner.as_ref().map(|x| x.2.clone()),
        "workflow_name": "CI",
        "head_branch": "main",
    })
}

// ---- repositories -----------------------------------------------------------------

/// A repository registered with [`FakeGitHub::add_repository`].
#[derive(Debug, Clone)]
struct RepoRecord {
    id: u64,
    owner: String,
    name: String,
    owner_type: String,
    installation: Option<u64>,
    /// Repositories start private; [`FakeGitHub::set_repository_private`].
    private: bool,
}

impl RepoRecord {
    fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
    fn is(&self, owner: &str, name: &str) -> bool {
        self.owner.eq_ignore_ascii_case(owner) && self.name.eq_ignore_ascii_case(name)
    }
}

#[derive(Default)]
pub(crate) struct Repos {
    list: Vec<RepoRecord>,
}

/// A stable account id for `login` (GitHub's are numbers; tests only need them stable).
pub(crate) fn account_id(login: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in login.to_ascii_lowercase().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h % 100_000_000 + 1
}

/// `Organization` or `User`, as far as the registered repositories tell.
pub(crate) fn account_type(s: &State, login: &str) -> &'static str {
    let user = s
        .repos
        .list
        .iter()
        .any(|r| r.owner.eq_ignore_ascii_case(login) && r.owner_type == "User");
    if user { "User" } else { "Organization" }
}

/// Is `login` a user (a repository registered with owner type `User`)?
pub(crate) fn is_user(s: &State, login: &str) -> bool {
    account_type(s, login) == "User"
}

fn account_json(login: &str, kind: &str) -> Value {
    json!({
        "login": login,
        "id": account_id(login),
        "node_id": format!("O_fake{}", account_id(login)),
        "type": kind,
        "site_admin": false,
    })
}

fn repo_json(base_url: &str, r: &RepoRecord) -> Value {
    let full = r.full_name();
    json!({
        "id": r.id,
        "node_id": format!("R_fake{}", r.id),
        "name": r.name,
        "full_name": full,
        "private": r.private,
        "owner": account_json(&r.owner, &r.owner_type),
        "html_url": format!("https://github.com/{full}"),
        "url": format!("{base_url}/repos/{full}"),
        "fork": false,
        "archived": false,
        "disabled": false,
        "visibility": if r.private { "private" } else { "public" },
        "default_branch": "main",
    })
}

/// The installation that can read repository `owner/name`: the one it was
/// registered with, else one on its owner or on the repository itself.
fn repo_installation(s: &State, owner: &str, name: &str) -> Option<u64> {
    let explicit = s
        .repos
        .list
        .iter()
        .find(|r| r.is(owner, name))
        .and_then(|r| r.installation);
    explicit.or_else(|| {
        let scope = RunnerScope::Repo {
            owner: owner.to_string(),
            repo: name.to_string(),
        };
        s.installations
            .iter()
            .find(|i| match &i.scope {
                RunnerScope::Org { org } => org.eq_ignore_ascii_case(owner),
                RunnerScope::Repo { .. } => same_scope(&i.scope, &scope),
            })
            .map(|i| i.id)
    })
}

/// `GET /repos/{o}/{r}/installation` for a repository registered with an
/// installation that is not on its owner.
pub(crate) fn registered_installation(s: &State, scope: &RunnerScope) -> Option<u64> {
    match scope {
        RunnerScope::Repo { owner, repo } => s
            .repos
            .list
            .iter()
            .find(|r| r.is(owner, repo))
            .and_then(|r| r.installation),
        RunnerScope::Org { .. } => None,
    }
}

/// May `caller` read repository `owner/name`?
fn can_read(s: &State, caller: &Caller, owner: &str, name: &str) -> bool {
    let scope = RunnerScope::Repo {
        owner: owner.to_string(),
        repo: name.to_string(),
    };
    match caller {
        Caller::Pat => true,
        Caller::App => false,
        Caller::Installation(id) => {
            allowed(s, caller, &scope) || repo_installation(s, owner, name) == Some(*id)
        }
    }
}

impl FakeGitHub {
    /// Register repository `full_name` (`owner/name`) whose owner is an
    /// `Organization` or a `User`; `installation` is the App installation
    /// (from [`FakeGitHub::add_installation`]) that can read it, `None` for
    /// whichever installation is on its owner (if any). Returns its id.
    pub fn add_repository(
        &self,
        full_name: &str,
        owner_type: &str,
        installation: Option<u64>,
    ) -> u64 {
        let (owner, name) = full_name
            .split_once('/')
            .expect("fake GitHub: a repository is owner/name");
        let mut s = self.st();
        s.repos.list.retain(|r| !r.is(owner, name));
        let id = 700_000
            + s.repos
                .list
                .iter()
                .map(|r| r.id - 700_000)
                .max()
                .unwrap_or(0)
            + 1;
        s.repos.list.push(RepoRecord {
            id,
            owner: owner.to_string(),
            name: name.to_string(),
            owner_type: owner_type.to_string(),
            installation,
            private: true,
        });
        id
    }

    /// Make repository `full_name` public (`false`) or private again.
    pub fn set_repository_private(&self, full_name: &str, private: bool) {
        let (owner, name) = full_name
            .split_once('/')
            .expect("fake GitHub: a repository is owner/name");
        let mut s = self.st();
        for r in s.repos.list.iter_mut().filter(|r| r.is(owner, name)) {
            r.private = private;
        }
    }

    /// Add (or replace) a workflow job of repository `repo` (`owner/name`).
    /// Its status changes later with [`FakeGitHub::set_job`].
    pub fn add_workflow_job(&self, repo: &str, job: FakeWorkflowJob) {
        let mut rec = JobRecord {
            job: FakeJob {
                id: job.id,
                status: "queued".into(),
                conclusion: None,
                runner_name: None,
            },
            name: job.name,
            run_id: job.run_id,
            run_attempt: job.run_attempt,
            labels: job.labels,
            created_at: job.created_at,
            started_at: None,
            completed_at: None,
            runner: None,
        };
        if started(&job.status) {
            rec.started_at = Some(job.created_at);
        }
        if job.status == "completed" {
            rec.completed_at = Some(job.created_at);
            rec.job.conclusion = Some("success".into());
        }
        rec.job.status = job.status;
        self.st()
            .jobs
            .insert((repo.to_ascii_lowercase(), job.id), rec);
    }

    /// The jobs a re-run was accepted for, in order: (repository, job id).
    pub fn reruns(&self) -> Vec<(String, u64)> {
        self.st().reruns.clone()
    }

    /// The job GitHub created for the re-run of `job_id` of `repo`: its id
    /// and run attempt.
    pub fn rerun_of(&self, repo: &str, job_id: u64) -> Option<(u64, u32)> {
        let s = self.st();
        let repo = repo.to_ascii_lowercase();
        let old = s.jobs.get(&(repo.clone(), job_id))?;
        s.jobs
            .iter()
            .filter(|((r, id), j)| {
                *r == repo
                    && *id != job_id
                    && j.run_id == old.run_id
                    && j.name == old.name
                    && j.run_attempt > old.run_attempt
            })
            .map(|((_, id), j)| (*id, j.run_attempt))
            .min()
    }

    /// Set the primary rate limit: `remaining` calls left of `limit`, the
    /// window resetting in an hour. Each authenticated call spends one; at 0
    /// the fake answers 403 "API rate limit exceeded".
    pub fn set_rate_limit(&self, remaining: u64, limit: u64) {
        let mut s = self.st();
        s.rate = RateLimit {
            limit,
            remaining: remaining.min(limit),
            reset: epoch(SystemTime::now()) + WINDOW_SECS,
        };
    }

    /// `(remaining, limit)` of the current window.
    pub fn rate_limit(&self) -> (u64, u64) {
        let mut s = self.st();
        s.rate.roll();
        (s.rate.remaining, s.rate.limit)
    }
}

// ---- the rate limit ----------------------------------------------------------------

pub(crate) struct RateLimit {
    limit: u64,
    remaining: u64,
    /// Epoch second the window ends.
    reset: u64,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            limit: DEFAULT_RATE_LIMIT,
            remaining: DEFAULT_RATE_LIMIT,
            reset: epoch(SystemTime::now()) + WINDOW_SECS,
        }
    }
}

impl RateLimit {
    /// Start a new window once the old one ended.
    fn roll(&mut self) {
        let now = epoch(SystemTime::now());
        if now >= self.reset {
            self.remaining = self.limit;
            self.reset = now + WINDOW_SECS;
        }
    }
}

/// Spend one call of the window, or answer GitHub's primary rate-limit 403.
pub(crate) fn spend_rate_limit(s: &mut State, caller: &Caller) -> Result<(), Response> {
    s.rate.roll();
    if s.rate.remaining == 0 {
        let who = match caller {
            Caller::Installation(id) => format!("installation ID {id}"),
            Caller::App => format!("integration ID {}", super::APP_ID),
            Caller::Pat => "user ID 1".to_string(),
        };
        return Err(err(
            StatusCode::FORBIDDEN,
            &format!("API rate limit exceeded for {who}."),
        ));
    }
    s.rate.remaining -= 1;
    Ok(())
}

/// Add the `x-ratelimit-*` headers an answer lacks (injected failures keep theirs).
pub(crate) fn stamp_rate_limit(s: &mut State, resp: &mut Response) {
    s.rate.roll();
    let r = &s.rate;
    let values = [
        ("x-ratelimit-limit", r.limit.to_string()),
        ("x-ratelimit-remaining", r.remaining.to_string()),
        ("x-ratelimit-reset", r.reset.to_string()),
        ("x-ratelimit-used", (r.limit - r.remaining).to_string()),
        ("x-ratelimit-resource", "core".to_string()),
    ];
    let h = resp.headers_mut();
    for (name, value) in values {
        if !h.contains_key(name)
            && let Ok(v) = HeaderValue::from_str(&value)
        {
            h.insert(name, v);
        }
    }
}

// ---- routes ------------------------------------------------------------------------

enum Kind {
    ListInstallations,
    UserInstallation(String),
    InstallationRepositories,
    GetRepository(String, String),
    OrgRepositories(String),
    UserRepositories(String),
    ListRuns(String, String),
    ListRunJobs(String, String, u64),
    GetRun(String, String, u64),
    RerunJob(String, String, u64),
}

pub(crate) struct Route {
    pub endpoint: &'static str,
    kind: Kind,
}

impl Route {
    /// The App-level endpoints take an App JWT.
    pub fn jwt(&self) -> bool {
        matches!(
            self.kind,
            Kind::ListInstallations | Kind::UserInstallation(_)
        )
    }
}

pub(crate) fn route(method: &str, segs: &[&str]) -> Option<Route> {
    use super::endpoint::*;
    let s = |x: &&str| x.to_string();
    if method == "POST" {
        return match segs {
            ["repos", o, r, "actions", "jobs", id, "rerun"] => Some(Route {
                endpoint: RERUN_JOB,
                kind: Kind::RerunJob(s(o), s(r), id.parse().ok()?),
            }),
            _ => None,
        };
    }
    if method != "GET" {
        return None;
    }
    let (endpoint, kind) = match segs {
        ["app", "installations"] => (LIST_INSTALLATIONS, Kind::ListInstallations),
        ["users", user, "installation"] => (INSTALLATION, Kind::UserInstallation(s(user))),
        ["installation", "repositories"] => {
            (INSTALLATION_REPOSITORIES, Kind::InstallationRepositories)
        }
        ["repos", o, r] => (GET_REPOSITORY, Kind::GetRepository(s(o), s(r))),
        ["orgs", org, "repos"] => (OWNER_REPOSITORIES, Kind::OrgRepositories(s(org))),
        ["users", user, "repos"] => (OWNER_REPOSITORIES, Kind::UserRepositories(s(user))),
        ["repos", o, r, "actions", "runs"] => (LIST_RUNS, Kind::ListRuns(s(o), s(r))),
        ["repos", o, r, "actions", "runs", id, "jobs"] => (
            LIST_RUN_JOBS,
            Kind::ListRunJobs(s(o), s(r), id.parse().ok()?),
        ),
        ["repos", o, r, "actions", "runs", id] => {
            (GET_RUN, Kind::GetRun(s(o), s(r), id.parse().ok()?))
        }
        _ => return None,
    };
    Some(Route { endpoint, kind })
}

fn not_found() -> Response {
    err(StatusCode::NOT_FOUND, "Not Found")
}

/// One page of `items` (`per_page`, default 30, at most 100; `page` from 1) and
/// the `Link` header, keeping the request's other query parameters.
fn page_of<T: Clone>(
    s: &State,
    path: &str,
    query: Option<&str>,
    items: &[T],
) -> Result<(Vec<T>, Option<String>), Response> {
    let number = |name: &str, default: usize| -> Result<usize, Response> {
        match query_param(query, name) {
            None => Ok(default),
            Some(v) => v.parse::<usize>().map_err(|_| {
                err(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("{name} must be an integer"),
                )
            }),
        }
    };
    let per_page = number("per_page", 30)?.clamp(1, 100);
    let page = number("page", 1)?.max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let slice = items
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect();
    let others: String = query
        .unwrap_or("")
        .split('&')
        .filter(|kv| {
            let k = kv.split('=').next().unwrap_or("");
            !kv.is_empty() && k != "per_page" && k != "page"
        })
        .map(|kv| format!("&{kv}"))
        .collect();
    let link_to = |p: usize, rel: &str| {
        format!(
            "<{}{path}?per_page={per_page}&page={p}{others}>; rel=\"{rel}\"",
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

fn paged<T: Clone>(
    s: &State,
    path: &str,
    query: Option<&str>,
    items: &[T],
    render: impl Fn(&T) -> Value,
    wrap: impl FnOnce(usize, Vec<Value>) -> Value,
) -> Response {
    let (page, link) = match page_of(s, path, query, items) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let body = wrap(items.len(), page.iter().map(render).collect());
    super::with_link(ok_json(StatusCode::OK, body), link)
}

/// The installations' accounts: `(installation id, login, type)`.
fn installation_accounts(s: &State) -> Vec<(u64, String, &'static str)> {
    s.installations
        .iter()
        .map(|i| {
            let login = match &i.scope {
                RunnerScope::Org { org } => org.clone(),
                RunnerScope::Repo { owner, .. } => owner.clone(),
            };
            let kind = account_type(s, &login);
            (i.id, login, kind)
        })
        .collect()
}

pub(crate) fn handle(
    s: &mut State,
    r: Route,
    caller: &Caller,
    path: &str,
    query: Option<&str>,
) -> Response {
    let base = s.base_url.clone();
    match r.kind {
        Kind::ListInstallations => {
            // Each shows the App's permissions, or its own (app.rs).
            let permissions: HashMap<u64, _> = s
                .installations
                .iter()
                .map(|i| (i.id, super::app::installation_permissions(s, i.id)))
                .collect();
            let events = super::app::events(s);
            let accounts = installation_accounts(s);
            paged(
                s,
                path,
                query,
                &accounts,
                |(id, login, kind)| {
                    json!({
                        "id": id,
                        "account": account_json(login, kind),
                        "app_id": super::APP_ID.parse::<u64>().unwrap_or(0),
                        "target_type": kind,
                        "target_id": account_id(login),
                        "repository_selection": "all",
                        "access_tokens_url": format!("{base}/app/installations/{id}/access_tokens"),
                        "repositories_url": format!("{base}/installation/repositories"),
                        "html_url": format!("https://github.com/settings/installations/{id}"),
                        "permissions": permissions.get(id),
                        "events": events,
                        "suspended_at": null,
                    })
                },
                |_, list| Value::Array(list),
            )
        }
        Kind::UserInstallation(user) => {
            match installation_accounts(s)
                .into_iter()
                .find(|(_, login, _)| login.eq_ignore_ascii_case(&user))
            {
                Some((id, _, _)) => ok_json(
                    StatusCode::OK,
                    json!({ "id": id, "app_id": super::APP_ID.parse::<u64>().unwrap_or(0) }),
                ),
                None => not_found(),
            }
        }
        Kind::InstallationRepositories => {
            let Caller::Installation(inst) = caller else {
                return err(
                    StatusCode::FORBIDDEN,
                    "You must authenticate with an installation access token to access this endpoint.",
                );
            };
            let mut mine: Vec<RepoRecord> = s
                .repos
                .list
                .iter()
                .filter(|r| repo_installation(s, &r.owner, &r.name) == Some(*inst))
                .cloned()
                .collect();
            mine.sort_by_key(|r| r.id);
            paged(
                s,
                path,
                query,
                &mine,
                |r| repo_json(&base, r),
                |total, list| {
                    json!({
                        "total_count": total,
                        "repository_selection": "all",
                        "repositories": list,
                    })
                },
            )
        }
        Kind::GetRepository(owner, name) => {
            match s.repos.list.iter().find(|r| r.is(&owner, &name)) {
                Some(r) if can_read(s, caller, &owner, &name) => {
                    ok_json(StatusCode::OK, repo_json(&base, r))
                }
                _ => not_found(),
            }
        }
        Kind::OrgRepositories(owner) | Kind::UserRepositories(owner) => {
            let org_route = path.trim_start_matches('/').starts_with("orgs/");
            let owned: Vec<RepoRecord> = s
                .repos
                .list
                .iter()
                .filter(|r| r.owner.eq_ignore_ascii_case(&owner))
                .cloned()
                .collect();
            let is_org = owned.iter().any(|r| r.owner_type == "Organization")
                || (owned.is_empty()
                    && s.installations.iter().any(|i| {
                        matches!(&i.scope, RunnerScope::Org { org } if org.eq_ignore_ascii_case(&owner))
                    }));
            let known = !owned.is_empty() || is_org;
            if !known || (org_route && !is_org) {
                return not_found();
            }
            let mut visible: Vec<RepoRecord> = owned
                .into_iter()
                .filter(|r| can_read(s, caller, &r.owner, &r.name))
                .collect();
            visible.sort_by_key(|r| r.id);
            paged(
                s,
                path,
                query,
                &visible,
                |r| repo_json(&base, r),
                |_, list| Value::Array(list),
            )
        }
        Kind::ListRuns(owner, name) => {
            let repo = format!("{owner}/{name}").to_ascii_lowercase();
            if !repo_known(s, &owner, &name, &repo) || !can_read(s, caller, &owner, &name) {
                return not_found();
            }
            let status = query_param(query, "status");
            let runs: Vec<Run> = runs_of(s, &repo)
                .into_iter()
                .filter(|r| {
                    status
                        .as_deref()
                        .is_none_or(|st| r.status == st || r.conclusion.as_deref() == Some(st))
                })
                .collect();
            paged(
                s,
                path,
                query,
                &runs,
                |r| run_json(&base, &repo, r),
                |total, list| json!({ "total_count": total, "workflow_runs": list }),
            )
        }
        Kind::GetRun(owner, name, run_id) => {
            let repo = format!("{owner}/{name}").to_ascii_lowercase();
            if !repo_known(s, &owner, &name, &repo) || !can_read(s, caller, &owner, &name) {
                return not_found();
            }
            match runs_of(s, &repo).into_iter().find(|r| r.id == run_id) {
                Some(run) => ok_json(StatusCode::OK, run_json(&base, &repo, &run)),
                None => not_found(),
            }
        }
        Kind::RerunJob(owner, name, job_id) => {
            let repo = format!("{owner}/{name}").to_ascii_lowercase();
            if !repo_known(s, &owner, &name, &repo) || !can_read(s, caller, &owner, &name) {
                return not_found();
            }
            rerun_job(s, &owner, &name, &repo, job_id)
        }
        Kind::ListRunJobs(owner, name, run_id) => {
            let repo = format!("{owner}/{name}").to_ascii_lowercase();
            if !repo_known(s, &owner, &name, &repo) || !can_read(s, caller, &owner, &name) {
                return not_found();
            }
            let Some(run) = runs_of(s, &repo).into_iter().find(|r| r.id == run_id) else {
                return not_found();
            };
            let latest = match query_param(query, "filter").as_deref() {
                None | Some("latest") => true,
                Some("all") => false,
                Some(other) => {
                    return err(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &format!("filter must be latest or all, not {other:?}"),
                    );
                }
            };
            let mut jobs: Vec<JobRecord> = s
                .jobs
                .iter()
                .filter(|((r, _), j)| {
                    *r == repo && j.run_id == run_id && (!latest || j.run_attempt == run.attempt)
                })
                .map(|(_, j)| j.clone())
                .collect();
            jobs.sort_by_key(|j| (j.run_attempt, j.job.id));
            paged(
                s,
                path,
                query,
                &jobs,
                |j| job_json(&base, &repo, j),
                |total, list| json!({ "total_count": total, "jobs": list }),
            )
        }
    }
}

/// `POST …/actions/jobs/{id}/rerun` as GitHub answers it: refused while the
/// run's latest attempt is not completed; else the job is re-created under a
/// new id in the run's next attempt (`queued`), and its `queued` webhook goes
/// out (before the answer, so a test sees it when the call returns).
fn rerun_job(s: &mut State, owner: &str, name: &str, repo: &str, job_id: u64) -> Response {
    let Some(old) = s.jobs.get(&(repo.to_string(), job_id)).cloned() else {
        return not_found();
    };
    let Some(run) = runs_of(s, repo).into_iter().find(|r| r.id == old.run_id) else {
        return not_found();
    };
    if run.status != "completed" {
        return err(
            StatusCode::FORBIDDEN,
            "The workflow run containing this job is already running",
        );
    }
    s.reruns.push((repo.to_string(), job_id));
    let new_id = s
        .jobs
        .keys()
        .map(|(_, id)| *id)
        .max()
        .unwrap_or(0)
        .max(job_id)
        + 1;
    let created_at = now_secs();
    let rec = JobRecord {
        job: FakeJob {
            id: new_id,
            status: "queued".into(),
            conclusion: None,
            runner_name: None,
        },
        name: old.name.clone(),
        run_id: old.run_id,
        run_attempt: run.attempt + 1,
        labels: old.labels.clone(),
        created_at,
        started_at: None,
        completed_at: None,
        runner: None,
    };
    s.jobs.insert((repo.to_string(), new_id), rec.clone());
    let installation = repo_installation(s, owner, name);
    let owner_type = account_type(s, owner);
    let mut payload = json!({
        "action": "queued",
        "workflow_job": job_json(&s.base_url, &format!("{owner}/{name}"), &rec),
        "repository": {
            "id": account_id(repo),
            "name": name,
            "full_name": format!("{owner}/{name}"),
            "owner": { "login": owner, "type": owner_type },
            "private": repo_private(s, owner, name),
        },
        "sender": { "login": "octocat", "type": "User" },
    });
    if let Some(id) = installation {
        payload["installation"] = json!({ "id": id });
    }
    // Runners can take it (dispatch.rs), as any queued job.
    super::dispatch::enqueue(
        s,
        &format!("{owner}/{name}"),
        new_id,
        rec.labels.clone(),
        payload.clone(),
    );
    let mut resp = ok_json(StatusCode::CREATED, json!({}));
    resp.extensions_mut().insert(super::hooks::NewDelivery {
        event: "workflow_job".into(),
        payload: serde_json::to_vec(&payload).unwrap_or_default(),
    });
    resp
}

/// Is repository `owner/name` private? Registered ones say; others are
/// private (as repositories start).
fn repo_private(s: &State, owner: &str, name: &str) -> bool {
    s.repos
        .list
        .iter()
        .find(|r| r.is(owner, name))
        .is_none_or(|r| r.private)
}

/// A repository the fake knows: registered, or with jobs (`add_job` alone).
fn repo_known(s: &State, owner: &str, name: &str, key: &str) -> bool {
    s.repos.list.iter().any(|r| r.is(owner, name)) || s.jobs.keys().any(|(r, _)| r == key)
}

// ---- runs --------------------------------------------------------------------------

#[derive(Clone)]
struct Run {
    id: u64,
    attempt: u32,
    status: &'static str,
    conclusion: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
}

/// The runs of `repo` (lower-cased `owner/name`), newest first, from their
/// latest attempt's jobs.
fn runs_of(s: &State, repo: &str) -> Vec<Run> {
    let mut by_run: HashMap<u64, Vec<&JobRecord>> = HashMap::new();
    for ((r, _), j) in &s.jobs {
        if r == repo {
            by_run.entry(j.run_id).or_default().push(j);
        }
    }
    let mut runs: Vec<Run> = by_run
        .into_iter()
        .map(|(id, jobs)| {
            let attempt = jobs.iter().map(|j| j.run_attempt).max().unwrap_or(1);
            let latest: Vec<&&JobRecord> =
                jobs.iter().filter(|j| j.run_attempt == attempt).collect();
            let all_done = latest.iter().all(|j| j.job.status == "completed");
            let any_started = latest.iter().any(|j| started(&j.job.status));
            let status = if all_done {
                "completed"
            } else if any_started {
                "in_progress"
            } else {
                "queued"
            };
            let conclusion = all_done.then(|| {
                latest
                    .iter()
                    .filter_map(|j| j.job.conclusion.clone())
                    .find(|c| !matches!(c.as_str(), "success" | "skipped" | "neutral"))
                    .unwrap_or_else(|| "success".into())
            });
            Run {
                id,
                attempt,
                status,
                conclusion,
                created_at: latest
                    .iter()
                    .map(|j| j.created_at)
                    .min()
                    .unwrap_or_else(now_secs),
                started_at: latest.iter().filter_map(|j| j.started_at).min(),
            }
        })
        .collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.id));
    runs
}

fn run_json(base_url: &str, repo: &str, r: &Run) -> Value {
    let api = format!("{base_url}/repos/{repo}/actions/runs/{}", r.id);
    json!({
        "id": r.id,
        "name": "CI",
        "node_id": format!("WFR_fake{}", r.id),
        "head_branch": "main",
        "head_sha": "0000000000000000000000000000000000000000",
        "path": ".github/workflows/ci.yml",
        "display_title": "CI",
        "run_number": r.id,
        "run_attempt": r.attempt,
        "event": "push",
        "status": r.status,
        "conclusion": r.conclusion,
        "workflow_id": 1,
        "url": api,
        "html_url": format!("https://github.com/{repo}/actions/runs/{}", r.id),
        "jobs_url": format!("{api}/jobs"),
        "created_at": time(&r.created_at),
        "updated_at": time(&r.started_at.unwrap_or(r.created_at)),
        "run_started_at": time(&r.started_at.unwrap_or(r.created_at)),
    })
}
