//! The create-runner steps for one job. Every step can be re-run: a retried
//! message resumes a claim whose lease ran out, finds its reservation
//! (`AlreadyReserved`) and its JIT parameter, and launches with the same
//! `ClientToken`, so it can never start a second VM.

use super::deps::CreateRunner;
use super::outcome::{BatchItem, BatchResult, JobOutcome};
use crate::circuit::{Admission, CircuitState, PoolHealth};
use crate::clock::Elapsed;
use crate::config::{CapacityType, Pool};
use crate::job::JobMessage;
use crate::pool_task::TaskMessage;
use crate::ports::{
    BootstrapMessage, ClaimOutcome, GitHubTarget, JitRequest, JobChange, JobRecord, JobState,
    LaunchOutcome, LaunchRequest, Limits, LineOutcome, MAX_LINE, PortError, ReserveOutcome,
    RunnerChange, RunnerRecord, RunnerState, Stage, tags,
};
use crate::sizing::{self, Sizing};
use crate::spot_breaker::SpotChoice;
use crate::target::github_target;
use crate::{matching, names, rerun};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::time::Duration;

/// The longest delay SQS allows on a message.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(900);

impl CreateRunner {
    /// Handle a batch of raw messages `(message_id, body)` concurrently, at most
    /// `settings.max_concurrency` at once. Malformed messages fail alone. `now`
    /// is the invocation's (`crate::clock`): each message starts at it plus the
    /// time the batch has spent so far.
    pub async fn handle_batch(
        &self,
        messages: Vec<(String, String)>,
        now: DateTime<Utc>,
    ) -> BatchResult {
        let clock = Elapsed::start(now);
        let items = futures::stream::iter(messages)
            .map(|(message_id, body)| async move {
                if let Some(task) = TaskMessage::parse(&body) {
                    let (job_id, outcome) = match task {
                        Ok(task) => (task.job_id(), self.handle_task(&task, clock.at()).await),
                        Err(reason) => {
                            tracing::error!(message_id, reason, "malformed task message");
                            (None, JobOutcome::Invalid { reason })
                        }
                    };
                    return BatchItem {
                        message_id,
                        job_id,
                        outcome,
                    };
                }
                let (job_id, outcome) = match JobMessage::parse(&body) {
                    Ok(msg) => (Some(msg.job_id), self.handle_job(&msg, clock.at()).await),
                    Err(e) => {
                        tracing::error!(message_id, error = %e, "malformed job message");
                        (
                            None,
                            JobOutcome::Invalid {
                                reason: e.to_string(),
                            },
                        )
                    }
                };
                BatchItem {
                    message_id,
                    job_id,
                    outcome,
                }
            })
            .buffer_unordered(self.settings.max_concurrency.max(1))
            .collect()
            .await;
        BatchResult { items }
    }

    /// All the steps for one job.
    pub async fn handle_job(&self, msg: &JobMessage, now: DateTime<Utc>) -> JobOutcome {
        let job_id = msg.job_id;
        let outcome = self.run_job(msg, now).await;
        match &outcome {
            JobOutcome::Launched {
                runner_name,
                instance_id,
            } => {
                tracing::info!(job_id, pool = %msg.pool, runner_name, instance_id, "runner launched")
            }
            JobOutcome::Duplicate => tracing::info!(
                job_id,
                metric = "jobs_duplicate",
                "duplicate delivery; nothing launched"
            ),
            JobOutcome::Dropped { reason } => {
                tracing::warn!(job_id, reason, metric = "jobs_dropped", "job dropped")
            }
            JobOutcome::Waiting { reason } => tracing::info!(
                job_id,
                pool = %msg.pool,
                reason,
                "job waiting for capacity"
            ),
            JobOutcome::Retry { reason, after } => {
                tracing::warn!(
                    job_id,
                    reason,
                    retry_after_secs = after.as_secs(),
                    "job retried later"
                )
            }
            JobOutcome::Deferred { reason, after } => {
                tracing::info!(job_id, reason, delay_secs = after.as_secs(), "job deferred")
            }
            JobOutcome::Invalid { reason } => {
                tracing::error!(job_id, reason, "job message invalid")
            }
        }
        outcome
    }

