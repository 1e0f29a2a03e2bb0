use super::PortError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a runner registers: an organisation, or one repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunnerScope {
    Org { org: String },
    Repo { owner: String, repo: String },
}

/// A scope plus the App installation that may act on it (`None`: PAT auth, or let
/// the client look the installation up).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GitHubTarget {
    pub scope: RunnerScope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
}

/// `POST .../actions/runners/generate-jitconfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitRequest {
    pub target: GitHubTarget,
    /// ≤ 64 characters, none of `" / : < > \ | * ?`.
    pub name: String,
    /// Runner group by name; resolved to its id by the client (and cached).
    pub runner_group: String,
    /// 1 to 100 labels.
    pub labels: Vec<String>,
    pub work_folder: String,
}

/// A single-use runner registration. The encoded config is a secret: never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct JitConfig {
    pub runner_id: u64,
    pub encoded_jit_config: String,
}

impl fmt::Debug for JitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "JitConfig {{ runner_id: {}, encoded_jit_config: <redacted> }}",
            self.runner_id
        )
    }
}

/// A self-hosted runner as GitHub lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitHubRunner {
    pub id: u64,
    pub name: String,
    /// `online` or `offline`.
    pub status: String,
    pub busy: bool,
    #[serde(default)]
    pub labels: Vec<String>,
}

/// A workflow job as GitHub reports it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitHubJob {
    pub id: u64,
    /// `queued`, `in_progress`, `completed`, `waiting`, ...
    pub status: String,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub runner_name: Option<String>,
    /// The job's name in its workflow.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub run_id: Option<u64>,
    #[serde(default)]
    pub run_attempt: Option<u32>,
}

/// A workflow run as GitHub reports it now (`GET …/actions/runs/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitHubRun {
    pub id: u64,
    /// `queued`, `in_progress`, `completed`, …
    pub status: String,
    #[serde(default)]
    pub conclusion: Option<String>,
    /// The run's latest attempt (1 until someone re-runs it).
    #[serde(default = "first_attempt")]
    pub run_attempt: u32,
}

fn first_attempt() -> u32 {
    1
}

/// GitHub's answer to a job re-run request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RerunAnswer {
    /// 201: a new attempt of the run re-runs the job (and its dependents).
    Accepted,
    /// 403 and kin: not now or never (`The workflow run containing this job is
    /// already running`, `This workflow run cannot be retried`); GitHub's message.
    Refused(String),
}

/// What the handlers need from GitHub's REST API. Implementations handle auth
/// (App installation tokens cached until shortly before expiry, or a PAT), rate
/// limits (no call before a known reset time: they answer `Throttled`) and paging.
#[async_trait]
pub trait GitHubApi: Send + Sync {
    async fn create_jit_config(&self, req: &JitRequest) -> Result<JitConfig, PortError>;
    /// `Ok(None)` when GitHub answers 404.
    async fn get_job(
        &self,
        target: &GitHubTarget,
        repository: &str,
        job_id: u64,
    ) -> Result<Option<GitHubJob>, PortError>;
    /// Every runner of the scope, all pages.
    async fn list_runners(&self, target: &GitHubTarget) -> Result<Vec<GitHubRunner>, PortError>;
    /// `Ok(None)` when GitHub answers 404.
    async fn get_runner(
        &self,
        target: &GitHubTarget,
        runner_id: u64,
    ) -> Result<Option<GitHubRunner>, PortError>;
    /// Deleting a runner that is already gone (404) is success.
    async fn delete_runner(&self, target: &GitHubTarget, runner_id: u64) -> Result<(), PortError>;
    /// `GET /repos/{o}/{r}/actions/runs/{run_id}`; `Ok(None)` on 404.
    async fn get_run(
        &self,
        target: &GitHubTarget,
        repository: &str,
        run_id: u64,
    ) -> Result<Option<GitHubRun>, PortError>;
    /// `POST /repos/{o}/{r}/actions/jobs/{job_id}/rerun` (the App needs
    /// `actions: write`). Not idempotent: callers check the run's attempt first.
    async fn rerun_job(
        &self,
        target: &GitHubTarget,
        repository: &str,
        job_id: u64,
    ) -> Result<RerunAnswer, PortError>;
}
