//! Which jobs wait with no live runner: asked by the snapshot (to read only
//! those jobs from GitHub) and by the plan (to act on them). It reads the
//! snapshot's lists, not the snapshot, so neither module depends on the other
//! through it.

use crate::ports::{Instance, JobRecord, JobState, RunnerRecord, RunnerState, tags};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

/// Jobs that wait with no live runner for longer than `stale_job_after`.
pub(super) fn stale_jobs<'a>(
    jobs: &'a [JobRecord],
    runners: &[RunnerRecord],
    instances: &[Instance],
    stale_job_after: chrono::Duration,
    now: DateTime<Utc>,
) -> Vec<&'a JobRecord> {
    let live: BTreeSet<&str> = instances
        .iter()
        .filter(|i| i.is_live())
        .filter_map(|i| i.tag(tags::RUNNER_NAME))
        .collect();
    let has_live_runner = |job: &JobRecord| {
        runners.iter().any(|r| {
            r.job_id == job.job_id
                && r.state != RunnerState::Released
                && (r.instance_id.is_none() || live.contains(r.name.as_str()))
        })
    };
    jobs.iter()
        .filter(|j| match j.state {
            JobState::Launched | JobState::Requeued => true,
            JobState::Claimed => j.lease_until.is_none_or(|t| t <= now),
            _ => false,
        })
        .filter(|j| now - j.updated_at > stale_job_after)
        .filter(|j| !has_live_runner(j))
        .collect()
}
