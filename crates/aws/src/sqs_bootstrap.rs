//! The delayed bootstrap queue on SQS.

use crate::error::classify;
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sqs::Client;
use spotrunner_core::ports::{BootstrapMessage, BootstrapQueue, PortError};
use std::time::Duration;

/// SQS's largest per-message delay.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// Sends [`BootstrapMessage`]s as JSON, delayed by up to 15 minutes.
#[derive(Clone, Debug)]
pub struct SqsBootstrapQueue {
    client: Client,
    queue_url: String,
}

impl SqsBootstrapQueue {
    pub fn new(sdk: &SdkConfig, queue_url: impl Into<String>) -> Self {
        Self {
            client: Client::new(sdk),
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait]
impl BootstrapQueue for SqsBootstrapQueue {
    async fn schedule(&self, msg: &BootstrapMessage, delay: Duration) -> Result<(), PortError> {
        let body = serde_json::to_string(msg).map_err(|e| PortError::rejected("sqs", e))?;
        let delay_secs = delay.min(MAX_DELAY).as_secs() as i32;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(delay_secs)
            .send()
            .await
            .map_err(|e| {
                classify(
                    "sqs",
                    &format!("schedule bootstrap of {}", msg.runner_name),
                    e,
                    &[
                        "AWS.SimpleQueueService.NonExistentQueue",
                        "QueueDoesNotExist",
                    ],
                )
            })?;
        Ok(())
    }
}
