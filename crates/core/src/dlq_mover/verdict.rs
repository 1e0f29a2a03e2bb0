//! What to do with one dead letter.

use super::{DlqError, DlqKind, DlqMover, DropReason};
use crate::job::JobMessage;
use crate::ports::{BootstrapMessage, DeadLetter, RunnerState};
use crate::stop_runner::StopEvent;
use chrono::{DateTime, Utc};

/// The version of [`BootstrapMessage`] this build reads (create-runner writes it).
pub const BOOTSTRAP_MESSAGE_VERSION: u32 = 1;

pub enum Verdict {
    /// Put it back on the jobs queue.
    Move(JobMessage),
    /// Put it back on the bootstrap queue.
    MoveBootstrap(BootstrapMessage),
    /// Put it back on the stop-events queue, body unchanged.
    MoveStopEvent { instance_id: String },
    /// Delete it without moving it.
    Drop {
        reason: DropReason,
        job_id: Option<u64>,
        detail: String,
    },
    /// Leave it in the DLQ (a call failed); it is visible again after the timeout.
    Keep { job_id: u64, error: DlqError },
}

impl DlqMover {
    /// A message of the jobs DLQ: see [`DlqMover::judge_in`].
    pub async fn judge(&self, letter: &DeadLetter, now: DateTime<Utc>) -> Verdict {
        self.judge_in(DlqKind::Jobs, letter, now).await
    }

    /// A message of the `kind` DLQ. Malformed → stale → done in the ledger →
    /// move; the ledger is asked last, and only about what is young enough to
    /// matter.
    ///
    /// - jobs: a version-1 job message; stale when queued 24 h ago; done when
    ///   the ledger shows the job final. A bootstrap step found there (the
    ///   bootstrap queue redrove into the jobs DLQ before it had its own) is
    ///   judged as one of the bootstrap DLQ, when the mover has a bootstrap queue.
    /// - bootstrap: a version-1 [`BootstrapMessage`]; stale when its runner was
    ///   launched 24 h ago (long past any boot timeout: the job's wait is over
    ///   and the janitor ends the runner); done when the ledger shows the
    ///   runner released or does not know it. Anything else moves:
    ///   create-runner's bootstrap step is idempotent against a stale step.
    /// - stop events: an EventBridge event stop-runner handles; stale when
    ///   sent 24 h ago (the janitor has cleaned up since). Moved as it is:
    ///   stop-runner is idempotent.
    pub async fn judge_in(
        &self,
        kind: DlqKind,
        letter: &DeadLetter,
        now: DateTime<Utc>,
    ) -> Verdict {
        match kind {
            DlqKind::Jobs => self.judge_job(letter, now).await,
            DlqKind::Bootstrap => match parse_bootstrap(&letter.body) {
                Ok(msg) => self.judge_bootstrap(msg, now).await,
                Err(detail) => Verdict::Drop {
                    reason: DropReason::Malformed,
                    job_id: job_id_of(&letter.body),
                    detail,
                },
            },
            DlqKind::StopEvents => self.judge_stop_event(letter, now),
        }
    }

    async fn judge_job(&self, letter: &DeadLetter, now: DateTime<Utc>) -> Verdict {
        let job = match JobMessage::parse(&letter.body) {
            Ok(job) => job,
            Err(e) => {
                if let Ok(msg) = parse_bootstrap(&letter.body) {
                    if self.bootstrap.is_some() {
                        return self.judge_bootstrap(msg, now).await;
                    }
                    return Verdict::Drop {
                        reason: DropReason::Malformed,
                        job_id: Some(msg.job_id),
                        detail: "a bootstrap step, and no bootstrap queue to move it to".into(),
                    };
                }
                return Verdict::Drop {
                    reason: DropReason::Malformed,
                    job_id: job_id_of(&letter.body),
                    detail: e.to_string(),
                };
            }
        };
        let age = now - job.queued_since();
        if age >= self.settings.max_job_age {
            return Verdict::Drop {
                reason: DropReason::Stale,
                job_id: Some(job.job_id),
                detail: format!(
                    "queued {} h ago (at {}), past the {} h limit",
                    age.num_hours(),
                    job.queued_since().to_rfc3339(),
                    self.settings.max_job_age.num_hours()
                ),
            };
        }
        match self.ledger.get_job(job.job_id).await {
            Ok(Some(record)) if record.state.is_final() => Verdict::Drop {
                reason: DropReason::Finished,
                job_id: Some(job.job_id),
                detail: format!("ledger says {}", record.state.as_str()),
            },
            Ok(_) => Verdict::Move(job),
            Err(error) => Verdict::Keep {
                job_id: job.job_id,
                error: DlqError::Ledger {
                    job_id: job.job_id,
                    error,
                },
            },
        }
    }

