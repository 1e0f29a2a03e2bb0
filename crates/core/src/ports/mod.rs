//! Ports: what the handlers need from the outside world. Adapters live in
//! `spotrunner-aws` (AWS SDK), `spotrunner-github` (REST) and the local mode;
//! in-memory fakes for unit tests live in `crate::fakes` (feature `test-support`).

mod compute;
mod dlq;
mod error;
mod github;
mod ledger;
#[cfg(any(test, feature = "test-support"))]
pub mod ledger_contract;
#[cfg(any(test, feature = "test-support"))]
pub mod ledger_interleave;
mod ledger_store;
mod queue;
mod recovery;
mod runner_cache;
mod secrets;
mod timeline;
mod wait_line;

pub use compute::{
    BOOTSTRAP_SEND_TIMEOUT, BootstrapCommand, BootstrapMessage, BootstrapQueue, Commands, Compute,
    Instance, InstanceSize, LaunchOutcome, LaunchRequest, RunnerParameters, SendOutcome, tags,
};
pub use dlq::{DeadLetter, DeadLetterQueue, DeleteFailure};
pub use error::PortError;
pub use github::{
    GitHubApi, GitHubJob, GitHubRun, GitHubRunner, GitHubTarget, JitConfig, JitRequest,
    RerunAnswer, RunnerScope,
};
pub use ledger::{
    CapacityUse, ClaimOutcome, DocUpdate, HealthUpdate, JobChange, JobRecord, JobState, Ledger,
    Limits, LineOutcome, ReserveOutcome, RunnerChange, RunnerRecord, RunnerState,
};
pub use ledger_store::{
    Commit, Counter, CounterChange, Doc, DocKey, DocKind, Expect, LedgerStore, Write,
};
pub use queue::{JobQueue, JobStateSink, NoJobStateSink};
pub use recovery::{
    DeliveryPage, HookDeliveries, HookDelivery, HookRef, ListedJob, Page, QueuedJobSource,
    RateLimitState, RepoRef,
};
pub use runner_cache::{ReleaseAsset, RunnerCacheStore, RunnerRelease, RunnerReleases};
pub use secrets::{SecretStore, resolve_secret};
pub use timeline::{Stage, Timeline};
pub use wait_line::{MAX_LINE, WaitLine, Waiter, line_key};
