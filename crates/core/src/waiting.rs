//! Work-conserving capacity: a job that finds its pool (or the global quota)
//! full waits in the pool's line ([`crate::ports::WaitLine`]), and whoever frees
//! a slot — stop-runner, the janitor, a launch undone — wakes the oldest
//! waiting jobs that now fit by sending their messages at once. No timer
//! decides when a freed slot is used.
//!
//! Nothing is lost between "the pool is full" and "a slot was freed": a job
//! enters the line first and then looks for a free slot itself, a releaser
//! gives the slot back first and then looks at the line, so at least one of
//! them sees both. A wake sends first and marks after: a crash in between
//! leaves a second message at worst, and the claim lets one through.

use crate::config::Config;
use crate::ports::{JobQueue, JobState, Ledger, PortError};
use chrono::{DateTime, Utc};

/// How long a woken job's message holds the slot it was woken for before the
/// line wakes the job again (its message may have found the slot taken and
/// failed, or be waiting behind a backlog: a second message is harmless).
pub const WAKE_TTL: chrono::Duration = chrono::Duration::minutes(5);

/// Jobs older than this are given up on when woken (GitHub cancels queued
/// jobs after 24 h).
const MAX_JOB_AGE: chrono::Duration = chrono::Duration::hours(24);

/// What wakes waiting jobs.
pub struct Waker<'a> {
    pub config: &'a Config,
    pub ledger: &'a dyn Ledger,
    pub jobs_queue: &'a dyn JobQueue,
}

impl Waker<'_> {
    /// A slot of `pool` may be free: send the messages of the oldest waiting
    /// jobs that fit, and mark them woken. Returns the jobs woken. A drained
    /// pool's line is held (undrain wakes it).
    pub async fn wake(&self, pool: &str, now: DateTime<Utc>) -> Result<Vec<u64>, PortError> {
        let Some(cfg) = self.config.pool(pool) else {
            return Ok(Vec::new());
        };
        let line = self.ledger.waiting_line(pool).await?;
        if line.is_empty() || self.ledger.is_drained(pool).await? {
            return Ok(Vec::new());
        }
        let (used, weight_used) = self.ledger.pool_use(pool).await?;
        let mut free = cfg.max_runners.saturating_sub(used);
        if let Some(max) = self.config.max_total_weight {
            free = free.min(max.saturating_sub(weight_used) / cfg.weight.max(1));
        }
        let mut woken = Vec::new();
        for job_id in line.to_wake(free, now, WAKE_TTL) {
            let job = self.ledger.get_job(job_id).await?;
            match job {
                Some(job) if now - job.message.queued_since() > MAX_JOB_AGE => {
                    let change = crate::ports::JobChange {
                        state: Some(JobState::Dropped),
                        clear_lease: true,
                        end_reason: Some("waited past GitHub's 24 h queue limit".into()),
                        ..Default::default()
                    };
                    if job.state == JobState::Waiting {
                        self.ledger.update_job(job_id, &change, now).await?;
                    }
                    self.ledger.leave_line(pool, job_id).await?;
                    tracing::warn!(
                        job_id,
                        pool,
                        metric = "jobs_dropped",
                        reason = "too_old",
                        "job waited past GitHub's 24 h queue limit; dropped"
                    );
                }
                Some(job) if matches!(job.state, JobState::Waiting | JobState::Claimed) => {
                    self.jobs_queue.send_job(&job.message).await?;
                    tracing::info!(job_id, pool, free, "a slot is free: waiting job woken");
                    woken.push(job_id);
                }
                // Launched, ended or gone meanwhile: it no longer waits.
                _ => self.ledger.leave_line(pool, job_id).await?,
            }
        }
        if !woken.is_empty() {
            self.ledger.mark_woken(pool, &woken, now).await?;
        }
        Ok(woken)
    }

    /// Capacity of `pool` was given back: wake its line, and when a global
    /// quota is set the other pools' lines too (the weight freed may fit their
    /// jobs). A failure is logged, not returned: the slot is free either way,
    /// and the next release, the next job to wait or the janitor wakes the line.
    pub async fn after_release(&self, pool: &str, now: DateTime<Utc>) {
        let mut pools = vec![pool];
        if self.config.max_total_weight.is_some() {
            pools.extend(
                self.config
                    .pools
                    .iter()
                    .map(|p| p.name.as_str())
                    .filter(|p| *p != pool),
            );
        }
        for p in pools {
            if let Err(e) = self.wake(p, now).await {
                tracing::warn!(pool = p, error = %e, "could not wake the waiting line; the next release or the janitor will");
            }
        }
    }

    /// Every pool's line (the janitor's pass, undrain): the safety net for a
    /// wake lost to a crash between a release and its wake.
    pub async fn wake_all(&self, now: DateTime<Utc>) -> Vec<u64> {
        let mut woken = Vec::new();
        for pool in &self.config.pools {
            match self.wake(&pool.name, now).await {
                Ok(w) => woken.extend(w),
                Err(e) => {
                    tracing::warn!(pool = pool.name, error = %e, "could not wake the waiting line")
                }
            }
        }
        woken
    }
}
