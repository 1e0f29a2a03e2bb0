//! Performing the janitor's actions. Each re-reads what it acts on, so a runner
//! that stop-runner ended meanwhile is not ended twice; every step is idempotent.

use super::Janitor;
use super::plan::{count, normalized};
use super::report::{Action, ActionKind, ActionResult};
use super::snapshot::{GitHubRunnerSeen, Snapshot};
use crate::ports::{JobChange, JobState, PortError, RunnerChange, RunnerState, tags};
use crate::teardown::{Teardown, requeue_job, send_requeue};
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
        let teardown = Teardown {
            config: &self.config,
            ledger: self.ledger.as_ref(),
            github: self.github.as_ref(),
            compute: self.compute.as_ref(),
            parameters: self.parameters.as_ref(),
        };
        teardown
            .end_runner(&runner, terminate, action.kind.as_str(), now)
            .await?;
        if matches!(
            action.kind,
            ActionKind::BootTimeout | ActionKind::ReleaseLost | ActionKind::ReleaseStaleReservation
        ) && let Some(job) = self.ledger.get_job(runner.job_id).await?
            && (job.runner_name.as_deref() == Some(runner.name.as_str())
                || job.state == JobState::Claimed)
            && job.state != JobState::Running
        {
            requeue_job(
                self.ledger.as_ref(),
                self.jobs_queue.as_ref(),
                &job,
                &action.reason,
                now,
            )
            .await?;
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
        send_requeue(self.ledger.as_ref(), self.jobs_queue.as_ref(), &job, now).await
    }

    /// Recount from the live runners. The counters are read before and after the
    /// runner list; if they moved meanwhile (a launch or a release), the repair
    /// waits for the next pass rather than overwrite a concurrent change.
    async fn repair_capacity(&self) -> Result<(), PortError> {
        let before = self.ledger.capacity().await?;
        let runners = self.ledger.list_runners().await?;
        let after = self.ledger.capacity().await?;
        if normalized(&before) != normalized(&after) {
            return Err(PortError::Conflict {
                service: "janitor",
                message: "capacity changed during the recount; next pass".into(),
            });
        }
        let counted = count(runners.iter().filter(|r| r.state != RunnerState::Released));
        self.ledger.set_capacity(&counted).await
    }
}

fn github_runner<'a>(snap: &'a Snapshot, name: &str) -> Option<&'a GitHubRunnerSeen> {
    snap.github_runners
        .as_ref()?
        .iter()
        .find(|g| g.runner.name == name)
}
