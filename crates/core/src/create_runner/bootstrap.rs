//! The bootstrap step, driven by a delayed message: once the instance's SSM agent
//! is online, send the runner command — once. SendCommand is not idempotent and
//! SQS delivers twice, so a conditional ledger transition (`Launched` →
//! `Bootstrapping`, stamped with the step's time T) picks the one step that
//! sends; it must start its call before T + [`SEND_WINDOW`], and the call ends
//! within [`BOOTSTRAP_SEND_TIMEOUT`]. A step that finds `Bootstrapping` looks the
//! command up and adopts it; only when SSM lists none at T + [`RESEND_AFTER`]
//! does it take the runner over (a compare-and-set on T: one step wins) and
//! send. Until the pool's boot timeout, an agent not yet online is tried again
//! with a short backoff; then the instance ends and the job is relaunched.

use super::deps::CreateRunner;
use super::launch::MAX_DELAY;
use super::outcome::JobOutcome;
use crate::clock::Elapsed;
use crate::config::{Architecture, DEFAULT_RUNNER_USER};
use crate::ports::{
    BOOTSTRAP_SEND_TIMEOUT, BootstrapCommand, BootstrapMessage, JobChange, PortError, RunnerChange,
    RunnerRecord, RunnerState, SendOutcome, Stage,
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
        if runner
            .instance_id
            .as_deref()
            .is_some_and(|id| id != msg.instance_id)
        {
            return JobOutcome::Dropped {
                reason: format!(
                    "the runner is on instance {}, not {}",
                    runner.instance_id.as_deref().unwrap_or_default(),
                    msg.instance_id
                ),
            };
        }
        match runner.state {
            RunnerState::Released => JobOutcome::Dropped {
                reason: "runner already released".into(),
            },
            RunnerState::Bootstrapped | RunnerState::Tainted => JobOutcome::Duplicate,
            RunnerState::Bootstrapping => self.resume_send(msg, &runner, now).await,
            RunnerState::Reserved | RunnerState::Launched => {
                // Only the step that wins this transition sends the command.
                let change = RunnerChange {
                    state: Some(RunnerState::Bootstrapping),
                    ..RunnerChange::default()
                };
                match self
                    .ledger
                    .transition_runner(
                        &msg.runner_name,
                        &[RunnerState::Reserved, RunnerState::Launched],
                        &change,
                        now,
                    )
                    .await
                {
                    Err(e) => retry(&e),
                    Ok(false) => JobOutcome::Duplicate,
                    Ok(true) => self.send(msg, &runner, now).await,
                }
            }
        }
    }

    /// A step found the runner `Bootstrapping`: an earlier step is sending the
    /// command, sent it and lost the answer, or crashed before or after
    /// sending. SendCommand is not idempotent, so look for the command first and
    /// adopt it; send only when SSM lists none once the step that took the
    /// runner can no longer be sending ([`RESEND_AFTER`] from its write), and
    /// only after taking the runner over from that write.
    async fn resume_send(
        &self,
        msg: &BootstrapMessage,
        runner: &RunnerRecord,
        now: DateTime<Utc>,
    ) -> JobOutcome {
        match self
            .commands
            .find_bootstrap(&msg.instance_id, &msg.runner_name)
            .await
        {
            Err(e) => retry(&e),
            Ok(Some(command_id)) => {
                tracing::info!(
                    job_id = msg.job_id,
                    runner_name = msg.runner_name,
                    command_id,
                    "adopting the runner command an earlier step sent"
                );
                self.record_sent(msg, command_id, now, now).await
            }
            Ok(None) => {
                let mut resend_at = runner.updated_at
                    + chrono::Duration::from_std(RESEND_AFTER).unwrap_or_default();
                if let Some(after) = msg.resend_after {
                    resend_at = resend_at.max(after);
                }
                if now < resend_at {
                    let left = (resend_at - now).to_std().unwrap_or_default();
                    return self
                        .again(
                            msg,
                            left.min(MAX_DELAY),
                            "a runner command may be on its way",
                        )
                        .await;
                }
                // Take the runner over from the write we read: of the steps
                // that read it, one sends.
                let change = RunnerChange {
                    state: Some(RunnerState::Bootstrapping),
                    only_if_written_at: Some(runner.updated_at),
                    ..RunnerChange::default()
                };
                match self.move_bootstrapping(msg, &change, now).await {
                    Err(e) => retry(&e),
                    Ok(false) => JobOutcome::Duplicate,
                    Ok(true) => {
                        tracing::warn!(
                            job_id = msg.job_id,
                            runner_name = msg.runner_name,
                            taken_at = %runner.updated_at,
                            "no runner command listed for the step that took the runner: sending it"
                        );
                        self.send(msg, runner, now).await
                    }
                }
            }
        }
    }

    /// Send the runner command (the runner is `Bootstrapping`, and this step owns it).
    async fn send(
        &self,
        msg: &BootstrapMessage,
        runner: &RunnerRecord,
        now: DateTime<Utc>,
    ) -> JobOutcome {
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
            runner_arch: pool.map_or(Architecture::X64, |p| p.arch()),
            // A pool gone from the configuration meanwhile: the safe defaults.
            runner_user: pool.map_or_else(
                || DEFAULT_RUNNER_USER.to_string(),
                |p| p.runner_user.clone(),
            ),
            allow_unverified_runner: pool.is_some_and(|p| p.allow_unverified_runner),
            send_by: now + chrono::Duration::from_std(SEND_WINDOW).unwrap_or_default(),
        };
        let clock = Elapsed::start(now);
        match self.commands.send_bootstrap(&cmd).await {
            Ok(SendOutcome::Sent { command_id }) => {
                self.record_sent(msg, command_id, now, clock.at()).await
            }
            Ok(SendOutcome::TooLate) => {
                if let Err(e) = self.give_back_unsent(msg, now).await {
                    return retry(&e);
                }
                self.again(
                    msg,
                    Duration::from_secs(1),
                    "the step came to send after its window: nothing sent",
                )
                .await
            }
            // Refused before SSM looked at it: nothing was sent.
            Err(e @ PortError::Throttled { .. }) => {
                if let Err(e) = self.give_back_unsent(msg, now).await {
                    return retry(&e);
                }
                retry(&e)
            }
            Ok(SendOutcome::NotReady) => {
                if let Err(e) = self.give_back_unsent(msg, now).await {
                    return retry(&e);
                }
                let waited = (now - msg.launched_at).num_seconds().max(0) as u64;
                if waited >= boot_timeout {
                    return self.give_up(msg, runner, now).await;
                }
                let delay = bootstrap_backoff(msg.tries)
                    .min(Duration::from_secs(boot_timeout - waited).max(Duration::from_secs(1)));
                self.again(
                    msg,
                    delay,
                    &format!("SSM agent not online after {waited} s"),
                )
                .await
            }
            // The command may or may not have been accepted: the runner stays
            // `Bootstrapping`, and the retry looks the command up before sending.
            Err(e) => retry(&e),
        }
    }

    /// Nothing was sent: hand the runner back (`Launched`) for the next step,
    /// unless another step took it over since this one did (at `now`).
    async fn give_back_unsent(
        &self,
        msg: &BootstrapMessage,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let change = RunnerChange {
            state: Some(RunnerState::Launched),
            only_if_written_at: Some(now),
            ..RunnerChange::default()
        };
        self.move_bootstrapping(msg, &change, now).await.map(|_| ())
    }

    /// Apply `change` to `msg`'s runner if it is `Bootstrapping` (compare-and-set).
    async fn move_bootstrapping(
        &self,
        msg: &BootstrapMessage,
        change: &RunnerChange,
        now: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        self.ledger
            .transition_runner(&msg.runner_name, &[RunnerState::Bootstrapping], change, now)
            .await
    }

    /// Record the command that counts (stop-runner acts only on it).
    async fn record_sent(
        &self,
        msg: &BootstrapMessage,
        command_id: String,
        now: DateTime<Utc>,
        sent: DateTime<Utc>,
    ) -> JobOutcome {
        let change = RunnerChange {
            state: Some(RunnerState::Bootstrapped),
            command_id: Some(command_id),
            ..RunnerChange::default()
        };
        match self.move_bootstrapping(msg, &change, now).await {
            Ok(true) => {
                self.stamp_sent(msg, now, sent).await;
                JobOutcome::Launched {
                    runner_name: msg.runner_name.clone(),
                    instance_id: msg.instance_id.clone(),
                }
            }
            // Released meanwhile (boot timeout, stop event) or recorded by a twin.
            Ok(false) => JobOutcome::Duplicate,
            Err(e) => retry(&e),
        }
    }

    /// Stamp the job's timeline (its agent answered at `now`, the command is
    /// sent) and publish the two stage times. A failure is logged: the
    /// timeline is for people, the runner is on its way either way.
    async fn stamp_sent(&self, msg: &BootstrapMessage, now: DateTime<Utc>, sent: DateTime<Utc>) {
        let change = JobChange {
            stamps: vec![(Stage::InstanceRunning, now), (Stage::BootstrapSent, sent)],
            ..JobChange::default()
        };
        // A hot runner (job 0) has no job to stamp yet.
        if msg.job_id != 0
            && let Err(e) = self.ledger.update_job(msg.job_id, &change, now).await
        {
            tracing::warn!(job_id = msg.job_id, error = %e, "could not stamp the job's timeline");
        }
        let stages = [
            (
                "launch_to_running",
                (now - msg.launched_at).num_milliseconds(),
            ),
            ("running_to_bootstrap_sent", (sent - now).num_milliseconds()),
        ];
        for (stage, ms) in stages {
            tracing::info!(
                job_id = msg.job_id,
                pool = %msg.pool,
                stage,
                value = ms.max(0),
                unit = "Milliseconds",
                metric = "stage_ms",
                "stage time"
            );
        }
    }

    /// Schedule the next bootstrap step after `delay`.
    async fn again(&self, msg: &BootstrapMessage, delay: Duration, reason: &str) -> JobOutcome {
        let mut next = msg.clone();
        next.tries += 1;
        match self.bootstrap_queue.schedule(&next, delay).await {
            Ok(()) => JobOutcome::Deferred {
                reason: reason.to_string(),
                after: delay,
            },
            Err(e) => retry(&e),
        }
    }

    /// Boot timeout: end the runner (terminate, parameter, registration,
    /// capacity), then relaunch or give up on its job — the same
    /// `Teardown::end_before_start` as the janitor's boot timeout.
    async fn give_up(
        &self,
        msg: &BootstrapMessage,
        runner: &RunnerRecord,
        now: DateTime<Utc>,
    ) -> JobOutcome {
        let mut runner = runner.clone();
        runner.instance_id = Some(msg.instance_id.clone());
        let reason = "boot timeout: the SSM agent never came online";
        match self
            .teardown()
            .end_before_start(&runner, true, reason, reason, now)
            .await
        {
            Ok(_) => JobOutcome::Dropped {
                reason: "boot timeout: instance terminated, job relaunched or given up".into(),
            },
            Err(e) => retry(&e),
        }
    }
}

/// How long the step that took a runner (`Bootstrapping`, at T) has to start
/// its SendCommand: the adapter sends nothing after T + this ([`SendOutcome::TooLate`]).
pub(crate) const SEND_WINDOW: Duration = Duration::from_secs(5);

/// How long SSM may take to list a command it accepted.
const LIST_LAG: Duration = Duration::from_secs(10);

/// A `Bootstrapping` runner written at T whose command SSM does not list is
/// taken over from T + this: the step that took it started its call within
/// [`SEND_WINDOW`], the call ended within [`BOOTSTRAP_SEND_TIMEOUT`], and what
/// SSM accepted is listed by then — so no command is on its way. (A grace
/// counted from a later sight instead let a slow step and a resend both send.)
pub(crate) const RESEND_AFTER: Duration = Duration::from_secs(
    SEND_WINDOW.as_secs() + BOOTSTRAP_SEND_TIMEOUT.as_secs() + LIST_LAG.as_secs(),
);

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
