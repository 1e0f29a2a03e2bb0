//! dlq-mover: put jobs that fell into the DLQ back on the jobs queue, at a bounded
//! rate, dropping — with a log line and a count, never silently — messages that
//! cannot be read, jobs older than GitHub's 24 h queue limit, and jobs the ledger
//! shows finished. Two movers at once never hold the same message: each receive
//! hides its messages for [`Settings::visibility_timeout`].

mod batch;
mod error;
pub mod pacer;
mod report;
mod settings;
mod verdict;

pub use error::DlqError;
pub use pacer::{NoPacer, PaceSchedule, Pacer};
pub use report::{DlqReport, DropReason};
pub use settings::Settings;

use crate::ports::{DeadLetterQueue, JobQueue, Ledger};
use chrono::{DateTime, Utc};
use std::sync::Arc;
pub use verdict::Verdict;

/// SQS's largest receive and delete batch.
pub const BATCH: usize = 10;

/// The mover and everything it talks to.
#[derive(Clone)]
pub struct DlqMover {
    pub dlq: Arc<dyn DeadLetterQueue>,
    pub jobs: Arc<dyn JobQueue>,
    pub ledger: Arc<dyn Ledger>,
    pub pacer: Arc<dyn Pacer>,
    pub settings: Settings,
}

impl DlqMover {
    /// One run: receive batches until the DLQ looks empty, `max_per_run` messages
    /// were received, or a failure says to stop; then read the depth.
    pub async fn run(&self, now: DateTime<Utc>) -> DlqReport {
        let mut report = DlqReport::default();
        while report.received < self.settings.max_per_run {
            let want = (self.settings.max_per_run - report.received).min(BATCH);
            let batch = match self
                .dlq
                .receive(want, self.settings.visibility_timeout)
                .await
            {
                Ok(batch) => batch,
                Err(e) => {
                    report.stopped = Some(DlqError::Receive(e).to_string());
                    break;
                }
            };
            if batch.is_empty() {
                break;
            }
            report.received += batch.len();
            if let Err(e) = self.handle_batch(batch, now, &mut report).await {
                report.stopped = Some(e.to_string());
                break;
            }
        }
        if let Some(why) = &report.stopped {
            tracing::error!(reason = %why, "dlq-mover stopped early");
        }
        report.left = match self.dlq.approximate_depth().await {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the DLQ depth");
                None
            }
        };
        report
    }
}

#[cfg(test)]
mod tests;
