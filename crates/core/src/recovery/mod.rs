//! The nets under the webhook. GitHub never redelivers a failed delivery by
//! itself, and some deliveries never arrive at all; two scheduled tasks make
//! sure a queued job is not lost:
//!
//! - [`Redelivery`] reads the webhook's delivery log and asks GitHub to
//!   redeliver each failed `workflow_job` delivery (`redelivery.rs`);
//! - [`Sweep`] lists the queued jobs of the allowed repositories and enqueues
//!   those the ledger does not know (`sweep.rs`).
//!
//! Both keep their place in the ledger (`Ledger::state_doc`), spend at most a
//! budget of GitHub calls per run, and are idempotent: running one twice, or a
//! redelivered job meeting its swept twin, ends in one claim.

mod redelivery;
mod sweep;
#[cfg(test)]
mod tests;

pub use redelivery::{Pending, Redelivery, RedeliveryReport, RedeliveryState, Scan};
pub use sweep::{SWEEP_DELIVERY, Sweep, SweepReport, SweepState};

/// The ledger keys of the tasks' state documents.
pub mod keys {
    pub use super::redelivery::STATE_KEY as REDELIVERY;
    pub use super::sweep::STATE_KEY as SWEEP;
}

/// GitHub calls one run may still make.
#[derive(Debug)]
pub(crate) struct Budget {
    left: u32,
    used: u32,
}

impl Budget {
    pub(crate) fn new(max: u32) -> Self {
        Self { left: max, used: 0 }
    }

    pub(crate) fn take(&mut self) -> bool {
        self.take_keeping(0)
    }

    /// Take a call only if more than `reserve` are left.
    pub(crate) fn take_keeping(&mut self, reserve: u32) -> bool {
        if self.left > reserve {
            self.left -= 1;
            self.used += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn used(&self) -> u32 {
        self.used
    }
}
