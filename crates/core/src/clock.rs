//! One clock per handler invocation.
//!
//! The rule: a handler reads the wall clock once, at its entry (the Lambda
//! binary, `serve`'s worker, the CLI command), and passes that `now` down.
//! Everything below either takes `now` as a parameter or moves it on by the
//! monotonic time spent since ([`Elapsed`]), never by reading the wall clock
//! again. So a test that builds its records at a fixed instant and hands the
//! same instant (or [`ManualClock`]) to every step runs the same next year as
//! today: nothing inside compares a fixed date with the machine's date.
//!
//! The few places that still read the wall clock deep inside say why beside
//! the call: they talk to a service whose own clock is the wall clock (EMF
//! timestamps CloudWatch checks against its time, SendCommand's real-time
//! deadline, a DynamoDB version that only has to be unique) or they are that
//! service (the local backend's processes, the fake GitHub).
//!
//! `scripts/test.sh` runs the fast suites once more a year ahead under
//! libfaketime, which catches a test that mixes the two.

use chrono::{DateTime, Utc};
use std::sync::Mutex;
use std::time::Instant;

/// Where a long-lived component (a fake, a worker) gets the time.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told: for tests that build records at a
/// fixed instant and drive every step at that instant or later.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Mutex::new(at))
    }

    /// Move the clock forward by `by` (backward when negative).
    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock().unwrap() += by;
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap() = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// An invocation's `now` moved on by the real (monotonic) time spent since,
/// so the stage stamps of one delivery are in order and measure the steps,
/// while a test that passes a fixed `now` stays at that instant plus
/// milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Elapsed {
    now: DateTime<Utc>,
    started: Instant,
}

impl Elapsed {
    pub fn start(now: DateTime<Utc>) -> Self {
        Self {
            now,
            started: Instant::now(),
        }
    }

    /// The `now` this clock started at.
    pub fn started_at(&self) -> DateTime<Utc> {
        self.now
    }

    /// The start plus the time spent since.
    pub fn at(&self) -> DateTime<Utc> {
        self.now + chrono::Duration::from_std(self.started.elapsed()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let t0: DateTime<Utc> = "2026-11-26T10:00:00Z".parse().unwrap();
        let c = ManualClock::new(t0);
        assert_eq!(c.now(), t0);
        c.advance(chrono::Duration::hours(25));
        assert_eq!(c.now(), t0 + chrono::Duration::hours(25));
        c.set(t0);
        assert_eq!(c.now(), t0);
    }

    #[test]
    fn elapsed_moves_a_fixed_start_on_by_the_time_spent_only() {
        let t0: DateTime<Utc> = "2026-11-26T10:00:00Z".parse().unwrap();
        let e = Elapsed::start(t0);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let at = e.at();
        assert!(at >= t0 + chrono::Duration::milliseconds(20), "{at}");
        // However late the machine's date, a fixed start stays near itself.
        assert!(at < t0 + chrono::Duration::minutes(1), "{at}");
        assert_eq!(e.started_at(), t0);
    }

    /// `scripts/test-moved-clock.sh` runs this first, under libfaketime, with
    /// the real time in `SPOTRUNNER_REAL_NOW`: a moved-clock run whose clock did
    /// not move would prove nothing.
    #[test]
    #[ignore = "run by scripts/test-moved-clock.sh under libfaketime"]
    fn the_moved_clock_run_sees_a_date_a_year_ahead() {
        let real: i64 = std::env::var("SPOTRUNNER_REAL_NOW")
            .expect("SPOTRUNNER_REAL_NOW (epoch seconds) is set by scripts/test-moved-clock.sh")
            .parse()
            .expect("SPOTRUNNER_REAL_NOW is epoch seconds");
        let ahead = SystemClock.now().timestamp() - real;
        assert!(
            ahead > 300 * 86_400,
            "the clock is only {ahead} s ahead of the real time: libfaketime is not in effect"
        );
    }
}
