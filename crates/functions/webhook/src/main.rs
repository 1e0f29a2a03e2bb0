//! `webhook` Lambda: verify GitHub webhooks, enqueue matching `workflow_job`s.
//!
//! Environment: `SPOTRUNNER_CONFIG_PARAMETER` (or `SPOTRUNNER_CONFIG_FILE`),
//! `SPOTRUNNER_JOBS_QUEUE_URL`, `SPOTRUNNER_LEDGER_TABLE` (where `in_progress` /
//! `completed` are recorded; without it they are only logged).

use lambda_http::{Error, Request, service_fn};
use spotrunner_aws::runtime::{self, env, init_tracing};
use spotrunner_aws::{dynamodb::DynamoLedger, sqs::SqsJobQueue, ssm::SsmSecretStore};
use spotrunner_core::ports::{JobStateSink, NoJobStateSink};
use spotrunner_core::webhook::WebhookService;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let sdk = spotrunner_aws::sdk::from_lambda_env()?;
    let config = runtime::load_config(&sdk).await.inspect_err(|e| {
        tracing::error!(error = %e, "cold start failed");
    })?;
    let secrets = runtime::webhook_secrets(&config, &SsmSecretStore::new(&sdk)).await?;
    let queue = SqsJobQueue::new(&sdk, env("SPOTRUNNER_JOBS_QUEUE_URL")?);
    let job_states: Arc<dyn JobStateSink> = match std::env::var("SPOTRUNNER_LEDGER_TABLE") {
        Ok(table) if !table.is_empty() => Arc::new(DynamoLedger::new(&sdk, table)),
        _ => {
            tracing::warn!("SPOTRUNNER_LEDGER_TABLE not set: job states are not recorded");
            Arc::new(NoJobStateSink)
        }
    };
    let service = Arc::new(WebhookService::new(
        Arc::new(config),
        secrets,
        Arc::new(queue),
        job_states,
    ));
    tracing::info!("webhook ready");
    lambda_http::run(service_fn(move |req: Request| {
        let service = service.clone();
        async move { Ok::<_, Error>(spotrunner_webhook::handle(&service, req).await) }
    }))
    .await
}
