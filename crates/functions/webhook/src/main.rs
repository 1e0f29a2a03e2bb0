//! `webhook` Lambda: verify GitHub webhooks, enqueue matching `workflow_job`s.
//! Environment: see [`spotrunner_webhook::service_from_env`].

use lambda_http::{Error, Request, service_fn};
use spotrunner_aws::runtime::{ProcessEnv, init_tracing};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let sdk = spotrunner_aws::sdk::from_lambda_env()?;
    let service = spotrunner_webhook::service_from_env(&sdk, &ProcessEnv)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cold start failed"))?;
    let service = Arc::new(service);
    tracing::info!("webhook ready");
    lambda_http::run(service_fn(move |req: Request| {
        let service = service.clone();
        async move { Ok::<_, Error>(spotrunner_webhook::handle(&service, req).await) }
    }))
    .await
}
