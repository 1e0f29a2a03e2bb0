//! create-runner's pool tasks (`crate::pool_task`): launching a hot runner
//! (no job of its own, `job_id` 0), and the `started` task that binds a job
//! GitHub gave to a runner launched for another job — and launches a
//! replacement for that other job when nothing else can serve it (a steal).

use super::deps::CreateRunner;
use super::launch::retry;
use super::outcome::JobOutcome;
use crate::config::{CapacityType, Pool};
use crate::hot::{can_serve, free_runner, hot_client_token, hot_target, is_free, runner_labels};
use crate::pool_task::{PoolTask, TaskMessage};
use crate::ports::{
    GitHubTarget, JobChange, JobRecord, JobState, LaunchOutcome, LaunchRequest, Limits,
    ReserveOutcome, RunnerChange, RunnerRecord, RunnerState, tags,
};
use crate::target::github_target;
use crate::teardown::send_requeue;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Live states a runner can be bound or freed in.
const LIVE: &[RunnerState] = &[
    RunnerState::Reserved,
    RunnerState::Launched,
    RunnerState::Bootstrapping,
    RunnerState::Bootstrapped,
];

/// How long a `started` task waits for its job to reach the ledger, and how often.
const STARTED_RETRY: Duration = Duration::from_secs(2);
const STARTED_TRIES: u32 = 30;

impl CreateRunner {
    /// One pool task from the jobs queue.
    pub async fn handle_task(&self, task: &TaskMessage, now: DateTime<Utc>) -> JobOutcome {
        match &task.pool_task {
            PoolTask::HotRefill { pool, runner_name } => {
                let Some(pool) = self.config.pool(pool).cloned() else {
                    return JobOutcome::Dropped {
                        reason: format!("pool {pool} no longer exists"),
                    };
                };
                match self.ledger.is_drained(&pool.name).await {
                    Err(e) => return retry(&e),
                    Ok(true) => {
                        return JobOutcome::Dropped {
                            reason: format!("pool {} is drained: no hot runner", pool.name),
                        };
                    }
                    Ok(false) => {}
                }
                self.launch_free(&pool, runner_name, now).await
            }
            PoolTask::Started {
                job_id,
                runner_name,
                tries,
            } => self.started(*job_id, runner_name, *tries, now).await,
        }
    }

