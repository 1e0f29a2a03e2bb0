//! stop-runner: an EventBridge event that says a runner ended (its SSM command
//! reached a terminal status, the instance shutting down) → the runner's
//! instance, JIT parameter, GitHub registration and capacity are all given
//! back, and the ledger says how its job ended. A spot interruption warning for
//! a runner that has its job stamps the job `interrupted` and counts against
//! the pool's spot breaker; the runner's end follows when EC2 reclaims it, and
//! the job's re-run is stepped then (`crate::rerun`). Idempotent: the same
//! event twice, or two events for one runner in any order, change nothing more.

mod event;
mod handler;

pub use event::{
    COMMAND_STATUS, ENDING_INSTANCE_STATES, EventError, INSTANCE_STATE, SPOT_INTERRUPTION,
    StopEvent, TERMINAL_COMMAND_STATUSES, document_name,
};
pub use handler::{StopOutcome, StopRunner};

#[cfg(test)]
mod spot_tests;
#[cfg(test)]
mod tests;
