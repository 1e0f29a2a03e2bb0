//! Performing the janitor's actions. Each re-reads what it acts on just before
//! acting, so a runner that stop-runner ended meanwhile is not ended twice, and
//! nothing a live runner owns is destroyed; every step is idempotent.
//!
//! The re-checks ([`Janitor::recheck`], and in `end_runner`):
//!
//! - **A leftover** (an orphan instance, a GitHub runner, a JIT parameter) goes
//!   only if the ledger, read again by the runner's name (the instance's
//!   `spotrunner:runner-name` tag, the GitHub runner's name, the parameter's name
//!   after the prefix), has no live runner of that name, and no runner of that
//!   name released less than [`LEFTOVER_GRACE`] ago. *No record at all* is a
//!   leftover at any age: create-runner writes the record before it registers,
//!   writes the parameter or launches, and the snapshot lists those things before
//!   it reads the ledger (snapshot.rs), so a thing without a record belongs to no
//!   create-runner in flight (its record expired, or another ledger made it).
//!   *A released record* is not final: the same job attempt reserves its name
//!   again after an undo (no capacity, launch refused) and then finds the
//!   parameter already written and, with the same `ClientToken`, the same
//!   instance. The grace, counted from the record's last change, keeps the
//!   window between this re-check and the delete away from such a retry.
//! - **A runner to end** must still be in the state the rule saw: a boot timeout
//!   is not applied to a runner that bootstrapped meanwhile, a stale reservation
//!   not to one that got an instance, and `release_lost` asks the cloud again
//!   (the ledger may name an instance launched after the instance list).
//! - **A job** is acted on only if its record is unchanged since the snapshot.
//! - **The counters** are recounted and written only if they still equal what
//!   was read just before the recount ([`Ledger::repair_capacity`]).
//!
//! A subject kept by a re-check is reported as a conflict; the next pass plans
//! again from what is true then.

use super::Janitor;
use super::plan::{count, normalized};
use super::report::{Action, ActionKind, ActionResult};
use super::snapshot::{GitHubRunnerSeen, Snapshot};
#[cfg(doc)]
use crate::ports::Ledger;
use crate::ports::{JobChange, JobState, PortError, RunnerChange, RunnerRecord, RunnerState, tags};
use crate::teardown::send_requeue;
use chrono::{DateTime, Utc};

impl Janitor {
    pub(super) async fn execute(
        &self,
        actions: Vec<Action>,
        snap: &Snapshot,
        now: DateTime<Utc>,
    ) -> Vec<ActionResult> {
        let mut results = Vec::with_capacity(actions.len());
        for action in actions {
            let outcome = self.perform(&action, snap, now).await;
            match &outcome {
                Ok(()) => tracing::info!(
                    job_id = action.job_id,
                    action = action.kind.as_str(),
                    subject = action.subject,
                    reason = action.reason,
                    metric = "janitor_actions",
                    "janitor action done"
                ),
                Err(e) => tracing::warn!(
                    job_id = action.job_id,
                    action = action.kind.as_str(),
                    subject = action.subject,
                    error = %e,
                    "janitor action failed; the next pass retries"
                ),
            }
            results.push(ActionResult {
                done: outcome.is_ok(),
                error: outcome.err().map(|e| e.to_string()),
                action,
            });
        }
        results
    }

