//! `stop-runner` Lambda (EventBridge: SSM command status, spot interruption
//! warning, EC2 instance state change).
//!
//! Environment: `SPOTRUNNER_CONFIG_PARAMETER` (or `SPOTRUNNER_CONFIG_FILE`),
//! `SPOTRUNNER_LEDGER_TABLE`, `SPOTRUNNER_SSM_DOCUMENT`, `SPOTRUNNER_JOBS_QUEUE_URL`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use spotrunner_aws::runtime::{self, env, init_tracing};
use spotrunner_aws::{
    dynamodb::DynamoLedger, sqs::SqsJobQueue, ssm::SsmSecretStore, ssm_runner::SsmRunnerParameters,
};
use spotrunner_core::stop_runner::StopRunner;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let sdk = spotrunner_aws::sdk::from_lambda_env()?;
    let config = runtime::load_config(&sdk).await.inspect_err(|e| {
        tracing::error!(error = %e, "cold start failed");
    })?;
    let secrets = SsmSecretStore::new(&sdk);
    let github = spotrunner_github::client_from_config(&config.github, Some(&secrets)).await?;
    let stop_runner = StopRunner {
        document: env("SPOTRUNNER_SSM_DOCUMENT")?,
        ledger: Arc::new(DynamoLedger::new(&sdk, env("SPOTRUNNER_LEDGER_TABLE")?)),
        github: Arc::new(github),
        compute: Arc::new(spotrunner_aws_ec2::Ec2Compute::new(&sdk)),
        parameters: Arc::new(SsmRunnerParameters::new(&sdk)),
        jobs_queue: Arc::new(SqsJobQueue::new(&sdk, env("SPOTRUNNER_JOBS_QUEUE_URL")?)),
        config: Arc::new(config),
    };
    let handler = Arc::new(spotrunner_stop_runner::Handler { stop_runner });
    tracing::info!("stop-runner ready");
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let handler = handler.clone();
        async move { handler.handle(event.payload).await.map_err(Error::from) }
    }))
    .await
}
