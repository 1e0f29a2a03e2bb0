//! [`RunnerReleases`] on the REST API: actions/runner releases and their
//! tarballs. Public data, so no credentials are sent: a run of the
//! runner-cache task makes one or two API calls (GitHub allows 60 an hour
//! without a token), and downloads (`browser_download_url`, answered by
//! github.com with a 302 to objects.githubusercontent.com) are not counted
//! against the API limit. Releases always come from `api_url` (on GitHub
//! Enterprise Server, point it at `https://api.github.com`: GHES does not
//! publish actions/runner).

use crate::DEFAULT_USER_AGENT;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde::Deserialize;
use spotrunner_core::ports::{PortError, ReleaseAsset, RunnerRelease, RunnerReleases};
use std::time::Duration;

const SERVICE: &str = "github";
/// The repository the runner comes from.
pub const RUNNER_REPOSITORY: &str = "actions/runner";
/// A download may exceed the declared size by this much before it is cut off.
pub const DOWNLOAD_MARGIN: u64 = 64 * 1024;

/// Why the releases client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReleasesError {
    #[error("releases api_url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("releases HTTP client: {0}")]
    Http(String),
}

#[derive(Deserialize)]
struct AssetAnswer {
    name: String,
    browser_download_url: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    digest: Option<String>,
}

#[derive(Deserialize)]
struct ReleaseAnswer {
    tag_name: String,
    published_at: DateTime<Utc>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    assets: Vec<AssetAnswer>,
}

impl From<ReleaseAnswer> for RunnerRelease {
    fn from(r: ReleaseAnswer) -> Self {
        RunnerRelease {
            version: r.tag_name.trim_start_matches('v').to_string(),
            published_at: r.published_at,
            body: r.body.unwrap_or_default(),
            assets: r
                .assets
                .into_iter()
                .map(|a| ReleaseAsset {
                    name: a.name,
                    url: a.browser_download_url,
                    size: a.size,
                    digest: a.digest,
                })
                .collect(),
        }
    }
}

/// actions/runner releases from `api_url` (no credentials).
#[derive(Clone, Debug)]
pub struct GitHubReleases {
    api: String,
    repository: String,
    http: reqwest::Client,
}

impl GitHubReleases {
    /// `api_url`: `https://api.github.com` (or a fake's URL in tests).
    pub fn new(api_url: &str) -> Result<Self, ReleasesError> {
        let api = api_url.trim().trim_end_matches('/').to_string();
        reqwest::Url::parse(&api).map_err(|e| ReleasesError::InvalidUrl {
            url: api_url.into(),
            reason: e.to_string(),
        })?;
        let http = reqwest::Client::builder()
            .user_agent(DEFAULT_USER_AGENT)
            .connect_timeout(Duration::from_secs(10))
            // A 200 MB tarball over a slow link: bounded, but generously.
            .timeout(Duration::from_secs(600))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| ReleasesError::Http(e.to_string()))?;
        Ok(Self {
            api,
            repository: RUNNER_REPOSITORY.into(),
            http,
        })
    }

    async fn release(&self, path: &str) -> Result<RunnerRelease, PortError> {
        let url = format!("{}/repos/{}/releases/{path}", self.api, self.repository);
        let resp = self
            .http
            .get(&url)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", crate::API_VERSION)
            .send()
            .await
            .map_err(|e| PortError::unavailable(SERVICE, format!("GET {url}: {e}")))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| PortError::unavailable(SERVICE, format!("GET {url}: {e}")))?;
        match status {
            s if s.is_success() => serde_json::from_slice::<ReleaseAnswer>(&body)
                .map(RunnerRelease::from)
                .map_err(|e| {
                    PortError::unavailable(SERVICE, format!("unexpected release answer {url}: {e}"))
                }),
            StatusCode::NOT_FOUND => Err(PortError::NotFound {
                service: SERVICE,
                what: format!("release {path} of {}", self.repository),
            }),
            StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS => Err(PortError::Throttled {
                service: SERVICE,
                retry_after: Duration::from_secs(3600),
            }),
            s => Err(PortError::unavailable(
                SERVICE,
                format!("GET {url}: HTTP {}", s.as_u16()),
            )),
        }
    }
}

#[async_trait]
impl RunnerReleases for GitHubReleases {
    async fn latest(&self) -> Result<RunnerRelease, PortError> {
        self.release("latest").await
    }

    async fn by_version(&self, version: &str) -> Result<RunnerRelease, PortError> {
        if !spotrunner_core::runner_cache::is_valid_runner_version(version)
            || version == spotrunner_core::runner_cache::LATEST
        {
            return Err(PortError::rejected(
                SERVICE,
                format!("runner version {version:?} is not X.Y.Z"),
            ));
        }
        self.release(&format!("tags/v{version}")).await
    }

    async fn download(&self, asset: &ReleaseAsset) -> Result<Vec<u8>, PortError> {
        let cap = asset.size.saturating_add(DOWNLOAD_MARGIN);
        let started = std::time::Instant::now();
        let mut resp = self
            .http
            .get(&asset.url)
            .header("accept", "application/octet-stream")
            .send()
            .await
            .map_err(|e| {
                PortError::unavailable(SERVICE, format!("download {}: {e}", asset.name))
            })?;
        if !resp.status().is_success() {
            return Err(PortError::unavailable(
                SERVICE,
                format!("download {}: HTTP {}", asset.name, resp.status().as_u16()),
            ));
        }
        if let Some(len) = resp.content_length()
            && len > cap
        {
            return Err(too_big(asset, len));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(asset.size).unwrap_or(0));
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| PortError::unavailable(SERVICE, format!("download {}: {e}", asset.name)))?
        {
            if (bytes.len() + chunk.len()) as u64 > cap {
                return Err(too_big(asset, (bytes.len() + chunk.len()) as u64));
            }
            bytes.extend_from_slice(&chunk);
        }
        tracing::info!(
            asset = %asset.name,
            bytes = bytes.len(),
            ms = started.elapsed().as_millis() as u64,
            "runner tarball downloaded"
        );
        Ok(bytes)
    }
}

fn too_big(asset: &ReleaseAsset, got: u64) -> PortError {
    PortError::rejected(
        SERVICE,
        format!(
            "download {}: {got} bytes or more, but the release declares {} (margin {DOWNLOAD_MARGIN})",
            asset.name, asset.size
        ),
    )
}
