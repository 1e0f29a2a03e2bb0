//! What the worker loops receive from: the local SQLite queues or SQS. A
//! delivery is acknowledged (deleted) or handed back to reappear after a delay.

use async_trait::async_trait;
use spotrunner_core::ports::PortError;
use spotrunner_local::SqliteQueue;
use std::time::Duration;

/// One received message.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub receipt: String,
    pub body: String,
}

/// Queue depth as the status shows it.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct QueueDepth {
    pub visible: u64,
    pub not_visible: u64,
}

#[async_trait]
pub trait Inbox: Send + Sync {
    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, PortError>;
    async fn ack(&self, receipt: &str) -> Result<(), PortError>;
    async fn retry_after(&self, receipt: &str, delay: Duration) -> Result<(), PortError>;
    async fn depth(&self) -> Result<QueueDepth, PortError>;
}

#[async_trait]
impl Inbox for SqliteQueue {
    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, PortError> {
        Ok(SqliteQueue::receive(self, max, visibility)?
            .into_iter()
            .map(|m| Delivery {
                receipt: m.receipt,
                body: m.body,
            })
            .collect())
    }
    async fn ack(&self, receipt: &str) -> Result<(), PortError> {
        self.delete(receipt).map(|_| ())
    }
    async fn retry_after(&self, receipt: &str, delay: Duration) -> Result<(), PortError> {
        self.change_visibility(receipt, delay).map(|_| ())
    }
    async fn depth(&self) -> Result<QueueDepth, PortError> {
        let d = SqliteQueue::depth(self)?;
        Ok(QueueDepth {
            visible: d.visible,
            not_visible: d.not_visible,
        })
    }
}

/// An SQS queue by URL.
pub struct SqsInbox {
    pub client: aws_sdk_sqs::Client,
    pub url: String,
}

fn sqs_err(e: impl std::fmt::Display) -> PortError {
    PortError::unavailable("sqs", e)
}

#[async_trait]
impl Inbox for SqsInbox {
    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, PortError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .visibility_timeout(visibility.as_secs().clamp(1, 43_200) as i32)
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(|e| sqs_err(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                Some(Delivery {
                    receipt: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                })
            })
            .collect())
    }
    async fn ack(&self, receipt: &str) -> Result<(), PortError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| sqs_err(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        Ok(())
    }
    async fn retry_after(&self, receipt: &str, delay: Duration) -> Result<(), PortError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(delay.as_secs().clamp(1, 43_200) as i32)
            .send()
            .await
            .map_err(|e| sqs_err(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        Ok(())
    }
    async fn depth(&self) -> Result<QueueDepth, PortError> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(A::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| sqs_err(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        let attrs = out.attributes.unwrap_or_default();
        let get = |k: A| {
            attrs
                .get(&k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(QueueDepth {
            visible: get(A::ApproximateNumberOfMessages),
            not_visible: get(A::ApproximateNumberOfMessagesNotVisible)
                + get(A::ApproximateNumberOfMessagesDelayed),
        })
    }
}
