use super::PortError;
use crate::job::{JobMessage, JobStateUpdate};
use crate::pool_task::TaskMessage;
use async_trait::async_trait;

/// The jobs queue, as the webhook sees it.
#[async_trait]
pub trait JobQueue: Send + Sync {
    async fn send_job(&self, job: &JobMessage) -> Result<(), PortError>;
    /// Send `job` to become visible after `delay` (at most 15 minutes on SQS).
    /// Adapters that cannot delay send it at once.
    async fn send_job_after(
        &self,
        job: &JobMessage,
        delay: std::time::Duration,
    ) -> Result<(), PortError> {
        let _ = delay;
        self.send_job(job).await
    }
    /// Send a pool task (`crate::pool_task`) on the same queue, visible after
    /// `delay` (at once when zero).
    async fn send_task(
        &self,
        task: &TaskMessage,
        delay: std::time::Duration,
    ) -> Result<(), PortError> {
        let _ = (task, delay);
        Err(PortError::rejected(
            "queue",
            "this queue cannot carry pool tasks",
        ))
    }
}

/// Where `in_progress` / `completed` events are recorded (the ledger).
#[async_trait]
pub trait JobStateSink: Send + Sync {
    async fn record_job_state(&self, update: &JobStateUpdate) -> Result<(), PortError>;
}

/// A sink that drops every update (a deployment without a ledger yet).
pub struct NoJobStateSink;

#[async_trait]
impl JobStateSink for NoJobStateSink {
    async fn record_job_state(&self, _update: &JobStateUpdate) -> Result<(), PortError> {
        Ok(())
    }
}
