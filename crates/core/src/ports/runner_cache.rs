//! What the runner-cache syncer (`crate::runner_cache`) needs: GitHub's
//! actions/runner releases (metadata and tarball downloads) and the store the
//! VMs take the tarball from (S3 on AWS, the bucket directory locally).

use super::PortError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One downloadable file of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseAsset {
    /// e.g. `actions-runner-linux-x64-2.329.0.tar.gz`.
    pub name: String,
    /// `browser_download_url` (github.com answers it with a redirect).
    pub url: String,
    /// Bytes, as GitHub declares them.
    pub size: u64,
    /// GitHub's `digest` (`sha256:<hex>`), when the release has one.
    #[serde(default)]
    pub digest: Option<String>,
}

/// An actions/runner release as GitHub publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerRelease {
    /// The tag without its `v`: `2.329.0`.
    pub version: String,
    pub published_at: DateTime<Utc>,
    pub assets: Vec<ReleaseAsset>,
    /// The release notes, which carry `<!-- BEGIN SHA <platform> -->` markers.
    pub body: String,
}

impl RunnerRelease {
    pub fn asset(&self, name: &str) -> Option<&ReleaseAsset> {
        self.assets.iter().find(|a| a.name == name)
    }
}

/// actions/runner releases. Public data: no installation is needed.
#[async_trait]
pub trait RunnerReleases: Send + Sync {
    /// `GET /repos/actions/runner/releases/latest`.
    async fn latest(&self) -> Result<RunnerRelease, PortError>;
    /// `GET /repos/actions/runner/releases/tags/v{version}`.
    async fn by_version(&self, version: &str) -> Result<RunnerRelease, PortError>;
    /// The asset's bytes (redirects followed); refused past `asset.size`
    /// plus a small margin.
    async fn download(&self, asset: &ReleaseAsset) -> Result<Vec<u8>, PortError>;
}

/// Where the VMs take the runner from: keys like
/// `runner-cache/actions-runner-linux-x64-2.329.0.tar.gz`.
#[async_trait]
pub trait RunnerCacheStore: Send + Sync {
    /// A small object's bytes (a checksum sidecar); `None` when absent.
    async fn get_small(&self, key: &str) -> Result<Option<Vec<u8>>, PortError>;
    /// Whether an object exists (no download).
    async fn exists(&self, key: &str) -> Result<bool, PortError>;
    /// Store (or replace) an object.
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), PortError>;
}
