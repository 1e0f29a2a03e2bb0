//! dlq-mover: put what fell into a dead-letter queue back on the queue it came
//! from, at a bounded rate — jobs to the jobs queue, bootstrap steps to the
//! bootstrap queue, runner events to the stop-events queue — dropping, with a
//! log line and a count, never silently, messages that cannot be read, that are
//! past GitHub's 24 h queue limit, or that the ledger shows done. Two movers at
//! once never hold the same message: each receive hides its messages for
//! [`Settings::visibility_timeout`].

mod batch;
mod error;
pub mod pacer;
mod report;
mod settings;
mod source;
mod verdict;

pub use error::DlqError;
pub use pacer::{NoPacer, PaceSchedule, Pacer};
pub use report::{DlqReport, DropReason, QueueReport};
pub use settings::Settings;
pub use source::{BootstrapRedrive, DlqKind, RawQueue, StopEventsRedrive};

use crate::ports::{DeadLetterQueue, JobQueue, Ledger};
use chrono::{DateTime, Utc};
use std::sync::Arc;
pub use verdict::Verdict;

/// SQS's largest receive and delete batch.
pub const BATCH: usize = 10;

/// The mover and everything it talks to.
#[derive(Clone)]
pub struct DlqMover {
    /// The jobs queue's DLQ.
    pub dlq: Arc<dyn DeadLetterQueue>,
    pub jobs: Arc<dyn JobQueue>,
    pub ledger: Arc<dyn Ledger>,
    pub pacer: Arc<dyn Pacer>,
    pub settings: Settings,
    /// The bootstrap queue's DLQ and the bootstrap queue (`None`: not drained).
    pub bootstrap: Option<BootstrapRedrive>,
    /// The stop-events queue's DLQ and the stop-events queue (`None`: not drained).
    pub stop_events: Option<StopEventsRedrive>,
}

impl DlqMover {
    /// The DLQs this mover drains, in [`DlqKind::ALL`] order.
    fn sources(&self) -> Vec<(DlqKind, Arc<dyn DeadLetterQueue>)> {
        DlqKind::ALL
            .into_iter()
            .filter_map(|kind| {
                let dlq = match kind {
                    DlqKind::StopEvents => self.stop_events.as_ref()?.dlq.clone(),
                    DlqKind::Bootstrap => self.bootstrap.as_ref()?.dlq.clone(),
                    DlqKind::Jobs => self.dlq.clone(),
                };
                Some((kind, dlq))
            })
            .collect()
    }

    /// One run: each DLQ in turn, receiving batches until it looks empty,
    /// `max_per_run` messages were received in all, or a failure says to stop
    /// draining that DLQ; then read each one's depth.
    pub async fn run(&self, now: DateTime<Utc>) -> DlqReport {
        let mut report = DlqReport::default();
        for (kind, dlq) in self.sources() {
            report.queues.insert(kind, QueueReport::default());
            while report.received < self.settings.max_per_run {
                let want = (self.settings.max_per_run - report.received).min(BATCH);
                let batch = match dlq.receive(want, self.settings.visibility_timeout).await {
                    Ok(batch) => batch,
                    Err(e) => {
                        report.stop(kind, DlqError::Receive(e).to_string());
                        break;
                    }
                };
                if batch.is_empty() {
                    break;
                }
                report.count_received(kind, batch.len());
                if let Err(e) = self
                    .handle_batch(kind, dlq.as_ref(), batch, now, &mut report)
                    .await
                {
                    report.stop(kind, e.to_string());
                    break;
                }
            }
            if let Some(why) = report.queues.get(&kind).and_then(|q| q.stopped.clone()) {
                tracing::error!(queue = kind.as_str(), reason = %why, "dlq-mover stopped early");
            }
            let left = match dlq.approximate_depth().await {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::warn!(queue = kind.as_str(), error = %e, "cannot read the DLQ depth");
                    None
                }
            };
            report.set_left(kind, left);
        }
        report
    }
}

#[cfg(test)]
mod tests;
