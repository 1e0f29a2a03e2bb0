//! Hot pools: runners booted, bootstrapped and registered before any job.
//!
//! A runner is **free** when its record's `job_id` is 0: a hot runner
//! launched by the filler, or a runner whose job GitHub gave to another runner
//! (`create_runner`'s `started` task frees it). A pool with `hot.count = N`
//! keeps N free runners: every queued job's delivery launches one runner as
//! before (for the job, or — when the job already started on a hot runner — a
//! free one), so the runner a job takes from the hot pool is replaced by the
//! launch its own delivery makes, and the job never waits for it. The filler
//! ([`HotPools::step_all`]: the janitor's pass, `serve` every few seconds) tops
//! the pool up (start, schedule, failures), recycles free runners past
//! `max_idle_secs`, and ends the surplus (a drained pool or a closed window
//! keeps none). It never ends a runner GitHub says is busy, and it deletes the
//! GitHub registration first, so a runner that would take a job meanwhile is
//! refused by GitHub (422) and kept.

use crate::config::{Config, HotPool, Pool, Scope};
use crate::matching::SELF_HOSTED;
use crate::names;
use crate::pool_task::{PoolTask, TaskMessage};
use crate::ports::{
    GitHubTarget, JobRecord, Limits, PortError, ReserveOutcome, RunnerRecord, RunnerScope,
    RunnerState,
};
use crate::teardown::Teardown;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// Where a pool's hot runners register.
pub fn hot_target(hot: &HotPool, pool: &Pool) -> Option<GitHubTarget> {
    let scope = match (pool.scope, &hot.owner, &hot.repository) {
        (Scope::Org, Some(org), _) => RunnerScope::Org { org: org.clone() },
        (Scope::Repo, _, Some(repo)) => {
            let (owner, name) = repo.split_once('/')?;
            RunnerScope::Repo {
                owner: owner.to_string(),
                repo: name.to_string(),
            }
        }
        _ => return None,
    };
    Some(GitHubTarget {
        scope,
        installation_id: hot.installation_id,
    })
}

/// `ClientToken` of a hot runner's CreateFleet: a pure function of its name
/// (≤ 64 characters whatever the name's length).
pub fn hot_client_token(deployment: &str, runner_name: &str, on_demand: bool) -> String {
    let digest = Sha256::digest(runner_name.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let kind = if on_demand { "od" } else { "spot" };
    format!("{deployment}-h{hex}-{kind}")
}

/// The labels a runner registers with: the pool's (with `self-hosted`) and
/// the reserved sizing labels of the job it was launched for.
pub fn runner_labels(pool: &Pool, launched_for: Option<&JobRecord>) -> Vec<String> {
    let mut labels = vec![SELF_HOSTED.to_string()];
    labels.extend(
        pool.labels
            .iter()
            .filter(|l| !l.eq_ignore_ascii_case(SELF_HOSTED))
            .cloned(),
    );
    if let Some(job) = launched_for {
        labels.extend(
            job.message
                .labels
                .iter()
                .filter(|l| l.to_ascii_lowercase().starts_with("spotrunner/"))
                .cloned(),
        );
    }
    labels
}

/// Can a runner with `labels` take a job asking for `job_labels`? GitHub's
/// rule: every job label is one of the runner's (case-insensitively).
pub fn can_serve(labels: &[String], job_labels: &[String]) -> bool {
    job_labels
        .iter()
        .all(|j| labels.iter().any(|l| l.eq_ignore_ascii_case(j)))
}

/// Is this runner free (no job of its own) and alive?
pub fn is_free(r: &RunnerRecord) -> bool {
    r.job_id == 0 && !matches!(r.state, RunnerState::Released | RunnerState::Tainted)
}

/// What the filler did in one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HotReport {
    /// Per pool: (target, free runners found, refills sent, runners ended).
    pub pools: Vec<HotPoolReport>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HotPoolReport {
    pub pool: String,
    pub target: u32,
    pub free: u32,
    pub refills: u32,
    pub ended: u32,
}

/// The filler: keeps each hot pool at its target.
pub struct HotPools<'a> {
    pub config: &'a Config,
    pub teardown: Teardown<'a>,
    /// Where JIT parameters live: `{prefix}{runner_name}`.
    pub jit_parameter_prefix: &'a str,
}

