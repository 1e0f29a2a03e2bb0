//! The ports for one backend: the local state directory, or AWS from the
//! standard environment (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL`) plus the
//! resource names the Lambdas get (`SPOTRUNNER_LEDGER_TABLE`, …).

use crate::inbox::{Inbox, SqsInbox};
use crate::{Backend, Target, config_file};
use spotrunner_core::Config;
use spotrunner_core::ports::{
    BootstrapQueue, Commands, Compute, DeadLetterQueue, JobQueue, Ledger, RunnerParameters,
    SecretStore,
};
use spotrunner_local::{LocalState, RunnerSettings};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Every port the handlers need, for one backend.
#[derive(Clone)]
pub struct Adapters {
    pub ledger: Arc<dyn Ledger>,
    pub jobs_queue: Arc<dyn JobQueue>,
    pub bootstrap_queue: Arc<dyn BootstrapQueue>,
    pub compute: Arc<dyn Compute>,
    pub parameters: Arc<dyn RunnerParameters>,
    pub commands: Arc<dyn Commands>,
    pub jobs_inbox: Arc<dyn Inbox>,
    pub bootstrap_inbox: Arc<dyn Inbox>,
    /// The jobs queue's dead-letter queue (AWS: `SPOTRUNNER_DLQ_URL`).
    pub dlq: Option<Arc<dyn DeadLetterQueue>>,
    /// Named queues for the status (jobs, bootstrap, dlq, …).
    pub queues: BTreeMap<String, Arc<dyn Inbox>>,
    pub secrets: Option<Arc<dyn SecretStore>>,
    /// The local state, when the backend is local.
    pub local: Option<LocalState>,
    /// First bootstrap attempt: at once locally, after 15 s on EC2.
    pub first_bootstrap_delay: std::time::Duration,
}

/// The bootstrap SSM document's name when `SPOTRUNNER_SSM_DOCUMENT` is unset:
/// Terraform's (`<prefix>-runner`, terraform/main.tf `ssm_document_name`).
pub fn default_ssm_document(deployment: &str) -> String {
    format!("{deployment}-runner")
}

/// The runner settings of the local backend from the configuration.
pub fn runner_settings(config: &Config) -> RunnerSettings {
    let local = config_file::local(config);
    RunnerSettings {
        runner_command: local.runner_command,
        runner_dir: local.runner_dir,
        // SAFETY: geteuid never fails.
        run_as: spotrunner_local::RunAs::from_config(local.runner_user.as_deref(), unsafe {
            libc::geteuid()
        }),
        // Locally the runner is installed or a command: bootstrap.sh never
        // downloads it, so "latest" only needs to be a well-formed version.
        runner_version: if config.runner_version == spotrunner_core::runner_cache::LATEST {
            spotrunner_core::runner_cache::DEFAULT_RUNNER_VERSION.to_string()
        } else {
            config.runner_version.clone()
        },
    }
}

impl Adapters {
    /// The ports of `target`'s backend. `launches`: this process launches
    /// runners (`serve`), so on AWS it must be able to bind JIT parameters to
    /// their instances (`SPOTRUNNER_INSTANCE_ARN_PREFIX`).
    pub async fn open(target: &Target, config: &Config, launches: bool) -> Result<Self, String> {
        match target.backend {
            Backend::Local => {
                if launches
                    && let Some(problem) =
                        spotrunner_local::runner_problem(&runner_settings(config))
                {
                    return Err(format!("configuration error: {problem}"));
                }
                Self::local(target, config)
            }
            Backend::Aws => Self::aws(config, launches).await,
        }
    }

    fn local(target: &Target, config: &Config) -> Result<Self, String> {
        let st = LocalState::open(&target.state_dir, runner_settings(config))
            .map_err(|e| e.to_string())?;
        let mut queues: BTreeMap<String, Arc<dyn Inbox>> = BTreeMap::new();
        for q in [
            &st.jobs,
            &st.bootstrap,
            &st.dlq,
            &st.bootstrap_dlq,
            &st.events,
        ] {
            queues.insert(q.name().to_string(), Arc::new(q.clone()));
        }
        Ok(Self {
            ledger: Arc::new(st.ledger.clone()),
            jobs_queue: Arc::new(st.jobs.clone()),
            bootstrap_queue: Arc::new(st.bootstrap.clone()),
            compute: Arc::new(st.backend.clone()),
            parameters: Arc::new(st.parameters.clone()),
            commands: Arc::new(st.backend.clone()),
            jobs_inbox: Arc::new(st.jobs.clone()),
            bootstrap_inbox: Arc::new(st.bootstrap.clone()),
            dlq: Some(Arc::new(st.dlq.clone())),
            queues,
            secrets: None,
            local: Some(st),
            first_bootstrap_delay: std::time::Duration::ZERO,
        })
    }