    /// Launch a free runner (`job_id` 0) of a hot pool under `runner_name`:
    /// reserve (the caps hold as for any runner), register where the pool's
    /// hot runners register, launch, schedule the bootstrap. A repeated
    /// delivery resumes (`AlreadyReserved`, the same `ClientToken`).
    pub(crate) async fn launch_free(
        &self,
        pool: &Pool,
        runner_name: &str,
        now: DateTime<Utc>,
    ) -> JobOutcome {
        let Some(target) = pool.hot.as_ref().and_then(|h| hot_target(h, pool)) else {
            return JobOutcome::Dropped {
                reason: format!("pool {} has no hot pool to launch into", pool.name),
            };
        };
        let runner = free_runner(pool, runner_name, &self.settings.jit_parameter_prefix, now);
        let parameter = runner.jit_parameter.clone();
        let limits = Limits {
            pool_max: pool.max_runners,
            weight: pool.weight,
            global_max_weight: self.config.max_total_weight,
        };
        // A refill delivered again after its runner ended (a late copy) must
        // not start a second VM under the same name and ClientToken.
        match self.ledger.get_runner(runner_name).await {
            Err(e) => return retry(&e),
            Ok(Some(r)) if r.state == RunnerState::Released => {
                return JobOutcome::Duplicate;
            }
            Ok(_) => {}
        }
        let mut github_runner_id = None;
        match self.ledger.reserve(&runner, limits).await {
            Err(e) => return retry(&e),
            Ok(ReserveOutcome::PoolFull | ReserveOutcome::GlobalFull) => {
                return JobOutcome::Dropped {
                    reason: format!("pool {} is full: no hot runner now", pool.name),
                };
            }
            Ok(ReserveOutcome::Reserved) => {}
            Ok(ReserveOutcome::AlreadyReserved) => {
                match self.ledger.get_runner(runner_name).await {
                    Err(e) => return retry(&e),
                    Ok(Some(existing)) => {
                        // A retried refill: resume from what the earlier try recorded.
                        if let Some(instance_id) = existing.instance_id {
                            return match self
                                .runner_launched(0, pool, runner_name, &instance_id, now)
                                .await
                            {
                                Ok(()) => JobOutcome::Duplicate,
                                Err(e) => retry(&e),
                            };
                        }
                        github_runner_id = existing.github_runner_id;
                    }
                    Ok(None) => {}
                }
            }
        }
        match self.parameters.exists(&parameter).await {
            Err(e) => return retry(&e),
            Ok(true) => {}
            Ok(false) => {
                let labels = runner_labels(pool, None);
                match self
                    .register(0, pool, &target, runner_name, &parameter, labels, now)
                    .await
                {
                    Ok(id) => github_runner_id = Some(id),
                    Err(e) => {
                        self.undo(
                            pool,
                            runner_name,
                            &parameter,
                            &target,
                            None,
                            "GitHub registration failed",
                            now,
                        )
                        .await;
                        return retry(&e);
                    }
                }
            }
        }
        let kind = pool.capacity_type;
        let req = LaunchRequest {
            runner_name: runner_name.to_string(),
            pool: pool.name.clone(),
            launch_template: pool.launch_template.clone().unwrap_or_default(),
            instance_types: pool.instance_types.clone(),
            subnets: pool.subnets.clone(),
            capacity_type: kind,
            client_token: hot_client_token(
                &self.config.deployment,
                runner_name,
                kind == CapacityType::OnDemand,
            ),
            size: None,
            tags: vec![
                (tags::DEPLOYMENT.into(), self.config.deployment.clone()),
                (tags::POOL.into(), pool.name.clone()),
                (tags::JOB_ID.into(), "0".into()),
                (tags::RUNNER_NAME.into(), runner_name.to_string()),
            ],
        };
        match self.compute.launch(&req).await {
            Ok(LaunchOutcome::Launched { instance_id, .. }) => {
                tracing::info!(pool = %pool.name, runner_name, instance_id, metric = "hot_launched", "hot runner launched");
                match self
                    .runner_launched(0, pool, runner_name, &instance_id, now)
                    .await
                {
                    Ok(()) => JobOutcome::Launched {
                        runner_name: runner_name.to_string(),
                        instance_id,
                    },
                    Err(e) => retry(&e),
                }
            }
            Ok(LaunchOutcome::NoCapacity { code, message }) => {
                self.undo(
                    pool,
                    runner_name,
                    &parameter,
                    &target,
                    github_runner_id,
                    "no capacity",
                    now,
                )
                .await;
                // The filler sends another refill at its next pass.
                JobOutcome::Dropped {
                    reason: format!("no capacity for a hot runner: {code}: {message}"),
                }
            }
            Err(e) if e.is_transient() => retry(&e),
            Err(e) => {
                self.undo(
                    pool,
                    runner_name,
                    &parameter,
                    &target,
                    github_runner_id,
                    "launch refused",
                    now,
                )
                .await;
                JobOutcome::Dropped {
                    reason: format!("hot runner launch refused: {e}"),
                }
            }
        }
    }

    /// A job already running on a hot runner (or another job's) when its own
    /// delivery comes: in a hot pool that delivery refills the pool — a free
    /// runner named for the job (so a repeated delivery resumes it).
    pub(crate) async fn refill_for(
        &self,
        pool: &Pool,
        job: &JobRecord,
        now: DateTime<Utc>,
    ) -> JobOutcome {
        let name = crate::names::runner_name(
            &self.config.deployment,
            &pool.name,
            job.job_id,
            job.launch_attempt,
        );
        let change = JobChange {
            runner_name: Some(name.clone()),
            ..JobChange::default()
        };
        if let Err(e) = self.ledger.update_job(job.job_id, &change, now).await {
            return retry(&e);
        }
        tracing::info!(job_id = job.job_id, pool = %pool.name, runner_name = name, "job started on a hot runner before its delivery: its launch refills the hot pool");
        self.launch_free(pool, &name, now).await
    }

