//! Ending one runner, and relaunching a job whose runner ended before it
//! started: the steps stop-runner, the bootstrap step's boot timeout and the
//! janitor share. Each step is idempotent and capacity is released last, so a
//! runner marked `Released` has had every step done, and a failed step is simply
//! redone by the next try.

use crate::circuit::{CircuitState, PoolHealth};
use crate::config::{Config, RelaunchPolicy};
use crate::job::JobMessage;
use crate::ports::Stage;
use crate::ports::{
    Compute, GitHubApi, JobChange, JobQueue, JobRecord, JobState, Ledger, PortError,
    RunnerParameters, RunnerRecord,
};
use crate::target::github_target;
use crate::waiting::Waker;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The ports a teardown and a relaunch touch.
pub struct Teardown<'a> {
    pub config: &'a Config,
    pub ledger: &'a dyn Ledger,
    pub github: &'a dyn GitHubApi,
    pub compute: &'a dyn Compute,
    pub parameters: &'a dyn RunnerParameters,
    /// Where a relaunched job's next message goes.
    pub jobs_queue: &'a dyn JobQueue,
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
        let hot = (runner.job_id == 0)
            .then(|| self.config.pool(&runner.pool))
            .flatten()
            .and_then(|p| p.hot.as_ref().and_then(|h| crate::hot::hot_target(h, p)));
        if let (Some(id), Some(target)) = (runner.github_runner_id, &hot) {
            // A free runner: registered where the pool's hot runners are.
            self.github.delete_runner(target, id).await?;
        } else if let Some(id) = runner.github_runner_id {
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
        if released {
            self.after_release(runner, reason, now).await;
        }
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

    /// The runner's slot is free: stamp its job's timeline (if the job is still
    /// its own) and wake the pool's waiting line. Neither can undo the release;
    /// a failure is logged.
    async fn after_release(&self, runner: &RunnerRecord, reason: &str, now: DateTime<Utc>) {
        self.waker().after_release(&runner.pool, now).await;
        let change = JobChange {
            stamps: vec![(Stage::Released, now)],
            only_for_runner: Some(runner.name.clone()),
            ..JobChange::default()
        };
        match self.ledger.update_job(runner.job_id, &change, now).await {
            Ok(()) | Err(PortError::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(job_id = runner.job_id, error = %e, "could not stamp the job's release")
            }
        }
        tracing::info!(
            job_id = runner.job_id,
            pool = runner.pool,
            metric = "runners_ended",
            reason = metric_reason(reason),
            "runner slot released"
        );
    }

    pub fn waker(&self) -> Waker<'_> {
        Waker {
            config: self.config,
            ledger: self.ledger,
            jobs_queue: self.jobs_queue,
        }
    }

    /// Runner `runner` ended before its job started (it never booted, its
    /// instance vanished, or its reservation never got one): end it
    /// ([`Self::end_runner`], recording `end_reason`), then, if the job still
    /// belongs to it — launched on it, or still `Claimed` (its launch on this
    /// runner was never recorded) — relaunch or give up the job
    /// ([`Self::after_failed_start`], counting `start_failure`). A job launched
    /// on another runner is left alone, and so is one running, final, requeued
    /// or claimed under a live lease. Returns the job's state when this changed it.
    pub async fn end_before_start(
        &self,
        runner: &RunnerRecord,
        terminate: bool,
        end_reason: &str,
        start_failure: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<JobState>, PortError> {
        self.end_runner(runner, terminate, end_reason, now).await?;
        match self.ledger.get_job(runner.job_id).await? {
            Some(job)
                if job.runner_name.as_deref() == Some(runner.name.as_str())
                    || job.state == JobState::Claimed =>
            {
                self.after_failed_start(&job, &runner.name, start_failure, now)
                    .await
            }
            _ => Ok(None),
        }
    }

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
        job_name: None,
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

/// A release reason as a metric dimension: its first words, before any detail
/// (`"command Failed: exit 1"` → `command_Failed`).
pub fn metric_reason(reason: &str) -> String {
    reason
        .split([':', '(', ','])
        .next()
        .unwrap_or(reason)
        .trim()
        .chars()
        .take(40)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{MemoryCompute, MemoryGitHub, MemoryLedger, MemoryParameters, MemoryQueue};
    use crate::job::JOB_MESSAGE_VERSION;
    use crate::names;
    use crate::ports::RunnerState;

    struct World {
        config: Config,
        ledger: MemoryLedger,
        github: MemoryGitHub,
        compute: MemoryCompute,
        parameters: MemoryParameters,
        queue: MemoryQueue,
        now: DateTime<Utc>,
    }

    fn world() -> World {
        let config = Config::from_toml(
            r#"
deployment = "sr"
[github]
auth = { type = "pat", token = "env:T" }
[webhook]
secrets = ["value:s"]
[[pools]]
name = "cpu"
labels = ["linux"]
launch_template = "sr-cpu"
instance_types = ["m7i.large"]
max_runners = 5
"#,
        )
        .unwrap();
        World {
            config,
            ledger: MemoryLedger::default(),
            github: MemoryGitHub::default(),
            compute: MemoryCompute::default(),
            parameters: MemoryParameters::default(),
            queue: MemoryQueue::default(),
            now: Utc::now(),
        }
    }

    impl World {
        fn teardown(&self) -> Teardown<'_> {
            Teardown {
                config: &self.config,
                ledger: &self.ledger,
                github: &self.github,
                compute: &self.compute,
                parameters: &self.parameters,
                jobs_queue: &self.queue,
            }
        }

        /// Runner `sr_cpu-1-0` of job 1, reserved with no instance.
        fn runner(&self) -> RunnerRecord {
            let name = names::runner_name("sr", "cpu", 1, 0);
            let runner = RunnerRecord {
                name: name.clone(),
                pool: "cpu".into(),
                job_id: 1,
                weight: 1,
                state: RunnerState::Reserved,
                instance_id: None,
                command_id: None,
                github_runner_id: None,
                jit_parameter: format!("/sr/jit/{name}"),
                created_at: self.now,
                launched_at: None,
                updated_at: self.now,
                end_reason: None,
            };
            self.ledger.put_runner(runner.clone());
            runner
        }

        /// Job 1 at launch attempt 0.
        fn job(
            &self,
            state: JobState,
            runner_name: Option<&str>,
            lease_until: Option<DateTime<Utc>>,
        ) -> JobRecord {
            let record = JobRecord {
                job_id: 1,
                pool: "cpu".into(),
                repository: "o/r".into(),
                state,
                launch_attempt: 0,
                runner_name: runner_name.map(str::to_string),
                taken_by: (state == JobState::Running)
                    .then(|| runner_name.map(str::to_string))
                    .flatten(),
                lease_until,
                message: JobMessage {
                    version: JOB_MESSAGE_VERSION,
                    job_id: 1,
                    run_id: 1,
                    run_attempt: 1,
                    repository: "o/r".into(),
                    owner: "o".into(),
                    owner_type: "Organization".into(),
                    installation_id: Some(1),
                    labels: vec!["linux".into()],
                    pool: "cpu".into(),
                    delivery_id: None,
                    received_at: self.now,
                    queued_at: Some(self.now),
                    launch_attempt: 0,
                    deferrals: 0,
                    job_name: None,
                },
                created_at: self.now,
                updated_at: self.now,
                end_reason: None,
                timeline: Default::default(),
                conclusion: None,
                rerun: None,
                start_path: None,
            };
            self.ledger.put_job(record.clone());
            record
        }

        /// End the runner before its job started; returns what changed the job.
        async fn end(&self, runner: &RunnerRecord) -> Option<JobState> {
            let later = self.now + chrono::Duration::seconds(1);
            let changed = self
                .teardown()
                .end_before_start(runner, false, "release_lost", "its instance is gone", later)
                .await
                .unwrap();
            let ended = self.ledger.get_runner(&runner.name).await.unwrap().unwrap();
            assert_eq!(
                ended.state,
                RunnerState::Released,
                "the runner is always ended"
            );
            assert_eq!(ended.end_reason.as_deref(), Some("release_lost"));
            changed
        }

        async fn job_now(&self) -> JobRecord {
            self.ledger.get_job(1).await.unwrap().unwrap()
        }

        /// The job, the queue and the pool's circuit are as they were.
        async fn untouched(&self, before: &JobRecord) {
            // The release is stamped on the job's timeline; nothing else changes.
            let mut now = self.job_now().await;
            now.timeline = before.timeline.clone();
            now.updated_at = before.updated_at;
            assert_eq!(&now, before);
            assert!(self.queue.sent().is_empty(), "nothing sent");
            let health = self.ledger.pool_health("cpu").await.unwrap();
            assert!(health.failures.is_empty(), "no start failure counted");
        }
    }

    #[tokio::test]
    async fn a_job_launched_on_another_runner_is_left_alone() {
        let w = world();
        let runner = w.runner();
        let other = names::runner_name("sr", "cpu", 1, 1);
        let before = w.job(JobState::Launched, Some(&other), None);
        assert_eq!(w.end(&runner).await, None);
        w.untouched(&before).await;
    }

    #[tokio::test]
    async fn a_running_job_is_left_alone() {
        let w = world();
        let runner = w.runner();
        let before = w.job(JobState::Running, Some(&runner.name), None);
        assert_eq!(w.end(&runner).await, None);
        w.untouched(&before).await;
    }

    #[tokio::test]
    async fn a_job_claimed_under_a_live_lease_is_left_alone() {
        let w = world();
        let runner = w.runner();
        let lease = w.now + chrono::Duration::minutes(5);
        let before = w.job(JobState::Claimed, None, Some(lease));
        assert_eq!(w.end(&runner).await, None);
        w.untouched(&before).await;
    }

    #[tokio::test]
    async fn a_job_launched_on_this_runner_is_requeued_with_the_next_attempt() {
        let w = world();
        let runner = w.runner();
        w.job(JobState::Launched, Some(&runner.name), None);
        assert_eq!(w.end(&runner).await, Some(JobState::Requeued));
        let job = w.job_now().await;
        assert_eq!((job.state, job.launch_attempt), (JobState::Requeued, 0));
        let sent = w.queue.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].job_id, sent[0].launch_attempt), (1, 1));
        let health = w.ledger.pool_health("cpu").await.unwrap();
        assert_eq!(health.failures.len(), 1, "one start failure counted");
    }

    #[tokio::test]
    async fn a_claim_whose_lease_ran_out_is_requeued() {
        let w = world();
        let runner = w.runner();
        let lease = w.now - chrono::Duration::seconds(1);
        w.job(JobState::Claimed, None, Some(lease));
        assert_eq!(w.end(&runner).await, Some(JobState::Requeued));
        assert_eq!(w.queue.sent().len(), 1);
    }
}
