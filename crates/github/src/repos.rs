//! [`QueuedJobSource`] on the REST API: installations, repositories, workflow
//! runs and their jobs, one page (`per_page=100`) per call.
//!
//! - With a GitHub App: `GET /app/installations` (App JWT) names the accounts
//!   and seeds the installation cache; a repository list is the owner's
//!   installation's `GET /installation/repositories` (installation token).
//! - With a PAT: `GET /orgs/{owner}/repos`, or `GET /users/{owner}/repos` once
//!   the organisation route answered 404 (remembered per client).
//!
//! `more` is whether the answer's `Link` header has a `rel="next"` target
//! (without any `Link` header: whether the page was full and `total_count`, if
//! given, says more remain).

use crate::PER_PAGE;
use crate::client::{GitHubClient, Reply, SERVICE, segment};
use crate::ratelimit::next_link;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::header::LINK;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use spotrunner_core::ports::{
    GitHubTarget, ListedJob, Page, PortError, QueuedJobSource, RateLimitState, RepoRef, RunnerScope,
};

#[derive(Deserialize)]
struct AccountAnswer {
    login: String,
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Deserialize)]
struct InstallationAnswer {
    id: u64,
    #[serde(default)]
    account: Option<AccountAnswer>,
}

#[derive(Deserialize)]
struct IdAnswer {
    id: u64,
}

#[derive(Deserialize)]
struct RepoAnswer {
    full_name: String,
    owner: AccountAnswer,
    /// Always present in GitHub's answer; absent counts as public.
    #[serde(default)]
    private: bool,
}

impl RepoAnswer {
    fn into_ref(self, installation_id: Option<u64>) -> RepoRef {
        RepoRef {
            full_name: self.full_name,
            owner: self.owner.login,
            owner_type: self.owner.kind,
            private: self.private,
            installation_id,
        }
    }
}

#[derive(Deserialize)]
struct InstallationRepos {
    #[serde(default)]
    total_count: Option<u64>,
    repositories: Vec<RepoAnswer>,
}

#[derive(Deserialize)]
struct RunsAnswer {
    #[serde(default)]
    total_count: Option<u64>,
    workflow_runs: Vec<IdAnswer>,
}

fn first_attempt() -> u32 {
    1
}

#[derive(Deserialize)]
struct JobAnswer {
    id: u64,
    run_id: u64,
    #[serde(default = "first_attempt")]
    run_attempt: u32,
    status: String,
    #[serde(default)]
    labels: Vec<String>,
    created_at: DateTime<Utc>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct JobsAnswer {
    #[serde(default)]
    total_count: Option<u64>,
    jobs: Vec<JobAnswer>,
}

/// Is there a page after `page` (which held `n` items)?
fn more_pages(reply: &Reply, page: u32, n: usize, total: Option<u64>) -> bool {
    match reply.headers.get(LINK).and_then(|l| l.to_str().ok()) {
        Some(link) => next_link(link).is_some(),
        None => n >= PER_PAGE && total.is_none_or(|t| u64::from(page) * (PER_PAGE as u64) < t),
    }
}

/// `owner/name`, both checked.
fn split_repo(full_name: &str) -> Result<(&str, &str), PortError> {
    let Some((owner, repo)) = full_name.split_once('/') else {
        return Err(PortError::rejected(
            SERVICE,
            format!("repository {full_name:?} is not owner/name"),
        ));
    };
    Ok((segment(owner, "owner")?, segment(repo, "repository")?))
}

fn repo_target(repo: &RepoRef) -> Result<(GitHubTarget, String), PortError> {
    let (owner, name) = split_repo(&repo.full_name)?;
    let target = GitHubTarget {
        scope: RunnerScope::Repo {
            owner: owner.to_string(),
            repo: name.to_string(),
        },
        installation_id: repo.installation_id,
    };
    Ok((target, format!("/repos/{owner}/{name}")))
}

/// A `status` query value: GitHub's statuses and conclusions are `[a-z_]+`.
fn status_value(status: &str) -> Result<&str, PortError> {
    if !status.is_empty() && status.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
        Ok(status)
    } else {
        Err(PortError::rejected(
            SERVICE,
            format!("invalid workflow run status {status:?}"),
        ))
    }
}

