//! The missed-job sweep: the net below the redelivery loop, for deliveries
//! that never reached us at all. For the allowed repositories it lists the
//! workflow runs that are `queued` or `in_progress`, their jobs, and enqueues
//! every `queued` job that a pool serves and the ledger does not know —
//! through the same message builder and queue as the webhook, so a job found
//! here and delivered by the webhook too is claimed once (the job id is the
//! claim's key).
//!
//! Budgeted: at most `max_calls` GitHub calls per run, and none while less
//! than `min_rate_remaining_percent` of the rate limit is left. A run that
//! stops early keeps the repository it stopped at and starts there next time,
//! so every repository is reached in turn.

use super::Budget;
use crate::Config;
use crate::ports::{JobQueue, Ledger, ListedJob, Page, PortError, QueuedJobSource, RepoRef};
use crate::webhook::{QueuedJob, queued_job_message};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The ledger key of the sweep's state document.
pub const STATE_KEY: &str = "sweep";
/// What the sweep puts in a message's `delivery_id`.
pub const SWEEP_DELIVERY: &str = "sweep";
/// A job the sweep enqueued is not enqueued again for this long (it may wait
/// unclaimed on the queue while its pool is drained or paused).
const REMEMBER: Duration = Duration::hours(24);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepState {
    /// The repository (`owner/name`, lower case) the next run starts at.
    #[serde(default)]
    pub next_repository: Option<String>,
    /// Jobs this sweep enqueued, and when.
    #[serde(default)]
    pub enqueued: BTreeMap<u64, DateTime<Utc>>,
    #[serde(default)]
    pub last_complete: Option<DateTime<Utc>>,
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub calls: u32,
    pub repositories: u32,
    pub repositories_done: u32,
    pub runs: u32,
    pub queued_jobs: u32,
    /// Queued jobs the ledger did not know, enqueued now.
    pub enqueued: u32,
    pub known: u32,
    /// Queued less than `min_age_secs` ago: left to the webhook.
    pub too_young: u32,
    /// Not ours: no pool serves the labels, or a drained pool.
    pub not_ours: u32,
    /// Stopped because the rate limit ran low.
    pub rate_limited: bool,
    /// Every repository was looked at.
    pub complete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub struct Sweep {
    pub config: Arc<Config>,
    pub source: Arc<dyn QueuedJobSource>,
    pub ledger: Arc<dyn Ledger>,
    pub queue: Arc<dyn JobQueue>,
}

/// Why a run stopped before the end.
enum Stop {
    Budget,
    RateLimit,
    Failed(PortError),
}

struct Run<'a> {
    sweep: &'a Sweep,
    budget: Budget,
    report: SweepReport,
    /// Pools asked about this run: drained or not.
    drained: BTreeMap<String, bool>,
    state: SweepState,
    now: DateTime<Utc>,
}

impl Sweep {
    pub async fn run(&self, now: DateTime<Utc>) -> Result<SweepReport, PortError> {
        let settings = &self.config.recovery.sweep;
        if !settings.enabled {
            return Ok(SweepReport {
                skipped: Some("recovery.sweep.enabled is false".into()),
                ..SweepReport::default()
            });
        }
        let state: SweepState = match self.ledger.state_doc(STATE_KEY).await? {
            Some(doc) => serde_json::from_value(doc).unwrap_or_default(),
            None => SweepState::default(),
        };
        let mut run = Run {
            sweep: self,
            budget: Budget::new(settings.max_calls),
            report: SweepReport::default(),
            drained: BTreeMap::new(),
            state,
            now,
        };
        run.state.enqueued.retain(|_, at| *at + REMEMBER > now);
        let outcome = run.sweep_all().await;
        match outcome {
            Ok(()) => {}
            Err(Stop::Budget) => {}
            Err(Stop::RateLimit) => run.report.rate_limited = true,
            Err(Stop::Failed(e)) => {
                if let PortError::Rejected { .. } = e {
                    run.report.skipped = Some(e.to_string());
                }
                tracing::warn!(error = %e, "sweep stopped early");
                run.report.error = Some(e.to_string());
            }
        }
        run.report.calls = run.budget.used();
        let doc = serde_json::to_value(&run.state)
            .map_err(|e| PortError::rejected("ledger", format!("encode sweep state: {e}")))?;
        self.ledger
            .update_state_doc(STATE_KEY, &|d: &mut Option<serde_json::Value>| {
                *d = Some(doc.clone());
                true
            })
            .await?;
        let r = &run.report;
        tracing::info!(
            calls = r.calls,
            repositories = r.repositories,
            repositories_done = r.repositories_done,
            runs = r.runs,
            queued_jobs = r.queued_jobs,
            enqueued = r.enqueued,
            known = r.known,
            too_young = r.too_young,
            rate_limited = r.rate_limited,
            complete = r.complete,
            "sweep run"
        );
        Ok(run.report)
    }
}

