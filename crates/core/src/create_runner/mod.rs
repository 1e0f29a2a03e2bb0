//! create-runner: one queued job → at most one fresh runner VM, never above the
//! caps, never lost. [`CreateRunner::handle_job`] runs the steps for one job;
//! [`CreateRunner::handle_batch`] runs a batch concurrently (bounded) and says
//! which messages to retry. [`bootstrap`] is the delayed second step.

mod bootstrap;
mod deps;
mod hot;
mod launch;
mod outcome;

pub use deps::{CreateRunner, Settings};
pub use outcome::{BatchItem, BatchResult, JobOutcome};

#[cfg(test)]
mod arch_tests;
#[cfg(test)]
mod hot_tests;
#[cfg(test)]
mod once_tests;
#[cfg(test)]
mod runner_user_tests;
#[cfg(test)]
mod sizing_tests;
#[cfg(test)]
mod tests;
