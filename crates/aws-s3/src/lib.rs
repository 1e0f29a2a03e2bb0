//! The runner cache's store on S3: `GetObject` (a checksum sidecar),
//! `HeadObject` (does a tarball exist), `PutObject`, all under the runner
//! bucket's `runner-cache/` prefix.
//!
//! Kept apart from `spotrunner-aws` so that only the recovery Lambda (and the
//! CLI) link `aws-sdk-s3`.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use spotrunner_aws::error::classify;
use spotrunner_core::ports::{PortError, RunnerCacheStore};
use spotrunner_core::runner_cache::CACHE_PREFIX;

const SERVICE: &str = "s3";
/// A sidecar is 64 hex digits; anything much larger is not one.
const MAX_SMALL: i64 = 4096;

/// [`RunnerCacheStore`] on an S3 bucket.
#[derive(Clone, Debug)]
pub struct S3RunnerCache {
    client: Client,
    bucket: String,
}

impl S3RunnerCache {
    /// With a custom endpoint (moto, LocalStack) addressing is path-style.
    pub fn new(sdk: &SdkConfig, bucket: impl Into<String>) -> Self {
        let conf = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .build();
        Self::from_client(Client::from_conf(conf), bucket)
    }

    pub fn from_client(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// Only keys under `runner-cache/`: the IAM grant covers nothing else.
    fn check(key: &str) -> Result<(), PortError> {
        if key.starts_with(CACHE_PREFIX) && !key.contains("..") {
            Ok(())
        } else {
            Err(PortError::rejected(
                SERVICE,
                format!("key {key:?} is not under {CACHE_PREFIX}"),
            ))
        }
    }
}

#[async_trait]
impl RunnerCacheStore for S3RunnerCache {
    async fn get_small(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
        Self::check(key)?;
        let what = format!("s3://{}/{key}", self.bucket);
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(classify(SERVICE, &what, e, &["NoSuchKey"])),
        };
        if out.content_length().unwrap_or(0) > MAX_SMALL {
            return Err(PortError::rejected(
                SERVICE,
                format!(
                    "{what}: {} bytes, not a checksum",
                    out.content_length().unwrap_or(0)
                ),
            ));
        }
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| PortError::unavailable(SERVICE, format!("{what}: {e}")))?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    async fn exists(&self, key: &str) -> Result<bool, PortError> {
        Self::check(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(classify(
                SERVICE,
                &format!("s3://{}/{key}", self.bucket),
                e,
                &[],
            )),
        }
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), PortError> {
        Self::check(key)?;
        let len = bytes.len();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| classify(SERVICE, &format!("s3://{}/{key}", self.bucket), e, &[]))?;
        tracing::debug!(bucket = %self.bucket, key, bytes = len, "s3 object stored");
        Ok(())
    }
}
