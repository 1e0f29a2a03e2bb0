//! [`RunnerCacheSync::run`]: fill the runner cache with verified tarballs.
//!
//! For each architecture: a sidecar that holds the published SHA-256 next to
//! an existing tarball means "already verified" (nothing downloaded);
//! otherwise download, hash, compare with the published SHA-256 and store
//! only on equality — the tarball first, the sidecar last. A mismatch is
//! refused (an error log naming version, architecture, expected and got;
//! `metric = "runner_cache_refused"`) and nothing is stored for it.

use super::checksums::published_sha256;
use super::pin::LedgerRunnerPin;
use super::state::behind_days;
use super::state::{RunnerReleaseState, STATE_KEY};
use super::{DEFAULT_RUNNER_VERSION, LATEST, is_newer, sidecar_key, tarball_key, tarball_name};
use crate::Config;
use crate::ports::{Ledger, PortError, RunnerCacheStore, RunnerRelease, RunnerReleases};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// What happened to one architecture's tarball.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ArchOutcome {
    /// Already in the cache with a matching sidecar.
    Cached { arch: String, sha256: String },
    /// Downloaded, verified and stored now.
    Stored {
        arch: String,
        sha256: String,
        bytes: u64,
    },
    /// Not stored: no such asset, no published checksum, or it did not match.
    Refused { arch: String, reason: String },
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub version: String,
    pub latest_version: String,
    pub archs: Vec<ArchOutcome>,
    /// See [`super::behind_days`].
    pub behind_days: u32,
}

impl SyncReport {
    pub fn refused(&self) -> usize {
        self.count(|o| matches!(o, ArchOutcome::Refused { .. }))
    }
    pub fn stored(&self) -> usize {
        self.count(|o| matches!(o, ArchOutcome::Stored { .. }))
    }
    fn count(&self, f: impl Fn(&ArchOutcome) -> bool) -> usize {
        self.archs.iter().filter(|o| f(o)).count()
    }
}

/// A run failed: GitHub, the store or the ledger did not answer.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("runner cache: {what}: {source}")]
    Port {
        what: String,
        #[source]
        source: PortError,
    },
}

impl SyncError {
    fn port(what: impl Into<String>) -> impl FnOnce(PortError) -> Self {
        let what = what.into();
        move |source| Self::Port { what, source }
    }
}

/// The task and its ports.
pub struct RunnerCacheSync {
    /// `runner_version`: a pinned `X.Y.Z` or `"latest"`.
    pub runner_version: String,
    /// Architectures whose tarballs the cache must hold (`super::archs_in_use`).
    pub archs: Vec<&'static str>,
    /// Warn (and say so in the metric) past this many days behind.
    pub max_age_days: u32,
    pub releases: Arc<dyn RunnerReleases>,
    pub store: Arc<dyn RunnerCacheStore>,
    pub ledger: Arc<dyn Ledger>,
}

impl RunnerCacheSync {
    pub fn from_config(
        config: &Config,
        releases: Arc<dyn RunnerReleases>,
        store: Arc<dyn RunnerCacheStore>,
        ledger: Arc<dyn Ledger>,
    ) -> Self {
        Self {
            runner_version: config.runner_version.clone(),
            archs: super::archs_in_use(config),
            max_age_days: config.recovery.runner_cache.max_age_days,
            releases,
            store,
            ledger,
        }
    }

    pub async fn run(&self, now: DateTime<Utc>) -> Result<SyncReport, SyncError> {
        let latest = self
            .releases
            .latest()
            .await
            .map_err(SyncError::port("latest runner release"))?;
        let target = if self.runner_version == LATEST || self.runner_version == latest.version {
            latest.clone()
        } else {
            self.releases
                .by_version(&self.runner_version)
                .await
                .map_err(SyncError::port(format!(
                    "runner release {}",
                    self.runner_version
                )))?
        };
        let mut report = SyncReport {
            version: target.version.clone(),
            latest_version: latest.version.clone(),
            ..SyncReport::default()
        };
        for arch in &self.archs {
            report.archs.push(self.sync_arch(&target, arch).await?);
        }
        let state = self.record(&target, &latest, &report, now).await?;
        // What the VMs get: the pinned version, or for "latest" the last
        // completely verified one (the default before any).
        let in_use =
            LedgerRunnerPin::resolve(&self.runner_version, DEFAULT_RUNNER_VERSION, &state).version;
        report.behind_days = behind_days(&in_use, &latest.version, Some(latest.published_at), now);
        tracing::info!(
            metric = "runner_version_behind_days",
            value = f64::from(report.behind_days),
            unit = "Count",
            version = %in_use,
            latest = %latest.version,
            "runner version age"
        );
        if report.behind_days > self.max_age_days {
            tracing::warn!(
                version = %in_use,
                latest = %latest.version,
                latest_published_at = %latest.published_at,
                behind_days = report.behind_days,
                max_age_days = self.max_age_days,
                "the runner version in use is behind a release published more than max_age_days ago: GitHub may soon refuse it"
            );
        }
        Ok(report)
    }