    async fn run_job(&self, msg: &JobMessage, now: DateTime<Utc>) -> JobOutcome {
        let age = now - msg.queued_since();
        if age > self.settings.max_job_age {
            return JobOutcome::Dropped {
                reason: format!(
                    "queued {} h ago, past GitHub's 24 h queue limit",
                    age.num_hours()
                ),
            };
        }
        let Some(pool) = self
            .config
            .pool(&msg.pool)
            .or_else(|| matching::match_pool(&self.config.pools, &msg.labels))
            .cloned()
        else {
            return JobOutcome::Dropped {
                reason: format!("pool {} no longer exists and no pool matches", msg.pool),
            };
        };
        // Checked by the webhook already; the pool's bounds may have changed since.
        let sized = match sizing::decide(&pool, &msg.labels, self.config.max_total_weight) {
            Ok(s) => s,
            Err(e) => {
                return JobOutcome::Dropped {
                    reason: format!("sizing refused by pool {}: {e}", pool.name),
                };
            }
        };
        let drained = match self.ledger.is_drained(&pool.name).await {
            Err(e) => return retry(&e),
            Ok(d) => d,
        };
        let mut spot = SpotChoice::AsConfigured;
        if !drained {
            match self.admit(&pool, now, &mut spot).await {
                Err(e) => return retry(&e),
                Ok(Admission::Wait { until, reason }) => {
                    let left = (until - now).to_std().unwrap_or_default();
                    return self
                        .hold_for(msg, &reason, left.clamp(Duration::from_secs(1), MAX_DELAY))
                        .await;
                }
                Ok(Admission::Probe) => tracing::warn!(
                    job_id = msg.job_id,
                    pool = %pool.name,
                    "pool half-open: this launch is the probe"
                ),
                Ok(Admission::Go) => {}
            }
        }
        // The re-run of a job a spot interruption killed goes on-demand; else
        // the spot breaker may switch the pool to on-demand, or hold it.
        let rerun = if pool.capacity_type == CapacityType::Spot {
            match rerun::rerun_of(self.ledger.as_ref(), msg).await {
                Err(e) => return retry(&e),
                Ok(r) => r,
            }
        } else {
            None
        };
        let on_demand_asked = sized
            .as_ref()
            .is_some_and(|s| s.capacity == Some(CapacityType::OnDemand));
        let capacity = match (&rerun, spot) {
            _ if on_demand_asked => Capacity {
                kind: CapacityType::OnDemand,
                label: "sized",
                reason: Some("the job asks spotrunner/spot=false".into()),
            },
            (Some(entry), _) => Capacity {
                kind: CapacityType::OnDemand,
                label: "rerun",
                reason: Some(format!(
                    "re-run of job {} (interrupted on spot)",
                    entry.from_job
                )),
            },
            (None, SpotChoice::OnDemand { reason }) => Capacity {
                kind: CapacityType::OnDemand,
                label: "breaker",
                reason: Some(reason),
            },
            (None, SpotChoice::Wait { until, reason }) => {
                let left = (until - now).to_std().unwrap_or_default();
                return self
                    .hold_for(msg, &reason, left.clamp(Duration::from_secs(1), MAX_DELAY))
                    .await;
            }
            (None, SpotChoice::AsConfigured) => Capacity::of(&pool),
        };
        let record = match self
            .ledger
            .claim_job(msg, now, self.settings.claim_lease)
            .await
        {
            Err(e) => return retry(&e),
            Ok(ClaimOutcome::Duplicate(r)) => {
                // A wake (or a copy of it) for a job that got its slot already:
                // make sure it left the line.
                if r.state != JobState::Waiting && r.timeline.get(Stage::WaitingSince).is_some() {
                    self.leave_line(&r.pool, r.job_id).await;
                }
                // Started (or even done) on a hot runner before its delivery:
                // the delivery still launches one runner, the hot pool's refill.
                if matches!(r.state, JobState::Running | JobState::Completed)
                    && r.taken_by.is_some()
                    && r.runner_name.is_none()
                    && pool.hot.is_some()
                    && !drained
                {
                    return self.refill_for(&pool, &r, now).await;
                }
                return JobOutcome::Duplicate;
            }
            Ok(ClaimOutcome::Busy(r)) => {
                let left = r
                    .lease_until
                    .map(|t| (t - now).to_std().unwrap_or_default())
                    .unwrap_or_default();
                return JobOutcome::Retry {
                    reason: "another invocation holds the claim".into(),
                    after: left.clamp(Duration::from_secs(1), self.settings.busy_retry),
                };
            }
            Ok(ClaimOutcome::Claimed(r)) => r,
        };
        if drained {
            let reason = format!("pool {} is drained", pool.name);
            return self.wait(msg, &pool, &record, &reason, false, now).await;
        }
        let target = github_target(msg, &pool);
        if pool.check_job_queued {
            match self
                .github
                .get_job(&target, &msg.repository, msg.job_id)
                .await
            {
                Ok(Some(j)) if j.status == "queued" => {}
                Ok(found) => {
                    let status = found.map_or("gone".to_string(), |j| j.status);
                    let change = JobChange {
                        state: Some(JobState::Dropped),
                        clear_lease: true,
                        ..JobChange::default()
                    };
                    if let Err(e) = self.ledger.update_job(msg.job_id, &change, now).await {
                        return retry(&e);
                    }
                    if record.timeline.get(Stage::WaitingSince).is_some() {
                        self.leave_line(&pool.name, msg.job_id).await;
                    }
                    return JobOutcome::Dropped {
                        reason: format!("GitHub says the job is {status}, not queued"),
                    };
                }
                Err(e) => return self.hand_back(msg, now, retry(&e)).await,
            }
        }
        let clock = Elapsed::start(now);
        let outcome = self
            .launch(
                msg,
                &pool,
                &record,
                &target,
                &capacity,
                sized.as_ref(),
                &clock,
            )
            .await;
        if outcome.keeps_message() || matches!(outcome, JobOutcome::Deferred { .. }) {
            return self.hand_back(msg, now, outcome).await;
        }
        outcome
    }