    async fn aws(config: &Config, launches: bool) -> Result<Self, String> {
        use spotrunner_aws::runtime::env;
        use spotrunner_aws::{
            dynamodb::DynamoLedger, sqs::SqsJobQueue, sqs_bootstrap::SqsBootstrapQueue,
            ssm::SsmSecretStore, ssm_runner::SsmCommands, ssm_runner::SsmRunnerParameters,
        };
        config.validate_for_aws().map_err(|e| e.to_string())?;
        let sdk = spotrunner_aws::sdk::load().await;
        let e = |r: Result<String, spotrunner_aws::runtime::StartupError>| {
            r.map_err(|e| format!("--backend aws: {e}"))
        };
        let jobs_url = e(env("SPOTRUNNER_JOBS_QUEUE_URL"))?;
        let bootstrap_url = e(env("SPOTRUNNER_BOOTSTRAP_QUEUE_URL"))?;
        let table = e(env("SPOTRUNNER_LEDGER_TABLE"))?;
        let document = std::env::var("SPOTRUNNER_SSM_DOCUMENT")
            .unwrap_or_else(|_| default_ssm_document(&config.deployment));
        let bucket = std::env::var("SPOTRUNNER_BUCKET")
            .unwrap_or_else(|_| format!("{}-runner-cache", config.deployment));
        let script_key = std::env::var("SPOTRUNNER_BOOTSTRAP_SCRIPT_KEY")
            .unwrap_or_else(|_| "bootstrap.sh".into());
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let inbox = |url: &str| -> Arc<dyn Inbox> {
            Arc::new(SqsInbox {
                client: sqs.clone(),
                url: url.to_string(),
            })
        };
        let mut queues = BTreeMap::new();
        queues.insert("jobs".to_string(), inbox(&jobs_url));
        queues.insert("bootstrap".to_string(), inbox(&bootstrap_url));
        let mut dlq: Option<Arc<dyn DeadLetterQueue>> = None;
        if let Ok(url) = env("SPOTRUNNER_DLQ_URL") {
            queues.insert("dlq".to_string(), inbox(&url));
            dlq = Some(Arc::new(spotrunner_aws::sqs_dlq::SqsDeadLetterQueue::new(
                &sdk, url,
            )));
        }
        let ledger = Arc::new(DynamoLedger::new(&sdk, table));
        // As create-runner: the runner cache's version and SHA-256.
        let pin = spotrunner_core::runner_cache::LedgerRunnerPin::new(
            config.runner_version.clone(),
            spotrunner_core::runner_cache::DEFAULT_RUNNER_VERSION,
            ledger.clone(),
        );
        let commands = SsmCommands::new(
            &sdk,
            document,
            bucket,
            script_key,
            config.runner_version.clone(),
            sdk.region().map(|r| r.to_string()),
        )
        .with_runner_pin(Arc::new(pin));
        Ok(Self {
            ledger,
            jobs_queue: Arc::new(SqsJobQueue::new(&sdk, jobs_url.clone())),
            bootstrap_queue: Arc::new(SqsBootstrapQueue::new(&sdk, bootstrap_url.clone())),
            compute: Arc::new(spotrunner_aws_ec2::Ec2Compute::new(&sdk)),
            parameters: Arc::new(
                SsmRunnerParameters::from_env(&sdk, &spotrunner_aws::runtime::ProcessEnv, launches)
                    .map_err(|e| format!("--backend aws: {e}"))?,
            ),
            commands: Arc::new(commands),
            jobs_inbox: inbox(&jobs_url),
            bootstrap_inbox: inbox(&bootstrap_url),
            dlq,
            queues,
            secrets: Some(Arc::new(SsmSecretStore::new(&sdk))),
            local: None,
            first_bootstrap_delay: std::time::Duration::from_secs(15),
        })
    }
}
