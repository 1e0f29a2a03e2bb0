//! `dlq-mover` Lambda (EventBridge schedule; the event's payload is ignored).
//!
//! Environment: `SPOTRUNNER_CONFIG_PARAMETER` (or `SPOTRUNNER_CONFIG_FILE`),
//! `SPOTRUNNER_DLQ_URL`, `SPOTRUNNER_JOBS_QUEUE_URL`, `SPOTRUNNER_LEDGER_TABLE`,
//! `SPOTRUNNER_BOOTSTRAP_DLQ_URL` + `SPOTRUNNER_BOOTSTRAP_QUEUE_URL` and
//! `SPOTRUNNER_STOP_EVENTS_DLQ_URL` + `SPOTRUNNER_STOP_EVENTS_QUEUE_URL` (each
//! pair optional), optional `SPOTRUNNER_DLQ_MAX_PER_RUN` (default 1000, over
//! all the DLQs) and `SPOTRUNNER_DLQ_RATE_PER_SECOND` (default 50). The
//! function's timeout must cover `max_per_run / rate` seconds plus the calls.
//! `SPOTRUNNER_CONFIG_TTL_SECS`: built again after that many seconds (default
//! 300; 0 = never).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use spotrunner_aws::reload::{self, Reloading};
use spotrunner_aws::runtime::{self, ProcessEnv, init_tracing};
use spotrunner_dlq_mover::{function_from_env, invoke};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing("dlq-mover");
    let sdk = spotrunner_aws::sdk::from_lambda_env()?;
    let ttl = reload::ttl_from_env(&ProcessEnv)?;
    let function = Reloading::new("dlq-mover", ttl, move || {
        let sdk = sdk.clone();
        async move { function_from_env(&sdk, &ProcessEnv).await }
    })
    .await
    .inspect_err(|e| tracing::error!(error = %e, "cold start failed"))?;
    let function = Arc::new(function);
    tracing::info!(
        config_sha256 = runtime::config_sha256(&ProcessEnv),
        "dlq-mover ready"
    );
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<serde_json::Value>| {
        let function = function.clone();
        async move {
            let f = function.get().await;
            Ok::<_, Error>(invoke(&f.mover, &f.deployment, chrono::Utc::now()).await)
        }
    }))
    .await
}
