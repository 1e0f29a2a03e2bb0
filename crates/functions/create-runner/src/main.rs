//! `create-runner` Lambda (SQS: jobs queue and bootstrap queue).
//! Environment: see [`spotrunner_create_runner::handler_from_env`].

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use spotrunner_aws::runtime::{ProcessEnv, init_tracing};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let sdk = spotrunner_aws::sdk::from_lambda_env()?;
    let handler = spotrunner_create_runner::handler_from_env(&sdk, &ProcessEnv)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "cold start failed"))?;
    let handler = Arc::new(handler);
    tracing::info!("create-runner ready");
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = handler.clone();
        async move { Ok::<_, Error>(handler.handle(event.payload).await) }
    }))
    .await
}
