//! The dead-letter queues on SQS, for the dlq-mover (jobs, bootstrap and
//! stop-events DLQs), and [`SqsRawQueue`]: where a stop event goes back to.

use crate::error::classify;
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use spotrunner_core::dlq_mover::RawQueue;
use spotrunner_core::ports::{DeadLetter, DeadLetterQueue, DeleteFailure, PortError};
use std::time::Duration;

const SERVICE: &str = "sqs";
const NO_QUEUE: &[&str] = &[
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
];
/// SQS's largest receive and delete batch.
const MAX_BATCH: usize = 10;

/// Receives from, deletes from and measures one SQS queue.
#[derive(Clone, Debug)]
pub struct SqsDeadLetterQueue {
    client: Client,
    queue_url: String,
}

impl SqsDeadLetterQueue {
    pub fn new(sdk: &SdkConfig, queue_url: impl Into<String>) -> Self {
        Self::from_client(Client::new(sdk), queue_url)
    }

    pub fn from_client(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

/// Sends bodies as they are to one SQS queue (the stop-events queue: a dead
/// letter goes back exactly as EventBridge delivered it).
#[derive(Clone, Debug)]
pub struct SqsRawQueue {
    client: Client,
    queue_url: String,
}

impl SqsRawQueue {
    pub fn new(sdk: &SdkConfig, queue_url: impl Into<String>) -> Self {
        Self {
            client: Client::new(sdk),
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait]
impl RawQueue for SqsRawQueue {
    async fn send_body(&self, body: &str) -> Result<(), PortError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| classify(SERVICE, "send back to the queue", e, NO_QUEUE))?;
        Ok(())
    }
}

#[async_trait]
impl DeadLetterQueue for SqsDeadLetterQueue {
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<DeadLetter>, PortError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .visibility_timeout(visibility.as_secs().clamp(1, 43_200) as i32)
            // A short poll samples some of SQS's servers and may answer empty while
            // messages wait; a 1 s long poll asks all of them, so empty means empty.
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| classify(SERVICE, "receive from the DLQ", e, NO_QUEUE))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                Some(DeadLetter {
                    receipt: m.receipt_handle?,
                    message_id: m.message_id.unwrap_or_default(),
                    body: m.body.unwrap_or_default(),
                    receive_count,
                })
            })
            .collect())
    }

    async fn delete_batch(&self, receipts: &[String]) -> Result<Vec<DeleteFailure>, PortError> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        if receipts.len() > MAX_BATCH {
            return Err(PortError::rejected(
                SERVICE,
                format!("delete batch of {} (at most {MAX_BATCH})", receipts.len()),
            ));
        }
        let entries = receipts
            .iter()
            .enumerate()
            .map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .build()
                    .map_err(|e| PortError::rejected(SERVICE, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .client
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| classify(SERVICE, "delete from the DLQ", e, NO_QUEUE))?;
        Ok(out
            .failed()
            .iter()
            .map(|f| {
                let receipt = f
                    .id()
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| receipts.get(i))
                    .cloned()
                    .unwrap_or_else(|| f.id().to_string());
                let message = format!("{}: {}", f.code(), f.message().unwrap_or(""));
                // Sender faults (a bad receipt) will not succeed on retry.
                let error = if f.sender_fault() {
                    PortError::rejected(SERVICE, message)
                } else {
                    PortError::unavailable(SERVICE, message)
                };
                DeleteFailure { receipt, error }
            })
            .collect())
    }

    async fn approximate_depth(&self) -> Result<u64, PortError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| classify(SERVICE, "read the DLQ depth", e, NO_QUEUE))?;
        let attrs = out.attributes.unwrap_or_default();
        let count = |name: &QueueAttributeName| -> u64 {
            attrs.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        Ok(count(&QueueAttributeName::ApproximateNumberOfMessages)
            + count(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
    }
}
