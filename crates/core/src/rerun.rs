//! Re-running jobs a spot interruption killed.
//!
//! stop-runner stamps a job `interrupted` when its runner gets a spot
//! interruption warning while it has the job. Once GitHub says the job
//! `completed` with `failure` or `cancelled` **and its workflow run
//! completed** (GitHub re-runs a job only then: before, it answers 403 "The
//! workflow run containing this job is already running"), we ask GitHub to
//! re-run it (`POST …/actions/jobs/{id}/rerun`). The re-run is a new job (a
//! new id, the same run and job name, the run's next attempt); its `queued`
//! delivery is recognised by create-runner through the run's marker (below)
//! and launched on-demand.
//!
//! Who steps: stop-runner right after it ends the interrupted runner, and the
//! janitor at every pass for every job still undecided (level-triggered: a
//! crash anywhere, a run that completes later, all end up here). Every step
//! is idempotent:
//!
//! - **The run's attempt says whether the re-run happened.** A request
//!   creates the run's next attempt, so a run whose attempt is past the job's
//!   was re-run (by us before a crash between the request and the ledger
//!   write, or by a person): the job is marked `found`, nothing is sent.
//! - **The marker is written before the request.** One ledger state document
//!   per run (`rerun/<run_id>`), by job name: the job re-run, the attempt the
//!   re-run will be, the depth (how many re-runs the chain had) and when it
//!   was requested. Its conditional write is the lock: a second stepper within
//!   [`IN_FLIGHT`] of the first leaves it alone. create-runner reads it only
//!   for jobs of a run's later attempt.
//! - **Budget.** `spot.reruns` per pool counts along the chain: the re-run of a
//!   re-run has depth 2, and is not re-run again with the default of 1.

use crate::config::Config;
use crate::job::JobMessage;
use crate::ports::{GitHubApi, JobChange, JobRecord, Ledger, PortError, RerunAnswer, Stage};
use crate::target::github_target;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// A request made less than this long ago is in flight: nobody else sends one.
pub const IN_FLIGHT: Duration = Duration::minutes(10);
/// A job interrupted longer ago than this is given up on (GitHub keeps
/// runs re-runnable for 30 days, but nobody waits that long for CI).
pub const GIVE_UP_AFTER: Duration = Duration::days(3);

/// Conclusions an interruption can cause: only these are re-run.
const RERUN_CONCLUSIONS: [&str; 2] = ["failure", "cancelled"];

/// The ledger key of a run's re-run marker.
pub fn marker_key(run_id: u64) -> String {
    format!("rerun/{run_id}")
}

/// A run's re-runs, by job name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RerunMarker {
    #[serde(default)]
    pub jobs: BTreeMap<String, RerunEntry>,
}

/// The latest re-run of one job name in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RerunEntry {
    /// The interrupted job.
    pub from_job: u64,
    /// Its run attempt.
    pub from_attempt: u32,
    /// The run attempt the re-run is (`from_attempt + 1`).
    pub rerun_attempt: u32,
    /// Re-runs along the chain, this one included.
    pub depth: u32,
    /// When the request was (being) made; `None` once GitHub refused it.
    #[serde(default)]
    pub requested_at: Option<DateTime<Utc>>,
}

impl RerunMarker {
    pub fn from_doc(doc: Option<&serde_json::Value>) -> Self {
        doc.and_then(|d| serde_json::from_value(d.clone()).ok())
            .unwrap_or_default()
    }

    /// The entry whose re-run `msg`'s job is, if it is one.
    pub fn rerun_for(&self, msg: &JobMessage) -> Option<&RerunEntry> {
        let entry = self.jobs.get(msg.job_name.as_deref()?)?;
        (entry.rerun_attempt == msg.run_attempt && entry.from_job != msg.job_id).then_some(entry)
    }
}

/// Is `msg`'s job the re-run of an interrupted job? One ledger read, made
/// only for a run's later attempts (`run_attempt > 1`) of a named job.
pub async fn rerun_of(
    ledger: &dyn Ledger,
    msg: &JobMessage,
) -> Result<Option<RerunEntry>, PortError> {
    if msg.run_attempt < 2 || msg.job_name.is_none() {
        return Ok(None);
    }
    let doc = ledger.state_doc(&marker_key(msg.run_id)).await?;
    Ok(RerunMarker::from_doc(doc.as_ref()).rerun_for(msg).cloned())
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RerunStep {
    /// GitHub accepted our request now.
    Requested { depth: u32 },
    /// The run was re-run already (our request before a crash, or a person's).
    Found,
    /// No re-run, ever (why).
    NotNeeded(String),
    /// Not now (why); a later step tries again.
    Later(String),
}

impl RerunStep {
    /// What the job record keeps (`None`: still undecided).
    fn record(&self) -> Option<String> {
        match self {
            Self::Requested { depth } => Some(format!("requested (re-run {depth})")),
            Self::Found => Some("found: the run was re-run already".into()),
            Self::NotNeeded(why) => Some(format!("not re-run: {why}")),
            Self::Later(_) => None,
        }
    }
}

/// Does `job` wait for a re-run decision?
pub fn undecided(job: &JobRecord) -> bool {
    job.timeline.get(Stage::Interrupted).is_some() && job.rerun.is_none()
}

/// The re-run steps over the ports they need.
pub struct Reruns<'a> {
    pub config: &'a Config,
    pub ledger: &'a dyn Ledger,
    pub github: &'a dyn GitHubApi,
}

