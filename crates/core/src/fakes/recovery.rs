//! In-memory fakes of the recovery ports: a webhook delivery log and a source
//! of repositories, runs and jobs. Both page like GitHub and count calls.

use crate::ports::{
    DeliveryPage, HookDeliveries, HookDelivery, HookRef, ListedJob, Page, PortError,
    QueuedJobSource, RateLimitState, RepoRef,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Mutex;

#[derive(Default)]
struct LogState {
    attempts: Vec<HookDelivery>,
    page_size: usize,
    redelivery_status: u16,
    now: Option<DateTime<Utc>>,
    lists: usize,
    redeliveries: Vec<u64>,
    fail_lists: usize,
}

/// A webhook's delivery log. A redelivery appends an attempt with the same
/// guid, `redelivery: true`, delivered "now" and answered with the status set
/// by [`MemoryHookDeliveries::answer_redeliveries`] (202 by default).
pub struct MemoryHookDeliveries {
    st: Mutex<LogState>,
}

impl Default for MemoryHookDeliveries {
    fn default() -> Self {
        Self {
            st: Mutex::new(LogState {
                page_size: 100,
                redelivery_status: 202,
                ..LogState::default()
            }),
        }
    }
}

impl MemoryHookDeliveries {
    pub fn new(page_size: usize) -> Self {
        let me = Self::default();
        me.st.lock().unwrap().page_size = page_size.max(1);
        me
    }

    /// Record an attempt of delivery `guid`; returns its id.
    pub fn record(
        &self,
        guid: &str,
        event: &str,
        status_code: u16,
        at: DateTime<Utc>,
        redelivery: bool,
    ) -> u64 {
        let mut st = self.st.lock().unwrap();
        let id = st.attempts.len() as u64 + 1;
        st.attempts.push(HookDelivery {
            id,
            guid: guid.into(),
            delivered_at: at,
            redelivery,
            status_code,
            event: event.into(),
            action: Some("queued".into()),
        });
        id
    }

    /// The time stamp of attempts made by redeliveries.
    pub fn set_now(&self, now: DateTime<Utc>) {
        self.st.lock().unwrap().now = Some(now);
    }

    /// What our endpoint answers to redeliveries from now on.
    pub fn answer_redeliveries(&self, status: u16) {
        self.st.lock().unwrap().redelivery_status = status;
    }

    /// The next `n` list calls fail as if GitHub were down.
    pub fn fail_lists(&self, n: usize) {
        self.st.lock().unwrap().fail_lists = n;
    }

    /// Attempt ids redelivered, in order.
    pub fn redeliveries(&self) -> Vec<u64> {
        self.st.lock().unwrap().redeliveries.clone()
    }

    pub fn list_calls(&self) -> usize {
        self.st.lock().unwrap().lists
    }

    pub fn attempts(&self) -> Vec<HookDelivery> {
        self.st.lock().unwrap().attempts.clone()
    }
}

#[async_trait]
impl HookDeliveries for MemoryHookDeliveries {
    async fn list_deliveries(
        &self,
        _hook: &HookRef,
        cursor: Option<&str>,
    ) -> Result<DeliveryPage, PortError> {
        let mut st = self.st.lock().unwrap();
        st.lists += 1;
        if st.fail_lists > 0 {
            st.fail_lists -= 1;
            return Err(PortError::unavailable("github", "502 Bad Gateway (fake)"));
        }
        let below: u64 = match cursor {
            Some(c) => c
                .parse()
                .map_err(|_| PortError::rejected("github", format!("bad cursor {c:?}")))?,
            None => u64::MAX,
        };
        let mut newest_first: Vec<&HookDelivery> =
            st.attempts.iter().filter(|d| d.id < below).collect();
        newest_first.sort_by_key(|d| std::cmp::Reverse(d.id));
        let page: Vec<HookDelivery> = newest_first
            .iter()
            .take(st.page_size)
            .map(|d| (*d).clone())
            .collect();
        let next_cursor = (newest_first.len() > st.page_size)
            .then(|| page.last().map(|d| d.id.to_string()))
            .flatten();
        Ok(DeliveryPage {
            deliveries: page,
            next_cursor,
        })
    }

    async fn redeliver(&self, _hook: &HookRef, delivery_id: u64) -> Result<(), PortError> {
        let mut st = self.st.lock().unwrap();
        let Some(original) = st.attempts.iter().find(|d| d.id == delivery_id).cloned() else {
            return Err(PortError::NotFound {
                service: "github",
                what: format!("hook delivery {delivery_id}"),
            });
        };
        st.redeliveries.push(delivery_id);
        let status = st.redelivery_status;
        let id = st.attempts.len() as u64 + 1;
        let at = st.now.unwrap_or_else(Utc::now);
        st.attempts.push(HookDelivery {
            id,
            delivered_at: at,
            redelivery: true,
            status_code: status,
            ..original
        });
        Ok(())
    }
}

#[derive(Default)]
struct SourceState {
    owners: Vec<String>,
    repos: Vec<RepoRef>,
    /// (repository, run id, run status)
    runs: Vec<(String, u64, String)>,
    jobs: Vec<(String, ListedJob)>,
    page_size: usize,
    rate_limit: Option<RateLimitState>,
    calls: usize,
    pat: bool,
}

/// Repositories, workflow runs and jobs as GitHub would list them.
pub struct MemoryJobSource {
    st: Mutex<SourceState>,
}

impl MemoryJobSource {
    pub fn new(page_size: usize) -> Self {
        Self {
            st: Mutex::new(SourceState {
                page_size: page_size.max(1),
                ..SourceState::default()
            }),
        }
    }

    /// Behave like a PAT: no installations to list.
    pub fn as_pat(&self) {
        self.st.lock().unwrap().pat = true;
    }

    pub fn add_repository(&self, full_name: &str, owner_type: &str) {
        let owner = full_name.split('/').next().unwrap_or_default().to_string();
        let mut st = self.st.lock().unwrap();
        if !st.owners.contains(&owner) {
            st.owners.push(owner.clone());
        }
        st.repos.push(RepoRef {
            full_name: full_name.into(),
            owner,
            owner_type: owner_type.into(),
            private: true,
            installation_id: Some(7),
        });
    }

    /// Make repository `full_name` public (repositories start private).
    pub fn set_public(&self, full_name: &str) {
        let mut st = self.st.lock().unwrap();
        for r in st.repos.iter_mut().filter(|r| r.full_name == full_name) {
            r.private = false;
        }
    }

    /// A job of run `run_id` (the run's status follows its jobs).
    pub fn add_job(&self, repo: &str, run_id: u64, job: ListedJob) {
        let mut st = self.st.lock().unwrap();
        if !st.runs.iter().any(|(r, id, _)| r == repo && *id == run_id) {
            st.runs.push((repo.into(), run_id, String::new()));
        }
        st.jobs.push((repo.into(), job));
    }

    pub fn set_job_status(&self, job_id: u64, status: &str) {
        let mut st = self.st.lock().unwrap();
        for (_, j) in st.jobs.iter_mut().filter(|(_, j)| j.id == job_id) {
            j.status = status.into();
        }
    }

    pub fn set_rate_limit(&self, remaining: u64, limit: u64) {
        self.st.lock().unwrap().rate_limit = Some(RateLimitState { remaining, limit });
    }

    pub fn calls(&self) -> usize {
        self.st.lock().unwrap().calls
    }

    fn page<T: Clone>(items: &[T], page: u32, size: usize) -> Page<T> {
        let start = (page.max(1) as usize - 1) * size;
        Page {
            items: items.iter().skip(start).take(size).cloned().collect(),
            more: items.len() > start + size,
        }
    }

    fn run_status(st: &SourceState, repo: &str, run_id: u64) -> &'static str {
        let jobs: Vec<&ListedJob> = st
            .jobs
            .iter()
            .filter(|(r, j)| r == repo && j.run_id == run_id)
            .map(|(_, j)| j)
            .collect();
        if jobs.iter().all(|j| j.status == "completed") {
            "completed"
        } else if jobs.iter().all(|j| j.status == "queued") {
            "queued"
        } else {
            "in_progress"
        }
    }
}