impl GitHubClient {
    /// A successful answer's body, or the error for it.
    fn body<T: DeserializeOwned>(&self, reply: &Reply, what: &str) -> Result<T, PortError> {
        if !reply.status.is_success() {
            return Err(self.error_for(reply, what));
        }
        reply.json(what)
    }

    /// The App installation on account `owner`: the cache, else `GET
    /// /orgs/{owner}/installation`, else (a user) `GET /users/{owner}/installation`.
    async fn owner_installation(&self, owner: &str) -> Result<u64, PortError> {
        let org = RunnerScope::Org {
            org: owner.to_string(),
        };
        match self.installation_for(&org).await {
            Err(PortError::NotFound { .. }) => {
                let path = format!("/users/{}/installation", segment(owner, "owner")?);
                let what = format!("GitHub App installation on account {owner}");
                let reply = self.send(Method::GET, &path, &self.jwt()?, None).await?;
                let id = self.body::<IdAnswer>(&reply, &what)?.id;
                tracing::info!(
                    owner,
                    installation_id = id,
                    "found GitHub App installation on a user account"
                );
                self.remember_installation(org, id);
                Ok(id)
            }
            other => other,
        }
    }

    async fn repos_with_pat(&self, owner: &str, page: u32) -> Result<Page<RepoRef>, PortError> {
        let target = GitHubTarget {
            scope: RunnerScope::Org {
                org: owner.to_string(),
            },
            installation_id: None,
        };
        let query = format!("per_page={PER_PAGE}&page={page}");
        let what = format!("repositories of {owner}");
        let mut reply = None;
        if !self.known_user(owner) {
            let r = self
                .authed(
                    &target,
                    Method::GET,
                    &format!("/orgs/{owner}/repos?{query}"),
                    None,
                )
                .await?;
            if r.status == StatusCode::NOT_FOUND {
                tracing::info!(owner, "not an organisation; listing a user's repositories");
                self.remember_user(owner);
            } else {
                reply = Some(r);
            }
        }
        let reply = match reply {
            Some(r) => r,
            None => {
                self.authed(
                    &target,
                    Method::GET,
                    &format!("/users/{owner}/repos?{query}"),
                    None,
                )
                .await?
            }
        };
        let repos: Vec<RepoAnswer> = self.body(&reply, &what)?;
        let more = more_pages(&reply, page, repos.len(), None);
        Ok(Page {
            items: repos
                .into_iter()
                .filter(|r| r.owner.login.eq_ignore_ascii_case(owner))
                .map(|r| r.into_ref(None))
                .collect(),
            more,
        })
    }
}

#[async_trait]
impl QueuedJobSource for GitHubClient {
    async fn list_installation_owners(&self, page: u32) -> Result<Page<String>, PortError> {
        if !self.is_app() {
            return Err(PortError::rejected(
                SERVICE,
                "listing the GitHub App's installations needs GitHub App auth; with a personal \
                 access token name the owners or repositories to sweep (allowed_owners, \
                 allowed_repositories)",
            ));
        }
        let page = page.max(1);
        let path = format!("/app/installations?per_page={PER_PAGE}&page={page}");
        let reply = self.send(Method::GET, &path, &self.jwt()?, None).await?;
        let installations: Vec<InstallationAnswer> =
            self.body(&reply, "installations of the GitHub App")?;
        let more = more_pages(&reply, page, installations.len(), None);
        let mut owners = Vec::new();
        for i in installations {
            if let Some(a) = i.account {
                self.remember_installation(
                    RunnerScope::Org {
                        org: a.login.clone(),
                    },
                    i.id,
                );
                owners.push(a.login);
            }
        }
        Ok(Page {
            items: owners,
            more,
        })
    }

