use super::event::{ENDING_INSTANCE_STATES, StopEvent, TERMINAL_COMMAND_STATUSES, document_name};
use crate::config::Config;
use crate::job::{JobStateUpdate, ObservedJobStatus};
use crate::ports::{
    Compute, GitHubApi, JobChange, JobQueue, JobRecord, JobState, Ledger, PortError,
    RunnerParameters, RunnerRecord, RunnerState, Stage, tags,
};
use crate::rerun::Reruns;
use crate::target::github_target;
use crate::teardown::{Teardown, record_start_success};
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// The stop-runner handler and the ports it talks to.
#[derive(Clone)]
pub struct StopRunner {
    pub config: Arc<Config>,
    /// Our SSM command document: command events for other documents are ignored.
    pub document: String,
    pub ledger: Arc<dyn Ledger>,
    pub github: Arc<dyn GitHubApi>,
    pub compute: Arc<dyn Compute>,
    pub parameters: Arc<dyn RunnerParameters>,
    /// Where a job that never started goes back to.
    pub jobs_queue: Arc<dyn JobQueue>,
}

/// What one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// Not an event about one of our runners ending.
    Ignored { reason: String },
    /// The runner was ended now.
    Ended {
        runner_name: String,
        job_id: u64,
        job_state: Option<JobState>,
    },
    /// The runner had already been ended: nothing changed.
    AlreadyEnded { runner_name: String },
    /// A spot interruption warning for a runner that has its job: the job is
    /// stamped `interrupted` and the pool's spot breaker counts it; the runner
    /// runs on until EC2 reclaims it (its job may still finish in the two
    /// minutes), and that event ends it.
    Interrupted { runner_name: String, job_id: u64 },
}

impl StopRunner {
    /// Its ports, to end a runner and relaunch a job that never started.
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

    /// Handle one event. An error means a step failed and the event should be
    /// delivered again (every step is idempotent).
    pub async fn handle(
        &self,
        event: &StopEvent,
        now: DateTime<Utc>,
    ) -> Result<StopOutcome, PortError> {
        let outcome = self.run(event, now).await;
        let instance_id = event.instance_id();
        match &outcome {
            Ok(StopOutcome::Ignored { reason }) => {
                tracing::debug!(instance_id, reason, "event ignored")
            }
            Ok(StopOutcome::Ended {
                runner_name,
                job_id,
                job_state,
            }) => tracing::info!(
                job_id,
                runner_name,
                instance_id,
                event = event.describe(),
                job_state = job_state.map_or("unknown", |s| s.as_str()),
                "runner stopped"
            ),
            Ok(StopOutcome::AlreadyEnded { runner_name }) => tracing::info!(
                runner_name,
                instance_id,
                event = event.describe(),
                "runner already ended; nothing to do"
            ),
            Ok(StopOutcome::Interrupted {
                runner_name,
                job_id,
            }) => tracing::warn!(
                job_id,
                runner_name,
                instance_id,
                metric = "jobs_interrupted",
                "spot interruption warning: the job's runner is reclaimed in two minutes"
            ),
            Err(e) => {
                tracing::error!(instance_id, error = %e, "stop-runner step failed; the event will be retried")
            }
        }
        outcome
    }

    async fn run(&self, event: &StopEvent, now: DateTime<Utc>) -> Result<StopOutcome, PortError> {
        if let Some(reason) = self.not_ours(event) {
            return Ok(StopOutcome::Ignored { reason });
        }
        let Some(runner) = self.find_runner(event.instance_id()).await? else {
            return Ok(StopOutcome::Ignored {
                reason: "no runner of this deployment runs on that instance".into(),
            });
        };
        if runner.state == RunnerState::Released {
            return Ok(StopOutcome::AlreadyEnded {
                runner_name: runner.name,
            });
        }
        if matches!(event, StopEvent::SpotInterruption { .. })
            && let Some(outcome) = self.on_warning(&runner, now).await?
        {
            return Ok(outcome);
        }
        if let Some(reason) = not_the_recorded_command(event, &runner) {
            return Ok(StopOutcome::Ignored { reason });
        }
        let job_state = self.settle_job(event, &runner, now).await?;
        let gone = matches!(event, StopEvent::InstanceState { state, .. } if state == "terminated");
        let released = self
            .teardown()
            .end_runner(&runner, !gone, &event.describe(), now)
            .await?;
        if job_state == Some(JobState::Interrupted) {
            self.rerun_now(runner.job_id, now).await;
        }
        Ok(if released {
            StopOutcome::Ended {
                runner_name: runner.name,
                job_id: runner.job_id,
                job_state,
            }
        } else {
            StopOutcome::AlreadyEnded {
                runner_name: runner.name,
            }
        })
    }

