//! stop-runner glue. Deployed, EventBridge puts each runner event on the
//! stop-events queue and Lambda hands stop-runner SQS batches of them (each
//! record's body is the EventBridge event JSON): [`Handler::handle_sqs`] runs the
//! core handler for each record, in order, and answers `batchItemFailures` for
//! the records whose handling failed, so only those come back (after the
//! queue's visibility timeout) until they succeed or reach the DLQ. A body that
//! is not an event stop-runner reads can never succeed: it is logged at `error`
//! and reported failed, so it walks to the DLQ (and its alarm) without holding
//! up the rest of its batch.
//!
//! A single EventBridge event (a direct invocation, tests) is still accepted
//! ([`Handler::handle`]): an event stop-runner does not handle is logged and
//! acknowledged, a failed step fails the invocation.

mod wiring;

pub use wiring::{StartError, handler_from_env};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use serde_json::{Value, json};
use spotrunner_core::ports::PortError;
use spotrunner_core::stop_runner::{StopEvent, StopOutcome, StopRunner};

pub struct Handler {
    pub stop_runner: StopRunner,
}

/// Why one queued event was reported failed.
#[derive(Debug)]
pub enum RecordError {
    /// Not an event stop-runner reads (no body, not JSON, unknown type, a
    /// missing field): retrying cannot help, it goes to the DLQ.
    Malformed(String),
    /// A step failed; the event is delivered again (every step is idempotent).
    Failed(PortError),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "malformed stop event: {e}"),
            Self::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// Whether an invocation payload is an SQS event (`Records` from `aws:sqs`)
/// rather than one EventBridge event.
pub fn is_sqs_event(payload: &Value) -> bool {
    payload
        .get("Records")
        .and_then(Value::as_array)
        .is_some_and(|records| {
            records
                .iter()
                .all(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs"))
        })
}

impl Handler {
    /// One invocation: an SQS batch (the deployed path; answers the
    /// `batchItemFailures` response) or a single EventBridge event. The
    /// metrics it counted are printed as it returns.
    pub async fn invoke(&self, payload: Value) -> Result<Value, PortError> {
        let _metrics = spotrunner_aws::metrics::invocation();
        if !is_sqs_event(&payload) {
            return self.handle(payload).await;
        }
        let event: SqsEvent = serde_json::from_value(payload)
            .map_err(|e| PortError::rejected("lambda", format!("SQS event: {e}")))?;
        let response = self.handle_sqs(event).await;
        serde_json::to_value(response)
            .map_err(|e| PortError::rejected("lambda", format!("SQS batch response: {e}")))
    }

    /// An SQS batch from the stop-events queue: each record in order; the
    /// records whose handling failed (or whose body is malformed) are the
    /// batch item failures.
    pub async fn handle_sqs(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut failures = Vec::new();
        for record in &event.records {
            let message_id = record.message_id.clone().unwrap_or_default();
            let receive_count = record
                .attributes
                .get("ApproximateReceiveCount")
                .map(String::as_str);
            match self.handle_record(record).await {
                Ok(_) => {}
                Err(RecordError::Malformed(reason)) => {
                    tracing::error!(
                        message_id,
                        receive_count,
                        error = %reason,
                        "malformed stop event: reported failed, it goes to the stop-events DLQ"
                    );
                    failures.push(message_id);
                }
                Err(RecordError::Failed(e)) => {
                    tracing::warn!(
                        message_id,
                        receive_count,
                        error = %e,
                        "stop event failed: it comes back after the queue's visibility timeout"
                    );
                    failures.push(message_id);
                }
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

    /// One queued event: parse the body as an EventBridge event, run the handler.
    pub async fn handle_record(&self, record: &SqsMessage) -> Result<StopOutcome, RecordError> {
        let body = record
            .body
            .as_deref()
            .ok_or_else(|| RecordError::Malformed("the record has no body".into()))?;
        let event: Value = serde_json::from_str(body)
            .map_err(|e| RecordError::Malformed(format!("body is not JSON: {e}")))?;
        let parsed = StopEvent::from_eventbridge(&event)
            .map_err(|e| RecordError::Malformed(e.to_string()))?;
        self.stop_runner
            .handle(&parsed, chrono::Utc::now())
            .await
            .map_err(RecordError::Failed)
    }

    /// One EventBridge event (direct invocation): an event stop-runner does not
    /// handle is acknowledged; a failed step is an error.
    pub async fn handle(&self, event: Value) -> Result<Value, PortError> {
        let parsed = match StopEvent::from_eventbridge(&event) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, id = event.get("id").and_then(serde_json::Value::as_str), "event ignored");
                return Ok(json!({"outcome": "ignored", "reason": e.to_string()}));
            }
        };
        let outcome = self.stop_runner.handle(&parsed, chrono::Utc::now()).await?;
        Ok(outcome_json(&outcome))
    }
}

fn outcome_json(outcome: &StopOutcome) -> Value {
    match outcome {
        StopOutcome::Ignored { reason } => json!({"outcome": "ignored", "reason": reason}),
        StopOutcome::Ended {
            runner_name,
            job_id,
            job_state,
        } => json!({
            "outcome": "ended", "runner_name": runner_name, "job_id": job_id,
            "job_state": job_state.map(|s| s.as_str()),
        }),
        StopOutcome::AlreadyEnded { runner_name } => {
            json!({"outcome": "already_ended", "runner_name": runner_name})
        }
        StopOutcome::Interrupted {
            runner_name,
            job_id,
        } => json!({"outcome": "interrupted", "runner_name": runner_name, "job_id": job_id}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sqs_batch_is_told_from_an_eventbridge_event() {
        let sqs = json!({"Records": [
            {"messageId": "m1", "body": "{}", "eventSource": "aws:sqs"},
            {"messageId": "m2", "body": "{}", "eventSource": "aws:sqs"},
        ]});
        assert!(is_sqs_event(&sqs));
        let event = StopEvent::SpotInterruption {
            instance_id: "i-1".into(),
        }
        .to_eventbridge();
        assert!(!is_sqs_event(&event));
        // Records from anything but SQS (SNS, S3) are not an SQS batch.
        assert!(!is_sqs_event(
            &json!({"Records": [{"EventSource": "aws:sns"}]})
        ));
        let parsed: SqsEvent = serde_json::from_value(sqs).unwrap();
        assert_eq!(parsed.records.len(), 2);
    }

    #[test]
    fn the_batch_response_names_the_failed_items() {
        let mut response = SqsBatchResponse::default();
        let mut f = BatchItemFailure::default();
        f.item_identifier = "m2".into();
        response.batch_item_failures.push(f);
        assert_eq!(
            serde_json::to_value(response).unwrap(),
            json!({"batchItemFailures": [{"itemIdentifier": "m2"}]})
        );
    }
}
