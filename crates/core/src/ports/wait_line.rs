//! A pool's waiting line: the jobs that found the pool (or the global quota)
//! full, in GitHub's queue order. One ledger document per pool (a state
//! document `line/<pool>`), changed only by conditional writes, so concurrent
//! create-runner and stop-runner invocations agree on it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The most jobs one pool's line holds (the document stays well under
/// DynamoDB's 400 KB item limit); a job finding the line full falls back to a
/// delayed copy of its message.
pub const MAX_LINE: usize = 2_000;

/// The state-document key of `pool`'s line.
pub fn line_key(pool: &str) -> String {
    format!("line/{pool}")
}

/// One job in a line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiter {
    pub job_id: u64,
    /// GitHub's `created_at` (else when we first heard of it): the line's order.
    pub queued_at: DateTime<Utc>,
    /// When it entered the line.
    pub since: DateTime<Utc>,
    /// When its message was last sent to take a freed slot (`None`: not woken
    /// since it last entered the line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub woken_at: Option<DateTime<Utc>>,
}

/// A pool's line, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitLine {
    pub pool: String,
    #[serde(default)]
    pub waiters: Vec<Waiter>,
}

impl WaitLine {
    pub fn new(pool: &str) -> Self {
        Self {
            pool: pool.to_string(),
            waiters: Vec::new(),
        }
    }

    pub fn position(&self, job_id: u64) -> Option<usize> {
        self.waiters.iter().position(|w| w.job_id == job_id)
    }

    /// Put `waiter` in its place by (`queued_at`, `job_id`); a job already in
    /// line keeps its place and is no longer counted as woken. `false`: it was
    /// not in line and the line is full.
    pub fn enter(&mut self, waiter: Waiter) -> bool {
        if let Some(i) = self.position(waiter.job_id) {
            self.waiters[i].woken_at = None;
            return true;
        }
        if self.waiters.len() >= MAX_LINE {
            return false;
        }
        let at = self
            .waiters
            .partition_point(|w| (w.queued_at, w.job_id) < (waiter.queued_at, waiter.job_id));
        self.waiters.insert(at, waiter);
        true
    }

    /// Take `job_id` out; `false` when it was not in line.
    pub fn leave(&mut self, job_id: u64) -> bool {
        let before = self.waiters.len();
        self.waiters.retain(|w| w.job_id != job_id);
        self.waiters.len() != before
    }

    /// Which jobs to wake for `free` slots: a job woken less than `ttl` ago
    /// holds one of them (its message is on the way to take it); the oldest
    /// others get the rest. A woken job whose message did not take its slot
    /// within `ttl` is woken again (a second message is harmless: the claim
    /// lets one through).
    pub fn to_wake(&self, free: u32, now: DateTime<Utc>, ttl: chrono::Duration) -> Vec<u64> {
        let pending = self
            .waiters
            .iter()
            .filter(|w| w.woken_at.is_some_and(|t| now - t < ttl))
            .count();
        let n = (free as usize).saturating_sub(pending);
        self.waiters
            .iter()
            .filter(|w| w.woken_at.is_none_or(|t| now - t >= ttl))
            .take(n)
            .map(|w| w.job_id)
            .collect()
    }

    /// Mark `job_ids` (those still in line) woken at `now`; `false` when none was.
    pub fn mark_woken(&mut self, job_ids: &[u64], now: DateTime<Utc>) -> bool {
        let mut any = false;
        for w in self
            .waiters
            .iter_mut()
            .filter(|w| job_ids.contains(&w.job_id))
        {
            w.woken_at = Some(now);
            any = true;
        }
        any
    }

    /// Jobs in line (woken or not): what `status` calls waiting for capacity.
    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn waiter(job_id: u64, queued: i64) -> Waiter {
        Waiter {
            job_id,
            queued_at: at(queued),
            since: at(100),
            woken_at: None,
        }
    }

    #[test]
    fn jobs_line_up_in_github_queue_order_whatever_order_they_enter() {
        let mut line = WaitLine::new("p");
        for (job, queued) in [(3, 30), (1, 10), (4, 10), (2, 20)] {
            assert!(line.enter(waiter(job, queued)));
        }
        let order: Vec<u64> = line.waiters.iter().map(|w| w.job_id).collect();
        assert_eq!(order, vec![1, 4, 2, 3]);
        assert!(line.enter(waiter(2, 99)), "re-entering keeps the place");
        assert_eq!(line.position(2), Some(2));
        assert!(line.leave(4));
        assert!(!line.leave(4));
        assert_eq!(line.len(), 3);
    }

    #[test]
    fn wakes_the_oldest_for_free_slots_minus_those_already_woken() {
        let mut line = WaitLine::new("p");
        for job in 1..=5 {
            line.enter(waiter(job, job as i64));
        }
        let ttl = chrono::Duration::seconds(60);
        assert_eq!(line.to_wake(2, at(200), ttl), vec![1, 2]);
        assert!(line.mark_woken(&[1, 2], at(200)));
        // Two woken messages are on their way: two free slots wake nobody else.
        assert_eq!(line.to_wake(2, at(210), ttl), Vec::<u64>::new());
        assert_eq!(line.to_wake(3, at(210), ttl), vec![3]);
        // A wake that took no slot within the ttl is repeated, oldest first.
        assert_eq!(line.to_wake(1, at(300), ttl), vec![1]);
        // Entering again (the slot was taken by someone else) un-wakes it.
        line.enter(waiter(1, 1));
        assert_eq!(
            line.to_wake(1, at(210), ttl),
            Vec::<u64>::new(),
            "2 still holds the slot"
        );
        assert_eq!(line.to_wake(2, at(210), ttl), vec![1]);
        assert_eq!(line.to_wake(0, at(210), ttl), Vec::<u64>::new());
    }

    #[test]
    fn a_full_line_refuses_newcomers_but_not_its_members() {
        let mut line = WaitLine::new("p");
        for job in 0..MAX_LINE as u64 {
            assert!(line.enter(waiter(job, 0)));
        }
        assert!(!line.enter(waiter(u64::MAX, 0)));
        assert!(line.enter(waiter(7, 0)));
    }
}
