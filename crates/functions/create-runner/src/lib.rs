//! The `create-runner` Lambda's glue: SQS batches from the jobs queue and the
//! bootstrap queue to the core handler, `ReportBatchItemFailures` back, and a
//! visibility timeout per retried message so that it comes back when it should.

mod wiring;

pub use wiring::{StartError, handler_from_env};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::Utc;
use spotrunner_core::clock::Elapsed;
use spotrunner_core::create_runner::{BatchItem, CreateRunner, JobOutcome};
use spotrunner_core::ports::BootstrapMessage;

/// The handler plus what it needs to set visibility timeouts.
pub struct Handler {
    pub create_runner: CreateRunner,
    pub sqs: aws_sdk_sqs::Client,
    pub jobs_queue_url: String,
    pub bootstrap_queue_url: String,
}

fn queue_name(url_or_arn: &str) -> &str {
    url_or_arn.rsplit(['/', ':']).next().unwrap_or(url_or_arn)
}

impl Handler {
    /// Handle one SQS event; returns the messages to retry.
    /// The metrics it counted are printed as it returns.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let _metrics = spotrunner_aws::metrics::invocation();
        // The invocation's one read of the wall clock (`spotrunner_core::clock`).
        let clock = Elapsed::start(Utc::now());
        let bootstrap_name = queue_name(&self.bootstrap_queue_url).to_string();
        let (boot, jobs): (Vec<SqsMessage>, Vec<SqsMessage>) =
            event.records.into_iter().partition(|r| {
                r.event_source_arn
                    .as_deref()
                    .is_some_and(|arn| queue_name(arn) == bootstrap_name)
            });
        let mut failures = Vec::new();

        let batch: Vec<(String, String)> = jobs
            .iter()
            .map(|m| (id(m), m.body.clone().unwrap_or_default()))
            .collect();
        let result = self.create_runner.handle_batch(batch, clock.at()).await;
        for item in result.failures() {
            self.delay(&jobs, &self.jobs_queue_url, item).await;
            failures.push(item.message_id.clone());
        }

        for m in &boot {
            let outcome = match serde_json::from_str::<BootstrapMessage>(
                m.body.as_deref().unwrap_or(""),
            ) {
                Ok(msg) => self.create_runner.handle_bootstrap(&msg, clock.at()).await,
                Err(e) => {
                    tracing::error!(message_id = %id(m), error = %e, "malformed bootstrap message");
                    JobOutcome::Invalid {
                        reason: e.to_string(),
                    }
                }
            };
            if outcome.keeps_message() {
                let item = BatchItem {
                    message_id: id(m),
                    job_id: None,
                    outcome,
                };
                self.delay(&boot, &self.bootstrap_queue_url, &item).await;
                failures.push(item.message_id);
            }
        }
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = failures
            .into_iter()
            .map(|item_identifier| {
                let mut f = BatchItemFailure::default();
                f.item_identifier = item_identifier;
                f
            })
            .collect();
        response
    }

    /// Make a retried message visible again after the outcome's delay.
    async fn delay(&self, msgs: &[SqsMessage], queue_url: &str, item: &BatchItem) {
        let JobOutcome::Retry { after, .. } = &item.outcome else {
            return;
        };
        let Some(handle) = msgs
            .iter()
            .find(|m| id(m) == item.message_id)
            .and_then(|m| m.receipt_handle.clone())
        else {
            return;
        };
        let secs = after.as_secs().clamp(1, 43_200) as i32;
        if let Err(e) = self
            .sqs
            .change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(handle)
            .visibility_timeout(secs)
            .send()
            .await
        {
            tracing::warn!(message_id = item.message_id, error = %e, "could not set the retry delay; the queue's visibility timeout applies");
        }
    }
}

fn id(m: &SqsMessage) -> String {
    m.message_id.clone().unwrap_or_default()
}