    /// Give the claim up so the next delivery can take it at once.
    async fn hand_back(
        &self,
        msg: &JobMessage,
        now: DateTime<Utc>,
        outcome: JobOutcome,
    ) -> JobOutcome {
        let change = JobChange {
            clear_lease: true,
            ..JobChange::default()
        };
        if let Err(e) = self.ledger.update_job(msg.job_id, &change, now).await {
            tracing::warn!(job_id = msg.job_id, error = %e, "could not drop the claim lease; it will expire");
        }
        outcome
    }

    #[allow(clippy::too_many_arguments)]
    async fn launch(
        &self,
        msg: &JobMessage,
        pool: &Pool,
        record: &JobRecord,
        target: &GitHubTarget,
        chosen: &Capacity,
        sized: Option<&Sizing>,
        clock: &Elapsed,
    ) -> JobOutcome {
        let now = clock.started_at();
        // A sized runner weighs by its size; release gives back the record's weight.
        let weight = sized.map_or(pool.weight, |s| s.weight);
        let deployment = &self.config.deployment;
        let attempt = record.launch_attempt;
        let runner_name = names::runner_name(deployment, &pool.name, msg.job_id, attempt);
        let parameter = format!("{}{runner_name}", self.settings.jit_parameter_prefix);
        let runner = RunnerRecord {
            name: runner_name.clone(),
            pool: pool.name.clone(),
            job_id: msg.job_id,
            weight,
            state: RunnerState::Reserved,
            instance_id: None,
            command_id: None,
            github_runner_id: None,
            jit_parameter: parameter.clone(),
            created_at: now,
            launched_at: None,
            updated_at: now,
            end_reason: None,
        };
        let limits = Limits {
            pool_max: pool.max_runners,
            weight,
            global_max_weight: self.config.max_total_weight,
        };
        let mut github_runner_id = None;
        let mut stamps = Vec::new();
        let reserved = self.ledger.reserve(&runner, limits).await;
        if matches!(
            reserved,
            Ok(ReserveOutcome::Reserved | ReserveOutcome::AlreadyReserved)
        ) && record.timeline.get(Stage::WaitingSince).is_some()
        {
            stamps.push((Stage::WaitingUntil, clock.at()));
            self.leave_line(&pool.name, msg.job_id).await;
        }
        match reserved {
            Err(e) => return retry(&e),
            Ok(ReserveOutcome::PoolFull) => {
                return self
                    .wait(msg, pool, record, "pool is at max_runners", true, now)
                    .await;
            }
            Ok(ReserveOutcome::GlobalFull) => {
                return self
                    .wait(
                        msg,
                        pool,
                        record,
                        "global weighted quota is reached",
                        true,
                        now,
                    )
                    .await;
            }
            Ok(ReserveOutcome::Reserved) => {}
            Ok(ReserveOutcome::AlreadyReserved) => {
                // A retried claim: resume from what the earlier try recorded.
                match self.ledger.get_runner(&runner_name).await {
                    Err(e) => return retry(&e),
                    Ok(Some(existing)) => {
                        github_runner_id = existing.github_runner_id;
                        if let Some(instance_id) = existing.instance_id {
                            return self
                                .after_launch(
                                    msg,
                                    pool,
                                    record,
                                    &runner_name,
                                    &instance_id,
                                    stamps,
                                    clock,
                                )
                                .await;
                        }
                    }
                    Ok(None) => {}
                }
            }
        }

        // JIT config first: no VM is paid for while GitHub refuses.
        match self.parameters.exists(&parameter).await {
            Err(e) => return retry(&e),
            Ok(true) => {}
            Ok(false) => match self
                .register(
                    msg.job_id,
                    pool,
                    target,
                    &runner_name,
                    &parameter,
                    crate::hot::runner_labels(pool, Some(record)),
                    now,
                )
                .await
            {
                Ok(id) => {
                    github_runner_id = Some(id);
                    stamps.push((Stage::JitRegistered, clock.at()));
                }
                Err(e) => {
                    self.undo(
                        pool,
                        &runner_name,
                        &parameter,
                        target,
                        None,
                        "GitHub registration failed",
                        now,
                    )
                    .await;
                    return retry(&e);
                }
            },
        }

        // Byte-for-byte the same request for (job, attempt, capacity type) on
        // every delivery: EC2 answers a known ClientToken with other parameters
        // by `IdempotentParameterMismatch`, not by the first call's VM. So
        // nothing here may depend on `now` (the launch time is EC2's LaunchTime
        // and the ledger's `launched_at`).
        let mut req = LaunchRequest {
            runner_name: runner_name.clone(),
            pool: pool.name.clone(),
            launch_template: pool.launch_template.clone().unwrap_or_default(),
            instance_types: pool.instance_types.clone(),
            subnets: pool.subnets.clone(),
            capacity_type: chosen.kind,
            client_token: client_token(deployment, msg.job_id, attempt, chosen.kind),
            tags: vec![
                (tags::DEPLOYMENT.into(), deployment.clone()),
                (tags::POOL.into(), pool.name.clone()),
                (tags::JOB_ID.into(), msg.job_id.to_string()),
                (tags::RUNNER_NAME.into(), runner_name.clone()),
            ],
            size: sized.and_then(|s| s.instance.clone()),
        };
        if let Some(s) = sized {
            req.tags.push((tags::SIZE.into(), s.size.summary()));
            tracing::info!(job_id = msg.job_id, pool = %pool.name, sizing = %s.describe(), "sized launch");
        }
        stamps.push((Stage::LaunchRequested, clock.at()));
        if let Some(reason) = &chosen.reason {
            tracing::info!(job_id = msg.job_id, pool = %pool.name, reason, "launching on-demand");
        }
        let mut outcome = self.compute.launch(&req).await;
        let mut capacity = chosen.label;
        if let Ok(LaunchOutcome::NoCapacity { code, .. }) = &outcome
            && chosen.kind == CapacityType::Spot
            && pool.on_demand_fallback
        {
            tracing::warn!(
                job_id = msg.job_id,
                runner_name,
                code,
                "no spot capacity; falling back to on-demand"
            );
            req.capacity_type = CapacityType::OnDemand;
            req.client_token =
                client_token(deployment, msg.job_id, attempt, CapacityType::OnDemand);
            capacity = "fallback";
            outcome = self.compute.launch(&req).await;
        }
        match outcome {
            Ok(LaunchOutcome::Launched { instance_id, .. }) => {
                tracing::info!(
                    job_id = msg.job_id,
                    pool = %pool.name,
                    capacity,
                    metric = "jobs_launched",
                    "launch requested"
                );
                self.after_launch(msg, pool, record, &runner_name, &instance_id, stamps, clock)
                    .await
            }
            Ok(LaunchOutcome::NoCapacity { code, message }) => {
                self.undo(
                    pool,
                    &runner_name,
                    &parameter,
                    target,
                    github_runner_id,
                    "no capacity",
                    now,
                )
                .await;
                self.defer(msg, &format!("no capacity: {code}: {message}"))
                    .await
            }
            // Transient: keep the reservation and the parameter; the retry launches
            // with the same ClientToken, so a launch that did happen is found again.
            // A token mismatch is transient too (the adapter found no VM by tags).
            Err(e) if e.is_transient() => retry(&e),
            Err(e) => {
                self.undo(
                    pool,
                    &runner_name,
                    &parameter,
                    target,
                    github_runner_id,
                    "launch refused",
                    now,
                )
                .await;
                retry(&e)
            }
        }
    }

