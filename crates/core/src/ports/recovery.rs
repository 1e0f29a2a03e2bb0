//! What the recovery tasks (`crate::recovery`) need from GitHub: the webhook's
//! delivery log (to redeliver what failed) and the queued jobs of the allowed
//! repositories (to find what was never delivered). Every method is **one**
//! HTTP request, so the tasks can hold a budget of calls per run.

use super::PortError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which webhook's deliveries to read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HookRef {
    /// The GitHub App's webhook: `/app/hook/deliveries`, App JWT auth.
    App,
    /// An organisation webhook by id: `/orgs/{org}/hooks/{id}/deliveries`.
    Org { org: String, id: u64 },
    /// A repository webhook by id: `/repos/{owner}/{repo}/hooks/{id}/deliveries`.
    Repo {
        owner: String,
        repo: String,
        id: u64,
    },
}

impl std::fmt::Display for HookRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookRef::App => write!(f, "app hook"),
            HookRef::Org { org, id } => write!(f, "org {org} hook {id}"),
            HookRef::Repo { owner, repo, id } => write!(f, "repository {owner}/{repo} hook {id}"),
        }
    }
}

/// One delivery attempt as GitHub lists it (`hook-delivery-item`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookDelivery {
    /// This attempt's id (a redelivery is a new attempt with a new id).
    pub id: u64,
    /// `X-GitHub-Delivery`: the same for the original and every redelivery.
    pub guid: String,
    pub delivered_at: DateTime<Utc>,
    /// Whether this attempt is a redelivery.
    #[serde(default)]
    pub redelivery: bool,
    /// The HTTP status our endpoint answered; 0 when it did not answer.
    pub status_code: u16,
    /// `event` (`workflow_job`, `ping`, …).
    pub event: String,
    #[serde(default)]
    pub action: Option<String>,
}

impl HookDelivery {
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status_code)
    }
}

/// One page of deliveries, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryPage {
    pub deliveries: Vec<HookDelivery>,
    /// The `cursor` of the next (older) page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A webhook's delivery log.
#[async_trait]
pub trait HookDeliveries: Send + Sync {
    /// One page (`per_page=100`), newest first; `cursor` from the previous page.
    async fn list_deliveries(
        &self,
        hook: &HookRef,
        cursor: Option<&str>,
    ) -> Result<DeliveryPage, PortError>;
    /// `POST …/deliveries/{id}/attempts`: GitHub sends the delivery again.
    async fn redeliver(&self, hook: &HookRef, delivery_id: u64) -> Result<(), PortError>;
}

/// A repository the sweep looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoRef {
    /// `owner/name`.
    pub full_name: String,
    pub owner: String,
    /// `Organization` or `User`.
    pub owner_type: String,
    /// GitHub's `private`; absent counts as public (fail closed).
    #[serde(default)]
    pub private: bool,
    /// The App installation that can read it (`None` with a PAT).
    #[serde(default)]
    pub installation_id: Option<u64>,
}

/// A workflow job as `GET /repos/{o}/{r}/actions/runs/{run}/jobs` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedJob {
    pub id: u64,
    pub run_id: u64,
    pub run_attempt: u32,
    /// `queued`, `in_progress`, `completed`, `waiting`, …
    pub status: String,
    pub labels: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// The job's name in its workflow.
    #[serde(default)]
    pub name: Option<String>,
}

/// A page of something, and whether there is another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub more: bool,
}

/// GitHub's primary rate limit as last answered (`x-ratelimit-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitState {
    pub remaining: u64,
    pub limit: u64,
}

/// Where the sweep finds queued jobs.
#[async_trait]
pub trait QueuedJobSource: Send + Sync {
    /// The accounts (organisations and users) the GitHub App is installed on,
    /// page `page` (from 1): `GET /app/installations`. With a PAT: `Rejected`
    /// (the sweep then needs `allowed_owners` or `allowed_repositories`).
    async fn list_installation_owners(&self, page: u32) -> Result<Page<String>, PortError>;
    /// The repositories of `owner` this deployment can see, page `page` (from
    /// 1): with an App the installation's repositories (`GET
    /// /installation/repositories`); with a PAT the owner's (`/orgs/{o}/repos`,
    /// or `/users/{o}/repos` for a user).
    async fn list_repositories(&self, owner: &str, page: u32) -> Result<Page<RepoRef>, PortError>;
    /// One repository by name (`GET /repos/{o}/{r}`); `None` on 404.
    async fn get_repository(&self, full_name: &str) -> Result<Option<RepoRef>, PortError>;
    /// Ids of the repository's workflow runs with `status` (`queued` or
    /// `in_progress`: a run whose first job started still has queued jobs), page `page`.
    async fn list_runs(
        &self,
        repo: &RepoRef,
        status: &str,
        page: u32,
    ) -> Result<Page<u64>, PortError>;
    /// The jobs of one run's latest attempt, page `page`.
    async fn list_run_jobs(
        &self,
        repo: &RepoRef,
        run_id: u64,
        page: u32,
    ) -> Result<Page<ListedJob>, PortError>;
    /// The primary rate limit as of the last answer, if one was seen.
    fn rate_limit(&self) -> Option<RateLimitState>;
}