/// A reserved refill older than this with no instance is sent again.
const REFILL_AGAIN: chrono::Duration = chrono::Duration::seconds(60);

/// The record of a free runner about to be reserved.
pub fn free_runner(pool: &Pool, name: &str, jit_prefix: &str, now: DateTime<Utc>) -> RunnerRecord {
    RunnerRecord {
        name: name.to_string(),
        pool: pool.name.clone(),
        job_id: 0,
        weight: pool.weight,
        state: RunnerState::Reserved,
        instance_id: None,
        command_id: None,
        github_runner_id: None,
        jit_parameter: format!("{jit_prefix}{name}"),
        created_at: now,
        launched_at: None,
        updated_at: now,
        end_reason: None,
    }
}

impl HotPools<'_> {
    /// One pass over every pool with a hot pool (errors of one pool are
    /// logged; the next pass tries again).
    pub async fn step_all(&self, now: DateTime<Utc>) -> HotReport {
        let mut report = HotReport::default();
        if !self.config.pools.iter().any(|p| p.hot.is_some()) {
            return report;
        }
        let runners = match self.teardown.ledger.list_runners().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "hot pools: could not list runners; next pass");
                return report;
            }
        };
        for pool in &self.config.pools {
            let Some(hot) = &pool.hot else { continue };
            match self.step_pool(pool, hot, &runners, now).await {
                Ok(r) => report.pools.push(r),
                Err(e) => {
                    tracing::warn!(pool = %pool.name, error = %e, "hot pool step failed; next pass")
                }
            }
        }
        report
    }

    async fn step_pool(
        &self,
        pool: &Pool,
        hot: &HotPool,
        runners: &[RunnerRecord],
        now: DateTime<Utc>,
    ) -> Result<HotPoolReport, PortError> {
        let ledger = self.teardown.ledger;
        let drained = ledger.is_drained(&pool.name).await?;
        let target = if drained { 0 } else { hot.target(now) };
        let mine: Vec<&RunnerRecord> = runners.iter().filter(|r| r.pool == pool.name).collect();
        let mut free: Vec<&RunnerRecord> = mine.iter().copied().filter(|r| is_free(r)).collect();
        // Oldest first: they are recycled and trimmed first.
        free.sort_by_key(|r| (r.launched_at.unwrap_or(r.created_at), r.name.clone()));
        let mut report = HotPoolReport {
            pool: pool.name.clone(),
            target,
            free: free.len() as u32,
            ..HotPoolReport::default()
        };
        let max_idle =
            chrono::Duration::seconds(i64::try_from(hot.max_idle_secs).unwrap_or(i64::MAX / 1000));
        let mut kept = free.len() as u32;
        for r in &free {
            let ready = r.state == RunnerState::Bootstrapped;
            let old = now - r.launched_at.unwrap_or(r.created_at) >= max_idle;
            let surplus = kept > target;
            if !(ready && (surplus || old)) {
                continue;
            }
            let why = if surplus {
                if drained {
                    "hot pool drained"
                } else {
                    "hot pool above its target"
                }
            } else {
                "hot runner past max_idle_secs"
            };
            if self.end_idle(pool, hot, r, why, now).await? {
                kept -= 1;
                report.ended += 1;
            }
        }
        // A refill reserved but not launched a while ago (its message lost,
        // or create-runner down): send it again (the launch resumes).
        for r in &free {
            if r.state == RunnerState::Reserved && now - r.created_at > REFILL_AGAIN {
                self.send_refill(pool, &r.name).await?;
            }
        }
        if kept < target {
            let missing = target - kept;
            let base = next_seq(&mine, now);
            for i in 0..missing {
                let seq = base.saturating_add(i);
                let name = names::runner_name(&self.config.deployment, &pool.name, 0, seq);
                // Reserve first, then ask create-runner to launch: the next
                // pass counts the refill even before its launch.
                let record = free_runner(pool, &name, self.jit_parameter_prefix, now);
                let limits = Limits {
                    pool_max: pool.max_runners,
                    weight: pool.weight,
                    global_max_weight: self.config.max_total_weight,
                };
                match ledger.reserve(&record, limits).await? {
                    ReserveOutcome::Reserved | ReserveOutcome::AlreadyReserved => {}
                    ReserveOutcome::PoolFull | ReserveOutcome::GlobalFull => break,
                }
                self.send_refill(pool, &name).await?;
                report.refills += 1;
            }
            if report.refills > 0 {
                tracing::info!(
                    pool = %pool.name,
                    target,
                    free = report.free,
                    refills = report.refills,
                    metric = "hot_refills",
                    value = report.refills,
                    "hot pool below its target: refills reserved and sent"
                );
            }
        }
        Ok(report)
    }

    async fn send_refill(&self, pool: &Pool, name: &str) -> Result<(), PortError> {
        let task = TaskMessage::new(PoolTask::HotRefill {
            pool: pool.name.clone(),
            runner_name: name.to_string(),
        });
        self.teardown
            .jobs_queue
            .send_task(&task, std::time::Duration::ZERO)
            .await
    }

    /// End one free idle runner unless GitHub says it is busy: the GitHub
    /// registration goes first (GitHub refuses to delete a busy runner), so a
    /// job it took meanwhile keeps it. `false` when kept.
    async fn end_idle(
        &self,
        pool: &Pool,
        hot: &HotPool,
        r: &RunnerRecord,
        why: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        if let (Some(id), Some(target)) = (r.github_runner_id, hot_target(hot, pool)) {
            let github = self.teardown.github;
            if github
                .get_runner(&target, id)
                .await?
                .is_some_and(|g| g.busy)
            {
                return Ok(false);
            }
            if let Err(e) = github.delete_runner(&target, id).await {
                tracing::info!(runner_name = %r.name, error = %e, "hot runner kept: GitHub would not delete it (busy?)");
                return Ok(false);
            }
        }
        // Still free? A `started` task may have bound it to a job meanwhile.
        match self.teardown.ledger.get_runner(&r.name).await? {
            Some(now_r) if is_free(&now_r) => {
                self.teardown.end_runner(&now_r, true, why, now).await?;
                tracing::info!(pool = %pool.name, runner_name = %r.name, reason = why, metric = "hot_runners_ended", "hot runner ended");
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// The next hot runner number of a pool: above every number used before
/// (live or released), and at least the seconds since 2024 so that a ledger
/// that forgot old records never reuses a name (and its `ClientToken`).
fn next_seq(mine: &[&RunnerRecord], now: DateTime<Utc>) -> u32 {
    let used = mine
        .iter()
        .filter_map(|r| names::parse_runner_name(&r.name))
        .filter(|n| n.job_id == 0)
        .map(|n| n.attempt)
        .max();
    let epoch = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(now);
    let clock = u32::try_from((now - epoch).num_seconds().max(0)).unwrap_or(u32::MAX / 2);
    used.map_or(clock, |u| u.saturating_add(1).max(clock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_fit_and_differ() {
        let a = hot_client_token("d".repeat(20).as_str(), &"x".repeat(64), false);
        assert!(a.len() <= 64, "{a}");
        assert_ne!(
            hot_client_token("sr", "sr_cpu-0-1", false),
            hot_client_token("sr", "sr_cpu-0-2", false)
        );
        assert_ne!(
            hot_client_token("sr", "sr_cpu-0-1", false),
            hot_client_token("sr", "sr_cpu-0-1", true)
        );
    }

    #[test]
    fn github_serves_a_job_only_with_every_label() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(can_serve(&l(&["self-hosted", "Linux"]), &l(&["linux"])));
        assert!(!can_serve(
            &l(&["self-hosted", "linux"]),
            &l(&["linux", "spotrunner/cpu=8"])
        ));
        assert!(can_serve(
            &l(&["self-hosted", "linux", "spotrunner/cpu=8"]),
            &l(&["self-hosted", "linux"])
        ));
    }
}
