//! The janitor's rules: a pure function from a [`Snapshot`] to [`Action`]s.

use super::JanitorSettings;
use super::report::{Action, ActionKind};
use super::snapshot::{GitHubRunnerSeen, Snapshot};
use super::stale::stale_jobs;
use crate::config::{Config, Pool};
use crate::ports::{CapacityUse, Instance, JobRecord, JobState, RunnerRecord, RunnerState, tags};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// A pool's timers, in seconds (defaults when the pool left the configuration).
struct Timers {
    boot: i64,
    idle: i64,
    max_run: i64,
}

fn timers(pool: Option<&Pool>) -> Timers {
    let d = crate::config::defaults::pool_timers();
    let (boot, idle, max_run) = pool.map_or(d, |p| {
        (
            p.boot_timeout_secs,
            p.idle_timeout_secs,
            p.max_run_time_secs,
        )
    });
    let secs = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    Timers {
        boot: secs(boot),
        idle: secs(idle),
        max_run: secs(max_run),
    }
}

/// Everything to do for this snapshot, each with its reason.
pub fn plan(
    config: &Config,
    settings: &JanitorSettings,
    snap: &Snapshot,
    now: DateTime<Utc>,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let active: BTreeMap<&str, &RunnerRecord> = snap
        .runners
        .iter()
        .filter(|r| r.state != RunnerState::Released)
        .map(|r| (r.name.as_str(), r))
        .collect();
    let live: Vec<&Instance> = snap.instances.iter().filter(|i| i.is_live()).collect();
    let github: Option<BTreeMap<&str, &GitHubRunnerSeen>> = snap
        .github_runners
        .as_ref()
        .map(|rs| rs.iter().map(|g| (g.runner.name.as_str(), g)).collect());
    let mut ended: BTreeSet<&str> = BTreeSet::new();
    let mut act = |kind, subject: &str, job_id, reason: String| {
        actions.push(Action {
            kind,
            subject: subject.to_string(),
            job_id,
            reason,
        })
    };

    // 1. Live instances: orphans, timers, idle runners.
    for inst in &live {
        let name = inst.tag(tags::RUNNER_NAME);
        let Some(runner) = name.and_then(|n| active.get(n)) else {
            act(
                ActionKind::TerminateOrphan,
                &inst.instance_id,
                inst.tag(tags::JOB_ID).and_then(|j| j.parse().ok()),
                format!(
                    "instance of this deployment with no live runner in the ledger (runner {})",
                    name.unwrap_or("untagged")
                ),
            );
            continue;
        };
        let t = timers(config.pool(&runner.pool));
        let since = runner
            .launched_at
            .or(inst.launched_at)
            .unwrap_or(runner.created_at);
        let age = (now - since).num_seconds();
        let job = Some(runner.job_id);
        if age > t.max_run {
            act(
                ActionKind::MaxRunTime,
                &runner.name,
                job,
                format!(
                    "running {age} s, past the pool's max run time of {} s",
                    t.max_run
                ),
            );
            ended.insert(&runner.name);
        } else if matches!(
            runner.state,
            RunnerState::Reserved | RunnerState::Launched | RunnerState::Bootstrapping
        ) && age > t.boot
        {
            act(
                ActionKind::BootTimeout,
                &runner.name,
                job,
                format!(
                    "launched {age} s ago and never bootstrapped (boot timeout {} s)",
                    t.boot
                ),
            );
            ended.insert(&runner.name);
        } else if let Some(github) = &github {
            let registered = github.get(runner.name.as_str());
            let busy = is_busy(runner, registered.copied(), &snap.jobs);
            match runner.state {
                // A free runner of a hot pool is the filler's (`crate::hot`).
                RunnerState::Bootstrapped
                    if registered.is_some()
                        && !busy
                        && age > t.idle
                        && !(runner.job_id == 0
                            && config.pool(&runner.pool).is_some_and(|p| p.hot.is_some())) =>
                {
                    act(
                        ActionKind::Taint,
                        &runner.name,
                        job,
                        format!(
                            "registered and idle for {age} s, past the idle timeout of {} s",
                            t.idle
                        ),
                    );
                }
                RunnerState::Tainted if !busy => {
                    let tainted_at = inst
                        .tag(tags::TAINTED)
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .map_or(runner.updated_at, |t| t.with_timezone(&Utc));
                    let tainted_for = now - tainted_at;
                    if tainted_for > settings.taint_grace {
                        act(
                            ActionKind::DeleteTainted,
                            &runner.name,
                            job,
                            format!(
                                "tainted {} s ago and still idle (grace {} s)",
                                tainted_for.num_seconds(),
                                settings.taint_grace.num_seconds()
                            ),
                        );
                        ended.insert(&runner.name);
                    }
                }
                _ => {}
            }
        }
    }

    // 2. Live ledger runners whose instance is gone, and reservations that never
    //    got one.
    for runner in active.values() {
        if ended.contains(runner.name.as_str()) {
            continue;
        }
        match &runner.instance_id {
            Some(id) if !live.iter().any(|i| &i.instance_id == id) => {
                act(
                    ActionKind::ReleaseLost,
                    &runner.name,
                    Some(runner.job_id),
                    format!("its instance {id} is gone"),
                );
                ended.insert(&runner.name);
            }
            None if runner.state == RunnerState::Reserved
                && now - runner.created_at > settings.reservation_timeout =>
            {
                let job = snap.jobs.iter().find(|j| j.job_id == runner.job_id);
                let in_flight = job.is_some_and(|j| {
                    j.state == JobState::Claimed && j.lease_until.is_some_and(|t| t > now)
                });
                if !in_flight {
                    act(
                        ActionKind::ReleaseStaleReservation,
                        &runner.name,
                        Some(runner.job_id),
                        format!(
                            "reserved {} s ago, never launched, and no launch is in flight",
                            (now - runner.created_at).num_seconds()
                        ),
                    );
                    ended.insert(&runner.name);
                }
            }
            _ => {}
        }
    }

    // 3. GitHub runners of ours, offline, that no live runner stands behind.
    if let Some(github) = &github {
        for (name, seen) in github {
            if seen.runner.status != "offline" || ended.contains(name) {
                continue;
            }
            if active.contains_key(name) {
                continue; // booting or running: its instance is live, or its launch is in flight
            }
            act(
                ActionKind::DeleteGitHubRunner,
                name,
                None,
                format!(
                    "offline GitHub runner {} of this deployment with no live runner in the ledger",
                    seen.runner.id
                ),
            );
        }
    }

    // 4. JIT parameters whose runner is gone.
    for param in &snap.parameters {
        let name = param
            .strip_prefix(&settings.jit_parameter_prefix)
            .unwrap_or(param);
        if active.contains_key(name) {
            continue; // its runner's teardown (planned or future) deletes it
        }
        act(
            ActionKind::DeleteParameter,
            param,
            None,
            format!("JIT parameter of runner {name}, which the ledger has no live record of"),
        );
    }

    // 5. Jobs that wait with no live runner.
    for job in stale_jobs(
        &snap.jobs,
        &snap.runners,
        &snap.instances,
        settings.stale_job_after,
        now,
    ) {
        if job
            .runner_name
            .as_deref()
            .is_some_and(|r| ended.contains(r))
        {
            continue; // the runner's teardown puts the job back
        }
        let id = job.job_id;
        let queued_for = now - job.message.queued_since();
        let waiting = (now - job.updated_at).num_minutes();
        if queued_for > settings.max_job_age {
            act(
                ActionKind::DropJob,
                &id.to_string(),
                Some(id),
                format!(
                    "queued {} h ago, past GitHub's 24 h queue limit",
                    queued_for.num_hours()
                ),
            );
            continue;
        }
        match snap.github_jobs.get(&id) {
            Some(Some(gh)) if gh.status == "completed" => act(
                ActionKind::CompleteJob,
                &id.to_string(),
                Some(id),
                "GitHub completed the job; its webhook was missed".into(),
            ),
            Some(Some(gh)) if gh.status == "in_progress" => {}
            Some(None) => act(
                ActionKind::DropJob,
                &id.to_string(),
                Some(id),
                "GitHub no longer has the job".into(),
            ),
            _ => act(
                ActionKind::RequeueJob,
                &id.to_string(),
                Some(id),
                format!(
                    "{} for {waiting} min with no live runner",
                    job.state.as_str()
                ),
            ),
        }
    }

    // 6. Capacity counters against the live runners.
    let counted = count(active.values().copied());
    if normalized(&snap.capacity) != counted {
        act(
            ActionKind::RepairCapacity,
            "capacity",
            None,
            format!(
                "counters say {:?} (weight {}), live runners say {:?} (weight {})",
                normalized(&snap.capacity).pools,
                snap.capacity.weight,
                counted.pools,
                counted.weight
            ),
        );
    }
    actions
}

/// Whether a runner is, or may be, running a job: GitHub says busy, or the
/// ledger has a job in progress on it.
fn is_busy(runner: &RunnerRecord, github: Option<&GitHubRunnerSeen>, jobs: &[JobRecord]) -> bool {
    github.is_some_and(|g| g.runner.busy)
        || jobs.iter().any(|j| {
            j.state == JobState::Running
                && (j.taken_by.as_deref() == Some(runner.name.as_str())
                    || (j.taken_by.is_none() && j.runner_name.as_deref() == Some(&runner.name)))
        })
}

/// Capacity the given (live) runners hold.
pub(crate) fn count<'a>(runners: impl Iterator<Item = &'a RunnerRecord>) -> CapacityUse {
    let mut c = CapacityUse::default();
    for r in runners {
        *c.pools.entry(r.pool.clone()).or_default() += 1;
        c.weight += r.weight;
    }
    c
}

/// Counters without zero entries, to compare with a recount.
pub(crate) fn normalized(c: &CapacityUse) -> CapacityUse {
    CapacityUse {
        pools: c
            .pools
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        weight: c.weight,
    }
}
