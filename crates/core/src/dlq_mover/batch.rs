//! One received batch: judge every message, move the ones to move (paced), then
//! delete what was moved or dropped — send first, delete after, so a crash in
//! between leaves a duplicate (which the consumer ignores: create-runner's claim,
//! the bootstrap step's runner state, stop-runner's released runner), never a loss.

use super::{DlqError, DlqKind, DlqMover, DlqReport, Verdict, pacer};
use crate::job::JobMessage;
use crate::ports::{BootstrapMessage, DeadLetter, DeadLetterQueue, PortError};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// A message to put back, and where.
enum Move {
    Job(JobMessage),
    Bootstrap(BootstrapMessage),
    StopEvent { instance_id: String },
}

impl DlqMover {
    /// Handle `batch` from the `kind` DLQ `dlq`; `Err` says why draining it
    /// should stop (the batch's bookkeeping is in `report` either way).
    pub(super) async fn handle_batch(
        &self,
        kind: DlqKind,
        dlq: &dyn DeadLetterQueue,
        batch: Vec<DeadLetter>,
        now: DateTime<Utc>,
        report: &mut DlqReport,
    ) -> Result<(), DlqError> {
        let verdicts =
            futures::future::join_all(batch.iter().map(|letter| self.judge_in(kind, letter, now)))
                .await;
        let mut done: Vec<String> = Vec::with_capacity(batch.len());
        let mut moves: Vec<(&DeadLetter, Move)> = Vec::new();
        for (letter, verdict) in batch.iter().zip(verdicts) {
            match verdict {
                Verdict::Move(job) => moves.push((letter, Move::Job(job))),
                Verdict::MoveBootstrap(msg) => moves.push((letter, Move::Bootstrap(msg))),
                Verdict::MoveStopEvent { instance_id } => {
                    moves.push((letter, Move::StopEvent { instance_id }))
                }
                Verdict::Drop {
                    reason,
                    job_id,
                    detail,
                } => {
                    tracing::warn!(
                        queue = kind.as_str(),
                        job_id,
                        message_id = %letter.message_id,
                        reason = reason.as_str(),
                        receive_count = letter.receive_count,
                        detail,
                        "dropped a message from the DLQ"
                    );
                    report.count_drop(kind, reason);
                    done.push(letter.receipt.clone());
                }
                Verdict::Keep { job_id, error } => {
                    tracing::warn!(queue = kind.as_str(), job_id, message_id = %letter.message_id, error = %error, "left in the DLQ");
                    report.count_failed(kind);
                }
            }
        }

        let mut stop = None;
        if !moves.is_empty() {
            self.pacer
                .pace(pacer::budget(moves.len(), self.settings.rate_per_second))
                .await;
        }
        for (letter, mv) in moves {
            if stop.is_some() {
                tracing::warn!(queue = kind.as_str(), message_id = %letter.message_id, "left in the DLQ: the run stopped");
                report.count_failed(kind);
                continue;
            }
            match self.send(letter, &mv).await {
                Ok(()) => {
                    match &mv {
                        Move::Job(job) => tracing::info!(
                            queue = kind.as_str(),
                            job_id = job.job_id,
                            message_id = %letter.message_id,
                            receive_count = letter.receive_count,
                            pool = %job.pool,
                            "moved a job from the DLQ to the jobs queue"
                        ),
                        Move::Bootstrap(msg) => tracing::info!(
                            queue = kind.as_str(),
                            job_id = msg.job_id,
                            runner_name = %msg.runner_name,
                            instance_id = %msg.instance_id,
                            message_id = %letter.message_id,
                            receive_count = letter.receive_count,
                            "moved a bootstrap step from the DLQ to the bootstrap queue"
                        ),
                        Move::StopEvent { instance_id } => tracing::info!(
                            queue = kind.as_str(),
                            instance_id = %instance_id,
                            message_id = %letter.message_id,
                            receive_count = letter.receive_count,
                            "moved a stop event from the DLQ to the stop-events queue"
                        ),
                    }
                    report.count_moved(kind);
                    done.push(letter.receipt.clone());
                }
                Err(error) => {
                    let transient = error.is_transient();
                    let error = match mv {
                        Move::Job(job) => DlqError::Send {
                            job_id: job.job_id,
                            error,
                        },
                        Move::Bootstrap(msg) => DlqError::SendBootstrap {
                            runner_name: msg.runner_name,
                            error,
                        },
                        Move::StopEvent { instance_id } => {
                            DlqError::SendStopEvent { instance_id, error }
                        }
                    };
                    tracing::warn!(queue = kind.as_str(), message_id = %letter.message_id, error = %error, "left in the DLQ");
                    report.count_failed(kind);
                    if transient {
                        stop = Some(error);
                    }
                }
            }
        }

        self.delete(dlq, &done, report).await?;
        stop.map_or(Ok(()), Err)
    }

    /// Send one message back where it came from.
    async fn send(&self, letter: &DeadLetter, mv: &Move) -> Result<(), PortError> {
        match mv {
            Move::Job(job) => self.jobs.send_job(job).await,
            Move::Bootstrap(msg) => match &self.bootstrap {
                Some(b) => b.queue.schedule(msg, Duration::ZERO).await,
                None => Err(PortError::rejected("dlq-mover", "no bootstrap queue")),
            },
            Move::StopEvent { .. } => match &self.stop_events {
                Some(s) => s.queue.send_body(&letter.body).await,
                None => Err(PortError::rejected("dlq-mover", "no stop-events queue")),
            },
        }
    }

    /// Delete handled messages, at most 10 per call.
    async fn delete(
        &self,
        dlq: &dyn DeadLetterQueue,
        receipts: &[String],
        report: &mut DlqReport,
    ) -> Result<(), DlqError> {
        for chunk in receipts.chunks(super::BATCH) {
            match dlq.delete_batch(chunk).await {
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