    async fn sync_arch(
        &self,
        release: &RunnerRelease,
        arch: &str,
    ) -> Result<ArchOutcome, SyncError> {
        let version = &release.version;
        let name = tarball_name(arch, version);
        let refuse = |reason: String| {
            tracing::error!(
                metric = "runner_cache_refused",
                value = 1.0,
                unit = "Count",
                version = %version,
                arch,
                reason = %reason,
                "runner tarball refused: nothing stored"
            );
            ArchOutcome::Refused {
                arch: arch.into(),
                reason,
            }
        };
        let Some(asset) = release.asset(&name) else {
            return Ok(refuse(format!("release {version} has no asset {name}")));
        };
        let expected =
            match published_sha256(version, &format!("linux-{arch}"), &release.body, asset) {
                Ok(s) => s,
                Err(e) => return Ok(refuse(e.to_string())),
            };
        let (key, sidecar) = (tarball_key(arch, version), sidecar_key(arch, version));
        let mark = self
            .store
            .get_small(&sidecar)
            .await
            .map_err(SyncError::port(format!("read {sidecar}")))?;
        if mark
            .as_deref()
            .map(|m| String::from_utf8_lossy(m).trim().to_string())
            == Some(expected.clone())
            && self
                .store
                .exists(&key)
                .await
                .map_err(SyncError::port(format!("look for {key}")))?
        {
            tracing::debug!(%key, "runner tarball already cached and verified");
            return Ok(ArchOutcome::Cached {
                arch: arch.into(),
                sha256: expected,
            });
        }
        let bytes = self
            .releases
            .download(asset)
            .await
            .map_err(SyncError::port(format!("download {name}")))?;
        let got = hex::encode(Sha256::digest(&bytes));
        if got != expected {
            return Ok(refuse(format!(
                "{name}: SHA-256 {got} is not the published {expected}"
            )));
        }
        let len = bytes.len() as u64;
        self.store
            .put(&key, bytes)
            .await
            .map_err(SyncError::port(format!("store {key}")))?;
        self.store
            .put(&sidecar, expected.clone().into_bytes())
            .await
            .map_err(SyncError::port(format!("store {sidecar}")))?;
        tracing::info!(%key, sha256 = %expected, bytes = len, "runner tarball verified and cached");
        Ok(ArchOutcome::Stored {
            arch: arch.into(),
            sha256: expected,
            bytes: len,
        })
    }

    /// Record the outcome: the version in use moves only when every
    /// architecture is verified in the cache.
    async fn record(
        &self,
        target: &RunnerRelease,
        latest: &RunnerRelease,
        report: &SyncReport,
        now: DateTime<Utc>,
    ) -> Result<RunnerReleaseState, SyncError> {
        let mut sums = std::collections::BTreeMap::new();
        let mut refused = Vec::new();
        for o in &report.archs {
            match o {
                ArchOutcome::Cached { arch, sha256 } | ArchOutcome::Stored { arch, sha256, .. } => {
                    sums.insert(arch.clone(), sha256.clone());
                }
                ArchOutcome::Refused { arch, reason } => refused.push(format!("{arch}: {reason}")),
            }
        }
        let complete = refused.is_empty();
        let doc = self
            .ledger
            .update_state_doc(STATE_KEY, &|d: &mut Option<serde_json::Value>| {
                let mut s = RunnerReleaseState::from_doc(d.clone());
                if complete {
                    s.version = target.version.clone();
                    s.published_at = Some(target.published_at);
                    s.sha256 = sums.clone();
                    s.synced_at = Some(now);
                }
                s.latest_version = latest.version.clone();
                s.latest_published_at = Some(latest.published_at);
                s.checked_at = Some(now);
                s.refused = refused.clone();
                *d = serde_json::to_value(s).ok();
                true
            })
            .await
            .map_err(SyncError::port(format!("ledger state {STATE_KEY}")))?;
        let state = RunnerReleaseState::from_doc(doc);
        if !complete && is_newer(&target.version, &state.version) {
            tracing::warn!(
                target = %target.version,
                in_use = %state.version,
                "the runner cache could not verify every architecture of the target version; the version in use stays"
            );
        }
        Ok(state)
    }
}
