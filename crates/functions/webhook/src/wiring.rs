//! Build the service from the environment Terraform hands the function.

use aws_config::SdkConfig;
use spotrunner_aws::runtime::{self, EnvSource, StartupError};
use spotrunner_aws::{dynamodb::DynamoLedger, sqs::SqsJobQueue, ssm::SsmSecretStore};
use spotrunner_core::ports::{JobStateSink, NoJobStateSink, SecretStore};
use spotrunner_core::webhook::{SecretRefs, WebhookService};
use std::sync::Arc;

/// `SPOTRUNNER_CONFIG_PARAMETER` (or `SPOTRUNNER_CONFIG_FILE`),
/// `SPOTRUNNER_WEBHOOK_SECRET_PARAMETERS` (optional: the secrets' SSM names,
/// read with the configuration in one call), `SPOTRUNNER_JOBS_QUEUE_URL`, `SPOTRUNNER_LEDGER_TABLE` (where `in_progress` /
/// `completed` are recorded; without it they are only logged), optional
/// `SPOTRUNNER_SECRET_REFRESH_SECS` (default 30): a signature that matches no
/// secret makes the service read the configured secrets again, at most once
/// per that many seconds, so a rotated secret is accepted by a warm container;
/// with the ledger table, at most once per that many seconds across every
/// container of the function (the ledger's `gate#webhook-secrets` item).
pub async fn service_from_env(
    sdk: &SdkConfig,
    env: &dyn EnvSource,
) -> Result<WebhookService, StartupError> {
    let refresh = runtime::secret_refresh_interval(env)?;
    let (config, secrets) = runtime::load_webhook_config_and_secrets(sdk, env).await?;
    let store: Arc<dyn SecretStore> = Arc::new(SsmSecretStore::new(sdk));
    let source = SecretRefs::new(config.webhook.secrets.clone(), Some(store)).strong_only();
    let queue = SqsJobQueue::new(sdk, env.require("SPOTRUNNER_JOBS_QUEUE_URL")?);
    let ledger = env
        .get("SPOTRUNNER_LEDGER_TABLE")
        .filter(|t| !t.is_empty())
        .map(|table| Arc::new(DynamoLedger::new(sdk, table)));
    let job_states: Arc<dyn JobStateSink> = match &ledger {
        Some(ledger) => ledger.clone(),
        None => {
            tracing::warn!(
                "SPOTRUNNER_LEDGER_TABLE not set: job states are not recorded, \
                 and secrets refreshes are limited per container only"
            );
            Arc::new(NoJobStateSink)
        }
    };
    let service = WebhookService::new(Arc::new(config), secrets, Arc::new(queue), job_states)
        .with_secrets_source(Arc::new(source), refresh);
    // One client for the job states and the refresh gate (same table).
    Ok(match ledger {
        Some(ledger) => service.with_refresh_gate(ledger),
        None => service,
    })
}
