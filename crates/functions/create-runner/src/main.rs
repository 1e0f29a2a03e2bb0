//! `create-runner` Lambda (SQS: jobs queue and bootstrap queue).
//!
//! Environment: `SPOTRUNNER_CONFIG_PARAMETER` (or `SPOTRUNNER_CONFIG_FILE`),
//! `SPOTRUNNER_JOBS_QUEUE_URL`, `SPOTRUNNER_BOOTSTRAP_QUEUE_URL`,
//! `SPOTRUNNER_LEDGER_TABLE`, `SPOTRUNNER_SSM_DOCUMENT`, `SPOTRUNNER_BUCKET`,
//! `SPOTRUNNER_BOOTSTRAP_SCRIPT_KEY` (default `bootstrap.sh`).

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use spotrunner_aws::runtime::{self, env, init_tracing};
use spotrunner_aws::{
    dynamodb::DynamoLedger,
    sqs::SqsJobQueue,
    sqs_bootstrap::SqsBootstrapQueue,
    ssm::SsmSecretStore,
    ssm_runner::{SsmCommands, SsmRunnerParameters},
};
use spotrunner_core::create_runner::{CreateRunner, Settings};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let sdk = spotrunner_aws::sdk::from_lambda_env()?;
    let config = runtime::load_config(&sdk).await.inspect_err(|e| {
        tracing::error!(error = %e, "cold start failed");
    })?;
    config.validate_for_aws()?;
    let secrets = SsmSecretStore::new(&sdk);
    let github = spotrunner_github::client_from_config(&config.github, Some(&secrets)).await?;
    let jobs_queue_url = env("SPOTRUNNER_JOBS_QUEUE_URL")?;
    let bootstrap_queue_url = env("SPOTRUNNER_BOOTSTRAP_QUEUE_URL")?;
    let script_key =
        std::env::var("SPOTRUNNER_BOOTSTRAP_SCRIPT_KEY").unwrap_or_else(|_| "bootstrap.sh".into());
    let commands = SsmCommands::new(
        &sdk,
        env("SPOTRUNNER_SSM_DOCUMENT")?,
        env("SPOTRUNNER_BUCKET")?,
        script_key,
        config.runner_version.clone(),
        sdk.region().map(|r| r.to_string()),
    );
    let create_runner = CreateRunner {
        settings: Settings::for_deployment(&config.deployment),
        ledger: Arc::new(DynamoLedger::new(&sdk, env("SPOTRUNNER_LEDGER_TABLE")?)),
        github: Arc::new(github),
        compute: Arc::new(spotrunner_aws_ec2::Ec2Compute::new(&sdk)),
        parameters: Arc::new(SsmRunnerParameters::new(&sdk)),
        commands: Arc::new(commands),
        bootstrap_queue: Arc::new(SqsBootstrapQueue::new(&sdk, bootstrap_queue_url.clone())),
        jobs_queue: Arc::new(SqsJobQueue::new(&sdk, jobs_queue_url.clone())),
        config: Arc::new(config),
    };
    let handler = Arc::new(spotrunner_create_runner::Handler {
        create_runner,
        sqs: aws_sdk_sqs::Client::new(&sdk),
        jobs_queue_url,
        bootstrap_queue_url,
    });
    tracing::info!("create-runner ready");
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = handler.clone();
        async move { Ok::<_, Error>(handler.handle(event.payload).await) }
    }))
    .await
}
