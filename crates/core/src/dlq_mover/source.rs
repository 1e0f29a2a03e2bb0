//! The dead-letter queues the mover drains and where each one's messages go
//! back to: the jobs DLQ to the jobs queue, the bootstrap DLQ to the bootstrap
//! queue, the stop-events DLQ to the stop-events queue.

use crate::ports::{BootstrapQueue, DeadLetterQueue, PortError};
use async_trait::async_trait;
use serde::Serialize;
use std::sync::Arc;

/// Which dead-letter queue a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DlqKind {
    /// Runner events whose teardown kept failing (stop-runner's queue).
    StopEvents,
    /// Delayed bootstrap steps whose handling kept failing.
    Bootstrap,
    /// Jobs whose launch kept failing.
    Jobs,
}

impl DlqKind {
    /// Drained in this order: runner ends (capacity and instances) first, then
    /// bootstrap steps (waiting instances), then jobs.
    pub const ALL: [DlqKind; 3] = [Self::StopEvents, Self::Bootstrap, Self::Jobs];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::StopEvents => "stop-events",
            Self::Bootstrap => "bootstrap",
            Self::Jobs => "jobs",
        }
    }
}

/// A queue a dead letter goes back to with its body unchanged (the
/// stop-events queue: its messages are EventBridge's events as delivered).
#[async_trait]
pub trait RawQueue: Send + Sync {
    async fn send_body(&self, body: &str) -> Result<(), PortError>;
}

/// The bootstrap queue's DLQ and the bootstrap queue.
#[derive(Clone)]
pub struct BootstrapRedrive {
    pub dlq: Arc<dyn DeadLetterQueue>,
    pub queue: Arc<dyn BootstrapQueue>,
}

/// The stop-events queue's DLQ and the stop-events queue.
#[derive(Clone)]
pub struct StopEventsRedrive {
    pub dlq: Arc<dyn DeadLetterQueue>,
    pub queue: Arc<dyn RawQueue>,
}
