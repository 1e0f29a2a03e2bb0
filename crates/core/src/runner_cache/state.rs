//! The ledger state document `runner-release`: what the runner cache holds
//! and how it compares with GitHub's newest release.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The ledger key of the document.
pub const STATE_KEY: &str = "runner-release";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunnerReleaseState {
    /// The version the VMs run: verified in the cache for every architecture
    /// in `sha256` (empty before the first complete sync).
    pub version: String,
    pub published_at: Option<DateTime<Utc>>,
    /// Architecture → the verified SHA-256 of its tarball.
    pub sha256: BTreeMap<String, String>,
    /// When the cache was last found complete for `version`.
    pub synced_at: Option<DateTime<Utc>>,
    /// GitHub's newest release when last looked.
    pub latest_version: String,
    pub latest_published_at: Option<DateTime<Utc>>,
    /// When GitHub was last asked.
    pub checked_at: Option<DateTime<Utc>>,
    /// The last run's refusals (`arch: reason`), empty when none.
    pub refused: Vec<String>,
}

impl RunnerReleaseState {
    pub fn from_doc(doc: Option<serde_json::Value>) -> Self {
        doc.and_then(|d| serde_json::from_value(d).ok())
            .unwrap_or_default()
    }
}

/// How many days ago the newest release came out, if it is newer than the
/// version in use; 0 when the version in use is the newest (or unknown).
/// "More than N behind" = a newer release exists and was published more than
/// N days ago.
pub fn behind_days(
    in_use: &str,
    latest: &str,
    latest_published_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> u32 {
    match latest_published_at {
        Some(at) if super::is_newer(latest, in_use) => {
            u32::try_from((now - at).num_days().max(0)).unwrap_or(u32::MAX)
        }
        _ => 0,
    }
}
