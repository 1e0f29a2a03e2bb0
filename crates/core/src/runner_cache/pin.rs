//! Which runner a VM gets: the version to send and the SHA-256 to check it
//! against, from `runner_version` and the `runner-release` state document
//! (read at most once per [`PIN_TTL`] per process).
//!
//! - Pinned (`2.329.0`): that version; the verified SHA-256 when the runner
//!   cache synced that same version, else none (the VM then checks the
//!   cache's sidecar, if any).
//! - `"latest"`: the version the runner cache last verified completely, with
//!   its SHA-256. Before the first sync there is none: the compiled-in
//!   default version is used, with the checksums GitHub published for it
//!   (also compiled in, [`DEFAULT_RUNNER_SHA256`]), and a warning is logged.
//!   A fallback rather than a refusal, because refusing would hold every job
//!   until the first scheduled sync (up to `runner_cache_schedule`).
//! - Whatever the source, [`RunnerPin::sha256_for`] gives the verified
//!   checksum, else the compiled-in one when the version is
//!   [`DEFAULT_RUNNER_VERSION`], else none: bootstrap.sh installs no runner
//!   without one, so a fresh deployment's default version must carry it,
//!   while a pinned version nobody verified still goes out without one (and
//!   is refused unless the pool sets `allow_unverified_runner`).
//!
//! [`DEFAULT_RUNNER_SHA256`]: super::DEFAULT_RUNNER_SHA256
//! [`DEFAULT_RUNNER_VERSION`]: super::DEFAULT_RUNNER_VERSION
//! - A ledger that does not answer is not a reason to hold a job: the last
//!   known pin is kept (or the fallback above) and the read is tried again on
//!   the next call.

use super::LATEST;
use super::state::{RunnerReleaseState, STATE_KEY};
use crate::ports::Ledger;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a read of the state document is reused.
pub const PIN_TTL: Duration = Duration::from_secs(300);

/// The runner a VM gets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunnerPin {
    pub version: String,
    /// Architecture (`x64`, `arm64`) → verified SHA-256; may be empty.
    pub sha256: BTreeMap<String, String>,
}

impl RunnerPin {
    /// The SHA-256 to check `arch`'s tarball against: the verified one, else
    /// the compiled-in one of the default version
    /// ([`super::default_runner_sha256`]); empty when neither is known.
    pub fn sha256_for(&self, arch: &str) -> String {
        match self.sha256.get(arch) {
            Some(sha) if !sha.is_empty() => sha.clone(),
            _ => super::default_runner_sha256(&self.version, arch)
                .unwrap_or_default()
                .to_string(),
        }
    }
}

/// Where create-runner's bootstrap step gets the runner to send.
#[async_trait]
pub trait RunnerPinSource: Send + Sync {
    async fn runner_pin(&self) -> RunnerPin;
}

/// `runner_version` resolved against the ledger's `runner-release` document.
pub struct LedgerRunnerPin {
    configured: String,
    fallback: String,
    ledger: Arc<dyn Ledger>,
    ttl: Duration,
    cache: Mutex<Option<(Instant, RunnerPin)>>,
}

impl LedgerRunnerPin {
    /// `configured`: `runner_version`; `fallback`: the version for `"latest"`
    /// before the first sync.
    pub fn new(
        configured: impl Into<String>,
        fallback: impl Into<String>,
        ledger: Arc<dyn Ledger>,
    ) -> Self {
        Self {
            configured: configured.into(),
            fallback: fallback.into(),
            ledger,
            ttl: PIN_TTL,
            cache: Mutex::new(None),
        }
    }

    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The pin for `runner_version` given the state document.
    pub fn resolve(configured: &str, fallback: &str, state: &RunnerReleaseState) -> RunnerPin {
        if configured == LATEST {
            if state.version.is_empty() {
                return RunnerPin {
                    version: fallback.into(),
                    sha256: BTreeMap::new(),
                };
            }
            return RunnerPin {
                version: state.version.clone(),
                sha256: state.sha256.clone(),
            };
        }
        RunnerPin {
            version: configured.into(),
            sha256: if state.version == configured {
                state.sha256.clone()
            } else {
                BTreeMap::new()
            },
        }
    }
}

#[async_trait]
impl RunnerPinSource for LedgerRunnerPin {
    async fn runner_pin(&self) -> RunnerPin {
        let cached = self.cache.lock().unwrap().clone();
        if let Some((at, pin)) = &cached
            && at.elapsed() < self.ttl
        {
            return pin.clone();
        }
        let pin = match self.ledger.state_doc(STATE_KEY).await {
            Ok(doc) => {
                let state = RunnerReleaseState::from_doc(doc);
                if self.configured == LATEST && state.version.is_empty() {
                    tracing::warn!(
                        fallback = %self.fallback,
                        "runner_version = \"latest\" but the runner cache has not verified any release yet: sending the default version with its compiled-in checksums"
                    );
                }
                Self::resolve(&self.configured, &self.fallback, &state)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the runner release from the ledger; keeping the last known runner");
                return cached.map(|(_, p)| p).unwrap_or_else(|| {
                    Self::resolve(
                        &self.configured,
                        &self.fallback,
                        &RunnerReleaseState::default(),
                    )
                });
            }
        };
        *self.cache.lock().unwrap() = Some((Instant::now(), pin.clone()));
        pin
    }
}
