//! The ledger: jobs by id, runners by name, per-pool and global capacity counters.
//! Conditional writes make claims idempotent and the caps hold under any concurrency.

use super::{JobStateSink, PortError, Stage, Timeline, WaitLine};
use crate::circuit::PoolHealth;
use crate::job::{JobMessage, JobStateUpdate, ObservedJobStatus};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Where a job stands. See ARCHITECTURE.md for the transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// A create-runner invocation holds the lease and is launching.
    Claimed,
    /// A VM was launched for it; waiting for GitHub to hand it out.
    Launched,
    /// GitHub says `in_progress`.
    Running,
    Completed,
    /// The VM was reclaimed by EC2 (spot interruption) while it ran.
    Interrupted,
    /// Put back on the queue (boot timeout, lost VM); the next claim takes it.
    Requeued,
    /// Given up on (older than GitHub's 24 h queue limit, no longer queued).
    Dropped,
    /// Given up on after its pool's `relaunch.max_launches` runners all ended
    /// before the job started (a broken runner, AMI or startup script).
    Failed,
    /// In its pool's waiting line (the pool or the global quota was full, or
    /// the pool is drained): launched when a slot is freed, oldest first.
    Waiting,
}

impl JobState {
    /// No further work will be done for the job.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Dropped | Self::Interrupted | Self::Failed
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Launched => "launched",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Interrupted => "interrupted",
            Self::Requeued => "requeued",
            Self::Dropped => "dropped",
            Self::Failed => "failed",
            Self::Waiting => "waiting",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: u64,
    pub pool: String,
    pub repository: String,
    pub state: JobState,
    /// Launches made for this job so far (the runner name carries it).
    pub launch_attempt: u32,
    /// The runner launched for this job.
    #[serde(default)]
    pub runner_name: Option<String>,
    /// The runner GitHub gave the job to (with JIT runners it may be another one).
    #[serde(default)]
    pub taken_by: Option<String>,
    /// Until when the claiming invocation owns the job.
    #[serde(default)]
    pub lease_until: Option<DateTime<Utc>>,
    /// The message that brought the job, to put it back on the queue later.
    pub message: JobMessage,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Why the job was given up on (`Dropped`, `Failed`), for status and logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// When it reached each stage (GitHub's queue, ours, the runner's).
    #[serde(default, skip_serializing_if = "Timeline::is_empty")]
    pub timeline: Timeline,
    /// GitHub's conclusion once `completed` (`success`, `failure`, `cancelled`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conclusion: Option<String>,
    /// For a job a spot interruption hit: what became of its re-run
    /// (`crate::rerun`); `None` while undecided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun: Option<String>,
    /// The runner the job started on: `own` (launched for it), `hot` (an idle
    /// hot runner), `other` (launched for another job: a steal); see `crate::hot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_path: Option<String>,
}

/// A read-modify-write of a pool's circuit record: `true` when it changed it.
pub type HealthUpdate<'a> = dyn Fn(&mut PoolHealth) -> bool + Send + Sync + 'a;

/// A read-modify-write of a task's state document (`None`: there is none yet):
/// `true` when it changed it.
pub type DocUpdate<'a> = dyn Fn(&mut Option<serde_json::Value>) -> bool + Send + Sync + 'a;

/// The result of claiming a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Ours now (new, requeued, or a claim whose lease expired: resume it).
    Claimed(JobRecord),
    /// Another invocation holds a live lease: leave the message for later.
    Busy(JobRecord),
    /// Already launched or finished: acknowledge, launch nothing.
    Duplicate(JobRecord),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerState {
    /// Capacity reserved; JIT config and VM on the way.
    Reserved,
    /// VM launched; waiting for its SSM agent.
    Launched,
    /// The runner command is being sent (a conditional transition from
    /// `Launched`: only one bootstrap step gets it). A step that finds it later
    /// looks the command up instead of sending a second one.
    Bootstrapping,
    /// The runner command was sent; `command_id` is the one that counts.
    Bootstrapped,
    /// Idle past its timeout: marked, deleted after a grace period.
    Tainted,
    /// Gone; capacity released.
    Released,
}

