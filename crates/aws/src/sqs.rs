//! The jobs queue on SQS.

use crate::error::classify;
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sqs::Client;
use spotrunner_core::job::JobMessage;
use spotrunner_core::pool_task::TaskMessage;
use spotrunner_core::ports::{JobQueue, PortError};
use std::time::Duration;

/// Sends job messages to one SQS queue.
#[derive(Clone)]
pub struct SqsJobQueue {
    client: Client,
    queue_url: String,
}

impl SqsJobQueue {
    pub fn new(sdk: &SdkConfig, queue_url: impl Into<String>) -> Self {
        Self {
            client: Client::new(sdk),
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait]
impl JobQueue for SqsJobQueue {
    async fn send_job(&self, job: &JobMessage) -> Result<(), PortError> {
        self.send(job, 0).await
    }

    async fn send_job_after(&self, job: &JobMessage, delay: Duration) -> Result<(), PortError> {
        self.send(job, delay.as_secs().min(900) as i32).await
    }

    async fn send_task(&self, task: &TaskMessage, delay: Duration) -> Result<(), PortError> {
        let what = match task.job_id() {
            Some(id) => format!("send task for job {id}"),
            None => "send pool task".to_string(),
        };
        self.send_body(task.to_json(), delay.as_secs().min(900) as i32, &what)
            .await
    }
}

impl SqsJobQueue {
    async fn send(&self, job: &JobMessage, delay_secs: i32) -> Result<(), PortError> {
        self.send_body(
            job.to_json(),
            delay_secs,
            &format!("send job {}", job.job_id),
        )
        .await
    }

    async fn send_body(&self, body: String, delay_secs: i32, what: &str) -> Result<(), PortError> {
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
                    what,
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