    /// A spot interruption warning: count it against the pool's spot breaker
    /// and stamp the job the runner has. `None` when the runner's job has
    /// not started (or is not known): then the runner is ended now, as for
    /// any runner that ends before its job starts.
    async fn on_warning(
        &self,
        runner: &RunnerRecord,
        now: DateTime<Utc>,
    ) -> Result<Option<StopOutcome>, PortError> {
        if let Some(pool) = self.config.pool(&runner.pool) {
            let policy = pool.spot.clone();
            let h = self
                .ledger
                .update_pool_health(&runner.pool, &|h| {
                    h.record_interruption(&runner.name, now, &policy)
                })
                .await?;
            // Opened by this warning: it would have set exactly this end.
            let opened_now = now
                + chrono::Duration::seconds(
                    i64::try_from(policy.breaker_cooldown_secs).unwrap_or(i64::MAX / 1000),
                );
            if let Some(until) = h.spot_off(now).filter(|u| *u == opened_now) {
                tracing::warn!(
                    pool = %runner.pool,
                    until = %until,
                    metric = "spot_breaker_opened",
                    "spot breaker open: {} spot interruptions within {} min; launches go {} until then",
                    policy.breaker_interruptions,
                    policy.breaker_window_secs / 60,
                    if pool.on_demand_fallback { "on-demand" } else { "nowhere (they wait)" }
                );
            }
        }
        let Some(job) = self.ledger.get_job(runner.job_id).await? else {
            return Ok(None);
        };
        let ran_here = job.taken_by.as_deref() == Some(runner.name.as_str())
            || (job.taken_by.is_none() && job.runner_name.as_deref() == Some(&runner.name));
        let started = job.timeline.get(Stage::InProgress).is_some()
            || matches!(
                job.state,
                JobState::Running | JobState::Completed | JobState::Interrupted
            );
        if !(ran_here && started) {
            return Ok(None);
        }
        if job.timeline.get(Stage::Interrupted).is_none() {
            let change = JobChange {
                stamps: vec![(Stage::Interrupted, now)],
                ..JobChange::default()
            };
            self.ledger.update_job(job.job_id, &change, now).await?;
        }
        Ok(Some(StopOutcome::Interrupted {
            runner_name: runner.name.clone(),
            job_id: job.job_id,
        }))
    }

    /// Try the job's re-run at once (best effort: the janitor's pass steps
    /// every undecided job again).
    async fn rerun_now(&self, job_id: u64, now: DateTime<Utc>) {
        let reruns = Reruns {
            config: &self.config,
            ledger: self.ledger.as_ref(),
            github: self.github.as_ref(),
        };
        if let Err(e) = reruns.step_job(job_id, now).await {
            tracing::warn!(job_id, error = %e, "re-run step failed; the janitor tries again");
        }
    }

    /// Why the event is none of our business, if it is not.
    fn not_ours(&self, event: &StopEvent) -> Option<String> {
        match event {
            StopEvent::CommandStatus {
                document, status, ..
            } => {
                if document_name(document) != document_name(&self.document) {
                    Some(format!("command of document {document}, not ours"))
                } else if !TERMINAL_COMMAND_STATUSES.contains(&status.as_str()) {
                    Some(format!("command status {status} is not terminal"))
                } else {
                    None
                }
            }
            StopEvent::InstanceState { state, .. }
                if !ENDING_INSTANCE_STATES.contains(&state.as_str()) =>
            {
                Some(format!("instance state {state} does not end a runner"))
            }
            _ => None,
        }
    }

    /// The runner on `instance_id`: by the instance's runner-name tag (only
    /// instances tagged with this deployment), else by the ledger's record.
    async fn find_runner(&self, instance_id: &str) -> Result<Option<RunnerRecord>, PortError> {
        let deployment = &self.config.deployment;
        let described = self
            .compute
            .describe(deployment, &[instance_id.to_string()])
            .await?;
        if let Some(instance) = described.first() {
            if instance.tag(tags::DEPLOYMENT) != Some(deployment.as_str()) {
                return Ok(None);
            }
            if let Some(name) = instance.tag(tags::RUNNER_NAME)
                && let Some(runner) = self.ledger.get_runner(name).await?
            {
                return Ok(Some(runner));
            }
        }
        // EC2 forgets terminated instances after about an hour: ask the ledger.
        Ok(self
            .ledger
            .list_runners()
            .await?
            .into_iter()
            .find(|r| r.instance_id.as_deref() == Some(instance_id)))
    }

