use crate::ports::PortError;

/// Why a message stayed in the DLQ, or why a run stopped early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DlqError {
    #[error("cannot receive from the DLQ: {0}")]
    Receive(PortError),
    #[error("cannot read job {job_id} from the ledger: {error}")]
    Ledger { job_id: u64, error: PortError },
    #[error("cannot read runner {runner_name} from the ledger: {error}")]
    LedgerRunner {
        runner_name: String,
        error: PortError,
    },
    #[error("cannot send job {job_id} to the jobs queue: {error}")]
    Send { job_id: u64, error: PortError },
    #[error(
        "cannot send the bootstrap step of runner {runner_name} to the bootstrap queue: {error}"
    )]
    SendBootstrap {
        runner_name: String,
        error: PortError,
    },
    #[error("cannot send the event for instance {instance_id} to the stop-events queue: {error}")]
    SendStopEvent {
        instance_id: String,
        error: PortError,
    },
    #[error("cannot delete from the DLQ: {0}")]
    Delete(PortError),
}
