//! The dead-letter queue of the jobs queue, as the dlq-mover sees it: receive with a
//! visibility timeout (so that two movers never hold the same message), delete by
//! receipt, and an approximate depth.

use super::PortError;
use async_trait::async_trait;
use std::time::Duration;

/// One message received from the DLQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The queue's id of the message (for logs when the body is unreadable).
    pub message_id: String,
    /// Deletes this delivery of the message.
    pub receipt: String,
    /// The body as sent, unparsed.
    pub body: String,
    /// How many times the message was received, this time included (0 if unknown).
    pub receive_count: u32,
}

/// A delete that did not happen; the message comes back after its visibility timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteFailure {
    pub receipt: String,
    pub error: PortError,
}

#[async_trait]
pub trait DeadLetterQueue: Send + Sync {
    /// Receive up to `max` messages (at most 10 per call on SQS), each hidden from
    /// other receivers for `visibility`. An empty answer means nothing is visible.
    async fn receive(&self, max: usize, visibility: Duration)
    -> Result<Vec<DeadLetter>, PortError>;

    /// Delete a batch (at most 10) by receipt; returns the entries that failed.
    async fn delete_batch(&self, receipts: &[String]) -> Result<Vec<DeleteFailure>, PortError>;

    /// Messages still in the queue, visible or held by a receiver (approximate).
    async fn approximate_depth(&self) -> Result<u64, PortError>;
}
