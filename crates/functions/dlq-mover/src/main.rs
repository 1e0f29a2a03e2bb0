//! `dlq-mover` Lambda (EventBridge schedule; the event's payload is ignored).
//!
//! Environment: `SPOTRUNNER_CONFIG_PARAMETER` (or `SPOTRUNNER_CONFIG_FILE`),
//! `SPOTRUNNER_DLQ_URL`, `SPOTRUNNER_JOBS_QUEUE_URL`, `SPOTRUNNER_LEDGER_TABLE`,
//! optional `SPOTRUNNER_DLQ_MAX_PER_RUN` (default 1000) and
//! `SPOTRUNNER_DLQ_RATE_PER_SECOND` (default 50). The function's timeout must
//! cover `max_per_run / rate` seconds plus the calls.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use spotrunner_aws::runtime::{self, init_tracing};
use spotrunner_aws::{dynamodb::DynamoLedger, sqs::SqsJobQueue, sqs_dlq::SqsDeadLetterQueue};
use spotrunner_core::dlq_mover::DlqMover;
use spotrunner_dlq_mover::{env::MoverEnv, invoke, pacer::TokioPacer};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let env = MoverEnv::from_env().inspect_err(|e| {
        tracing::error!(error = %e, "cold start failed");
    })?;
    let sdk = spotrunner_aws::sdk::from_lambda_env()?;
    let config = runtime::load_config(&sdk).await.inspect_err(|e| {
        tracing::error!(error = %e, "cold start failed");
    })?;
    let mover = DlqMover {
        dlq: Arc::new(SqsDeadLetterQueue::new(&sdk, env.dlq_url)),
        jobs: Arc::new(SqsJobQueue::new(&sdk, env.jobs_queue_url)),
        ledger: Arc::new(DynamoLedger::new(&sdk, env.ledger_table)),
        pacer: Arc::new(TokioPacer::default()),
        settings: env.settings,
    };
    let deployment: Arc<str> = config.deployment.into();
    tracing::info!("dlq-mover ready");
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<serde_json::Value>| {
        let mover = mover.clone();
        let deployment = deployment.clone();
        async move { Ok::<_, Error>(invoke(&mover, &deployment, chrono::Utc::now()).await) }
    }))
    .await
}
