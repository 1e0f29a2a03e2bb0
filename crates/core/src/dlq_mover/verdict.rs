//! What to do with one dead letter.

use super::{DlqError, DlqMover, DropReason};
use crate::job::JobMessage;
use crate::ports::DeadLetter;
use chrono::{DateTime, Utc};

pub enum Verdict {
    /// Put it back on the jobs queue.
    Move(JobMessage),
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
    /// Malformed → stale → finished in the ledger → move. The ledger is asked last,
    /// and only about jobs young enough to run.
    pub async fn judge(&self, letter: &DeadLetter, now: DateTime<Utc>) -> Verdict {
        let job = match JobMessage::parse(&letter.body) {
            Ok(job) => job,
            Err(e) => {
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
}

/// The job id of a body that is not a readable job message, if it has one (for logs).
fn job_id_of(body: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()?
        .get("job_id")?
        .as_u64()
}
