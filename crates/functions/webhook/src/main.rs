//! `webhook` Lambda: verify GitHub webhooks, enqueue matching `workflow_job`s.
//! Environment: see [`spotrunner_webhook::service_from_env`], plus
//! `SPOTRUNNER_CONFIG_TTL_SECS` (the service is built again after that many
//! seconds, default 300; 0 = never).

use lambda_http::{Error, Request, service_fn};
use spotrunner_aws::reload::{self, Reloading};
use spotrunner_aws::runtime::{self, ProcessEnv, init_tracing};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing("webhook");
    let sdk = spotrunner_aws::sdk::from_lambda_env()?;
    let ttl = reload::ttl_from_env(&ProcessEnv)?;
    let service = Reloading::new("webhook", ttl, move || {
        let sdk = sdk.clone();
        async move { spotrunner_webhook::service_from_env(&sdk, &ProcessEnv).await }
    })
    .await
    .inspect_err(|e| tracing::error!(error = %e, "cold start failed"))?;
    let service = Arc::new(service);
    tracing::info!(
        config_sha256 = runtime::config_sha256(&ProcessEnv),
        "webhook ready"
    );
    lambda_http::run(service_fn(move |req: Request| {
        let service = service.clone();
        async move {
            let service = service.get().await;
            Ok::<_, Error>(spotrunner_webhook::handle(&service, req).await)
        }
    }))
    .await
}
