//! `recovery` Lambda (two EventBridge schedules: `{"task": "redelivery"}`
//! every minute, `{"task": "sweep"}` every few minutes).
//! Environment: see [`spotrunner_recovery::handler_from_env`].

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use spotrunner_aws::runtime::{ProcessEnv, init_tracing};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let sdk = spotrunner_aws::sdk::from_lambda_env()?;
    let handler = spotrunner_recovery::handler_from_env(&sdk, &ProcessEnv)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cold start failed"))?;
    let handler = Arc::new(handler);
    tracing::info!("recovery ready");
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let handler = handler.clone();
        async move { Ok::<_, Error>(handler.handle(event.payload).await?) }
    }))
    .await
}