    async fn perform(
        &self,
        action: &Action,
        snap: &Snapshot,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let subject = action.subject.as_str();
        if let Some(why) = self.recheck(action, snap, now).await? {
            return Err(kept(why));
        }
        match action.kind {
            ActionKind::Taint => {
                let Some(runner) = self.ledger.get_runner(subject).await? else {
                    return Ok(());
                };
                if let Some(id) = &runner.instance_id {
                    self.compute
                        .tag_instance(id, tags::TAINTED, &now.to_rfc3339())
                        .await?;
                }
                let change = RunnerChange {
                    state: Some(RunnerState::Tainted),
                    ..RunnerChange::default()
                };
                self.ledger.update_runner(subject, &change, now).await
            }
            ActionKind::BootTimeout
            | ActionKind::MaxRunTime
            | ActionKind::DeleteTainted
            | ActionKind::ReleaseLost
            | ActionKind::ReleaseStaleReservation => self.end_runner(action, snap, now).await,
            ActionKind::TerminateOrphan => self.compute.terminate(&[subject.to_string()]).await,
            ActionKind::DeleteGitHubRunner => {
                let Some(seen) = github_runner(snap, subject) else {
                    return Ok(());
                };
                self.github
                    .delete_runner(&seen.target, seen.runner.id)
                    .await
            }
            ActionKind::DeleteParameter => self.parameters.delete(subject).await,
            ActionKind::RequeueJob => self.requeue(action, now).await,
            ActionKind::CompleteJob | ActionKind::DropJob => {
                let state = if action.kind == ActionKind::CompleteJob {
                    JobState::Completed
                } else {
                    JobState::Dropped
                };
                let change = JobChange {
                    state: Some(state),
                    clear_lease: true,
                    ..JobChange::default()
                };
                self.ledger
                    .update_job(action.job_id.unwrap_or_default(), &change, now)
                    .await
            }
            ActionKind::RepairCapacity => self.repair_capacity().await,
        }
    }

    async fn end_runner(
        &self,
        action: &Action,
        snap: &Snapshot,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let Some(runner) = self.ledger.get_runner(&action.subject).await? else {
            return Ok(());
        };
        if runner.state == RunnerState::Released {
            return Ok(()); // stop-runner got there first
        }
        if let Some(why) = self.still_due(action, &runner).await? {
            return Err(kept(why));
        }
        if action.kind == ActionKind::DeleteTainted
            && let Some(seen) = github_runner(snap, &runner.name)
            && self
                .github
                .get_runner(&seen.target, seen.runner.id)
                .await?
                .is_some_and(|g| g.busy)
        {
            return Err(PortError::Conflict {
                service: "janitor",
                message: format!("runner {} became busy; it is kept", runner.name),
            });
        }
        let terminate = !matches!(
            action.kind,
            ActionKind::ReleaseLost | ActionKind::ReleaseStaleReservation
        );
        let teardown = self.teardown();
        let reason = action.kind.as_str();
        if matches!(
            action.kind,
            ActionKind::BootTimeout | ActionKind::ReleaseLost | ActionKind::ReleaseStaleReservation
        ) {
            teardown
                .end_before_start(&runner, terminate, reason, &action.reason, now)
                .await?;
        } else {
            teardown.end_runner(&runner, terminate, reason, now).await?;
        }
        Ok(())
    }

    /// A fresh message for a job that waits with no live runner (state
    /// `Requeued`, next launch attempt). A lost requeue message is resent.
    async fn requeue(&self, action: &Action, now: DateTime<Utc>) -> Result<(), PortError> {
        let Some(job) = self
            .ledger
            .get_job(action.job_id.unwrap_or_default())
            .await?
        else {
            return Ok(());
        };
        if job.state.is_final() || job.state == JobState::Running {
            return Ok(());
        }
        send_requeue(
            self.ledger.as_ref(),
            self.jobs_queue.as_ref(),
            &job,
            std::time::Duration::ZERO,
            now,
        )
        .await
    }

    /// Recount from the live runners and write the recount only if the counters
    /// are still the ones read just before the recount: the counters are read
    /// before and after the runner list (they must not have moved in between),
    /// and [`Ledger::repair_capacity`] compares and writes in one step. Every
    /// reservation and release moves a counter, so if the counters are still the
    /// ones read, the live runners are still the ones counted. A reservation
    /// that lands in between is never overwritten (a blind write would lose it,
    /// and the cap could be passed): nothing is written, the next pass counts
    /// again. The recount is made here, not in the snapshot, because this
    /// pass's own teardowns release runners before the repair runs.
    async fn repair_capacity(&self) -> Result<(), PortError> {
        let seen = normalized(&self.ledger.capacity().await?);
        let runners = self.ledger.list_runners().await?;
        if normalized(&self.ledger.capacity().await?) != seen {
            return Err(kept(
                "capacity changed during the recount; next pass".into(),
            ));
        }
        let counted = count(runners.iter().filter(|r| r.state != RunnerState::Released));
        if counted == seen {
            return Ok(());
        }
        if self.ledger.repair_capacity(&seen, &counted).await? {
            Ok(())
        } else {
            Err(kept(
                "capacity changed after the recount; not overwritten, next pass".into(),
            ))
        }
    }

