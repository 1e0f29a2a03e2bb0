//! In-memory fakes of the ports, for unit tests and benchmarks of the core.

use crate::job::{JobMessage, JobStateUpdate};
use crate::ports::{JobQueue, JobStateSink, PortError};
use async_trait::async_trait;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

mod cloud;
mod dlq;
mod github;
mod ledger;
mod racing;
mod recovery;
pub use cloud::{MemoryBootstrapQueue, MemoryCommands, MemoryCompute, MemoryParameters};
pub use dlq::{MemoryDeadLetterQueue, RecordingPacer};
pub use github::MemoryGitHub;
pub use ledger::MemoryLedger;
pub use racing::{Hook, RacingLedger};
pub use recovery::{MemoryHookDeliveries, MemoryJobSource};

/// A jobs queue in memory; `fail` makes every send fail as if SQS were down.
#[derive(Default)]
pub struct MemoryQueue {
    pub sent: Mutex<Vec<JobMessage>>,
    /// The delay of every delayed send, in order.
    pub delayed: Mutex<Vec<std::time::Duration>>,
    /// Pool tasks sent (`crate::pool_task`).
    pub tasks: Mutex<Vec<crate::pool_task::TaskMessage>>,
    pub fail: AtomicBool,
}

impl MemoryQueue {
    pub fn sent(&self) -> Vec<JobMessage> {
        self.sent.lock().unwrap().clone()
    }
    pub fn tasks(&self) -> Vec<crate::pool_task::TaskMessage> {
        self.tasks.lock().unwrap().clone()
    }
    pub fn delays(&self) -> Vec<std::time::Duration> {
        self.delayed.lock().unwrap().clone()
    }
    pub fn set_failing(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn send_job(&self, job: &JobMessage) -> Result<(), PortError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(PortError::unavailable("sqs", "connection refused (fake)"));
        }
        self.sent.lock().unwrap().push(job.clone());
        Ok(())
    }

    async fn send_job_after(
        &self,
        job: &JobMessage,
        delay: std::time::Duration,
    ) -> Result<(), PortError> {
        self.send_job(job).await?;
        self.delayed.lock().unwrap().push(delay);
        Ok(())
    }

    async fn send_task(
        &self,
        task: &crate::pool_task::TaskMessage,
        _delay: std::time::Duration,
    ) -> Result<(), PortError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(PortError::unavailable("sqs", "connection refused (fake)"));
        }
        self.tasks.lock().unwrap().push(task.clone());
        Ok(())
    }
}

/// Records job-state updates in memory.
#[derive(Default)]
pub struct MemoryJobStates {
    pub updates: Mutex<Vec<JobStateUpdate>>,
}

#[async_trait]
impl JobStateSink for MemoryJobStates {
    async fn record_job_state(&self, update: &JobStateUpdate) -> Result<(), PortError> {
        self.updates.lock().unwrap().push(update.clone());
        Ok(())
    }
}
