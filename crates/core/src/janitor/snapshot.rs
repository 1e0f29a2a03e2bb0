//! Everything the janitor looks at, read once per pass (all pages of each list).
//!
//! **Order: what lives outside the ledger first, the ledger's runners after.**
//! create-runner writes a runner's ledger record before anything of it exists
//! elsewhere: it reserves (the record), then registers the runner with GitHub,
//! then writes the JIT parameter, then launches the instance. So whatever a
//! listing shows already had its record *before the listing*, and a runner read
//! made *after* every listing finds that record (live, or released since): a
//! create-runner running concurrently never looks like a leak. Read the other way
//! round, a runner reserved between the ledger read and a listing shows its
//! registration, parameter or instance without a record, i.e. as a leak, and lost
//! them. Hence: jobs (only to know which GitHub scopes to list), GitHub runners,
//! parameters, instances, then the capacity counters and the runners.
//!
//! What no order can cover is re-checked by each action just before it acts
//! (execute.rs): a name released and reserved again between the snapshot and the
//! action, a runner that launched after the instance list, a job that moved on.

use super::Janitor;
use super::stale::stale_jobs;
use crate::config::Scope;
use crate::names;
use crate::ports::{
    CapacityUse, GitHubJob, GitHubRunner, GitHubTarget, Instance, JobRecord, PortError,
    RunnerRecord, RunnerScope,
};
use crate::target::github_target;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// A GitHub runner and the scope it was listed under (to delete it there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubRunnerSeen {
    pub target: GitHubTarget,
    pub runner: GitHubRunner,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// This deployment's instances, any state.
    pub instances: Vec<Instance>,
    pub runners: Vec<RunnerRecord>,
    pub jobs: Vec<JobRecord>,
    /// The counters, read just before the runners.
    pub capacity: CapacityUse,
    /// JIT parameter names under the deployment's prefix.
    pub parameters: Vec<String>,
    /// GitHub runners whose names are this deployment's (`names::is_ours`: the
    /// exact deployment, never a prefix); `None` when
    /// GitHub could not be listed (the GitHub rules wait for the next pass).
    pub github_runners: Option<Vec<GitHubRunnerSeen>>,
    /// What GitHub says about the jobs that look stale (absent: unknown).
    pub github_jobs: BTreeMap<u64, Option<GitHubJob>>,
    pub warnings: Vec<String>,
}

impl Janitor {
    pub(super) async fn snapshot(&self, now: DateTime<Utc>) -> Result<Snapshot, PortError> {
        let deployment = &self.config.deployment;
        // Outside the ledger first (see the module documentation).
        let mut snap = Snapshot {
            jobs: self.ledger.list_jobs().await?,
            ..Snapshot::default()
        };
        let mut seen: BTreeMap<u64, GitHubRunnerSeen> = BTreeMap::new();
        let mut complete = true;
        for target in self.targets(&snap.jobs) {
            match self.github.list_runners(&target).await {
                Ok(runners) => {
                    for runner in runners
                        .into_iter()
                        .filter(|r| names::is_ours(deployment, &r.name))
                    {
                        seen.entry(runner.id).or_insert(GitHubRunnerSeen {
                            target: target.clone(),
                            runner,
                        });
                    }
                }
                // An allowed owner that is a user (or has no installation)
                // has no organisation runners: nothing of ours can be there.
                Err(e @ PortError::NotFound { .. })
                    if matches!(target.scope, RunnerScope::Org { .. }) =>
                {
                    snap.warnings
                        .push(format!("no organisation runners at {target:?}: {e}"));
                }
                Err(e) => {
                    complete = false;
                    snap.warnings
                        .push(format!("could not list GitHub runners of {target:?}: {e}"));
                }
            }
        }
        if complete {
            snap.github_runners = Some(seen.into_values().collect());
        }
        snap.parameters = self
            .parameters
            .list(&self.settings.jit_parameter_prefix)
            .await?;
        snap.instances = self.compute.list_instances(deployment).await?;
        // Then the ledger.
        snap.capacity = self.ledger.capacity().await?;
        snap.runners = self.ledger.list_runners().await?;
        let stale: Vec<(u64, GitHubTarget, String)> = stale_jobs(
            &snap.jobs,
            &snap.runners,
            &snap.instances,
            self.settings.stale_job_after,
            now,
        )
        .into_iter()
        .filter_map(|j| {
            let pool = self.config.pool(&j.pool)?;
            Some((
                j.job_id,
                github_target(&j.message, pool),
                j.repository.clone(),
            ))
        })
        .collect();
        for (job_id, target, repository) in stale {
            match self.github.get_job(&target, &repository, job_id).await {
                Ok(found) => {
                    snap.github_jobs.insert(job_id, found);
                }
                Err(e) => snap
                    .warnings
                    .push(format!("could not ask GitHub about job {job_id}: {e}")),
            }
        }
        Ok(snap)
    }

    /// Where our runners can be registered: the scopes of the jobs the ledger
    /// knows, and each allowed owner for organisation pools.
    fn targets(&self, jobs: &[JobRecord]) -> Vec<GitHubTarget> {
        let mut targets: BTreeMap<String, GitHubTarget> = BTreeMap::new();
        for job in jobs {
            if let Some(pool) = self.config.pool(&job.pool) {
                let t = github_target(&job.message, pool);
                targets.entry(format!("{:?}", t.scope)).or_insert(t);
            }
        }
        if self.config.pools.iter().any(|p| p.scope == Scope::Org) {
            for owner in self.config.named_owners() {
                let t = GitHubTarget {
                    scope: RunnerScope::Org { org: owner.clone() },
                    installation_id: None,
                };
                targets.entry(format!("{:?}", t.scope)).or_insert(t);
            }
        }
        targets.into_values().collect()
    }
}
