//! Building the SDK configuration.
//!
//! Every client shares one HTTPS client on rustls with the ring provider: the
//! SDK's default (aws-lc) would add megabytes to each Lambda binary. Lambdas use
//! [`from_lambda_env`], which reads the region, endpoint and credentials Lambda
//! puts in the environment and so links none of `aws-config`'s provider chain
//! (profiles, SSO, STS, IMDS); the CLI and tests use [`load`] / [`local`].

use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

fn loader() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(https_client())
}

/// The standard chain: environment (`AWS_REGION`, `AWS_ENDPOINT_URL`, credentials),
/// profile, container/instance metadata.
pub async fn load() -> SdkConfig {
    loader().load().await
}

/// What Lambda gives every function: `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` (the role's credentials for the
/// life of the execution environment), plus `AWS_ENDPOINT_URL` when set.
pub fn from_lambda_env() -> Result<SdkConfig, String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let region = var("AWS_REGION")
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .ok_or("AWS_REGION is not set")?;
    let key = var("AWS_ACCESS_KEY_ID").ok_or("AWS_ACCESS_KEY_ID is not set")?;
    let secret = var("AWS_SECRET_ACCESS_KEY").ok_or("AWS_SECRET_ACCESS_KEY is not set")?;
    let creds = Credentials::new(key, secret, var("AWS_SESSION_TOKEN"), None, "lambda-env");
    let mut b = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(creds))
        .http_client(https_client());
    if let Some(endpoint) = var("AWS_ENDPOINT_URL") {
        b = b.endpoint_url(endpoint);
    }
    Ok(b.build())
}

/// A configuration for a local emulator at `endpoint` with fixed test credentials.
pub async fn local(endpoint: &str) -> SdkConfig {
    loader()
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "spotrunner-local",
        ))
        .load()
        .await
}
