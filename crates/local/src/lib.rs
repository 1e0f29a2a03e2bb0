//! spotrunner's embedded local mode: the ports on one SQLite database (ledger,
//! queues) and on local processes (compute, commands, JIT parameters as files).
//! [`LocalState::open`] lays out a state directory:
//!
//! ```text
//! <state>/spotrunner.db     ledger, queues, instances (WAL)
//! <state>/params/           JIT parameters, one file each, mode 0600 (dir 0700)
//! <state>/instances/<id>/   one working directory per runner process; its
//!                           `jit/` holds its own JIT parameter until read
//! <state>/bucket/           what `aws s3 cp s3://…` reads (startup scripts)
//! <state>/bin/              bootstrap.sh and the `aws` shim
//! ```
//!
//! This crate plays EC2, SQS and SSM for local mode, so like them it stamps
//! launches, exits, terminations, messages and interruption notices with the
//! wall clock; the handlers above it take their `now` from their entry point
//! (`spotrunner_core::clock`).

mod db;
pub mod interrupt;
pub mod isolation;
mod ledger;
mod params;
mod process;
pub mod queue;
mod runner_check;
pub mod shim;

pub use db::Db;
pub use isolation::{IsolationError, RunAs};
pub use ledger::SqliteLedger;
pub use params::{FileParameters, encode as encode_parameter_name};
pub use process::{CAPACITY_TAG, LocalBackend, LocalInstance, RunnerExited, RunnerSettings, alive};
pub use queue::{Depth, MAX_RECEIVES, Received, SqliteQueue, Stored};
pub use runner_check::runner_problem;

use spotrunner_core::ports::PortError;
use std::path::{Path, PathBuf};

/// Every local adapter on one state directory.
#[derive(Clone)]
pub struct LocalState {
    pub dir: PathBuf,
    pub db: Db,
    pub ledger: SqliteLedger,
    /// Jobs; redrives to `dlq` after [`MAX_RECEIVES`] receives.
    pub jobs: SqliteQueue,
    /// Bootstrap steps (delayed); redrives to `bootstrap-dlq`.
    pub bootstrap: SqliteQueue,
    pub dlq: SqliteQueue,
    pub bootstrap_dlq: SqliteQueue,
    /// Runner-exit events for stop-runner.
    pub events: SqliteQueue,
    pub parameters: FileParameters,
    pub backend: LocalBackend,
}

/// A state directory that could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create state directory {path}: {error}")]
    Dir { path: String, error: std::io::Error },
    #[error("cannot open the state database: {0}")]
    Db(#[from] PortError),
}

impl LocalState {
    /// Open (creating what is missing) the state directory `dir`.
    pub fn open(dir: &Path, settings: RunnerSettings) -> Result<Self, OpenError> {
        let io = |error| OpenError::Dir {
            path: dir.display().to_string(),
            error,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let dir = dir.canonicalize().map_err(io)?;
        let scripts = shim::install(&dir).map_err(io)?;
        let db = Db::open(&dir.join("spotrunner.db"))?;
        let parameters = FileParameters::new(&dir.join("params"), db.clone())?;
        let backend = LocalBackend::new(db.clone(), &dir, scripts, settings)?;
        Ok(Self {
            ledger: SqliteLedger::new(db.clone()),
            jobs: SqliteQueue::new(db.clone(), queue::names::JOBS)
                .with_dead_letter(queue::names::DLQ, MAX_RECEIVES),
            bootstrap: SqliteQueue::new(db.clone(), queue::names::BOOTSTRAP)
                .with_dead_letter("bootstrap-dlq", MAX_RECEIVES * 4),
            dlq: SqliteQueue::new(db.clone(), queue::names::DLQ),
            bootstrap_dlq: SqliteQueue::new(db.clone(), "bootstrap-dlq"),
            events: SqliteQueue::new(db.clone(), queue::names::EVENTS),
            parameters,
            backend,
            db,
            dir,
        })
    }
}
