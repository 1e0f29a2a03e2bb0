//! Build the handler from the environment Terraform hands the function.

use crate::Handler;
use aws_config::SdkConfig;
use spotrunner_aws::runtime::{self, EnvSource, StartupError};
use spotrunner_aws::{dynamodb::DynamoLedger, sqs::SqsJobQueue, ssm::SsmSecretStore};
use spotrunner_core::recovery::{Redelivery, Sweep};
use spotrunner_core::runner_cache::RunnerCacheSync;
use std::sync::Arc;

/// `SPOTRUNNER_CONFIG_PARAMETER` (or `SPOTRUNNER_CONFIG_FILE`),
/// `SPOTRUNNER_LEDGER_TABLE` (the checkpoints; the sweep asks it which jobs
/// it knows), `SPOTRUNNER_JOBS_QUEUE_URL` (where the sweep enqueues),
/// `SPOTRUNNER_BUCKET` (optional: the runner bucket whose `runner-cache/` the
/// runner-cache task fills; without it that task is skipped).
pub async fn handler_from_env(
    sdk: &SdkConfig,
    env: &dyn EnvSource,
) -> Result<Handler, StartupError> {
    let config = Arc::new(runtime::load_config_from(sdk, env).await?);
    let github =
        spotrunner_github::client_from_config(&config.github, Some(&SsmSecretStore::new(sdk)))
            .await
            .map_err(|error| StartupError::Secret {
                reference: "github.auth".into(),
                error,
            })?;
    let github = Arc::new(github);
    let ledger = Arc::new(DynamoLedger::new(
        sdk,
        env.require("SPOTRUNNER_LEDGER_TABLE")?,
    ));
    let queue = Arc::new(SqsJobQueue::new(
        sdk,
        env.require("SPOTRUNNER_JOBS_QUEUE_URL")?,
    ));
    let redelivery_config = config.recovery.redelivery.clone();
    let hook = redelivery_config.hook(&config.github.auth);
    let redelivery = Redelivery {
        config: redelivery_config,
        hook,
        deliveries: github.clone(),
        ledger: ledger.clone(),
    };
    redelivery.warn_if_inactive();
    let runner_cache = match env.get("SPOTRUNNER_BUCKET") {
        Some(bucket) if config.recovery.runner_cache.enabled => {
            let releases = spotrunner_github::GitHubReleases::new(&config.github.api_url)
                .map_err(|e| StartupError::Read(format!("github.api_url: {e}")))?;
            Some(RunnerCacheSync::from_config(
                &config,
                Arc::new(releases),
                Arc::new(spotrunner_aws_s3::S3RunnerCache::new(sdk, bucket)),
                ledger.clone(),
            ))
        }
        _ => None,
    };
    Ok(Handler {
        runner_cache,
        deployment: config.deployment.clone(),
        redelivery,
        sweep: Sweep {
            config,
            source: github,
            ledger,
            queue,
        },
    })
}
