//! Ending one runner: the steps stop-runner and the janitor share. Each step is
//! idempotent and capacity is released last, so a runner marked `Released` has
//! had every step done, and a failed step is simply redone by the next try.

use crate::config::Config;
use crate::create_runner::github_target;
use crate::job::JobMessage;
use crate::ports::{
    Compute, GitHubApi, JobChange, JobQueue, JobRecord, JobState, Ledger, PortError,
    RunnerParameters, RunnerRecord,
};
use chrono::{DateTime, Utc};

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

/// Put a job that never started back on the queue with the next launch attempt
/// (state `Requeued`; the next claim takes it). A job already requeued, running
/// or final is left alone, so this is idempotent.
pub async fn requeue_job(
    ledger: &dyn Ledger,
    jobs_queue: &dyn JobQueue,
    job: &JobRecord,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool, PortError> {
    if job.state.is_final() || matches!(job.state, JobState::Requeued | JobState::Running) {
        return Ok(false);
    }
    if job.state == JobState::Claimed && job.lease_until.is_some_and(|t| t > now) {
        return Ok(false); // a create-runner invocation is working on it
    }
    send_requeue(ledger, jobs_queue, job, now).await?;
    tracing::warn!(
        job_id = job.job_id,
        launch_attempt = job.launch_attempt + 1,
        reason,
        metric = "jobs_requeued",
        "job requeued"
    );
    Ok(true)
}

/// Mark the job `Requeued` and send a fresh message with the next launch
/// attempt (the claim of that attempt dedups a resent copy).
pub async fn send_requeue(
    ledger: &dyn Ledger,
    jobs_queue: &dyn JobQueue,
    job: &JobRecord,
    now: DateTime<Utc>,
) -> Result<(), PortError> {
    let change = JobChange {
        state: Some(JobState::Requeued),
        clear_lease: true,
        ..JobChange::default()
    };
    ledger.update_job(job.job_id, &change, now).await?;
    let next = JobMessage {
        launch_attempt: job.launch_attempt + 1,
        deferrals: 0,
        ..job.message.clone()
    };
    jobs_queue.send_job(&next).await
}
