//! Build the handler from the environment Terraform hands the function.

use crate::Handler;
use aws_config::SdkConfig;
use spotrunner_aws::runtime::{self, EnvSource};
use spotrunner_aws::{
    dynamodb::DynamoLedger,
    sqs::SqsJobQueue,
    sqs_bootstrap::SqsBootstrapQueue,
    ssm::SsmSecretStore,
    ssm_runner::{SsmCommands, SsmRunnerParameters},
};
use spotrunner_core::create_runner::{CreateRunner, Settings};
use spotrunner_core::runner_cache::{DEFAULT_RUNNER_VERSION, LedgerRunnerPin};
use std::sync::Arc;

pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// `SPOTRUNNER_CONFIG_PARAMETER` (or `SPOTRUNNER_CONFIG_FILE`),
/// `SPOTRUNNER_JOBS_QUEUE_URL`, `SPOTRUNNER_BOOTSTRAP_QUEUE_URL`,
/// `SPOTRUNNER_LEDGER_TABLE`, `SPOTRUNNER_SSM_DOCUMENT`, `SPOTRUNNER_BUCKET`,
/// `SPOTRUNNER_BOOTSTRAP_SCRIPT_KEY` (default `bootstrap.sh`),
/// `SPOTRUNNER_INSTANCE_ARN_PREFIX`, `SPOTRUNNER_PARAMETER_KMS_KEY` (optional).
pub async fn handler_from_env(sdk: &SdkConfig, env: &dyn EnvSource) -> Result<Handler, StartError> {
    let config = runtime::load_config_from(sdk, env).await?;
    let secrets = SsmSecretStore::new(sdk);
    let github = spotrunner_github::client_from_config(&config.github, Some(&secrets)).await?;
    let jobs_queue_url = env.require("SPOTRUNNER_JOBS_QUEUE_URL")?;
    let bootstrap_queue_url = env.require("SPOTRUNNER_BOOTSTRAP_QUEUE_URL")?;
    let script_key = env
        .get("SPOTRUNNER_BOOTSTRAP_SCRIPT_KEY")
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| "bootstrap.sh".into());
    let ledger = Arc::new(DynamoLedger::new(
        sdk,
        env.require("SPOTRUNNER_LEDGER_TABLE")?,
    ));
    // The runner version and its verified SHA-256 from the runner cache's
    // state document (runner_version pinned or "latest"; read every 5 min).
    let pin = LedgerRunnerPin::new(
        config.runner_version.clone(),
        DEFAULT_RUNNER_VERSION,
        ledger.clone(),
    );
    let commands = SsmCommands::new(
        sdk,
        env.require("SPOTRUNNER_SSM_DOCUMENT")?,
        env.require("SPOTRUNNER_BUCKET")?,
        script_key,
        config.runner_version.clone(),
        sdk.region().map(|r| r.to_string()),
    )
    .with_runner_pin(Arc::new(pin));
    let create_runner = CreateRunner {
        settings: Settings::for_deployment(&config.deployment),
        ledger,
        github: Arc::new(github),
        compute: Arc::new(spotrunner_aws_ec2::Ec2Compute::new(sdk)),
        parameters: Arc::new(SsmRunnerParameters::from_env(sdk, env, true)?),
        commands: Arc::new(commands),
        bootstrap_queue: Arc::new(SqsBootstrapQueue::new(sdk, bootstrap_queue_url.clone())),
        jobs_queue: Arc::new(SqsJobQueue::new(sdk, jobs_queue_url.clone())),
        config: Arc::new(config),
    };
    Ok(Handler {
        create_runner,
        sqs: aws_sdk_sqs::Client::new(sdk),
        jobs_queue_url,
        bootstrap_queue_url,
    })
}