impl Run<'_> {
    /// Take one call from the budget, if the budget and the rate limit allow.
    fn call(&mut self) -> Result<(), Stop> {
        let pct = self.sweep.config.recovery.sweep.min_rate_remaining_percent as u64;
        if let Some(rl) = self.sweep.source.rate_limit()
            && rl.limit > 0
            && rl.remaining * 100 < rl.limit * pct
        {
            tracing::warn!(
                remaining = rl.remaining,
                limit = rl.limit,
                "sweep paused: GitHub rate limit low"
            );
            return Err(Stop::RateLimit);
        }
        if self.budget.take() {
            Ok(())
        } else {
            Err(Stop::Budget)
        }
    }

    async fn sweep_all(&mut self) -> Result<(), Stop> {
        let mut repos = self.repositories().await?;
        repos.sort_by_key(|r| r.full_name.to_ascii_lowercase());
        repos.dedup_by_key(|r| r.full_name.to_ascii_lowercase());
        self.report.repositories = repos.len() as u32;
        let start = self.state.next_repository.as_deref().map_or(0, |next| {
            repos
                .iter()
                .position(|r| r.full_name.to_ascii_lowercase().as_str() >= next)
                .unwrap_or(0)
        });
        repos.rotate_left(start);
        for repo in &repos {
            self.state.next_repository = Some(repo.full_name.to_ascii_lowercase());
            self.repository(repo).await?;
            self.report.repositories_done += 1;
        }
        self.state.next_repository = None;
        self.state.last_complete = Some(self.now);
        self.report.complete = true;
        Ok(())
    }

    /// The allowed repositories: by name, or every repository of the allowed
    /// owners (or of every account the App is installed on).
    async fn repositories(&mut self) -> Result<Vec<RepoRef>, Stop> {
        let config = self.sweep.config.clone();
        let mut repos = Vec::new();
        if !config.allowed_repositories.is_empty() {
            for name in &config.allowed_repositories {
                self.call()?;
                match self.sweep.source.get_repository(name).await {
                    Ok(Some(r)) => repos.push(r),
                    Ok(None) => tracing::warn!(
                        repository = %name,
                        "sweep: an allowed repository does not exist or is not visible"
                    ),
                    Err(e) => return Err(Stop::Failed(e)),
                }
            }
        } else {
            let owners = if config.named_owners().next().is_none() {
                let mut owners = Vec::new();
                let mut page = 1;
                loop {
                    self.call()?;
                    let p = self
                        .sweep
                        .source
                        .list_installation_owners(page)
                        .await
                        .map_err(Stop::Failed)?;
                    owners.extend(p.items);
                    if !p.more {
                        break owners;
                    }
                    page += 1;
                }
            } else {
                config.named_owners().cloned().collect()
            };
            for owner in owners {
                let mut page = 1;
                loop {
                    self.call()?;
                    let p = match self.sweep.source.list_repositories(&owner, page).await {
                        Ok(p) => p,
                        Err(PortError::NotFound { .. }) => {
                            tracing::warn!(owner = %owner, "sweep: owner not found or App not installed there");
                            break;
                        }
                        Err(e) => return Err(Stop::Failed(e)),
                    };
                    repos.extend(p.items);
                    if !p.more {
                        break;
                    }
                    page += 1;
                }
            }
        }
        repos.retain(|r| config.allows(&r.owner, &r.full_name));
        Ok(repos)
    }

    async fn repository(&mut self, repo: &RepoRef) -> Result<(), Stop> {
        for status in ["queued", "in_progress"] {
            let mut page = 1;
            loop {
                self.call()?;
                let runs: Page<u64> = self
                    .sweep
                    .source
                    .list_runs(repo, status, page)
                    .await
                    .map_err(Stop::Failed)?;
                for run_id in runs.items {
                    self.report.runs += 1;
                    self.run_jobs(repo, run_id).await?;
                }
                if !runs.more {
                    break;
                }
                page += 1;
            }
        }
        Ok(())
    }

    async fn run_jobs(&mut self, repo: &RepoRef, run_id: u64) -> Result<(), Stop> {
        let mut page = 1;
        loop {
            self.call()?;
            let jobs = self
                .sweep
                .source
                .list_run_jobs(repo, run_id, page)
                .await
                .map_err(Stop::Failed)?;
            for job in jobs.items.iter().filter(|j| j.status == "queued") {
                self.report.queued_jobs += 1;
                self.consider(repo, job).await?;
            }
            if !jobs.more {
                return Ok(());
            }
            page += 1;
        }
    }

    async fn consider(&mut self, repo: &RepoRef, job: &ListedJob) -> Result<(), Stop> {
        let min_age = Duration::seconds(self.sweep.config.recovery.sweep.min_age_secs as i64);
        if job.created_at + min_age > self.now {
            self.report.too_young += 1;
            return Ok(());
        }
        if self.state.enqueued.contains_key(&job.id) {
            self.report.known += 1;
            return Ok(());
        }
        let known = self
            .sweep
            .ledger
            .get_job(job.id)
            .await
            .map_err(Stop::Failed)?;
        if known.is_some() {
            self.report.known += 1;
            return Ok(());
        }
        let queued = QueuedJob {
            job_id: job.id,
            run_id: job.run_id,
            run_attempt: job.run_attempt,
            labels: &job.labels,
            created_at: Some(job.created_at),
            repository: &repo.full_name,
            owner: &repo.owner,
            owner_type: &repo.owner_type,
            public: !repo.private,
            installation_id: repo.installation_id,
            delivery_id: Some(SWEEP_DELIVERY),
            job_name: job.name.as_deref(),
        };
        let Ok(msg) = queued_job_message(&self.sweep.config, &queued, self.now) else {
            self.report.not_ours += 1;
            return Ok(());
        };
        let drained = match self.drained.get(&msg.pool) {
            Some(d) => *d,
            None => {
                let d = self
                    .sweep
                    .ledger
                    .is_drained(&msg.pool)
                    .await
                    .map_err(Stop::Failed)?;
                self.drained.insert(msg.pool.clone(), d);
                d
            }
        };
        if drained {
            self.report.not_ours += 1;
            return Ok(());
        }
        self.sweep
            .queue
            .send_job(&msg)
            .await
            .map_err(Stop::Failed)?;
        self.state.enqueued.insert(job.id, self.now);
        self.report.enqueued += 1;
        tracing::warn!(
            job_id = job.id,
            repository = %repo.full_name,
            pool = %msg.pool,
            queued_at = %job.created_at,
            metric = "jobs_found_by_sweep",
            "a queued job was never delivered to us; enqueued by the sweep"
        );
        Ok(())
    }
}
