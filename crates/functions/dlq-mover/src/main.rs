//! `dlq-mover` Lambda (EventBridge schedule; the event's payload is ignored).
//!
//! Environment: `SPOTRUNNER_CONFIG_PARAMETER` (or `SPOTRUNNER_CONFIG_FILE`),
//! `SPOTRUNNER_DLQ_URL`, `SPOTRUNNER_JOBS_QUEUE_URL`, `SPOTRUNNER_LEDGER_TABLE`,
//! `SPOTRUNNER_BOOTSTRAP_DLQ_URL` + `SPOTRUNNER_BOOTSTRAP_QUEUE_URL` and
//! `SPOTRUNNER_STOP_EVENTS_DLQ_URL` + `SPOTRUNNER_STOP_EVENTS_QUEUE_URL` (each
//! pair optional), optional `SPOTRUNNER_DLQ_MAX_PER_RUN` (default 1000, over
//! all the DLQs) and `SPOTRUNNER_DLQ_RATE_PER_SECOND` (default 50). The
//! function's timeout must cover `max_per_run / rate` seconds plus the calls.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use spotrunner_aws::runtime::{self, init_tracing};
use spotrunner_dlq_mover::{env::MoverEnv, invoke, mover_from_env};
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
    let mover = mover_from_env(&sdk, env);
    let deployment: Arc<str> = config.deployment.into();
    tracing::info!("dlq-mover ready");
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<serde_json::Value>| {
        let mover = mover.clone();
        let deployment = deployment.clone();
        async move { Ok::<_, Error>(invoke(&mover, &deployment, chrono::Utc::now()).await) }
    }))
    .await
}