impl Reruns<'_> {
    /// Step every undecided job of `jobs` (the janitor's pass, over the
    /// jobs its snapshot listed).
    pub async fn step_all(&self, jobs: &[JobRecord], now: DateTime<Utc>) -> Vec<(u64, RerunStep)> {
        let mut out = Vec::new();
        for job in jobs {
            if !undecided(job) {
                continue;
            }
            match self.step(job, now).await {
                Ok(step) => out.push((job.job_id, step)),
                Err(e) => {
                    tracing::warn!(job_id = job.job_id, error = %e, "re-run step failed; the next pass tries again")
                }
            }
        }
        out
    }

    /// Step `job_id` if it is undecided (stop-runner, after it ended the runner).
    pub async fn step_job(
        &self,
        job_id: u64,
        now: DateTime<Utc>,
    ) -> Result<Option<RerunStep>, PortError> {
        match self.ledger.get_job(job_id).await? {
            Some(job) if undecided(&job) => self.step(&job, now).await.map(Some),
            _ => Ok(None),
        }
    }

    /// Decide, act, and record a final decision on the job.
    pub async fn step(&self, job: &JobRecord, now: DateTime<Utc>) -> Result<RerunStep, PortError> {
        let step = self.decide(job, now).await?;
        if let Some(record) = step.record() {
            let mut change = JobChange {
                rerun: Some(record),
                ..JobChange::default()
            };
            if matches!(step, RerunStep::Requested { .. }) {
                change.stamps.push((Stage::RerunRequested, now));
            }
            self.ledger.update_job(job.job_id, &change, now).await?;
        }
        let job_id = job.job_id;
        match &step {
            RerunStep::Requested { depth } => tracing::info!(
                job_id,
                pool = %job.pool,
                run_id = job.message.run_id,
                depth,
                metric = "jobs_rerun_requested",
                "interrupted job re-run on GitHub; its re-run launches on-demand"
            ),
            RerunStep::Found => {
                tracing::info!(job_id, "interrupted job's run was re-run already")
            }
            RerunStep::NotNeeded(why) => {
                tracing::info!(job_id, reason = %why, "interrupted job not re-run")
            }
            RerunStep::Later(why) => {
                tracing::debug!(job_id, reason = %why, "interrupted job: re-run later")
            }
        }
        Ok(step)
    }

    async fn decide(&self, job: &JobRecord, now: DateTime<Utc>) -> Result<RerunStep, PortError> {
        use RerunStep::{Found, Later, NotNeeded};
        let Some(pool) = self.config.pool(&job.pool) else {
            return Ok(NotNeeded(format!("pool {} no longer exists", job.pool)));
        };
        let budget = pool.spot.reruns;
        if budget == 0 {
            return Ok(NotNeeded(format!(
                "re-runs are off for pool {} (spot.reruns = 0)",
                pool.name
            )));
        }
        let interrupted = job.timeline.get(Stage::Interrupted).unwrap_or(now);
        if now - interrupted > GIVE_UP_AFTER {
            return Ok(NotNeeded("interrupted more than 3 days ago".into()));
        }
        let msg = &job.message;
        let target = github_target(msg, pool);
        let Some(gh_job) = self
            .github
            .get_job(&target, &job.repository, job.job_id)
            .await?
        else {
            return Ok(NotNeeded("GitHub no longer knows the job".into()));
        };
        if gh_job.status != "completed" {
            return Ok(Later(format!(
                "the job is still {} on GitHub",
                gh_job.status
            )));
        }
        let conclusion = gh_job.conclusion.clone().unwrap_or_default();
        if !RERUN_CONCLUSIONS.contains(&conclusion.as_str()) {
            return Ok(NotNeeded(format!(
                "it concluded {conclusion:?} despite the interruption"
            )));
        }
        let Some(name) = msg.job_name.clone().or(gh_job.name.clone()) else {
            return Ok(NotNeeded("the job's name is unknown".into()));
        };
        let run_id = gh_job.run_id.unwrap_or(msg.run_id);
        let attempt = gh_job.run_attempt.unwrap_or(msg.run_attempt);
        let key = marker_key(run_id);
        let marker = RerunMarker::from_doc(self.ledger.state_doc(&key).await?.as_ref());
        let depth = marker
            .jobs
            .get(&name)
            .filter(|e| e.rerun_attempt == attempt && e.from_job != job.job_id)
            .map_or(0, |e| e.depth);
        if depth >= budget {
            return Ok(NotNeeded(format!(
                "it is re-run {depth} of an interrupted job already (spot.reruns = {budget})"
            )));
        }
        let Some(run) = self
            .github
            .get_run(&target, &job.repository, run_id)
            .await?
        else {
            return Ok(NotNeeded(format!("GitHub no longer knows run {run_id}")));
        };
        if run.run_attempt > attempt {
            return Ok(Found);
        }
        if run.status != "completed" {
            return Ok(Later(format!(
                "its workflow run is still {}; GitHub re-runs a job once the run completed",
                run.status
            )));
        }
        // The lock: write our entry unless a request is in flight.
        let ours = AtomicBool::new(false);
        let entry = RerunEntry {
            from_job: job.job_id,
            from_attempt: attempt,
            rerun_attempt: attempt + 1,
            depth: depth + 1,
            requested_at: Some(now),
        };
        self.ledger
            .update_state_doc(&key, &|doc| {
                let mut m = RerunMarker::from_doc(doc.as_ref());
                let in_flight = m.jobs.get(&name).is_some_and(|e| {
                    e.from_job == job.job_id && e.requested_at.is_some_and(|t| now - t < IN_FLIGHT)
                });
                ours.store(!in_flight, Ordering::SeqCst);
                if in_flight {
                    return false;
                }
                m.jobs.insert(name.clone(), entry.clone());
                *doc = serde_json::to_value(&m).ok();
                true
            })
            .await?;
        if !ours.load(Ordering::SeqCst) {
            return Ok(Later("another re-run request is in flight".into()));
        }
        match self
            .github
            .rerun_job(&target, &job.repository, job.job_id)
            .await?
        {
            RerunAnswer::Accepted => Ok(RerunStep::Requested { depth: depth + 1 }),
            RerunAnswer::Refused(message) => {
                self.unlock(&key, &name, job.job_id).await?;
                if message.to_ascii_lowercase().contains("already running") {
                    Ok(Later(format!("GitHub: {message}")))
                } else {
                    Ok(NotNeeded(format!("GitHub refused the re-run: {message}")))
                }
            }
        }
    }

    /// GitHub refused: the entry no longer blocks the next step.
    async fn unlock(&self, key: &str, name: &str, job_id: u64) -> Result<(), PortError> {
        self.ledger
            .update_state_doc(key, &|doc| {
                let mut m = RerunMarker::from_doc(doc.as_ref());
                match m.jobs.get_mut(name) {
                    Some(e) if e.from_job == job_id && e.requested_at.is_some() => {
                        e.requested_at = None;
                        *doc = serde_json::to_value(&m).ok();
                        true
                    }
                    _ => false,
                }
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JOB_MESSAGE_VERSION;

    fn msg(job_id: u64, attempt: u32, name: Option<&str>) -> JobMessage {
        JobMessage {
            version: JOB_MESSAGE_VERSION,
            job_id,
            run_id: 9,
            run_attempt: attempt,
            repository: "o/r".into(),
            owner: "o".into(),
            owner_type: "Organization".into(),
            installation_id: None,
            labels: vec![],
            pool: "cpu".into(),
            delivery_id: None,
            received_at: Utc::now(),
            queued_at: None,
            launch_attempt: 0,
            deferrals: 0,
            job_name: name.map(str::to_string),
        }
    }

    #[test]
    fn only_the_named_job_of_the_re_run_attempt_is_the_re_run() {
        let mut m = RerunMarker::default();
        m.jobs.insert(
            "build".into(),
            RerunEntry {
                from_job: 1,
                from_attempt: 1,
                rerun_attempt: 2,
                depth: 1,
                requested_at: None,
            },
        );
        let doc = serde_json::to_value(&m).unwrap();
        let m = RerunMarker::from_doc(Some(&doc));
        assert!(m.rerun_for(&msg(5, 2, Some("build"))).is_some());
        // Another job of the attempt, a later attempt (a person's re-run),
        // the interrupted job itself, a job without a name: not re-runs.
        assert!(m.rerun_for(&msg(6, 2, Some("deploy"))).is_none());
        assert!(m.rerun_for(&msg(7, 3, Some("build"))).is_none());
        assert!(m.rerun_for(&msg(1, 2, Some("build"))).is_none());
        assert!(m.rerun_for(&msg(5, 2, None)).is_none());
        // A document this build cannot read is no marker, not an error.
        let junk = serde_json::json!({"jobs": 3});
        assert_eq!(RerunMarker::from_doc(Some(&junk)), RerunMarker::default());
    }
}
