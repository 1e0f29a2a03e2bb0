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
mod tests;
