//! A pool's circuit breaker against runaway relaunches: runners that end before
//! their job starts (a broken runner command, AMI or startup script) are start
//! failures; `threshold` of them in a row within `window` open the circuit, and
//! the pool launches nothing for `cooldown`. Then it half-opens: one launch (a
//! probe) is let through; a failure of any runner re-opens it, a runner that
//! runs its job (or a probe window without a failure) closes it.
//!
//! Pure decisions over a [`PoolHealth`] record; the ledger only stores the
//! record (`Ledger::update_pool_health`, a versioned read-modify-write).

use crate::config::RelaunchPolicy;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// How many failed runners a record keeps (enough to dedup late duplicates).
const KEEP_FAILURES: usize = 32;

/// One runner that ended before its job started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartFailure {
    pub runner_name: String,
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// The circuit breaker record of one pool (ledger `health#<pool>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolHealth {
    pub pool: String,
    /// Start failures since the last runner that ran its job, oldest first.
    #[serde(default)]
    pub failures: Vec<StartFailure>,
    /// Open until then; after it, half-open.
    #[serde(default)]
    pub open_until: Option<DateTime<Utc>>,
    /// Half-open: the probe launch let through, and until when it may take.
    #[serde(default)]
    pub probe_until: Option<DateTime<Utc>>,
    /// How many times the circuit opened (for status and metrics).
    #[serde(default)]
    pub times_opened: u32,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    /// Spot interruptions of the pool's runners within the breaker's window
    /// (`crate::spot_breaker`), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interruptions: Vec<crate::spot_breaker::Interruption>,
    /// The spot breaker is open until then: no spot launches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot_off_until: Option<DateTime<Utc>>,
    /// How many times the spot breaker opened (for status and metrics).
    #[serde(default)]
    pub spot_breaks: u32,
}

/// Where the circuit stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open { until: DateTime<Utc> },
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen => "half-open",
        }
    }
}

/// May a launch of the pool go ahead now?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Go,
    /// Half-open: this launch is the probe.
    Probe,
    /// Open (or a probe is in flight): wait until about `until`.
    Wait {
        until: DateTime<Utc>,
        reason: String,
    },
}

impl PoolHealth {
    pub fn new(pool: &str) -> Self {
        Self {
            pool: pool.to_string(),
            ..Self::default()
        }
    }

    pub fn state(&self, now: DateTime<Utc>) -> CircuitState {
        match self.open_until {
            Some(until) if until > now => CircuitState::Open { until },
            Some(_) => CircuitState::HalfOpen,
            None => CircuitState::Closed,
        }
    }

    /// The newest failure's reason.
    pub fn last_reason(&self) -> Option<&str> {
        self.failures.last().map(|f| f.reason.as_str())
    }

    /// Decide on one launch; `true` in the second place when the record changed.
    pub fn admit(&mut self, now: DateTime<Utc>, policy: &RelaunchPolicy) -> (Admission, bool) {
        match self.state(now) {
            CircuitState::Closed => (Admission::Go, false),
            CircuitState::Open { until } => (
                Admission::Wait {
                    until,
                    reason: self.open_reason(),
                },
                false,
            ),
            CircuitState::HalfOpen => match self.probe_until {
                Some(t) if t > now => (
                    Admission::Wait {
                        until: t,
                        reason: format!("{}; a probe launch is in flight", self.open_reason()),
                    },
                    false,
                ),
                Some(_) => {
                    // The probe's window passed without a start failure.
                    self.close(now);
                    (Admission::Go, true)
                }
                None => {
                    self.probe_until = Some(now + secs(policy.probe_window_secs()));
                    self.updated_at = Some(now);
                    (Admission::Probe, true)
                }
            },
        }
    }

    /// A runner of the pool ended before its job started. Idempotent per runner.
    pub fn record_failure(
        &mut self,
        runner_name: &str,
        reason: &str,
        now: DateTime<Utc>,
        policy: &RelaunchPolicy,
    ) -> bool {
        if self.failures.iter().any(|f| f.runner_name == runner_name) {
            return false;
        }
        let window = secs(policy.circuit_window_secs);
        self.failures.retain(|f| now - f.at <= window);
        self.failures.push(StartFailure {
            runner_name: runner_name.to_string(),
            at: now,
            reason: reason.to_string(),
        });
        if self.failures.len() > KEEP_FAILURES {
            self.failures.remove(0);
        }
        let reopen = match self.state(now) {
            CircuitState::HalfOpen => true,
            CircuitState::Closed => {
                policy.circuit_failures > 0
                    && self.failures.len() >= policy.circuit_failures as usize
            }
            CircuitState::Open { .. } => false,
        };
        if reopen {
            self.open_until = Some(now + secs(policy.circuit_cooldown_secs));
            self.probe_until = None;
            self.times_opened += 1;
        }
        self.updated_at = Some(now);
        true
    }

