use async_trait::async_trait;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

/// Keeps the mover under its rate. The mover calls [`Pacer::pace`] before each
/// batch of moves with the time that batch takes at the configured rate; a real
/// pacer returns once the budgets of all earlier calls have elapsed (see
/// [`PaceSchedule`]), so by any moment `t` after the first call at most
/// `rate × t + one batch` jobs were moved. Tests record the budgets instead.
#[async_trait]
pub trait Pacer: Send + Sync {
    async fn pace(&self, budget: Duration);
}

/// A pacer that never waits (no rate limit).
pub struct NoPacer;

#[async_trait]
impl Pacer for NoPacer {
    async fn pace(&self, _budget: Duration) {}
}

/// The time `n` moves take at `rate` per second, rounded up to the nanosecond.
pub fn budget(n: usize, rate: NonZeroU32) -> Duration {
    let nanos = (n as u128 * 1_000_000_000).div_ceil(u128::from(rate.get()));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The bookkeeping of a real pacer, without the sleeping: each call reserves its
/// budget after the earlier ones and says how long to wait before starting.
#[derive(Debug, Default)]
pub struct PaceSchedule {
    ready_at: Option<Instant>,
}

impl PaceSchedule {
    /// Reserve `budget` at `now`; returns how long to wait first.
    pub fn reserve(&mut self, now: Instant, budget: Duration) -> Duration {
        let start = match self.ready_at {
            Some(ready) if ready > now => ready,
            _ => now,
        };
        self.ready_at = Some(start + budget);
        start - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn budget_is_moves_over_rate_rounded_up() {
        assert_eq!(budget(10, rate(50)), Duration::from_millis(200));
        assert_eq!(budget(0, rate(50)), Duration::ZERO);
        assert_eq!(budget(1, rate(3)), Duration::from_nanos(333_333_334));
        assert_eq!(budget(3, rate(1)), Duration::from_secs(3));
    }

    #[test]
    fn schedule_waits_for_earlier_budgets_only() {
        let t0 = Instant::now();
        let mut s = PaceSchedule::default();
        let ms = Duration::from_millis;
        // The first batch starts at once; the next waits for the first's budget.
        assert_eq!(s.reserve(t0, ms(200)), Duration::ZERO);
        assert_eq!(s.reserve(t0 + ms(50), ms(200)), ms(150));
        // Started at t0+200, budget to t0+400; a call at t0+450 waits for nothing.
        assert_eq!(s.reserve(t0 + ms(450), ms(100)), Duration::ZERO);
        // Idle time is not banked: the next budget counts from t0+450.
        assert_eq!(s.reserve(t0 + ms(460), ms(100)), ms(90));
    }
}
