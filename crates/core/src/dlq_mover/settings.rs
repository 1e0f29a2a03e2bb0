use std::num::NonZeroU32;
use std::time::Duration;

/// Knobs of the dlq-mover (defaults in [`Settings::default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// At most this many messages are received per run.
    pub max_per_run: usize,
    /// At most this many jobs are put back on the jobs queue per second.
    pub rate_per_second: NonZeroU32,
    /// How long a received message stays hidden from other receivers (another
    /// mover running at the same time) while this one handles it.
    pub visibility_timeout: Duration,
    /// Jobs queued longer ago than this are dropped: GitHub cancels a job that
    /// waited 24 h for a runner.
    pub max_job_age: chrono::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_per_run: 1000,
            rate_per_second: NonZeroU32::new(50).expect("non-zero"),
            visibility_timeout: Duration::from_secs(60),
            max_job_age: chrono::Duration::hours(24),
        }
    }
}
