//! Building the SDK configuration.
//!
//! Every client shares one HTTPS client on rustls with the ring provider: the
//! SDK's default (aws-lc) would add megabytes to each Lambda binary. Lambdas use
//! [`from_lambda_env`], which reads the region, endpoint and credentials Lambda
//! puts in the environment and so links none of `aws-config`'s provider chain
//! (profiles, SSO, STS, IMDS); the CLI and tests use [`load`] / [`local`].
//!
//! Trust: a Lambda's AWS clients talk to AWS's own endpoints, whose
//! certificates chain to the Amazon Trust Services roots; loading and parsing
//! the system's whole store (hundreds of certificates, some twice) was a third
//! of the webhook's cold start. So [`from_lambda_env`] trusts those five roots,
//! compiled in ([`AMAZON_TRUST_SERVICES_ROOTS`]), in the commercial partition
//! with AWS's endpoints (or a plain-HTTP emulator); elsewhere — China,
//! GovCloud, ISO regions, an `https://` `AWS_ENDPOINT_URL` — the system's roots.

use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore, rustls_provider::CryptoMode};

/// Amazon Root CA 1–4 and Starfield Services Root CA G2 (PEM, as in Mozilla's
/// CA list): the roots of AWS's public service endpoints' certificates.
pub const AMAZON_TRUST_SERVICES_ROOTS: &str = include_str!("amazon-trust-services-roots.pem");

/// The roots an HTTPS client trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roots {
    /// The system's store (loaded and parsed once per process).
    System,
    /// [`AMAZON_TRUST_SERVICES_ROOTS`] only.
    AmazonTrustServices,
}

impl Roots {
    /// What a Lambda in `region`, talking to `endpoint` (`AWS_ENDPOINT_URL`,
    /// if set), needs: Amazon Trust Services for AWS's commercial endpoints
    /// (or a plain-HTTP emulator, which uses no TLS), else the system's.
    pub fn for_lambda(region: &str, endpoint: Option<&str>) -> Self {
        let other_partition = ["cn-", "us-gov-", "us-iso", "eu-iso"]
            .iter()
            .any(|p| region.starts_with(p));
        let own_https_endpoint = endpoint.is_some_and(|e| !e.starts_with("http://"));
        if other_partition || own_https_endpoint {
            Roots::System
        } else {
            Roots::AmazonTrustServices
        }
    }
}

/// The HTTPS client every SDK client shares (rustls on ring).
pub fn https_client(roots: Roots) -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    let builder =
        aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring));
    match roots {
        Roots::System => builder.build_https(),
        Roots::AmazonTrustServices => {
            let store = TrustStore::empty()
                .with_native_roots(false)
                .with_pem_certificate(AMAZON_TRUST_SERVICES_ROOTS.as_bytes());
            let context = TlsContext::builder()
                .with_trust_store(store)
                .build()
                .expect("a trust store is a valid TLS context");
            builder.tls_context(context).build_https()
        }
    }
}

fn loader() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(https_client(Roots::System))
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
    let endpoint = var("AWS_ENDPOINT_URL");
    let roots = Roots::for_lambda(&region, endpoint.as_deref());
    let mut b = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(creds))
        .http_client(https_client(roots));
    if let Some(endpoint) = endpoint {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambdas_trust_amazon_roots_only_for_aws_commercial_endpoints() {
        use Roots::*;
        assert_eq!(Roots::for_lambda("eu-west-1", None), AmazonTrustServices);
        assert_eq!(
            Roots::for_lambda("us-east-1", Some("http://127.0.0.1:5000")),
            AmazonTrustServices
        );
        assert_eq!(
            Roots::for_lambda("us-east-1", Some("https://localstack:4566")),
            System
        );
        for region in [
            "cn-north-1",
            "us-gov-west-1",
            "us-iso-east-1",
            "eu-isoe-west-1",
        ] {
            assert_eq!(Roots::for_lambda(region, None), System, "{region}");
        }
    }

    /// The compiled-in roots parse (a bad PEM would panic when the first
    /// connection builds its TLS configuration): a call through the client to
    /// a listener that is no TLS server fails as a call, it does not panic.
    #[tokio::test]
    async fn the_amazon_roots_parse_into_a_working_client() {
        assert_eq!(
            AMAZON_TRUST_SERVICES_ROOTS
                .matches("BEGIN CERTIFICATE")
                .count(),
            5
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                drop(socket);
            }
        });
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "k", "s", None, None, "test",
            )))
            .http_client(https_client(Roots::AmazonTrustServices))
            .endpoint_url(format!("https://127.0.0.1:{port}"))
            .build();
        let err = aws_sdk_ssm::Client::new(&sdk)
            .get_parameter()
            .name("/x")
            .send()
            .await
            .expect_err("nothing answers TLS there");
        assert!(format!("{err:?}").contains("DispatchFailure"), "{err:?}");
    }
}
