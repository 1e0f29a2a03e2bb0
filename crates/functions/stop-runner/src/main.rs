//! `stop-runner` Lambda: SQS batches from the stop-events queue, where
//! EventBridge puts SSM command status, spot interruption warning and EC2
//! instance state change events (`ReportBatchItemFailures`); a single
//! EventBridge event (direct invocation) is accepted too.
//! Environment: see [`spotrunner_stop_runner::handler_from_env`], plus
//! `SPOTRUNNER_CONFIG_TTL_SECS` (the handler is built again after that many
//! seconds, default 300; 0 = never).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use spotrunner_aws::reload::{self, Reloading};
use spotrunner_aws::runtime::{self, ProcessEnv, init_tracing};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing("stop-runner");
    let sdk = spotrunner_aws::sdk::from_lambda_env()?;
    let ttl = reload::ttl_from_env(&ProcessEnv)?;
    let handler = Reloading::new("stop-runner", ttl, move || {
        let sdk = sdk.clone();
        async move { spotrunner_stop_runner::handler_from_env(&sdk, &ProcessEnv).await }
    })
    .await
    .inspect_err(|e| tracing::error!(error = %e, "cold start failed"))?;
    let handler = Arc::new(handler);
    tracing::info!(
        config_sha256 = runtime::config_sha256(&ProcessEnv),
        "stop-runner ready"
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let handler = handler.clone();
        async move {
            let handler = handler.get().await;
            handler.invoke(event.payload).await.map_err(Error::from)
        }
    }))
    .await
}