    async fn judge_bootstrap(&self, msg: BootstrapMessage, now: DateTime<Utc>) -> Verdict {
        let age = now - msg.launched_at;
        if age >= self.settings.max_job_age {
            return Verdict::Drop {
                reason: DropReason::Stale,
                job_id: Some(msg.job_id),
                detail: format!(
                    "runner {} launched {} h ago (at {}), past the {} h limit",
                    msg.runner_name,
                    age.num_hours(),
                    msg.launched_at.to_rfc3339(),
                    self.settings.max_job_age.num_hours()
                ),
            };
        }
        match self.ledger.get_runner(&msg.runner_name).await {
            Ok(None) => Verdict::Drop {
                reason: DropReason::Finished,
                job_id: Some(msg.job_id),
                detail: format!("runner {} unknown to the ledger", msg.runner_name),
            },
            Ok(Some(runner)) if runner.state == RunnerState::Released => Verdict::Drop {
                reason: DropReason::Finished,
                job_id: Some(msg.job_id),
                detail: format!("runner {} already released", msg.runner_name),
            },
            Ok(Some(_)) => Verdict::MoveBootstrap(msg),
            Err(error) => Verdict::Keep {
                job_id: msg.job_id,
                error: DlqError::LedgerRunner {
                    runner_name: msg.runner_name.clone(),
                    error,
                },
            },
        }
    }

    fn judge_stop_event(&self, letter: &DeadLetter, now: DateTime<Utc>) -> Verdict {
        let malformed = |detail: String| Verdict::Drop {
            reason: DropReason::Malformed,
            job_id: None,
            detail,
        };
        let event: serde_json::Value = match serde_json::from_str(&letter.body) {
            Ok(v) => v,
            Err(e) => return malformed(format!("not JSON: {e}")),
        };
        let parsed = match StopEvent::from_eventbridge(&event) {
            Ok(p) => p,
            Err(e) => return malformed(e.to_string()),
        };
        let sent = event
            .get("time")
            .and_then(serde_json::Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        if let Some(sent) = sent
            && now - sent >= self.settings.max_job_age
        {
            return Verdict::Drop {
                reason: DropReason::Stale,
                job_id: None,
                detail: format!(
                    "{} for instance {} sent {} h ago (at {}), past the {} h limit",
                    parsed.describe(),
                    parsed.instance_id(),
                    (now - sent).num_hours(),
                    sent.to_rfc3339(),
                    self.settings.max_job_age.num_hours()
                ),
            };
        }
        Verdict::MoveStopEvent {
            instance_id: parsed.instance_id().to_string(),
        }
    }
}

/// A bootstrap step this build reads.
fn parse_bootstrap(body: &str) -> Result<BootstrapMessage, String> {
    let msg: BootstrapMessage =
        serde_json::from_str(body).map_err(|e| format!("not a bootstrap step: {e}"))?;
    if msg.version != BOOTSTRAP_MESSAGE_VERSION {
        return Err(format!(
            "bootstrap step version {} (this build reads {BOOTSTRAP_MESSAGE_VERSION})",
            msg.version
        ));
    }
    Ok(msg)
}

/// The job id of a body that is not a readable message, if it has one (for logs).
fn job_id_of(body: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()?
        .get("job_id")?
        .as_u64()
}
