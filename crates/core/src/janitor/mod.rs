//! janitor: level-triggered reconciliation of the cloud's instances ↔ the ledger
//! ↔ GitHub's runners. [`snapshot`] reads everything (all pages), [`plan`] is a
//! pure function from the snapshot to a list of [`Action`]s, each with its reason,
//! and [`Janitor::run`] performs them unless it is a dry run: the dry-run report is
//! exactly the list a real run would act on.

mod execute;
pub use execute::LEFTOVER_GRACE;
mod plan;
mod report;
mod snapshot;
mod stale;

pub use plan::plan;
pub use report::{Action, ActionKind, ActionResult, JanitorReport};
pub use snapshot::{GitHubRunnerSeen, Snapshot};

use crate::config::Config;
use crate::ports::{Compute, GitHubApi, JobQueue, Ledger, PortError, RunnerParameters};
use crate::rerun::Reruns;
use crate::teardown::Teardown;
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// Timers that are not per pool (per-pool ones come from the configuration).
#[derive(Debug, Clone)]
pub struct JanitorSettings {
    /// How long a tainted runner stays before it is deleted (if still idle).
    pub taint_grace: chrono::Duration,
    /// A job waiting this long with no live runner is put back on the queue.
    pub stale_job_after: chrono::Duration,
    /// GitHub cancels jobs queued longer than this; they are dropped.
    pub max_job_age: chrono::Duration,
    /// A reservation that never got an instance, whose job is gone, is released
    /// after this long.
    pub reservation_timeout: chrono::Duration,
    /// Where JIT parameters live: `{prefix}{runner_name}`.
    pub jit_parameter_prefix: String,
}

impl JanitorSettings {
    pub fn for_deployment(deployment: &str) -> Self {
        Self {
            taint_grace: chrono::Duration::minutes(10),
            stale_job_after: chrono::Duration::minutes(30),
            max_job_age: chrono::Duration::hours(24),
            reservation_timeout: chrono::Duration::minutes(15),
            jit_parameter_prefix: format!("/{deployment}/jit/"),
        }
    }
}

/// The janitor and the ports it reconciles.
#[derive(Clone)]
pub struct Janitor {
    pub config: Arc<Config>,
    pub settings: JanitorSettings,
    pub ledger: Arc<dyn Ledger>,
    pub github: Arc<dyn GitHubApi>,
    pub compute: Arc<dyn Compute>,
    pub parameters: Arc<dyn RunnerParameters>,
    pub jobs_queue: Arc<dyn JobQueue>,
}

impl Janitor {
    /// Keep every hot pool at its target (`crate::hot`): each janitor pass,
    /// and `serve` every few seconds.
    pub async fn step_hot(&self, now: DateTime<Utc>) -> crate::hot::HotReport {
        let hot = crate::hot::HotPools {
            config: &self.config,
            teardown: self.teardown(),
            jit_parameter_prefix: &self.settings.jit_parameter_prefix,
        };
        hot.step_all(now).await
    }

    /// Its ports, to end a runner and relaunch its job.
    fn teardown(&self) -> Teardown<'_> {
        Teardown {
            config: &self.config,
            ledger: self.ledger.as_ref(),
            github: self.github.as_ref(),
            compute: self.compute.as_ref(),
            parameters: self.parameters.as_ref(),
            jobs_queue: self.jobs_queue.as_ref(),
        }
    }

    /// One reconciliation pass. With `dry_run`, nothing is changed and the report
    /// lists what would have been done.
    pub async fn run(&self, now: DateTime<Utc>, dry_run: bool) -> Result<JanitorReport, PortError> {
        let snap = self.snapshot(now).await?;
        let actions = plan(&self.config, &self.settings, &snap, now);
        for a in &actions {
            tracing::info!(
                job_id = a.job_id,
                action = a.kind.as_str(),
                subject = a.subject,
                reason = a.reason,
                dry_run,
                "janitor action planned"
            );
        }
        let results = if dry_run {
            actions
                .into_iter()
                .map(|action| ActionResult {
                    action,
                    done: false,
                    error: None,
                })
                .collect()
        } else {
            let results = self.execute(actions, &snap, now).await;
            // The safety net of the waiting lines: a wake lost to a crash
            // between a release and its wake is made here.
            let woken = self.teardown().waker().wake_all(now).await;
            if !woken.is_empty() {
                tracing::info!(woken = ?woken, "janitor woke waiting jobs for free slots");
            }
            // Jobs a spot interruption killed: re-run once their run completed.
            let reruns = Reruns {
                config: &self.config,
                ledger: self.ledger.as_ref(),
                github: self.github.as_ref(),
            };
            reruns.step_all(&snap.jobs, now).await;
            // Hot pools: top up, recycle, trim (`crate::hot`).
            self.step_hot(now).await;
            results
        };
        let report = JanitorReport::new(dry_run, results, snap.warnings.clone());
        tracing::info!(
            dry_run,
            actions = report.results.len(),
            failed = report.failed(),
            counts = ?report.counts(),
            "janitor pass finished"
        );
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
