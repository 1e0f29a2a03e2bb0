use serde::Serialize;
use std::collections::BTreeMap;

/// Why a message was taken off the DLQ without being moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Not a job message this build reads (bad JSON, missing field, other version).
    Malformed,
    /// Queued longer ago than GitHub keeps a job queued (24 h).
    Stale,
    /// The ledger shows the job completed, dropped or interrupted.
    Finished,
}

impl DropReason {
    pub const ALL: [DropReason; 3] = [Self::Malformed, Self::Stale, Self::Finished];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Stale => "stale",
            Self::Finished => "finished",
        }
    }
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DlqReport {
    /// Messages received from the DLQ.
    pub received: usize,
    /// Jobs sent back to the jobs queue.
    pub moved: usize,
    /// Messages deleted without being moved, per reason (every reason present).
    pub dropped: BTreeMap<DropReason, usize>,
    /// Messages left in the DLQ because a call failed (ledger read, send, or a
    /// run that stopped in the middle of a batch); they are visible again after the
    /// visibility timeout.
    pub failed: usize,
    /// Messages moved or dropped whose delete failed: they come back and are handled
    /// again (a second copy of a moved job; create-runner's claim ignores it).
    pub delete_failed: usize,
    /// Messages in the DLQ after the run (approximate; `None` if it could not be read).
    pub left: Option<u64>,
    /// Why the run stopped before the DLQ was empty or `max_per_run` was reached.
    pub stopped: Option<String>,
}

impl Default for DlqReport {
    fn default() -> Self {
        Self {
            received: 0,
            moved: 0,
            dropped: DropReason::ALL.iter().map(|r| (*r, 0)).collect(),
            failed: 0,
            delete_failed: 0,
            left: None,
            stopped: None,
        }
    }
}

impl DlqReport {
    pub fn dropped(&self, reason: DropReason) -> usize {
        self.dropped.get(&reason).copied().unwrap_or(0)
    }

    pub fn dropped_total(&self) -> usize {
        self.dropped.values().sum()
    }

    pub(super) fn count_drop(&mut self, reason: DropReason) {
        *self.dropped.entry(reason).or_default() += 1;
    }
}
