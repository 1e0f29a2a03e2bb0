use std::time::Duration;

/// What happened to one job message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// A VM was launched (or had been, by an earlier try of this claim).
    Launched {
        runner_name: String,
        instance_id: String,
    },
    /// Already launched or finished: acknowledged, nothing launched.
    Duplicate,
    /// Not worth launching (too old, no longer queued, pool gone): acknowledged.
    Dropped { reason: String },
    /// Waiting for capacity: a delayed copy was sent and this one acknowledged, so
    /// waiting never walks a job into the DLQ.
    Deferred { reason: String, after: Duration },
    /// In the pool's waiting line (the pool or the global quota is full, or
    /// the pool is drained): acknowledged; a freed slot wakes it, oldest first.
    Waiting { reason: String },
    /// Try again later (the message stays; its receive count grows toward the DLQ).
    Retry { reason: String, after: Duration },
    /// This message can never succeed (malformed): let it reach the DLQ.
    Invalid { reason: String },
}

impl JobOutcome {
    /// Should the message stay on the queue?
    pub fn keeps_message(&self) -> bool {
        matches!(self, Self::Retry { .. } | Self::Invalid { .. })
    }
}

/// One message of a batch and its fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    pub message_id: String,
    pub job_id: Option<u64>,
    pub outcome: JobOutcome,
}

/// A batch's results; `failures()` are what `ReportBatchItemFailures` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchResult {
    pub items: Vec<BatchItem>,
}

impl BatchResult {
    pub fn failures(&self) -> Vec<&BatchItem> {
        self.items
            .iter()
            .filter(|i| i.outcome.keeps_message())
            .collect()
    }
}
