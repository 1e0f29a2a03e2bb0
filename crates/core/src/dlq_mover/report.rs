use super::DlqKind;
use serde::Serialize;
use std::collections::BTreeMap;

/// Why a message was taken off the DLQ without being moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Not a message this build reads (bad JSON, missing field, other version;
    /// for a stop event: not one of the events stop-runner handles).
    Malformed,
    /// Queued longer ago than GitHub keeps a job queued (24 h): a job queued,
    /// a runner launched, an event sent that long ago.
    Stale,
    /// The ledger shows the job completed, dropped or interrupted, or the
    /// bootstrap step's runner released (or unknown).
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

/// What one run did with one dead-letter queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueReport {
    pub received: usize,
    /// Sent back to the queue the DLQ belongs to.
    pub moved: usize,
    /// Deleted without being moved (every reason).
    pub dropped: usize,
    pub failed: usize,
    /// Messages in this DLQ after the run (approximate).
    pub left: Option<u64>,
    /// Why draining this DLQ stopped early.
    pub stopped: Option<String>,
}

/// What one run did: totals over every DLQ drained, and each DLQ's share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DlqReport {
    /// Messages received from the DLQs.
    pub received: usize,
    /// Messages sent back to their queues (jobs, bootstrap steps, stop events).
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
    /// Messages in the DLQs after the run (approximate; `None` if a depth could not be read).
    pub left: Option<u64>,
    /// Why draining a DLQ stopped before it was empty or `max_per_run` was
    /// reached (each such DLQ, `<queue>: <reason>`, joined by `; `).
    pub stopped: Option<String>,
    /// Per DLQ drained.
    pub queues: BTreeMap<DlqKind, QueueReport>,
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
            queues: BTreeMap::new(),
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

    /// One DLQ's share (zeros for a DLQ not drained).
    pub fn queue(&self, kind: DlqKind) -> QueueReport {
        self.queues.get(&kind).cloned().unwrap_or_default()
    }

    fn of(&mut self, kind: DlqKind) -> &mut QueueReport {
        self.queues.entry(kind).or_default()
    }

    pub(super) fn count_received(&mut self, kind: DlqKind, n: usize) {
        self.received += n;
        self.of(kind).received += n;
    }

    pub(super) fn count_drop(&mut self, kind: DlqKind, reason: DropReason) {
        *self.dropped.entry(reason).or_default() += 1;
        self.of(kind).dropped += 1;
    }

    pub(super) fn count_moved(&mut self, kind: DlqKind) {
        self.moved += 1;
        self.of(kind).moved += 1;
    }

    pub(super) fn count_failed(&mut self, kind: DlqKind) {
        self.failed += 1;
        self.of(kind).failed += 1;
    }

    pub(super) fn stop(&mut self, kind: DlqKind, why: String) {
        let line = format!("{}: {why}", kind.as_str());
        self.stopped = Some(match self.stopped.take() {
            Some(before) => format!("{before}; {line}"),
            None => line,
        });
        self.of(kind).stopped = Some(why);
    }

    /// One DLQ's depth; the total is known when every drained DLQ's is.
    pub(super) fn set_left(&mut self, kind: DlqKind, left: Option<u64>) {
        self.of(kind).left = left;
        self.left = self.queues.values().map(|q| q.left).sum();
    }
}
