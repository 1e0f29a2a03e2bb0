//! One received batch: judge every message, move the ones to move (paced), then
//! delete what was moved or dropped — send first, delete after, so a crash in
//! between leaves a duplicate (which create-runner's claim ignores), never a loss.

use super::{DlqError, DlqMover, DlqReport, Verdict, pacer};
use crate::job::JobMessage;
use crate::ports::DeadLetter;
use chrono::{DateTime, Utc};

impl DlqMover {
    /// Handle `batch`; `Err` says why the run should stop (the batch's bookkeeping
    /// is in `report` either way).
    pub(super) async fn handle_batch(
        &self,
        batch: Vec<DeadLetter>,
        now: DateTime<Utc>,
        report: &mut DlqReport,
    ) -> Result<(), DlqError> {
        let verdicts =
            futures::future::join_all(batch.iter().map(|letter| self.judge(letter, now))).await;
        let mut done: Vec<String> = Vec::with_capacity(batch.len());
        let mut moves: Vec<(&DeadLetter, JobMessage)> = Vec::new();
        for (letter, verdict) in batch.iter().zip(verdicts) {
            match verdict {
                Verdict::Move(job) => moves.push((letter, job)),
                Verdict::Drop {
                    reason,
                    job_id,
                    detail,
                } => {
                    tracing::warn!(
                        job_id,
                        message_id = %letter.message_id,
                        reason = reason.as_str(),
                        receive_count = letter.receive_count,
                        detail,
                        "dropped a job from the DLQ"
                    );
                    report.count_drop(reason);
                    done.push(letter.receipt.clone());
                }
                Verdict::Keep { job_id, error } => {
                    tracing::warn!(job_id, message_id = %letter.message_id, error = %error, "left in the DLQ");
                    report.failed += 1;
                }
            }
        }

        let mut stop = None;
        if !moves.is_empty() {
            self.pacer
                .pace(pacer::budget(moves.len(), self.settings.rate_per_second))
                .await;
        }
        for (letter, job) in moves {
            if stop.is_some() {
                tracing::warn!(job_id = job.job_id, message_id = %letter.message_id, "left in the DLQ: the run stopped");
                report.failed += 1;
                continue;
            }
            match self.jobs.send_job(&job).await {
                Ok(()) => {
                    tracing::info!(
                        job_id = job.job_id,
                        message_id = %letter.message_id,
                        receive_count = letter.receive_count,
                        pool = %job.pool,
                        "moved a job from the DLQ to the jobs queue"
                    );
                    report.moved += 1;
                    done.push(letter.receipt.clone());
                }
                Err(error) => {
                    let transient = error.is_transient();
                    let error = DlqError::Send {
                        job_id: job.job_id,
                        error,
                    };
                    tracing::warn!(job_id = job.job_id, message_id = %letter.message_id, error = %error, "left in the DLQ");
                    report.failed += 1;
                    if transient {
                        stop = Some(error);
                    }
                }
            }
        }

        self.delete(&done, report).await?;
        stop.map_or(Ok(()), Err)
    }

    /// Delete handled messages, at most 10 per call.
    async fn delete(&self, receipts: &[String], report: &mut DlqReport) -> Result<(), DlqError> {
        for chunk in receipts.chunks(super::BATCH) {
            match self.dlq.delete_batch(chunk).await {
                Ok(failures) => {
                    for f in &failures {
                        tracing::warn!(receipt = %f.receipt, error = %f.error, "delete from the DLQ failed; the message comes back");
                    }
                    report.delete_failed += failures.len();
                }
                Err(e) => {
                    report.delete_failed += chunk.len();
                    return Err(DlqError::Delete(e));
                }
            }
        }
        Ok(())
    }
}
