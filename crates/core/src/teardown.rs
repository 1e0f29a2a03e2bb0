//! Ending one runner: the steps stop-runner and the janitor share. Each step is
//! idempotent and capacity is released last, so a runner marked `Released` has
//! had every step done, and a failed step is simply redone by the next try.

use crate::circuit::{CircuitState, PoolHealth};
use crate::config::{Config, RelaunchPolicy};
use crate::create_runner::github_target;
use crate::job::JobMessage;
use crate::ports::{
    Compute, GitHubApi, JobChange, JobQueue, JobRecord, JobState, Ledger, PortError,
    RunnerParameters, RunnerRecord,
};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The ports a teardown touches.
pub struct Teardown<'a> {
    pub config: &'a Config,
    pub ledger: &'a dyn Ledger,
    pub github: &'a dyn GitHubApi,
    pub compute: &'a dyn Compute,
    pub parameters: &'a dyn RunnerParameters,
}

impl Teardown<'_> {
    /// Terminate the runner's instance (unless `terminate` is false: it is already
    /// gone), delete its JIT parameter and its GitHub registration (404 is fine),
    /// then release its capacity. `Ok(false)`: it was already released.
    pub async fn end_runner(
        &self,
        runner: &RunnerRecord,
        terminate: bool,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        if terminate && let Some(id) = &runner.instance_id {
            self.compute.terminate(std::slice::from_ref(id)).await?;
        }
        self.parameters.delete(&runner.jit_parameter).await?;
        if let Some(id) = runner.github_runner_id {
            match self.ledger.get_job(runner.job_id).await? {
                Some(job) => match self.config.pool(&runner.pool) {
                    Some(pool) => {
                        self.github
                            .delete_runner(&github_target(&job.message, pool), id)
                            .await?
                    }
                    None => tracing::warn!(
                        job_id = runner.job_id,
                        runner_name = runner.name,
                        "pool gone from the configuration; the janitor deletes the GitHub runner"
                    ),
                },
                None => tracing::warn!(
                    job_id = runner.job_id,
                    runner_name = runner.name,
                    "job gone from the ledger; the janitor deletes the GitHub runner"
                ),
            }
        }
        let released = self.ledger.release(&runner.name, reason, now).await?;
        tracing::info!(
            job_id = runner.job_id,
            runner_name = runner.name,
            instance_id = runner.instance_id.as_deref().unwrap_or(""),
            reason,
            released,
            "runner ended"
        );
        Ok(released)
    }
}

/// The ports a relaunch touches.
pub struct Relaunch<'a> {
    pub config: &'a Config,
    pub ledger: &'a dyn Ledger,
    pub jobs_queue: &'a dyn JobQueue,
}

impl Relaunch<'_> {
    /// Runner `runner_name` ended before `job` started (it exited, never booted,
    /// or vanished): count a start failure against the pool's circuit breaker,
    /// then launch the job again after the pool's growing delay, or give it up
    /// (`Failed`) once it had `relaunch.max_launches` launches. A job already
    /// requeued, running, final, or claimed under a live lease is left alone, so
    /// this is idempotent. Returns the job's state when this changed it.
    pub async fn after_failed_start(
        &self,
        job: &JobRecord,
        runner_name: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<JobState>, PortError> {
        if job.state.is_final() || matches!(job.state, JobState::Requeued | JobState::Running) {
            return Ok(None);
        }
        if job.state == JobState::Claimed && job.lease_until.is_some_and(|t| t > now) {
            return Ok(None); // a create-runner invocation is working on it
        }
        let policy = self
            .config
            .pool(&job.pool)
            .map(|p| p.relaunch.clone())
            .unwrap_or_default();
        record_start_failure(self.ledger, &job.pool, runner_name, reason, now, &policy).await?;
        let launches = job.launch_attempt + 1;
        if launches >= policy.max_launches {
            let why = format!(
                "{launches} runner(s) ended before the job started (last: {reason}); \
                 giving up (pool {} relaunch.max_launches = {})",
                job.pool, policy.max_launches
            );
            let change = JobChange {
                state: Some(JobState::Failed),
                clear_lease: true,
                end_reason: Some(why.clone()),
                only_at_attempt: Some(job.launch_attempt),
                ..JobChange::default()
            };
            self.ledger.update_job(job.job_id, &change, now).await?;
            tracing::error!(
                job_id = job.job_id,
                pool = %job.pool,
                launches,
                reason = why,
                metric = "jobs_failed_to_start",
                "job given up: its runners keep ending before it starts"
            );
            return Ok(Some(JobState::Failed));
        }
        let delay = policy.delay_before(launches);
        send_requeue(self.ledger, self.jobs_queue, job, delay, now).await?;
        tracing::warn!(
            job_id = job.job_id,
            launch_attempt = launches,
            delay_secs = delay.as_secs(),
            reason,
            metric = "jobs_requeued",
            "job requeued"
        );
        Ok(Some(JobState::Requeued))
    }
}