#[async_trait]
impl QueuedJobSource for MemoryJobSource {
    async fn list_installation_owners(&self, page: u32) -> Result<Page<String>, PortError> {
        let mut st = self.st.lock().unwrap();
        st.calls += 1;
        if st.pat {
            return Err(PortError::rejected(
                "github",
                "listing installations needs App auth",
            ));
        }
        Ok(Self::page(&st.owners, page, st.page_size))
    }

    async fn list_repositories(&self, owner: &str, page: u32) -> Result<Page<RepoRef>, PortError> {
        let mut st = self.st.lock().unwrap();
        st.calls += 1;
        let repos: Vec<RepoRef> = st
            .repos
            .iter()
            .filter(|r| r.owner.eq_ignore_ascii_case(owner))
            .cloned()
            .collect();
        if repos.is_empty() {
            return Err(PortError::NotFound {
                service: "github",
                what: format!("owner {owner}"),
            });
        }
        Ok(Self::page(&repos, page, st.page_size))
    }

    async fn get_repository(&self, full_name: &str) -> Result<Option<RepoRef>, PortError> {
        let mut st = self.st.lock().unwrap();
        st.calls += 1;
        Ok(st
            .repos
            .iter()
            .find(|r| r.full_name.eq_ignore_ascii_case(full_name))
            .cloned())
    }

    async fn list_runs(
        &self,
        repo: &RepoRef,
        status: &str,
        page: u32,
    ) -> Result<Page<u64>, PortError> {
        let mut st = self.st.lock().unwrap();
        st.calls += 1;
        let ids: Vec<u64> = st
            .runs
            .iter()
            .filter(|(r, id, _)| r == &repo.full_name && Self::run_status(&st, r, *id) == status)
            .map(|(_, id, _)| *id)
            .collect();
        Ok(Self::page(&ids, page, st.page_size))
    }

    async fn list_run_jobs(
        &self,
        repo: &RepoRef,
        run_id: u64,
        page: u32,
    ) -> Result<Page<ListedJob>, PortError> {
        let mut st = self.st.lock().unwrap();
        st.calls += 1;
        let jobs: Vec<ListedJob> = st
            .jobs
            .iter()
            .filter(|(r, j)| r == &repo.full_name && j.run_id == run_id)
            .map(|(_, j)| j.clone())
            .collect();
        Ok(Self::page(&jobs, page, st.page_size))
    }

    fn rate_limit(&self) -> Option<RateLimitState> {
        self.st.lock().unwrap().rate_limit
    }
}