    /// The re-check just before a leftover is destroyed or a job is changed (see
    /// the module documentation): `Some(why)` when it must be kept.
    async fn recheck(
        &self,
        action: &Action,
        snap: &Snapshot,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, PortError> {
        let subject = action.subject.as_str();
        match action.kind {
            ActionKind::TerminateOrphan => {
                let runner = snap
                    .instances
                    .iter()
                    .find(|i| i.instance_id == subject)
                    .and_then(|i| i.tag(tags::RUNNER_NAME));
                self.owned(runner, now).await
            }
            ActionKind::DeleteGitHubRunner => self.owned(Some(subject), now).await,
            ActionKind::DeleteParameter => {
                let runner = subject
                    .strip_prefix(&self.settings.jit_parameter_prefix)
                    .unwrap_or(subject);
                self.owned(Some(runner), now).await
            }
            ActionKind::RequeueJob | ActionKind::CompleteJob | ActionKind::DropJob => {
                let id = action.job_id.unwrap_or_default();
                let seen = snap.jobs.iter().find(|j| j.job_id == id);
                Ok(match self.ledger.get_job(id).await? {
                    Some(job) if seen.is_none_or(|s| s.updated_at != job.updated_at) => {
                        Some(format!(
                            "job {id} changed since the snapshot (now {}); the next pass decides",
                            job.state.as_str()
                        ))
                    }
                    _ => None,
                })
            }
            _ => Ok(None),
        }
    }

    /// Does a runner named `runner` (re-read from the ledger now) still own its
    /// leftovers? `None` (no name: an untagged instance) owns nothing.
    async fn owned(
        &self,
        runner: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, PortError> {
        let Some(name) = runner else {
            return Ok(None);
        };
        let Some(record) = self.ledger.get_runner(name).await? else {
            return Ok(None);
        };
        if record.state != RunnerState::Released {
            return Ok(Some(format!(
                "runner {name} is {} in the ledger now",
                record.state.as_str()
            )));
        }
        let since = now - record.updated_at;
        Ok((since < LEFTOVER_GRACE).then(|| {
            format!(
                "runner {name} was released {} s ago, within the {} s grace",
                since.num_seconds(),
                LEFTOVER_GRACE.num_seconds()
            )
        }))
    }

    /// Is the rule that ends `runner` still true of it as the ledger (and, for a
    /// lost instance, the cloud) says now? `Some(why)` when it no longer is.
    async fn still_due(
        &self,
        action: &Action,
        runner: &RunnerRecord,
    ) -> Result<Option<String>, PortError> {
        let name = &runner.name;
        Ok(match action.kind {
            ActionKind::BootTimeout
                if matches!(
                    runner.state,
                    RunnerState::Bootstrapped | RunnerState::Tainted
                ) =>
            {
                Some(format!("runner {name} bootstrapped meanwhile"))
            }
            ActionKind::ReleaseStaleReservation
                if runner.state != RunnerState::Reserved || runner.instance_id.is_some() =>
            {
                Some(format!("runner {name} got an instance meanwhile"))
            }
            ActionKind::ReleaseLost => match &runner.instance_id {
                Some(id)
                    if self
                        .compute
                        .describe(&self.config.deployment, std::slice::from_ref(id))
                        .await?
                        .iter()
                        .any(|i| &i.instance_id == id && i.is_live()) =>
                {
                    Some(format!("the instance {id} of runner {name} is live"))
                }
                _ => None,
            },
            _ => None,
        })
    }
}

/// How long a runner's leftovers are kept after its record was last changed
/// while it is `Released` (see the module documentation).
pub const LEFTOVER_GRACE: chrono::Duration = chrono::Duration::minutes(10);

/// An action not taken because a re-check found its subject still in use.
fn kept(why: String) -> PortError {
    PortError::Conflict {
        service: "janitor",
        message: format!("{why}; kept"),
    }
}

fn github_runner<'a>(snap: &'a Snapshot, name: &str) -> Option<&'a GitHubRunnerSeen> {
    snap.github_runners
        .as_ref()?
        .iter()
        .find(|g| g.runner.name == name)
}
