//! Build the handler from the environment Terraform hands the function.

use crate::Handler;
use aws_config::SdkConfig;
use spotrunner_aws::runtime::{self, EnvSource};
use spotrunner_aws::{
    dynamodb::DynamoLedger, sqs::SqsJobQueue, ssm::SsmSecretStore, ssm_runner::SsmRunnerParameters,
};
use spotrunner_core::stop_runner::StopRunner;
use std::sync::Arc;

pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// `SPOTRUNNER_CONFIG_PARAMETER` (or `SPOTRUNNER_CONFIG_FILE`),
/// `SPOTRUNNER_LEDGER_TABLE`, `SPOTRUNNER_SSM_DOCUMENT`, `SPOTRUNNER_JOBS_QUEUE_URL`.
pub async fn handler_from_env(sdk: &SdkConfig, env: &dyn EnvSource) -> Result<Handler, StartError> {
    let config = runtime::load_config_from(sdk, env).await?;
    let secrets = SsmSecretStore::new(sdk);
    let github = spotrunner_github::client_from_config(&config.github, Some(&secrets)).await?;
    let stop_runner = StopRunner {
        document: env.require("SPOTRUNNER_SSM_DOCUMENT")?,
        ledger: Arc::new(DynamoLedger::new(
            sdk,
            env.require("SPOTRUNNER_LEDGER_TABLE")?,
        )),
        github: Arc::new(github),
        compute: Arc::new(spotrunner_aws_ec2::Ec2Compute::new(sdk)),
        parameters: Arc::new(SsmRunnerParameters::new(sdk)),
        jobs_queue: Arc::new(SqsJobQueue::new(
            sdk,
            env.require("SPOTRUNNER_JOBS_QUEUE_URL")?,
        )),
        config: Arc::new(config),
    };
    Ok(Handler { stop_runner })
}
