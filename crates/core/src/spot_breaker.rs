//! The spot circuit breaker of a pool: `spot.breaker_interruptions` spot
//! interruptions within `spot.breaker_window_secs` switch the pool off spot
//! for `spot.breaker_cooldown_secs` — its launches go on-demand when the pool
//! allows on-demand (`on_demand_fallback`), else they wait — and then it
//! closes by itself (a point in time, nothing to reset).
//!
//! The record is the pool's circuit record (`PoolHealth`, ledger
//! `health#<pool>`), which create-runner reads for every launch anyway, so the
//! breaker costs no extra read. stop-runner records interruptions
//! (`Ledger::update_pool_health`, idempotent per runner).

use crate::circuit::PoolHealth;
use crate::config::{CapacityType, Pool, SpotPolicy};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// How many interruptions a record keeps (enough to dedup late duplicates).
const KEEP_INTERRUPTIONS: usize = 32;

/// One runner a spot interruption warning was received for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interruption {
    pub runner_name: String,
    pub at: DateTime<Utc>,
}

/// What a launch of the pool may use now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpotChoice {
    /// The pool's own capacity type.
    AsConfigured,
    /// On-demand: the breaker is open and the pool allows on-demand.
    OnDemand { reason: String },
    /// The breaker is open and the pool allows no on-demand: wait until then.
    Wait {
        until: DateTime<Utc>,
        reason: String,
    },
}

impl PoolHealth {
    /// Is the spot breaker open at `now`? Until when.
    pub fn spot_off(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.spot_off_until.filter(|until| *until > now)
    }

    /// Record a spot interruption warning for `runner_name` (idempotent per
    /// runner); `true` when the record changed. Opens the breaker when the
    /// window holds `breaker_interruptions` of them.
    pub fn record_interruption(
        &mut self,
        runner_name: &str,
        now: DateTime<Utc>,
        policy: &SpotPolicy,
    ) -> bool {
        if self
            .interruptions
            .iter()
            .any(|i| i.runner_name == runner_name)
        {
            return false;
        }
        let window = secs(policy.breaker_window_secs);
        self.interruptions.retain(|i| now - i.at <= window);
        self.interruptions.push(Interruption {
            runner_name: runner_name.to_string(),
            at: now,
        });
        if self.interruptions.len() > KEEP_INTERRUPTIONS {
            self.interruptions.remove(0);
        }
        if policy.breaker_interruptions > 0
            && self.spot_off(now).is_none()
            && self.interruptions.len() >= policy.breaker_interruptions as usize
        {
            self.spot_off_until = Some(now + secs(policy.breaker_cooldown_secs));
            self.spot_breaks += 1;
            // The next window starts empty: the interruptions that opened it are spent.
            self.interruptions.retain(|i| i.runner_name == runner_name);
        }
        self.updated_at = Some(now);
        true
    }

    /// How a launch of `pool` may use spot now.
    pub fn spot_choice(&self, pool: &Pool, now: DateTime<Utc>) -> SpotChoice {
        if pool.capacity_type != CapacityType::Spot {
            return SpotChoice::AsConfigured;
        }
        let Some(until) = self.spot_off(now) else {
            return SpotChoice::AsConfigured;
        };
        let reason = format!(
            "spot breaker open until {}: {} spot interruptions within {} min",
            until.format("%H:%M:%SZ"),
            pool.spot.breaker_interruptions,
            pool.spot.breaker_window_secs / 60
        );
        if pool.on_demand_fallback {
            SpotChoice::OnDemand { reason }
        } else {
            SpotChoice::Wait {
                until,
                reason: format!("{reason}; the pool allows no on-demand, so launches wait"),
            }
        }
    }
}

fn secs(s: u64) -> Duration {
    Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn pool(on_demand_fallback: bool) -> Pool {
        let mut p = Config::from_json(
            r#"{"deployment":"sr","github":{"auth":{"type":"pat","token":"value:x"}},
                "webhook":{"secrets":["value:s"]},
                "pools":[{"name":"cpu","labels":["linux"],"launch_template":"lt",
                          "instance_types":["m7i.large"],"subnets":["subnet-1"],"max_runners":3}]}"#,
        )
        .unwrap()
        .pools
        .remove(0);
        p.on_demand_fallback = on_demand_fallback;
        p
    }

    fn t(mins: i64) -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::minutes(mins)
    }

    #[test]
    fn two_interruptions_in_the_window_switch_to_on_demand_then_it_closes_by_itself() {
        let p = pool(true);
        let mut h = PoolHealth::new("cpu");
        assert!(h.record_interruption("r1", t(0), &p.spot));
        assert_eq!(h.spot_choice(&p, t(1)), SpotChoice::AsConfigured);
        // A duplicate warning for the same runner counts once.
        assert!(!h.record_interruption("r1", t(1), &p.spot));
        assert_eq!(h.spot_choice(&p, t(1)), SpotChoice::AsConfigured);
        assert!(h.record_interruption("r2", t(10), &p.spot));
        assert_eq!(h.spot_breaks, 1);
        assert!(matches!(
            h.spot_choice(&p, t(11)),
            SpotChoice::OnDemand { .. }
        ));
        assert!(matches!(
            h.spot_choice(&p, t(39)),
            SpotChoice::OnDemand { .. }
        ));
        // 30 minutes after it opened (t 10), spot again.
        assert_eq!(h.spot_choice(&p, t(40)), SpotChoice::AsConfigured);
    }

    #[test]
    fn interruptions_outside_the_window_do_not_add_up() {
        let p = pool(true);
        let mut h = PoolHealth::new("cpu");
        h.record_interruption("r1", t(0), &p.spot);
        h.record_interruption("r2", t(16), &p.spot);
        assert_eq!(h.spot_choice(&p, t(17)), SpotChoice::AsConfigured);
        assert_eq!(h.spot_breaks, 0);
    }

    #[test]
    fn without_on_demand_launches_wait_and_on_demand_pools_never_change() {
        let p = pool(false);
        let mut h = PoolHealth::new("cpu");
        h.record_interruption("r1", t(0), &p.spot);
        h.record_interruption("r2", t(1), &p.spot);
        match h.spot_choice(&p, t(2)) {
            SpotChoice::Wait { until, reason } => {
                assert_eq!(until, t(31));
                assert!(reason.contains("allows no on-demand"), "{reason}");
            }
            other => panic!("expected Wait, got {other:?}"),
        }
        let mut od = pool(false);
        od.capacity_type = CapacityType::OnDemand;
        assert_eq!(h.spot_choice(&od, t(2)), SpotChoice::AsConfigured);
        let mut off = pool(true);
        off.spot.breaker_interruptions = 0;
        let mut h2 = PoolHealth::new("cpu");
        h2.record_interruption("r1", t(0), &off.spot);
        h2.record_interruption("r2", t(1), &off.spot);
        assert_eq!(h2.spot_choice(&off, t(2)), SpotChoice::AsConfigured);
    }
}