    /// Record how the runner's job ended; returns the job's state afterwards.
    async fn settle_job(
        &self,
        event: &StopEvent,
        runner: &RunnerRecord,
        now: DateTime<Utc>,
    ) -> Result<Option<JobState>, PortError> {
        let Some(job) = self.ledger.get_job(runner.job_id).await? else {
            return Ok(None);
        };
        if job.state.is_final() {
            return Ok(Some(job.state));
        }
        let ran_here = job.taken_by.as_deref() == Some(runner.name.as_str())
            || (job.taken_by.is_none() && job.runner_name.as_deref() == Some(&runner.name));
        match job.state {
            JobState::Running if ran_here => {
                let state = ended_state(event, &job);
                self.set_state(&job, state, now).await?;
                record_start_success(self.ledger.as_ref(), &runner.pool, now).await?;
                Ok(Some(state))
            }
            JobState::Launched if job.runner_name.as_deref() == Some(&runner.name) => {
                self.job_never_started(event, runner, &job, now).await
            }
            // Taken by another runner, requeued, or being claimed: not ours to settle.
            other => Ok(Some(other)),
        }
    }

    /// The runner ended before GitHub told us it took the job: ask GitHub where
    /// the job is, and put it back on the queue if it is still waiting.
    async fn job_never_started(
        &self,
        event: &StopEvent,
        runner: &RunnerRecord,
        job: &JobRecord,
        now: DateTime<Utc>,
    ) -> Result<Option<JobState>, PortError> {
        let asked = match self.config.pool(&job.pool) {
            Some(pool) => Some(
                self.github
                    .get_job(
                        &github_target(&job.message, pool),
                        &job.repository,
                        job.job_id,
                    )
                    .await,
            ),
            None => None,
        };
        let status = match asked {
            Some(Ok(Some(j))) => Some((j.status, j.runner_name)),
            Some(Ok(None)) => {
                self.set_state(job, JobState::Dropped, now).await?;
                return Ok(Some(JobState::Dropped));
            }
            Some(Err(e)) => {
                tracing::warn!(job_id = job.job_id, error = %e, "could not ask GitHub about the job; requeueing it");
                None
            }
            None => None,
        };
        match status {
            Some((s, _)) if s == "completed" => {
                self.set_state(job, JobState::Completed, now).await?;
                Ok(Some(JobState::Completed))
            }
            Some((s, taken_by)) if s == "in_progress" => {
                if taken_by.as_deref() == Some(runner.name.as_str()) {
                    let state = ended_state(event, job);
                    self.set_state(job, state, now).await?;
                    record_start_success(self.ledger.as_ref(), &runner.pool, now).await?;
                    return Ok(Some(state));
                }
                let update = JobStateUpdate {
                    job_id: job.job_id,
                    repository: job.repository.clone(),
                    status: ObservedJobStatus::InProgress,
                    runner_name: taken_by,
                    runner_id: None,
                    conclusion: None,
                    at: now,
                };
                self.ledger.record_job_state(&update).await?;
                Ok(Some(JobState::Running))
            }
            // Still queued (or GitHub could not say): another runner must take it.
            _ => {
                let reason = format!(
                    "its runner ended before the job started ({})",
                    event.describe()
                );
                Ok(Some(
                    self.teardown()
                        .after_failed_start(job, &runner.name, &reason, now)
                        .await?
                        .unwrap_or(job.state),
                ))
            }
        }
    }

    async fn set_state(
        &self,
        job: &JobRecord,
        state: JobState,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let mut change = JobChange {
            state: Some(state),
            clear_lease: true,
            ..JobChange::default()
        };
        if state == JobState::Interrupted && job.timeline.get(Stage::Interrupted).is_none() {
            change.stamps.push((Stage::Interrupted, now));
        }
        self.ledger.update_job(job.job_id, &change, now).await?;
        tracing::info!(
            job_id = job.job_id,
            pool = job.pool,
            state = state.as_str(),
            metric = format!("jobs_{}", state.as_str()),
            "job settled"
        );
        Ok(())
    }
}

/// Why a command event is not about the runner's own command, if it is not.
/// SendCommand is not idempotent and SSM may run a command twice: only the
/// command the bootstrap step recorded ends the runner (while the runner is
/// `Bootstrapping`, the command being recorded is taken as it).
fn not_the_recorded_command(event: &StopEvent, runner: &RunnerRecord) -> Option<String> {
    let StopEvent::CommandStatus { command_id, .. } = event else {
        return None;
    };
    match (&runner.command_id, runner.state) {
        (Some(recorded), _) if recorded != command_id => Some(format!(
            "command {command_id} is not the runner's recorded command {recorded}"
        )),
        (Some(_), _) | (None, RunnerState::Bootstrapping) => None,
        (None, state) => Some(format!(
            "command {command_id} ended, but runner {} ({}) has no runner command recorded",
            runner.name,
            state.as_str()
        )),
    }
}

/// How a job that ran on the ending runner ended: `interrupted` when its
/// runner got a spot interruption warning while it had the job.
fn ended_state(event: &StopEvent, job: &JobRecord) -> JobState {
    if matches!(event, StopEvent::SpotInterruption { .. })
        || job.timeline.get(Stage::Interrupted).is_some()
    {
        JobState::Interrupted
    } else {
        JobState::Completed
    }
}
