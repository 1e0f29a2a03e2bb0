//! A pool's spot policy: re-runs of jobs a spot interruption killed, and the
//! spot circuit breaker (`crate::spot_breaker`).

use serde::{Deserialize, Serialize};

/// What happens around spot interruptions of a pool's runners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpotPolicy {
    /// How many times a job killed by a spot interruption is re-run on GitHub
    /// (its re-run launches on-demand); 0: never. Counted along the chain of
    /// re-runs, so 1 means "once per job".
    pub reruns: u32,
    /// Interruptions within `breaker_window_secs` that switch the pool off spot
    /// for `breaker_cooldown_secs` (on-demand when `on_demand_fallback` allows
    /// it, else launches wait); 0: never.
    pub breaker_interruptions: u32,
    pub breaker_window_secs: u64,
    pub breaker_cooldown_secs: u64,
}

impl Default for SpotPolicy {
    fn default() -> Self {
        Self {
            reruns: 1,
            breaker_interruptions: 2,
            breaker_window_secs: 15 * 60,
            breaker_cooldown_secs: 30 * 60,
        }
    }
}