    /// Register the JIT runner (with `labels`, `crate::hot::runner_labels`)
    /// and store its config; returns GitHub's runner id. `job_id` is 0 for a
    /// hot runner.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn register(
        &self,
        job_id: u64,
        pool: &Pool,
        target: &GitHubTarget,
        runner_name: &str,
        parameter: &str,
        labels: Vec<String>,
        now: DateTime<Utc>,
    ) -> Result<u64, PortError> {
        let req = JitRequest {
            target: target.clone(),
            name: runner_name.to_string(),
            runner_group: pool.runner_group.clone(),
            labels,
            work_folder: self.settings.work_folder.clone(),
        };
        let jit = match self.github.create_jit_config(&req).await {
            Err(PortError::Conflict { .. }) => {
                // Registered by an earlier try whose parameter was lost: start over.
                let runners = self.github.list_runners(target).await?;
                if let Some(old) = runners.iter().find(|r| r.name == runner_name) {
                    self.github.delete_runner(target, old.id).await?;
                }
                self.github.create_jit_config(&req).await?
            }
            other => other?,
        };
        let change = RunnerChange {
            github_runner_id: Some(jit.runner_id),
            ..RunnerChange::default()
        };
        self.ledger.update_runner(runner_name, &change, now).await?;
        let param_tags = vec![
            (tags::DEPLOYMENT.to_string(), self.config.deployment.clone()),
            (tags::RUNNER_NAME.to_string(), runner_name.to_string()),
            (tags::JOB_ID.to_string(), job_id.to_string()),
        ];
        self.parameters
            .put(parameter, &jit.encoded_jit_config, &param_tags)
            .await?;
        Ok(jit.runner_id)
    }

    #[allow(clippy::too_many_arguments)]
    async fn after_launch(
        &self,
        msg: &JobMessage,
        pool: &Pool,
        record: &JobRecord,
        runner_name: &str,
        instance_id: &str,
        stamps: Vec<(Stage, DateTime<Utc>)>,
        clock: &Elapsed,
    ) -> JobOutcome {
        let now = clock.started_at();
        stage_metrics(record, &stamps, &pool.name);
        let steps = async {
            self.runner_launched(msg.job_id, pool, runner_name, instance_id, now)
                .await?;
            let change = JobChange {
                state: Some(JobState::Launched),
                runner_name: Some(runner_name.to_string()),
                clear_lease: true,
                stamps,
                ..JobChange::default()
            };
            self.ledger.update_job(msg.job_id, &change, now).await
        };
        match steps.await {
            Ok(()) => {
                if pool.hot.is_some() {
                    self.free_if_taken(runner_name, msg.job_id, now).await;
                }
                JobOutcome::Launched {
                    runner_name: runner_name.to_string(),
                    instance_id: instance_id.to_string(),
                }
            }
            Err(e) => retry(&e),
        }
    }

    /// The steps after a VM exists, shared by every launch (a job's and a
    /// free runner's): bind the JIT parameter to the instance, move the
    /// runner `reserved` → `launched`, and schedule its bootstrap while it is
    /// `launched`. Only a `reserved` runner moves: a resumed delivery never
    /// moves a runner already being bootstrapped back (its bootstrap would
    /// send twice); it reschedules a bootstrap that may have been lost (a
    /// duplicate step is a no-op at the bootstrap's compare-and-set).
    pub(crate) async fn runner_launched(
        &self,
        job_id: u64,
        pool: &Pool,
        runner_name: &str,
        instance_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let parameter = format!("{}{runner_name}", self.settings.jit_parameter_prefix);
        self.parameters
            .bind_to_instance(&parameter, instance_id)
            .await?;
        let change = RunnerChange {
            state: Some(RunnerState::Launched),
            instance_id: Some(instance_id.to_string()),
            launched_at: Some(now),
            ..RunnerChange::default()
        };
        self.ledger
            .transition_runner(runner_name, &[RunnerState::Reserved], &change, now)
            .await?;
        let runner = self.ledger.get_runner(runner_name).await?;
        if let Some(runner) = runner.filter(|r| r.state == RunnerState::Launched) {
            let bootstrap = BootstrapMessage {
                version: 1,
                job_id,
                runner_name: runner_name.to_string(),
                instance_id: instance_id.to_string(),
                pool: pool.name.clone(),
                launched_at: runner.launched_at.unwrap_or(now),
                tries: 0,
                resend_after: None,
            };
            self.bootstrap_queue
                .schedule(&bootstrap, self.settings.first_bootstrap_delay)
                .await?;
        }
        Ok(())
    }

    /// Take back what a failed launch left: GitHub registration, parameter,
    /// capacity (and wake the pool's line: the slot is free again).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn undo(
        &self,
        pool: &Pool,
        runner_name: &str,
        parameter: &str,
        target: &GitHubTarget,
        github_runner_id: Option<u64>,
        reason: &str,
        now: DateTime<Utc>,
    ) {
        if let Some(id) = github_runner_id
            && let Err(e) = self.github.delete_runner(target, id).await
        {
            tracing::warn!(runner_name, error = %e, "could not delete the GitHub runner; the janitor will");
        }
        if let Err(e) = self.parameters.delete(parameter).await {
            tracing::warn!(runner_name, error = %e, "could not delete the JIT parameter; the janitor will");
        }
        match self.ledger.release(runner_name, reason, now).await {
            Err(e) => {
                tracing::warn!(runner_name, error = %e, "could not release capacity; the janitor will repair it")
            }
            Ok(true) => self.teardown().waker().after_release(&pool.name, now).await,
            Ok(false) => {}
        }
    }

    /// The pool (or the global quota) is full, or the pool is drained: the job
    /// enters the pool's waiting line and this delivery is acknowledged. Then
    /// it looks for a free slot itself (`wake`: a slot freed between its
    /// refused reservation and its entry would otherwise wake nobody).
    async fn wait(
        &self,
        msg: &JobMessage,
        pool: &Pool,
        record: &JobRecord,
        reason: &str,
        wake: bool,
        now: DateTime<Utc>,
    ) -> JobOutcome {
        match self
            .ledger
            .enter_line(&pool.name, msg.job_id, record.launch_attempt, now)
            .await
        {
            Err(e) => self.hand_back(msg, now, retry(&e)).await,
            Ok(LineOutcome::NotOurs) => JobOutcome::Duplicate,
            Ok(LineOutcome::Full) => {
                let reason = format!("{reason}; the waiting line holds {MAX_LINE} jobs");
                let outcome = self.defer(msg, &reason).await;
                self.hand_back(msg, now, outcome).await
            }
            Ok(LineOutcome::Entered) => {
                tracing::info!(
                    job_id = msg.job_id,
                    pool = %pool.name,
                    metric = "jobs_waiting",
                    "job entered the waiting line"
                );
                if wake && let Err(e) = self.teardown().waker().wake(&pool.name, now).await {
                    tracing::warn!(job_id = msg.job_id, pool = %pool.name, error = %e, "could not look for a free slot; the next release will");
                }
                JobOutcome::Waiting {
                    reason: reason.to_string(),
                }
            }
        }
    }

    /// Take the job out of its pool's line (a failure is logged: a woken
    /// entry left behind is woken again later and then taken out).
    async fn leave_line(&self, pool: &str, job_id: u64) {
        if let Err(e) = self.ledger.leave_line(pool, job_id).await {
            tracing::warn!(job_id, pool, error = %e, "could not take the job out of the waiting line");
        }
    }

    /// Put the job back with a growing delay (a new message: the original is
    /// acknowledged, so waiting for capacity never walks a job into the DLQ).
    async fn defer(&self, msg: &JobMessage, reason: &str) -> JobOutcome {
        let mut next = msg.clone();
        next.deferrals = msg.deferrals.saturating_add(1);
        let after = backoff(self.settings.defer_base, msg.deferrals);
        match self.jobs_queue.send_job_after(&next, after).await {
            Ok(()) => JobOutcome::Deferred {
                reason: reason.to_string(),
                after,
            },
            Err(e) => retry(&e),
        }
    }
}