/// Count `runner_name`'s failed start against `pool`'s circuit breaker (once per
/// runner); logs when it opens the circuit.
pub async fn record_start_failure(
    ledger: &dyn Ledger,
    pool: &str,
    runner_name: &str,
    reason: &str,
    now: DateTime<Utc>,
    policy: &RelaunchPolicy,
) -> Result<(), PortError> {
    // Whether this failure opened the circuit, seen inside the one
    // read-modify-write (no second read).
    let opened = std::sync::atomic::AtomicBool::new(false);
    let health = ledger
        .update_pool_health(pool, &|h: &mut PoolHealth| {
            let was_open = matches!(h.state(now), CircuitState::Open { .. });
            let changed = h.record_failure(runner_name, reason, now, policy);
            let open = matches!(h.state(now), CircuitState::Open { .. });
            opened.store(open && !was_open, std::sync::atomic::Ordering::Relaxed);
            changed
        })
        .await?;
    if let CircuitState::Open { until } = health.state(now)
        && opened.load(std::sync::atomic::Ordering::Relaxed)
    {
        tracing::error!(
            pool,
            runner_name,
            failures = health.failures.len(),
            until = %until,
            reason,
            metric = "pool_circuit_opened",
            "pool paused: its runners keep ending before their job starts"
        );
    }
    Ok(())
}

/// A runner of `pool` ran its job: start failures are no longer in a row.
pub async fn record_start_success(
    ledger: &dyn Ledger,
    pool: &str,
    now: DateTime<Utc>,
) -> Result<(), PortError> {
    let health = ledger.pool_health(pool).await?;
    if health.failures.is_empty() && health.open_until.is_none() {
        return Ok(()); // the common case: one read, no write
    }
    ledger
        .update_pool_health(pool, &|h: &mut PoolHealth| h.record_success(now))
        .await?;
    tracing::info!(pool, metric = "pool_circuit_closed", "pool healthy again");
    Ok(())
}

/// Send a fresh message for the job's next launch attempt (after `delay`),
/// *then* mark the job `Requeued` — only if it is still at the attempt we read:
/// the message may already have been claimed. A failed send changes nothing; a
/// failed mark is harmless (the claim rule lets the higher attempt take a
/// `Launched` or `Claimed` job), and the claim of that attempt dedups a resent copy.
pub async fn send_requeue(
    ledger: &dyn Ledger,
    jobs_queue: &dyn JobQueue,
    job: &JobRecord,
    delay: Duration,
    now: DateTime<Utc>,
) -> Result<(), PortError> {
    let next = JobMessage {
        launch_attempt: job.launch_attempt + 1,
        deferrals: 0,
        ..job.message.clone()
    };
    if delay.is_zero() {
        jobs_queue.send_job(&next).await?;
    } else {
        jobs_queue.send_job_after(&next, delay).await?;
    }
    let change = JobChange {
        state: Some(JobState::Requeued),
        clear_lease: true,
        only_at_attempt: Some(job.launch_attempt),
        ..JobChange::default()
    };
    ledger.update_job(job.job_id, &change, now).await
}
