//! `recovery.runner_cache`: the scheduled step that fills the runner cache
//! with verified actions/runner tarballs (`crate::runner_cache`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunnerCacheConfig {
    pub enabled: bool,
    /// Seconds between runs (`serve`; on AWS the module's schedule).
    pub interval_secs: u64,
    /// A newer runner release published more than this many days ago and not
    /// in use is a warning, a metric and (on AWS) an alarm. GitHub expects
    /// updates within 30 days of a release.
    pub max_age_days: u32,
}

impl Default for RunnerCacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 6 * 3600,
            max_age_days: 30,
        }
    }
}
