//! What the janitor does and says it did.

use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Launched but never bootstrapped past the boot timeout: end it, requeue the job.
    BootTimeout,
    /// Running past the pool's max run time: end it.
    MaxRunTime,
    /// Registered and idle past the idle timeout: mark it tainted.
    Taint,
    /// Tainted, past the grace period, still idle: end it.
    DeleteTainted,
    /// The ledger says the runner lives but its instance is gone: release it.
    ReleaseLost,
    /// A reservation that never got an instance and whose job is gone: release it.
    ReleaseStaleReservation,
    /// An instance of this deployment no live ledger entry knows: terminate it.
    TerminateOrphan,
    /// A GitHub runner of ours, offline, with no instance: delete it.
    DeleteGitHubRunner,
    /// A JIT parameter whose runner is gone: delete it.
    DeleteParameter,
    /// A job still waiting with no live runner: a fresh job message.
    RequeueJob,
    /// GitHub finished the job but we missed the webhook: record it.
    CompleteJob,
    /// Too old for GitHub's queue, or GitHub no longer has it: drop it.
    DropJob,
    /// Capacity counters that disagree with the live runners: recount.
    RepairCapacity,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BootTimeout => "boot_timeout",
            Self::MaxRunTime => "max_run_time",
            Self::Taint => "taint",
            Self::DeleteTainted => "delete_tainted",
            Self::ReleaseLost => "release_lost",
            Self::ReleaseStaleReservation => "release_stale_reservation",
            Self::TerminateOrphan => "terminate_orphan",
            Self::DeleteGitHubRunner => "delete_github_runner",
            Self::DeleteParameter => "delete_parameter",
            Self::RequeueJob => "requeue_job",
            Self::CompleteJob => "complete_job",
            Self::DropJob => "drop_job",
            Self::RepairCapacity => "repair_capacity",
        }
    }
}

/// One thing to do, on one subject (instance id, runner name, parameter name,
/// job id, or `capacity`), with the reason a person can read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Action {
    pub kind: ActionKind,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<u64>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionResult {
    #[serde(flatten)]
    pub action: Action,
    /// Performed (false in a dry run, or when it failed).
    pub done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JanitorReport {
    pub dry_run: bool,
    pub results: Vec<ActionResult>,
    /// What could not be checked this pass (e.g. GitHub unreachable).
    pub warnings: Vec<String>,
}

impl JanitorReport {
    pub fn new(dry_run: bool, results: Vec<ActionResult>, warnings: Vec<String>) -> Self {
        Self {
            dry_run,
            results,
            warnings,
        }
    }

    pub fn actions(&self) -> Vec<Action> {
        self.results.iter().map(|r| r.action.clone()).collect()
    }

    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| r.error.is_some()).count()
    }

    /// Actions per kind.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for r in &self.results {
            *counts.entry(r.action.kind.as_str()).or_default() += 1;
        }
        counts
    }
}
