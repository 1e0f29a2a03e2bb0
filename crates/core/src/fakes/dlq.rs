//! The DLQ in memory, with SQS's visibility semantics on a manual clock: a received
//! message is hidden until the clock passes its visibility timeout, and only its
//! latest receipt deletes it. Batches above SQS's limit of 10 are refused.

use crate::dlq_mover::Pacer;
use crate::ports::{DeadLetter, DeadLetterQueue, DeleteFailure, PortError};
use async_trait::async_trait;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const SERVICE: &str = "sqs";
/// SQS's largest receive and delete batch.
const MAX_BATCH: usize = 10;

struct Message {
    id: String,
    body: String,
    receive_count: u32,
    visible_at: Duration,
    receipt: Option<String>,
}

#[derive(Default)]
struct State {
    messages: Vec<Message>,
    clock: Duration,
    next: u64,
    receive_sizes: Vec<usize>,
    delete_sizes: Vec<usize>,
}

/// A [`DeadLetterQueue`] in memory. `set_failing_receive` / `set_failing_delete`
/// make those calls fail as if SQS were down.
#[derive(Default)]
pub struct MemoryDeadLetterQueue {
    state: Mutex<State>,
    fail_receive: AtomicBool,
    fail_delete: AtomicBool,
}

impl MemoryDeadLetterQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add a message (visible at once); returns its message id.
    pub fn push(&self, body: impl Into<String>) -> String {
        let mut st = self.lock();
        st.next += 1;
        let id = format!("msg-{}", st.next);
        let visible_at = st.clock;
        st.messages.push(Message {
            id: id.clone(),
            body: body.into(),
            receive_count: 0,
            visible_at,
            receipt: None,
        });
        id
    }

    /// Move the clock forward (visibility timeouts run out).
    pub fn advance(&self, by: Duration) {
        self.lock().clock += by;
    }

    /// Messages in the queue, visible or not.
    pub fn len(&self) -> usize {
        self.lock().messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages another receiver could get now.
    pub fn visible(&self) -> usize {
        let st = self.lock();
        st.messages
            .iter()
            .filter(|m| m.visible_at <= st.clock)
            .count()
    }

    /// Bodies of every message still in the queue.
    pub fn bodies(&self) -> Vec<String> {
        self.lock()
            .messages
            .iter()
            .map(|m| m.body.clone())
            .collect()
    }

    /// The `max` asked for by each receive call, in order.
    pub fn receive_sizes(&self) -> Vec<usize> {
        self.lock().receive_sizes.clone()
    }

    /// The number of receipts in each delete call, in order.
    pub fn delete_sizes(&self) -> Vec<usize> {
        self.lock().delete_sizes.clone()
    }

    pub fn set_failing_receive(&self, fail: bool) {
        self.fail_receive.store(fail, Ordering::SeqCst);
    }

    pub fn set_failing_delete(&self, fail: bool) {
        self.fail_delete.store(fail, Ordering::SeqCst);
    }
}

fn too_many(what: &str, n: usize) -> PortError {
    PortError::rejected(
        SERVICE,
        format!("{what} of {n} entries (at most {MAX_BATCH})"),
    )
}

#[async_trait]
impl DeadLetterQueue for MemoryDeadLetterQueue {
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<DeadLetter>, PortError> {
        let mut st = self.lock();
        st.receive_sizes.push(max);
        if self.fail_receive.load(Ordering::SeqCst) {
            return Err(PortError::unavailable(SERVICE, "connection refused (fake)"));
        }
        if max == 0 || max > MAX_BATCH {
            return Err(too_many("receive", max));
        }
        let now = st.clock;
        let mut next = st.next;
        let mut out = Vec::new();
        for m in st.messages.iter_mut().filter(|m| m.visible_at <= now) {
            if out.len() == max {
                break;
            }
            next += 1;
            let receipt = format!("{}#{next}", m.id);
            m.receipt = Some(receipt.clone());
            m.receive_count += 1;
            m.visible_at = now + visibility;
            out.push(DeadLetter {
                message_id: m.id.clone(),
                receipt,
                body: m.body.clone(),
                receive_count: m.receive_count,
            });
        }
        st.next = next;
        Ok(out)
    }

    async fn delete_batch(&self, receipts: &[String]) -> Result<Vec<DeleteFailure>, PortError> {
        let mut st = self.lock();
        st.delete_sizes.push(receipts.len());
        if receipts.len() > MAX_BATCH {
            return Err(too_many("delete", receipts.len()));
        }
        let mut failures = Vec::new();
        for r in receipts {
            if self.fail_delete.load(Ordering::SeqCst) {
                failures.push(DeleteFailure {
                    receipt: r.clone(),
                    error: PortError::unavailable(SERVICE, "delete failed (fake)"),
                });
                continue;
            }
            match st
                .messages
                .iter()
                .position(|m| m.receipt.as_deref() == Some(r))
            {
                Some(i) => {
                    st.messages.remove(i);
                }
                None => failures.push(DeleteFailure {
                    receipt: r.clone(),
                    error: PortError::rejected(SERVICE, "ReceiptHandleIsInvalid"),
                }),
            }
        }
        Ok(failures)
    }

    async fn approximate_depth(&self) -> Result<u64, PortError> {
        Ok(self.len() as u64)
    }
}

/// A [`Pacer`] that does not wait and records every delay asked for.
#[derive(Default)]
pub struct RecordingPacer {
    delays: Mutex<Vec<Duration>>,
}

impl RecordingPacer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn delays(&self) -> Vec<Duration> {
        self.delays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The sum of every delay asked for.
    pub fn total(&self) -> Duration {
        self.delays().iter().sum()
    }
}

#[async_trait]
impl Pacer for RecordingPacer {
    async fn pace(&self, budget: Duration) {
        self.delays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(budget);
    }
}
