//! The bootstrap step, driven by a delayed message: once the instance's SSM agent
//! is online, send the runner command; until the pool's boot timeout, try again
//! with a short backoff; then end the instance and put the job back.

use super::deps::CreateRunner;
use super::launch::{MAX_DELAY, target};
use super::outcome::JobOutcome;
use crate::job::JobMessage;
use crate::ports::{
    BootstrapCommand, BootstrapMessage, JobChange, JobState, PortError, RunnerChange, RunnerState,
    SendOutcome,
};
use chrono::{DateTime, Utc};
use std::time::Duration;

impl CreateRunner {
    /// One bootstrap attempt for the runner in `msg`.
    pub async fn handle_bootstrap(&self, msg: &BootstrapMessage, now: DateTime<Utc>) -> JobOutcome {
        let outcome = self.run_bootstrap(msg, now).await;
        let (job_id, runner_name) = (msg.job_id, msg.runner_name.as_str());
        match &outcome {
            JobOutcome::Launched { instance_id, .. } => {
                tracing::info!(job_id, runner_name, instance_id, "runner command sent")
            }
            JobOutcome::Deferred { reason, after } => tracing::info!(
                job_id,
                runner_name,
                reason,
                delay_secs = after.as_secs(),
                "bootstrap later"
            ),
            JobOutcome::Dropped { reason } => {
                tracing::warn!(job_id, runner_name, reason, "bootstrap ended")
            }
            other => tracing::warn!(job_id, runner_name, outcome = ?other, "bootstrap not done"),
        }
        outcome
    }

    async fn run_bootstrap(&self, msg: &BootstrapMessage, now: DateTime<Utc>) -> JobOutcome {
        let runner = match self.ledger.get_runner(&msg.runner_name).await {
            Err(e) => return retry(&e),
            Ok(None) => {
                return JobOutcome::Dropped {
                    reason: "runner unknown to the ledger".into(),
                };
            }
            Ok(Some(r)) => r,
        };
        match runner.state {
            RunnerState::Released => {
                return JobOutcome::Dropped {
                    reason: "runner already released".into(),
                };
            }
            RunnerState::Bootstrapped | RunnerState::Tainted => return JobOutcome::Duplicate,
            RunnerState::Reserved | RunnerState::Launched => {}
        }
        let pool = self.config.pool(&msg.pool);
        let boot_timeout = pool.map_or(300, |p| p.boot_timeout_secs);
        let cmd = BootstrapCommand {
            instance_id: msg.instance_id.clone(),
            runner_name: msg.runner_name.clone(),
            jit_parameter: runner.jit_parameter.clone(),
            max_run_time_secs: pool.map_or(6 * 3600, |p| p.max_run_time_secs),
            startup_script_key: pool
                .and_then(|p| p.startup_script.as_ref())
                .map(|_| format!("startup/{}.sh", msg.pool)),
        };
        match self.commands.send_bootstrap(&cmd).await {
            Ok(SendOutcome::Sent { command_id }) => {
                let change = RunnerChange {
                    state: Some(RunnerState::Bootstrapped),
                    command_id: Some(command_id),
                    ..RunnerChange::default()
                };
                match self
                    .ledger
                    .update_runner(&msg.runner_name, &change, now)
                    .await
                {
                    Ok(()) => JobOutcome::Launched {
                        runner_name: msg.runner_name.clone(),
                        instance_id: msg.instance_id.clone(),
                    },
                    Err(e) => retry(&e),
                }
            }
            Ok(SendOutcome::NotReady) => {
                let waited = (now - msg.launched_at).num_seconds().max(0) as u64;
                if waited >= boot_timeout {
                    return self
                        .give_up(msg, &runner.jit_parameter, runner.github_runner_id, now)
                        .await;
                }
                let mut next = msg.clone();
                next.tries += 1;
                let delay = bootstrap_backoff(msg.tries)
                    .min(Duration::from_secs(boot_timeout - waited).max(Duration::from_secs(1)));
                match self.bootstrap_queue.schedule(&next, delay).await {
                    Ok(()) => JobOutcome::Deferred {
                        reason: format!("SSM agent not online after {waited} s"),
                        after: delay,
                    },
                    Err(e) => retry(&e),
                }
            }
            Err(e) => retry(&e),
        }
    }

    /// Boot timeout: terminate, clean up, release, and put the job back with the
    /// next launch attempt. Each step is idempotent, so a retry redoes them safely.
    async fn give_up(
        &self,
        msg: &BootstrapMessage,
        parameter: &str,
        github_runner_id: Option<u64>,
        now: DateTime<Utc>,
    ) -> JobOutcome {
        let steps = async {
            self.compute
                .terminate(std::slice::from_ref(&msg.instance_id))
                .await?;
            self.parameters.delete(parameter).await?;
            let job = self.ledger.get_job(msg.job_id).await?;
            if let Some(job) = &job
                && let Some(id) = github_runner_id
                && let Some(pool) = self.config.pool(&msg.pool)
            {
                self.github
                    .delete_runner(&target(&job.message, pool), id)
                    .await?;
            }
            if let Some(job) = job
                && !job.state.is_final()
                && job.state != JobState::Requeued
            {
                let next_attempt = job.launch_attempt + 1;
                let change = JobChange {
                    state: Some(JobState::Requeued),
                    clear_lease: true,
                    ..JobChange::default()
                };
                self.ledger.update_job(msg.job_id, &change, now).await?;
                let requeued = JobMessage {
                    launch_attempt: next_attempt,
                    ..job.message.clone()
                };
                self.jobs_queue.send_job(&requeued).await?;
            }
            self.ledger
                .release(&msg.runner_name, "boot timeout", now)
                .await?;
            Ok::<(), PortError>(())
        };
        match steps.await {
            Ok(()) => JobOutcome::Dropped {
                reason: "boot timeout: instance terminated, job requeued".into(),
            },
            Err(e) => retry(&e),
        }
    }
}

/// 5 s, 10 s, 20 s, then every 30 s.
fn bootstrap_backoff(tries: u32) -> Duration {
    Duration::from_secs((5u64 << tries.min(3)).min(30))
}

fn retry(e: &PortError) -> JobOutcome {
    JobOutcome::Retry {
        reason: e.to_string(),
        after: match e {
            PortError::Throttled { retry_after, .. } => (*retry_after).min(MAX_DELAY),
            _ => Duration::from_secs(10),
        },
    }
}
