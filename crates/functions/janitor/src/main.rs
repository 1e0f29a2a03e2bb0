//! `janitor` Lambda (EventBridge schedule, every few minutes).
//! Environment: see [`spotrunner_janitor::handler_from_env`], plus
//! `SPOTRUNNER_CONFIG_TTL_SECS` (the handler is built again after that many
//! seconds, default 300; 0 = never).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use spotrunner_aws::reload::{self, Reloading};
use spotrunner_aws::runtime::{self, ProcessEnv, init_tracing};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing("janitor");
    let sdk = spotrunner_aws::sdk::from_lambda_env()?;
    let ttl = reload::ttl_from_env(&ProcessEnv)?;
    let handler = Reloading::new("janitor", ttl, move || {
        let sdk = sdk.clone();
        async move { spotrunner_janitor::handler_from_env(&sdk, &ProcessEnv).await }
    })
    .await
    .inspect_err(|e| tracing::error!(error = %e, "cold start failed"))?;
    let handler = Arc::new(handler);
    tracing::info!(
        dry_run = handler.current().dry_run,
        config_sha256 = runtime::config_sha256(&ProcessEnv),
        "janitor ready"
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let handler = handler.clone();
        async move {
            let report = handler.get().await.handle(event.payload).await?;
            Ok::<_, Error>(serde_json::to_value(report)?)
        }
    }))
    .await
}