    /// GitHub gave `job_id` to `runner_name`, launched for another job (or
    /// hot). Bind the runner to the job; if it had been launched for job Y
    /// that has not started, Y lost its runner (a steal): the job's own
    /// runner takes Y over when its labels serve Y, else Y gets a replacement
    /// launch. The job's own runner, if not handed over, becomes free (hot
    /// pool) — every step is conditional, so a repeated task changes nothing.
    async fn started(
        &self,
        job_id: u64,
        runner_name: &str,
        tries: u32,
        now: DateTime<Utc>,
    ) -> JobOutcome {
        let job = match self.ledger.get_job(job_id).await {
            Err(e) => return retry(&e),
            Ok(j) => j,
        };
        let runner = match self.ledger.get_runner(runner_name).await {
            Err(e) => return retry(&e),
            Ok(Some(r)) => r,
            Ok(None) => return JobOutcome::Duplicate,
        };
        let Some(job) = job else {
            if tries >= STARTED_TRIES {
                return JobOutcome::Dropped {
                    reason: format!("job {job_id} never reached the ledger"),
                };
            }
            // Its queued delivery is still on its way: look again shortly.
            let again = TaskMessage::new(PoolTask::Started {
                job_id,
                runner_name: runner_name.to_string(),
                tries: tries + 1,
            });
            return match self.jobs_queue.send_task(&again, STARTED_RETRY).await {
                Ok(()) => JobOutcome::Deferred {
                    reason: "job not in the ledger yet".into(),
                    after: STARTED_RETRY,
                },
                Err(e) => retry(&e),
            };
        };
        // The in_progress that brought us here (and maybe the completed
        // after it) came before the claim made the record and was dropped:
        // ask GitHub where the job is now and record that (idempotent).
        if job.taken_by.is_none() && !job.state.is_final() {
            let status = match self.config.pool(&job.pool) {
                Some(pool) => self
                    .github
                    .get_job(&github_target(&job.message, pool), &job.repository, job_id)
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            let (observed, conclusion) = match status {
                Some(g) if g.status == "completed" => {
                    (crate::job::ObservedJobStatus::Completed, g.conclusion)
                }
                _ => (crate::job::ObservedJobStatus::InProgress, None),
            };
            let update = crate::job::JobStateUpdate {
                job_id,
                repository: job.repository.clone(),
                status: observed,
                runner_name: Some(runner_name.to_string()),
                runner_id: None,
                conclusion,
                at: now,
            };
            if let Err(e) = self.ledger.record_job_state(&update).await {
                return retry(&e);
            }
        }
        if runner.job_id == job_id {
            return JobOutcome::Duplicate;
        }
        let previous = runner.job_id;
        // The path first: it is known from the runner as read, even when the
        // runner has ended by now (a task that came back late).
        let path = if previous == 0 { "hot" } else { "other" };
        let stamp = JobChange {
            start_path: Some(path.into()),
            ..JobChange::default()
        };
        if let Err(e) = self.ledger.update_job(job_id, &stamp, now).await {
            return retry(&e);
        }
        let bind = RunnerChange {
            job_id: Some(job_id),
            only_for_job: Some(previous),
            ..RunnerChange::default()
        };
        match self
            .ledger
            .transition_runner(runner_name, LIVE, &bind, now)
            .await
        {
            Err(e) => return retry(&e),
            // The runner ran the job and has ended already (a task that came
            // back late): nothing to bind, but the job's own runner is free.
            // (The job it was launched for, if any, was settled when it ended.)
            Ok(false) if runner.state == RunnerState::Released => {
                if let Some(own) = self.own_runner(&job, runner_name).await {
                    self.free(&own, &job, now).await;
                }
                return JobOutcome::Duplicate;
            }
            Ok(false) => return JobOutcome::Duplicate,
            Ok(true) => {}
        }
        tracing::info!(
            job_id,
            runner_name,
            path,
            previous_job = previous,
            "job started on a runner not launched for it"
        );
        // The job's own runner (launched for it, not the one it runs on).
        let own = self.own_runner(&job, runner_name).await;
        let mut own_taken = false;
        if previous != 0 {
            tracing::info!(
                job_id,
                runner_name,
                victim_job = previous,
                metric = "runner_steals",
                "steal: a job took a runner launched for another job"
            );
            match self.ledger.get_job(previous).await {
                Err(e) => return retry(&e),
                Ok(Some(victim)) if lost_its_runner(&victim, runner_name) => {
                    match self.rescue(&victim, &job, own.as_ref(), now).await {
                        Err(e) => return retry(&e),
                        Ok(taken) => own_taken = taken,
                    }
                }
                Ok(_) => {}
            }
        }
        if let Some(own) = own.filter(|_| !own_taken) {
            self.free(&own, &job, now).await;
        }
        JobOutcome::Duplicate
    }

    /// The live runner launched for `job`, if it is not the one the job
    /// runs on (a read that fails is taken as none: the idle rule ends it).
    async fn own_runner(&self, job: &JobRecord, runs_on: &str) -> Option<RunnerRecord> {
        let name = job.runner_name.as_deref().filter(|n| *n != runs_on)?;
        self.ledger
            .get_runner(name)
            .await
            .ok()
            .flatten()
            .filter(|r| r.job_id == job.job_id && LIVE.contains(&r.state))
    }

    /// Find `victim` a runner: the thief's own runner if its labels serve the
    /// victim (`true`: handed over), else a replacement launch.
    async fn rescue(
        &self,
        victim: &JobRecord,
        thief: &JobRecord,
        own: Option<&RunnerRecord>,
        now: DateTime<Utc>,
    ) -> Result<bool, crate::ports::PortError> {
        if let Some(own) = own
            && let Some(pool) = self.config.pool(&own.pool)
            && own.pool == victim.pool
            && can_serve(&runner_labels(pool, Some(thief)), &victim.message.labels)
        {
            let hand = RunnerChange {
                job_id: Some(victim.job_id),
                only_for_job: Some(thief.job_id),
                ..RunnerChange::default()
            };
            if self
                .ledger
                .transition_runner(&own.name, LIVE, &hand, now)
                .await?
            {
                let change = JobChange {
                    runner_name: Some(own.name.clone()),
                    only_for_runner: victim.runner_name.clone(),
                    ..JobChange::default()
                };
                self.ledger.update_job(victim.job_id, &change, now).await?;
                tracing::info!(job_id = victim.job_id, runner_name = %own.name, "steal: the thief's own runner serves the job instead");
                return Ok(true);
            }
        }
        send_requeue(
            self.ledger.as_ref(),
            self.jobs_queue.as_ref(),
            victim,
            Duration::ZERO,
            now,
        )
        .await?;
        tracing::warn!(
            job_id = victim.job_id,
            thief_job = thief.job_id,
            metric = "steal_replacements",
            "steal: no runner left that can take the job; a replacement is launched"
        );
        Ok(false)
    }

    /// The job's own runner is not needed by it any more: in a hot pool whose
    /// hot runners register where this one did, it joins the hot pool (free);
    /// elsewhere it stays bound and the idle rule ends it.
    async fn free(&self, own: &RunnerRecord, job: &JobRecord, now: DateTime<Utc>) {
        let Some(pool) = self.config.pool(&own.pool) else {
            return;
        };
        let same_place = pool
            .hot
            .as_ref()
            .and_then(|h| hot_target(h, pool))
            .is_some_and(|t: GitHubTarget| t.scope == github_target(&job.message, pool).scope);
        if !same_place {
            return;
        }
        let change = RunnerChange {
            job_id: Some(0),
            only_for_job: Some(job.job_id),
            ..RunnerChange::default()
        };
        match self
            .ledger
            .transition_runner(&own.name, LIVE, &change, now)
            .await
        {
            Ok(true) => {
                tracing::info!(job_id = job.job_id, runner_name = %own.name, "the job's own runner joins the hot pool")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(job_id = job.job_id, runner_name = %own.name, error = %e, "could not free the job's own runner; the idle rule ends it")
            }
        }
    }

    /// After a launch for `job`: if GitHub gave the job to another runner
    /// meanwhile, this runner is free (hot pool).
    pub(crate) async fn free_if_taken(&self, runner_name: &str, job_id: u64, now: DateTime<Utc>) {
        let Ok(Some(job)) = self.ledger.get_job(job_id).await else {
            return;
        };
        if job.taken_by.as_deref().is_none_or(|t| t == runner_name) {
            return;
        }
        if let Ok(Some(own)) = self.ledger.get_runner(runner_name).await
            && own.job_id == job_id
            && !is_free(&own)
        {
            self.free(&own, &job, now).await;
        }
    }
}

/// Was `victim` waiting for `runner_name`, and has it not started?
fn lost_its_runner(victim: &JobRecord, runner_name: &str) -> bool {
    victim.runner_name.as_deref() == Some(runner_name)
        && victim.taken_by.is_none()
        && matches!(
            victim.state,
            JobState::Claimed | JobState::Launched | JobState::Requeued | JobState::Waiting
        )
}