impl CreateRunner {
    /// Keep the job for later without growing its backoff (the pool's circuit
    /// is open): a delayed copy goes back on the queue and this delivery is
    /// acknowledged, so waiting never walks the job into the DLQ and nothing is
    /// claimed.
    async fn hold_for(&self, msg: &JobMessage, reason: &str, after: Duration) -> JobOutcome {
        match self.jobs_queue.send_job_after(msg, after).await {
            Ok(()) => JobOutcome::Deferred {
                reason: reason.to_string(),
                after,
            },
            Err(e) => retry(&e),
        }
    }
}

impl CreateRunner {
    /// Ask the pool's circuit breaker whether a launch may go ahead: one read
    /// when the circuit is closed (the usual case), a conditional write when it
    /// is half-open (only one launch becomes the probe).
    /// The same read tells whether the pool's spot breaker is open (`spot`).
    async fn admit(
        &self,
        pool: &Pool,
        now: DateTime<Utc>,
        spot: &mut SpotChoice,
    ) -> Result<Admission, PortError> {
        let health = self.ledger.pool_health(&pool.name).await?;
        *spot = health.spot_choice(pool, now);
        if health.state(now) == CircuitState::Closed {
            return Ok(Admission::Go);
        }
        let decided = std::sync::Mutex::new(Admission::Go);
        self.ledger
            .update_pool_health(&pool.name, &|h: &mut PoolHealth| {
                let (admission, changed) = h.admit(now, &pool.relaunch);
                *decided.lock().unwrap_or_else(|e| e.into_inner()) = admission;
                changed
            })
            .await?;
        Ok(decided.into_inner().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The capacity type a launch asks for, and why when it is not the pool's.
struct Capacity {
    kind: CapacityType,
    /// The `capacity` dimension of the `jobs_launched` metric.
    label: &'static str,
    reason: Option<String>,
}

impl Capacity {
    fn of(pool: &Pool) -> Self {
        Self {
            kind: pool.capacity_type,
            label: match pool.capacity_type {
                CapacityType::Spot => "spot",
                CapacityType::OnDemand => "on_demand",
            },
            reason: None,
        }
    }
}

/// base, 2 × base, 4 × base, … up to SQS's 15-minute limit.
pub(crate) fn backoff(base: Duration, n: u32) -> Duration {
    base.saturating_mul(1u32 << n.min(6)).min(MAX_DELAY)
}

pub(crate) fn retry(e: &PortError) -> JobOutcome {
    let after = match e {
        PortError::Throttled { retry_after, .. } => *retry_after,
        _ => Duration::from_secs(30),
    };
    JobOutcome::Retry {
        reason: e.to_string(),
        after: after.min(MAX_DELAY),
    }
}

/// `ClientToken` for CreateFleet: one per job, launch attempt and capacity type.
pub fn client_token(deployment: &str, job_id: u64, attempt: u32, capacity: CapacityType) -> String {
    let kind = match capacity {
        CapacityType::Spot => "spot",
        CapacityType::OnDemand => "od",
    };
    format!("{deployment}-{job_id}-{attempt}-{kind}")
}

/// `stage_ms` and `queue_time_ms` of a job whose launch was just requested.
fn stage_metrics(record: &JobRecord, stamps: &[(Stage, DateTime<Utc>)], pool: &str) {
    let mut t = record.timeline.clone();
    for (stage, at) in stamps {
        t.set(*stage, *at);
    }
    let start = if t.get(Stage::WaitingUntil).is_some() {
        Stage::WaitingUntil
    } else {
        Stage::Claimed
    };
    let stages = [
        (
            "created_to_received",
            t.millis(Stage::Created, Stage::Received),
        ),
        (
            "received_to_claimed",
            t.millis(Stage::Received, Stage::Claimed),
        ),
        (
            "waiting",
            t.millis(Stage::WaitingSince, Stage::WaitingUntil),
        ),
        (
            "claimed_to_launch_requested",
            t.millis(start, Stage::LaunchRequested),
        ),
    ];
    for (stage, ms) in stages {
        if let Some(ms) = ms {
            tracing::info!(
                job_id = record.job_id,
                pool,
                stage,
                value = ms,
                unit = "Milliseconds",
                metric = "stage_ms",
                "stage time"
            );
        }
    }
    let queued = t.get(Stage::Created).or(t.get(Stage::Received));
    if let (Some(q), Some(l)) = (queued, t.get(Stage::LaunchRequested)) {
        let ms = (l - q).num_milliseconds().max(0);
        tracing::info!(
            job_id = record.job_id,
            pool,
            value = ms,
            unit = "Milliseconds",
            metric = "queue_time_ms",
            "queued until launch requested"
        );
    }
}
