//! The runner cache: verified actions/runner tarballs where the VMs take them
//! (`runner-cache/<tarball>` in the runner bucket, plus a
//! `runner-cache/<tarball>.sha256` sidecar holding the SHA-256 GitHub
//! published, written last: the sidecar is the "verified" mark).
//!
//! - [`RunnerCacheSync`] (`sync.rs`): a scheduled task that resolves the
//!   target version (`runner_version`, pinned or `"latest"`), and for each
//!   architecture in use downloads the tarball, hashes it and stores it only
//!   if the hash equals the published one (`checksums.rs`). The outcome is the
//!   ledger state document [`STATE_KEY`] ([`RunnerReleaseState`], `state.rs`),
//!   which create-runner reads for `"latest"` and `spotrunner status` prints.
//! - How far behind the version in use is: [`behind_days`].
//! - Which runner a VM gets (version and SHA-256; `"latest"` resolved from
//!   the state document, cached 5 minutes): [`LedgerRunnerPin`] (`pin.rs`).

mod checksums;
mod pin;
mod state;
mod sync;
#[cfg(test)]
mod tests;

pub use checksums::{ChecksumError, body_marker, published_sha256, sha256_hex};
pub use pin::{LedgerRunnerPin, PIN_TTL, RunnerPin, RunnerPinSource};
pub use state::{RunnerReleaseState, STATE_KEY, behind_days};
pub use sync::{ArchOutcome, RunnerCacheSync, SyncError, SyncReport};

use crate::Config;

/// `runner_version` when the configuration names none, and what `"latest"`
/// sends before the runner cache verified a release (`pin.rs`).
pub const DEFAULT_RUNNER_VERSION: &str = "2.329.0";
/// `runner_version = "latest"`: follow GitHub's newest release.
pub const LATEST: &str = "latest";
/// Key prefix of the cache in the runner bucket.
pub const CACHE_PREFIX: &str = "runner-cache/";
/// Every architecture the runner cache knows (GitHub's platform suffixes).
pub const ARCHS: [&str; 2] = ["x64", "arm64"];

/// The architectures the pools run on (`Pool::arch`), whose tarballs the
/// cache must hold, in [`ARCHS`] order.
pub fn archs_in_use(config: &Config) -> Vec<&'static str> {
    ARCHS
        .into_iter()
        .filter(|a| config.pools.iter().any(|p| p.arch().as_str() == *a))
        .collect()
}

/// `actions-runner-linux-{arch}-{version}.tar.gz`.
pub fn tarball_name(arch: &str, version: &str) -> String {
    format!("actions-runner-linux-{arch}-{version}.tar.gz")
}

/// The cache key of a tarball.
pub fn tarball_key(arch: &str, version: &str) -> String {
    format!("{CACHE_PREFIX}{}", tarball_name(arch, version))
}

/// The cache key of a tarball's checksum sidecar.
pub fn sidecar_key(arch: &str, version: &str) -> String {
    format!("{}.sha256", tarball_key(arch, version))
}

/// `2.329.0` → (2, 329, 0); `None` unless three dot-separated numbers.
pub fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.split('.').map(|p| {
        (!p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u32>().ok())
            .flatten()
    });
    let v = (it.next()??, it.next()??, it.next()??);
    it.next().is_none().then_some(v)
}

/// A valid `runner_version`: `"latest"` or `X.Y.Z`.
pub fn is_valid_runner_version(v: &str) -> bool {
    v == LATEST || parse_version(v).is_some()
}

/// Is `a` a newer version than `b`? (Unparsable versions are never newer.)
pub fn is_newer(a: &str, b: &str) -> bool {
    match (parse_version(a), parse_version(b)) {
        (Some(a), Some(b)) => a > b,
        _ => false,
    }
}