impl RunnerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Launched => "launched",
            Self::Bootstrapping => "bootstrapping",
            Self::Bootstrapped => "bootstrapped",
            Self::Tainted => "tainted",
            Self::Released => "released",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerRecord {
    pub name: String,
    pub pool: String,
    pub job_id: u64,
    pub weight: u32,
    pub state: RunnerState,
    #[serde(default)]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub command_id: Option<String>,
    #[serde(default)]
    pub github_runner_id: Option<u64>,
    pub jit_parameter: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub launched_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// Why it was released (for status and logs).
    #[serde(default)]
    pub end_reason: Option<String>,
}

/// The caps a reservation must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub pool_max: u32,
    pub weight: u32,
    pub global_max_weight: Option<u32>,
}

/// The answer of [`Ledger::enter_line`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOutcome {
    /// The job is `Waiting` in its pool's line.
    Entered,
    /// The job is not claimed at that attempt any more (someone else moved it).
    NotOurs,
    /// The line holds [`super::MAX_LINE`] jobs already.
    Full,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    Reserved,
    /// This runner already holds its reservation (a retried step).
    AlreadyReserved,
    /// The pool is at `max_runners`.
    PoolFull,
    /// The global weighted quota would be exceeded.
    GlobalFull,
}

/// Live capacity use as the counters say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityUse {
    pub pools: BTreeMap<String, u32>,
    pub weight: u32,
}

/// Changes to a job record; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobChange {
    pub state: Option<JobState>,
    pub runner_name: Option<String>,
    pub launch_attempt: Option<u32>,
    /// Drop the lease (the claim's work is done or handed back).
    pub clear_lease: bool,
    pub end_reason: Option<String>,
    /// Apply only while the job is still at this launch attempt (a requeue's
    /// mark must not touch the claim its own message already made).
    pub only_at_attempt: Option<u32>,
    /// Apply only while the job's runner is this one (a released runner
    /// stamps the job it was launched for, not one relaunched meanwhile).
    pub only_for_runner: Option<String>,
    /// Stages reached (written into the job's timeline).
    pub stamps: Vec<(Stage, DateTime<Utc>)>,
    /// What became of the job's re-run (`crate::rerun`).
    pub rerun: Option<String>,
    /// Which runner path the job started on (set once; `crate::hot`).
    pub start_path: Option<String>,
}

/// Changes to a runner record; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunnerChange {
    pub state: Option<RunnerState>,
    pub instance_id: Option<String>,
    pub command_id: Option<String>,
    pub github_runner_id: Option<u64>,
    pub launched_at: Option<DateTime<Utc>>,
    /// The job the runner is now for (`crate::hot`: 0 = free, an idle hot
    /// runner or one whose job started elsewhere).
    pub job_id: Option<u64>,
    /// Apply only while the runner is for this job (`0`: free).
    pub only_for_job: Option<u64>,
    /// Apply only if the record was last written at this time (its
    /// `updated_at`): of two steps that read the same record, one wins —
    /// even when the state went away and came back in between.
    pub only_if_written_at: Option<DateTime<Utc>>,
}

impl JobRecord {
    /// Apply the `Some` fields of `change` and stamp `updated_at` (every ledger
    /// adapter writes through this, so they cannot drift apart); `false` (and
    /// nothing changed) when `only_at_attempt` or `only_for_runner` does not hold.
    pub fn apply(&mut self, change: &JobChange, now: DateTime<Utc>) -> bool {
        if change
            .only_at_attempt
            .is_some_and(|a| a != self.launch_attempt)
            || change
                .only_for_runner
                .as_ref()
                .is_some_and(|r| self.runner_name.as_ref() != Some(r))
        {
            return false;
        }
        // A launch recorded after GitHub gave the job to a runner (a hot
        // one, or another job's) never takes the job back from `running`.
        if let Some(state) = change.state
            && !(state == JobState::Launched
                && (self.state == JobState::Running || self.state.is_final()))
        {
            self.state = state;
        }
        if let Some(name) = &change.runner_name {
            self.runner_name = Some(name.clone());
        }
        if let Some(path) = &change.start_path {
            self.start_path.get_or_insert_with(|| path.clone());
        }
        // GitHub's in_progress came before the launch was recorded.
        if change.runner_name.is_some()
            && self.taken_by.is_some()
            && self.taken_by == self.runner_name
        {
            self.start_path.get_or_insert_with(|| "own".into());
        }
        if let Some(attempt) = change.launch_attempt {
            self.launch_attempt = attempt;
        }
        if change.clear_lease {
            self.lease_until = None;
        }
        if let Some(reason) = &change.end_reason {
            self.end_reason = Some(reason.clone());
        }
        for (stage, at) in &change.stamps {
            self.timeline.set(*stage, *at);
        }
        if let Some(rerun) = &change.rerun {
            self.rerun = Some(rerun.clone());
        }
        self.updated_at = now;
        true
    }