    /// A runner of the pool ran its job: the failures are no longer in a row.
    pub fn record_success(&mut self, now: DateTime<Utc>) -> bool {
        if self.failures.is_empty() && self.open_until.is_none() {
            return false;
        }
        self.close(now);
        true
    }

    fn close(&mut self, now: DateTime<Utc>) {
        self.failures.clear();
        self.open_until = None;
        self.probe_until = None;
        self.updated_at = Some(now);
    }

    fn open_reason(&self) -> String {
        format!(
            "pool {} paused: {} runners in a row ended before their job started (last: {})",
            self.pool,
            self.failures.len(),
            self.last_reason().unwrap_or("unknown")
        )
    }
}

fn secs(s: u64) -> Duration {
    Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RelaunchPolicy {
        RelaunchPolicy {
            circuit_failures: 3,
            circuit_window_secs: 600,
            circuit_cooldown_secs: 300,
            ..RelaunchPolicy::default()
        }
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn opens_after_threshold_failures_in_a_row() {
        let p = policy();
        let mut h = PoolHealth::new("p");
        assert!(h.record_failure("r1", "exit 1", t(0), &p));
        assert!(h.record_failure("r2", "exit 1", t(1), &p));
        assert_eq!(h.state(t(2)), CircuitState::Closed);
        assert!(h.record_failure("r3", "exit 1", t(2), &p));
        assert_eq!(h.state(t(3)), CircuitState::Open { until: t(302) });
        assert!(matches!(h.admit(t(3), &p).0, Admission::Wait { .. }));
        assert_eq!(h.times_opened, 1);
    }

    #[test]
    fn the_same_runner_counts_once() {
        let p = policy();
        let mut h = PoolHealth::new("p");
        assert!(h.record_failure("r1", "a", t(0), &p));
        assert!(!h.record_failure("r1", "a", t(1), &p));
        assert!(!h.record_failure("r1", "a", t(2), &p));
        assert_eq!(h.failures.len(), 1);
        assert_eq!(h.state(t(3)), CircuitState::Closed);
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let p = policy();
        let mut h = PoolHealth::new("p");
        h.record_failure("r1", "a", t(0), &p);
        h.record_failure("r2", "a", t(1), &p);
        h.record_failure("r3", "a", t(700), &p);
        assert_eq!(h.state(t(701)), CircuitState::Closed);
        assert_eq!(h.failures.len(), 1);
    }

    #[test]
    fn a_success_breaks_the_row() {
        let p = policy();
        let mut h = PoolHealth::new("p");
        h.record_failure("r1", "a", t(0), &p);
        h.record_failure("r2", "a", t(1), &p);
        assert!(h.record_success(t(2)));
        h.record_failure("r3", "a", t(3), &p);
        assert_eq!(h.state(t(4)), CircuitState::Closed);
        assert!(!PoolHealth::new("p").record_success(t(5)));
    }

    #[test]
    fn half_open_lets_one_probe_through_and_a_failure_reopens() {
        let p = policy();
        let mut h = PoolHealth::new("p");
        for (i, r) in ["r1", "r2", "r3"].iter().enumerate() {
            h.record_failure(r, "a", t(i as i64), &p);
        }
        assert_eq!(h.state(t(400)), CircuitState::HalfOpen);
        assert_eq!(h.admit(t(400), &p), (Admission::Probe, true));
        assert!(matches!(
            h.admit(t(401), &p),
            (Admission::Wait { .. }, false)
        ));
        assert!(h.record_failure("r4", "a", t(402), &p));
        assert_eq!(h.state(t(403)), CircuitState::Open { until: t(702) });
        assert_eq!(h.times_opened, 2);
    }

    #[test]
    fn a_probe_window_without_failure_closes() {
        let p = policy();
        let mut h = PoolHealth::new("p");
        for (i, r) in ["r1", "r2", "r3"].iter().enumerate() {
            h.record_failure(r, "a", t(i as i64), &p);
        }
        assert_eq!(h.admit(t(400), &p).0, Admission::Probe);
        let after = t(400 + p.probe_window_secs() as i64 + 1);
        assert_eq!(h.admit(after, &p), (Admission::Go, true));
        assert_eq!(h.state(after), CircuitState::Closed);
        assert!(h.failures.is_empty());
    }

    #[test]
    fn zero_threshold_never_opens() {
        let p = RelaunchPolicy {
            circuit_failures: 0,
            ..policy()
        };
        let mut h = PoolHealth::new("p");
        for i in 0..10 {
            h.record_failure(&format!("r{i}"), "a", t(i), &p);
        }
        assert_eq!(h.state(t(11)), CircuitState::Closed);
    }
}
