//! `janitor` Lambda (EventBridge schedule, every few minutes).
//!
//! Environment: `SPOTRUNNER_CONFIG_PARAMETER` (or `SPOTRUNNER_CONFIG_FILE`),
//! `SPOTRUNNER_LEDGER_TABLE`, `SPOTRUNNER_JOBS_QUEUE_URL`, optional
//! `SPOTRUNNER_DRY_RUN` (report only).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use spotrunner_aws::runtime::{self, env, init_tracing};
use spotrunner_aws::{
    dynamodb::DynamoLedger, sqs::SqsJobQueue, ssm::SsmSecretStore, ssm_runner::SsmRunnerParameters,
};
use spotrunner_core::janitor::{Janitor, JanitorSettings};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let dry_run =
        spotrunner_janitor::parse_dry_run(std::env::var("SPOTRUNNER_DRY_RUN").ok().as_deref())?;
    let sdk = spotrunner_aws::sdk::from_lambda_env()?;
    let config = runtime::load_config(&sdk).await.inspect_err(|e| {
        tracing::error!(error = %e, "cold start failed");
    })?;
    let secrets = SsmSecretStore::new(&sdk);
    let github = spotrunner_github::client_from_config(&config.github, Some(&secrets)).await?;
    let janitor = Janitor {
        settings: JanitorSettings::for_deployment(&config.deployment),
        ledger: Arc::new(DynamoLedger::new(&sdk, env("SPOTRUNNER_LEDGER_TABLE")?)),
        github: Arc::new(github),
        compute: Arc::new(spotrunner_aws_ec2::Ec2Compute::new(&sdk)),
        parameters: Arc::new(SsmRunnerParameters::new(&sdk)),
        jobs_queue: Arc::new(SqsJobQueue::new(&sdk, env("SPOTRUNNER_JOBS_QUEUE_URL")?)),
        config: Arc::new(config),
    };
    let handler = Arc::new(spotrunner_janitor::Handler { janitor, dry_run });
    tracing::info!(dry_run, "janitor ready");
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let handler = handler.clone();
        async move {
            let report = handler.handle(event.payload).await?;
            Ok::<_, Error>(serde_json::to_value(report)?)
        }
    }))
    .await
}