    /// Record what GitHub says of the job; `false` when nothing changes (a late
    /// `in_progress` never undoes a final state).
    pub fn observe(&mut self, update: &JobStateUpdate) -> bool {
        self.state = match update.status {
            ObservedJobStatus::InProgress if self.state.is_final() => return false,
            ObservedJobStatus::InProgress => JobState::Running,
            // A job its runner's spot interruption ended stays `interrupted`.
            ObservedJobStatus::Completed
                if self.state == JobState::Interrupted
                    || self.timeline.get(Stage::Interrupted).is_some() =>
            {
                JobState::Interrupted
            }
            ObservedJobStatus::Completed => JobState::Completed,
        };
        if let Some(conclusion) = &update.conclusion {
            self.conclusion = Some(conclusion.clone());
        }
        if let Some(name) = &update.runner_name {
            if update.status == ObservedJobStatus::InProgress
                && self.runner_name.as_ref() == Some(name)
            {
                self.start_path.get_or_insert_with(|| "own".into());
            }
            self.taken_by = Some(name.clone());
        }
        let stage = match update.status {
            ObservedJobStatus::InProgress => Stage::InProgress,
            ObservedJobStatus::Completed => Stage::Completed,
        };
        self.timeline.set_once(stage, update.at);
        self.updated_at = update.at;
        true
    }
}

impl RunnerRecord {
    /// Apply the `Some` fields of `change` and stamp `updated_at`; `false`
    /// (and nothing changed) when `only_if_written_at` does not hold.
    pub fn apply(&mut self, change: &RunnerChange, now: DateTime<Utc>) -> bool {
        if change
            .only_if_written_at
            .is_some_and(|at| at != self.updated_at)
            || change.only_for_job.is_some_and(|j| j != self.job_id)
        {
            return false;
        }
        if let Some(state) = change.state {
            self.state = state;
        }
        if let Some(job_id) = change.job_id {
            self.job_id = job_id;
        }
        if let Some(id) = &change.instance_id {
            self.instance_id = Some(id.clone());
        }
        if let Some(id) = &change.command_id {
            self.command_id = Some(id.clone());
        }
        if let Some(id) = change.github_runner_id {
            self.github_runner_id = Some(id);
        }
        if let Some(at) = change.launched_at {
            self.launched_at = Some(at);
        }
        self.updated_at = now;
        true
    }
}