    async fn list_repositories(&self, owner: &str, page: u32) -> Result<Page<RepoRef>, PortError> {
        let owner = segment(owner, "owner")?;
        let page = page.max(1);
        if !self.is_app() {
            return self.repos_with_pat(owner, page).await;
        }
        let id = self.owner_installation(owner).await?;
        let target = GitHubTarget {
            scope: RunnerScope::Org {
                org: owner.to_string(),
            },
            installation_id: Some(id),
        };
        let path = format!("/installation/repositories?per_page={PER_PAGE}&page={page}");
        let what = format!("repositories of App installation {id} ({owner})");
        let reply = self.authed(&target, Method::GET, &path, None).await?;
        let a: InstallationRepos = self.body(&reply, &what)?;
        let more = more_pages(&reply, page, a.repositories.len(), a.total_count);
        Ok(Page {
            items: a
                .repositories
                .into_iter()
                .filter(|r| r.owner.login.eq_ignore_ascii_case(owner))
                .map(|r| r.into_ref(Some(id)))
                .collect(),
            more,
        })
    }

    async fn get_repository(&self, full_name: &str) -> Result<Option<RepoRef>, PortError> {
        let (owner, name) = split_repo(full_name)?;
        let scope = RunnerScope::Repo {
            owner: owner.to_string(),
            repo: name.to_string(),
        };
        let installation_id = if self.is_app() {
            match self.installation_for(&scope).await {
                Ok(id) => Some(id),
                // The App is not installed there: it cannot see the repository.
                Err(PortError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        let target = GitHubTarget {
            scope,
            installation_id,
        };
        let what = format!("repository {owner}/{name}");
        let reply = self
            .authed(
                &target,
                Method::GET,
                &format!("/repos/{owner}/{name}"),
                None,
            )
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let r: RepoAnswer = self.body(&reply, &what)?;
        Ok(Some(r.into_ref(installation_id)))
    }

    async fn list_runs(
        &self,
        repo: &RepoRef,
        status: &str,
        page: u32,
    ) -> Result<Page<u64>, PortError> {
        let (target, base) = repo_target(repo)?;
        let status = status_value(status)?;
        let page = page.max(1);
        let path = format!("{base}/actions/runs?status={status}&per_page={PER_PAGE}&page={page}");
        let what = format!("{status} workflow runs of {}", repo.full_name);
        let reply = self.authed(&target, Method::GET, &path, None).await?;
        let a: RunsAnswer = self.body(&reply, &what)?;
        let more = more_pages(&reply, page, a.workflow_runs.len(), a.total_count);
        Ok(Page {
            items: a.workflow_runs.into_iter().map(|r| r.id).collect(),
            more,
        })
    }

    async fn list_run_jobs(
        &self,
        repo: &RepoRef,
        run_id: u64,
        page: u32,
    ) -> Result<Page<ListedJob>, PortError> {
        let (target, base) = repo_target(repo)?;
        let page = page.max(1);
        let path = format!(
            "{base}/actions/runs/{run_id}/jobs?filter=latest&per_page={PER_PAGE}&page={page}"
        );
        let what = format!("jobs of workflow run {run_id} of {}", repo.full_name);
        let reply = self.authed(&target, Method::GET, &path, None).await?;
        let a: JobsAnswer = self.body(&reply, &what)?;
        let more = more_pages(&reply, page, a.jobs.len(), a.total_count);
        Ok(Page {
            items: a
                .jobs
                .into_iter()
                .map(|j| ListedJob {
                    id: j.id,
                    run_id: j.run_id,
                    run_attempt: j.run_attempt,
                    status: j.status,
                    labels: j.labels,
                    created_at: j.created_at,
                    name: j.name,
                })
                .collect(),
            more,
        })
    }

    fn rate_limit(&self) -> Option<RateLimitState> {
        self.last_rate_limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_names_are_checked_before_a_call() {
        assert_eq!(status_value("in_progress").unwrap(), "in_progress");
        for bad in ["", "queued&x=1", "Queued", "a b"] {
            assert!(status_value(bad).is_err(), "{bad:?}");
        }
        assert_eq!(split_repo("acme/app").unwrap(), ("acme", "app"));
        for bad in ["acme", "acme/../x", "/app", "acme/a?b"] {
            assert!(split_repo(bad).is_err(), "{bad:?}");
        }
    }
}
