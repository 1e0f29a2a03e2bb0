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
//! - The checksums GitHub published for [`DEFAULT_RUNNER_VERSION`], compiled
//!   in ([`DEFAULT_RUNNER_SHA256`]): what the default version is checked
//!   against when the runner cache has verified nothing yet.

mod checksums;
#[cfg(test)]
mod default_sha256_tests;
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
/// sends before the runner cache verified a release (`pin.rs`). Bumping it
/// means bumping [`DEFAULT_RUNNER_SHA256`] too (a unit test fails otherwise).
pub const DEFAULT_RUNNER_VERSION: &str = "2.329.0";

/// The SHA-256s GitHub published for [`DEFAULT_RUNNER_VERSION`]'s tarballs,
/// as `(version, architecture, sha256)`: the "SHA-256 Checksums" section of
/// the actions/runner v2.329.0 release notes
/// (<https://github.com/actions/runner/releases/tag/v2.329.0>).
///
/// Compiled in so that a fresh deployment, before the runner cache verified
/// any release, still sends a checksum with the default version
/// ([`default_runner_sha256`], used by [`RunnerPin::sha256_for`] and the AWS
/// bootstrap command): bootstrap.sh installs no runner without one. A checksum
/// the runner cache verified wins over these. Bumping
/// [`DEFAULT_RUNNER_VERSION`] means copying the new release's published
/// checksums here: an entry keyed by an older version is never used (the
/// default version would go out without a checksum, and VMs would refuse it),
/// and the unit test `the_table_names_the_default_version_for_every_arch`
/// fails.
pub const DEFAULT_RUNNER_SHA256: [(&str, &str, &str); 2] = [
    (
        "2.329.0",
        "x64",
        "194f1e1e4bd02f80b7e9633fc546084d8d4e19f3928a324d512ea53430102e1d",
    ),
    (
        "2.329.0",
        "arm64",
        "56768348b3d643a6a29d4ad71e9bdae0dc0ef1eb01afe0f7a8ee097b039bfaaf",
    ),
];

/// The compiled-in SHA-256 of `arch`'s tarball of `version`: only for
/// [`DEFAULT_RUNNER_VERSION`] (from [`DEFAULT_RUNNER_SHA256`]), else `None`.
pub fn default_runner_sha256(version: &str, arch: &str) -> Option<&'static str> {
    if version != DEFAULT_RUNNER_VERSION {
        return None;
    }
    DEFAULT_RUNNER_SHA256
        .iter()
        .find(|(v, a, _)| *v == version && *a == arch)
        .map(|(_, _, sha)| *sha)
}
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