#[async_trait]
pub trait Ledger: JobStateSink {
    /// Claim `msg`'s job for `lease` from `now`: new jobs, `Requeued` ones whose
    /// launch attempt is below the message's, and `Claimed` ones whose lease ran out.
    async fn claim_job(
        &self,
        msg: &JobMessage,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<ClaimOutcome, PortError>;
    async fn get_job(&self, job_id: u64) -> Result<Option<JobRecord>, PortError>;
    async fn update_job(
        &self,
        job_id: u64,
        change: &JobChange,
        now: DateTime<Utc>,
    ) -> Result<(), PortError>;
    async fn list_jobs(&self) -> Result<Vec<JobRecord>, PortError>;

    /// Atomically create `runner` (state `Reserved`) and take one slot of its pool
    /// and `weight` of the global quota; nothing changes when a cap would be passed.
    async fn reserve(
        &self,
        runner: &RunnerRecord,
        limits: Limits,
    ) -> Result<ReserveOutcome, PortError>;
    /// Atomically mark the runner `Released` and give its capacity back; `false`
    /// when it was already released (or unknown): releasing twice changes nothing.
    async fn release(
        &self,
        runner_name: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, PortError>;
    async fn get_runner(&self, name: &str) -> Result<Option<RunnerRecord>, PortError>;
    async fn update_runner(
        &self,
        name: &str,
        change: &RunnerChange,
        now: DateTime<Utc>,
    ) -> Result<(), PortError>;
    async fn list_runners(&self) -> Result<Vec<RunnerRecord>, PortError>;

    /// Apply `change` only if the runner is in one of the states `from`
    /// (compare-and-set): `false` when it is not (or unknown) and nothing changed.
    async fn transition_runner(
        &self,
        name: &str,
        from: &[RunnerState],
        change: &RunnerChange,
        now: DateTime<Utc>,
    ) -> Result<bool, PortError>;

    async fn capacity(&self) -> Result<CapacityUse, PortError>;
    /// `pool`'s live runners and the weight in use (two counters, not all).
    async fn pool_use(&self, pool: &str) -> Result<(u32, u32), PortError> {
        let all = self.capacity().await?;
        Ok((all.pools.get(pool).copied().unwrap_or(0), all.weight))
    }
    /// Overwrite the counters unconditionally (tests and seeding only; the
    /// janitor's repair uses [`Ledger::repair_capacity`]).
    async fn set_capacity(&self, counts: &CapacityUse) -> Result<(), PortError>;
    /// The janitor's repair: write `counts` only if the counters still equal
    /// `seen` (atomically); `false` when they moved and nothing was written.
    async fn repair_capacity(
        &self,
        seen: &CapacityUse,
        counts: &CapacityUse,
    ) -> Result<bool, PortError>;

    /// The start-failure record of one pool (its circuit breaker); the default
    /// record when there is none.
    async fn pool_health(&self, pool: &str) -> Result<PoolHealth, PortError>;
    /// Every pool's record that exists.
    async fn list_pool_health(&self) -> Result<Vec<PoolHealth>, PortError>;
    /// Read-modify-write one pool's record atomically: `f` returns whether it
    /// changed the record (only then is it written); retried on a conflict.
    /// Returns the record as stored afterwards.
    async fn update_pool_health(
        &self,
        pool: &str,
        f: &HealthUpdate<'_>,
    ) -> Result<PoolHealth, PortError>;

    /// A small JSON document a scheduled task keeps between runs (the
    /// redelivery checkpoint, the sweep's place in the repository list), by key.
    async fn state_doc(&self, key: &str) -> Result<Option<serde_json::Value>, PortError>;
    /// Read-modify-write one document atomically: `f` returns whether it
    /// changed it (only then is it written; `None` written deletes nothing, it
    /// is refused); retried on a conflict. Returns the document as stored.
    async fn update_state_doc(
        &self,
        key: &str,
        f: &DocUpdate<'_>,
    ) -> Result<Option<serde_json::Value>, PortError>;

    /// Put a job this caller claimed (`Claimed` at `attempt`) into its pool's
    /// waiting line, in GitHub's queue order, and mark it `Waiting` (lease
    /// dropped), together. A job already in line keeps its place.
    async fn enter_line(
        &self,
        pool: &str,
        job_id: u64,
        attempt: u32,
        now: DateTime<Utc>,
    ) -> Result<LineOutcome, PortError>;
    /// `pool`'s line as stored (empty when there is none).
    async fn waiting_line(&self, pool: &str) -> Result<WaitLine, PortError>;
    /// Mark the jobs of `job_ids` still in `pool`'s line woken at `now`.
    async fn mark_woken(
        &self,
        pool: &str,
        job_ids: &[u64],
        now: DateTime<Utc>,
    ) -> Result<(), PortError>;
    /// Take `job_id` out of `pool`'s line (it got a slot, or is given up);
    /// idempotent.
    async fn leave_line(&self, pool: &str, job_id: u64) -> Result<(), PortError>;

    /// Pools an operator drained (`spotrunner drain POOL`): create-runner launches
    /// nothing for them and keeps their jobs waiting on the queue. A ledger without
    /// the flag drains nothing.
    async fn drained_pools(&self) -> Result<BTreeSet<String>, PortError> {
        Ok(BTreeSet::new())
    }
    /// Is `pool` drained? (One read per job on the hot path.)
    async fn is_drained(&self, pool: &str) -> Result<bool, PortError> {
        Ok(self.drained_pools().await?.contains(pool))
    }
    /// Drain (`true`) or undrain (`false`) a pool at `now`; idempotent.
    async fn set_drained(
        &self,
        pool: &str,
        drained: bool,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let _ = (pool, drained, now);
        Err(PortError::rejected(
            "ledger",
            "this ledger cannot drain pools",
        ))
    }
}
