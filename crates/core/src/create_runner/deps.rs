use crate::config::Config;
use crate::ports::{
    BootstrapQueue, Commands, Compute, GitHubApi, JobQueue, Ledger, RunnerParameters,
};
use crate::teardown::Teardown;
use std::sync::Arc;
use std::time::Duration;

/// Knobs of the create-runner step (sensible defaults in [`Settings::default`]).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Jobs older than this are dropped (GitHub cancels queued jobs after 24 h).
    pub max_job_age: chrono::Duration,
    /// How long one invocation owns a claimed job.
    pub claim_lease: chrono::Duration,
    /// Delay before the first bootstrap attempt (the SSM agent needs time to register).
    pub first_bootstrap_delay: Duration,
    /// First delay when a job waits for capacity; doubles per deferral, ≤ 15 min.
    pub defer_base: Duration,
    /// Longest wait before retrying a job another invocation holds.
    pub busy_retry: Duration,
    /// Jobs handled at once within a batch.
    pub max_concurrency: usize,
    /// Where JIT parameters live: `{prefix}{runner_name}`.
    pub jit_parameter_prefix: String,
    /// Passed to GitHub as the runner's work folder.
    pub work_folder: String,
}

impl Settings {
    pub fn for_deployment(deployment: &str) -> Self {
        Self {
            max_job_age: chrono::Duration::hours(24),
            claim_lease: chrono::Duration::minutes(5),
            first_bootstrap_delay: Duration::from_secs(15),
            defer_base: Duration::from_secs(15),
            busy_retry: Duration::from_secs(30),
            max_concurrency: 8,
            jit_parameter_prefix: format!("/{deployment}/jit/"),
            work_folder: "_work".into(),
        }
    }
}

/// The create-runner handler and everything it talks to.
#[derive(Clone)]
pub struct CreateRunner {
    pub config: Arc<Config>,
    pub settings: Settings,
    pub ledger: Arc<dyn Ledger>,
    pub github: Arc<dyn GitHubApi>,
    pub compute: Arc<dyn Compute>,
    pub parameters: Arc<dyn RunnerParameters>,
    pub commands: Arc<dyn Commands>,
    pub bootstrap_queue: Arc<dyn BootstrapQueue>,
    /// To put a job back (boot timeout).
    pub jobs_queue: Arc<dyn JobQueue>,
}

impl CreateRunner {
    /// Its ports, to end a runner (boot timeout).
    pub(crate) fn teardown(&self) -> Teardown<'_> {
        Teardown {
            config: &self.config,
            ledger: self.ledger.as_ref(),
            github: self.github.as_ref(),
            compute: self.compute.as_ref(),
            parameters: self.parameters.as_ref(),
            jobs_queue: self.jobs_queue.as_ref(),
        }
    }
}
