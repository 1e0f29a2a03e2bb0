//! The ledger in memory: one mutex over jobs, runners and counters, so every call is
//! atomic. Follows the same contract as the DynamoDB ledger
//! ([`crate::ports::ledger_contract`]).

use crate::circuit::PoolHealth;
use crate::job::{JobMessage, JobStateUpdate};
use crate::ports::{
    CapacityUse, ClaimDecision, ClaimOutcome, DocUpdate, HealthUpdate, JobChange, JobRecord,
    JobStateSink, Ledger, Limits, PortError, ReserveOutcome, RunnerChange, RunnerRecord,
    RunnerState, decide_claim,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Default)]
struct State {
    jobs: BTreeMap<u64, JobRecord>,
    runners: BTreeMap<String, RunnerRecord>,
    pools: BTreeMap<String, u32>,
    weight: u32,
    drained: BTreeSet<String>,
    health: BTreeMap<String, PoolHealth>,
    docs: BTreeMap<String, serde_json::Value>,
    calls: BTreeMap<&'static str, usize>,
    fail_once: Vec<String>,
}

/// A [`Ledger`] in memory. `set_failing(true)` makes every call fail as if DynamoDB
/// were down; [`MemoryLedger::calls`] counts calls per method (failed ones included).
#[derive(Default)]
pub struct MemoryLedger {
    state: Mutex<State>,
    fail: AtomicBool,
}

const SERVICE: &str = "ledger";

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_failing(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }

    /// Make the next call of `method` fail (as if DynamoDB were down once).
    pub fn fail_next(&self, method: &str) {
        self.lock().fail_once.push(method.to_string());
    }

    /// How many times `method` (e.g. `"reserve"`, `"claim_job"`) was called.
    pub fn calls(&self, method: &str) -> usize {
        self.lock().calls.get(method).copied().unwrap_or(0)
    }

    /// Insert or replace a job record as is (test setup).
    pub fn put_job(&self, record: JobRecord) {
        self.lock().jobs.insert(record.job_id, record);
    }

    /// Insert or replace a runner record as is, counters untouched (test setup).
    pub fn put_runner(&self, record: RunnerRecord) {
        self.lock().runners.insert(record.name.clone(), record);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count the call and fail it when told to; the guard is the call's transaction.
    fn begin(&self, method: &'static str) -> Result<std::sync::MutexGuard<'_, State>, PortError> {
        let mut st = self.lock();
        *st.calls.entry(method).or_default() += 1;
        let once = st.fail_once.iter().position(|m| m == method);
        if let Some(i) = once {
            st.fail_once.remove(i);
        }
        if once.is_some() || self.fail.load(Ordering::SeqCst) {
            return Err(PortError::unavailable(SERVICE, "connection refused (fake)"));
        }
        Ok(st)
    }
}

fn not_found(what: String) -> PortError {
    PortError::NotFound {
        service: SERVICE,
        what,
    }
}

#[async_trait]
impl JobStateSink for MemoryLedger {
    async fn record_job_state(&self, update: &JobStateUpdate) -> Result<(), PortError> {
        let mut st = self.begin("record_job_state")?;
        let Some(job) = st.jobs.get_mut(&update.job_id) else {
            return Ok(());
        };
        job.observe(update);
        Ok(())
    }
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn claim_job(
        &self,
        msg: &JobMessage,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<ClaimOutcome, PortError> {
        let mut st = self.begin("claim_job")?;
        match decide_claim(st.jobs.get(&msg.job_id), msg, now, lease) {
            ClaimDecision::Take(record) => {
                st.jobs.insert(msg.job_id, record.clone());
                Ok(ClaimOutcome::Claimed(record))
            }
            ClaimDecision::Report(outcome) => Ok(outcome),
        }
    }

    async fn get_job(&self, job_id: u64) -> Result<Option<JobRecord>, PortError> {
        let st = self.begin("get_job")?;
        Ok(st.jobs.get(&job_id).cloned())
    }

    async fn update_job(
        &self,
        job_id: u64,
        change: &JobChange,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let mut st = self.begin("update_job")?;
        let job = st
            .jobs
            .get_mut(&job_id)
            .ok_or_else(|| not_found(format!("job {job_id}")))?;
        job.apply(change, now);
        Ok(())
    }

    async fn list_jobs(&self) -> Result<Vec<JobRecord>, PortError> {
        let st = self.begin("list_jobs")?;
        Ok(st.jobs.values().cloned().collect())
    }

    async fn reserve(
        &self,
        runner: &RunnerRecord,
        limits: Limits,
    ) -> Result<ReserveOutcome, PortError> {
        let mut st = self.begin("reserve")?;
        if st
            .runners
            .get(&runner.name)
            .is_some_and(|r| r.state != RunnerState::Released)
        {
            return Ok(ReserveOutcome::AlreadyReserved);
        }
        if st.pools.get(&runner.pool).copied().unwrap_or(0) >= limits.pool_max {
            return Ok(ReserveOutcome::PoolFull);
        }
        if let Some(max) = limits.global_max_weight
            && u64::from(st.weight) + u64::from(limits.weight) > u64::from(max)
        {
            return Ok(ReserveOutcome::GlobalFull);
        }
        *st.pools.entry(runner.pool.clone()).or_default() += 1;
        st.weight = st.weight.saturating_add(limits.weight);
        let mut record = runner.clone();
        record.state = RunnerState::Reserved;
        record.weight = limits.weight;
        st.runners.insert(record.name.clone(), record);
        Ok(ReserveOutcome::Reserved)
    }

    async fn release(
        &self,
        runner_name: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        let mut st = self.begin("release")?;
        let Some(runner) = st.runners.get_mut(runner_name) else {
            return Ok(false);
        };
        if runner.state == RunnerState::Released {
            return Ok(false);
        }
        runner.state = RunnerState::Released;
        runner.end_reason = Some(reason.to_string());
        runner.updated_at = now;
        let (pool, weight) = (runner.pool.clone(), runner.weight);
        if let Some(count) = st.pools.get_mut(&pool) {
            *count = count.saturating_sub(1);
        }
        st.weight = st.weight.saturating_sub(weight);
        Ok(true)
    }

    async fn get_runner(&self, name: &str) -> Result<Option<RunnerRecord>, PortError> {
        let st = self.begin("get_runner")?;
        Ok(st.runners.get(name).cloned())
    }

    async fn update_runner(
        &self,
        name: &str,
        change: &RunnerChange,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let mut st = self.begin("update_runner")?;
        let runner = st
            .runners
            .get_mut(name)
            .ok_or_else(|| not_found(format!("runner {name}")))?;
        runner.apply(change, now);
        Ok(())
    }

    async fn list_runners(&self) -> Result<Vec<RunnerRecord>, PortError> {
        let st = self.begin("list_runners")?;
        Ok(st.runners.values().cloned().collect())
    }

    async fn capacity(&self) -> Result<CapacityUse, PortError> {
        let st = self.begin("capacity")?;
        Ok(CapacityUse {
            pools: st
                .pools
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(p, n)| (p.clone(), *n))
                .collect(),
            weight: st.weight,
        })
    }

    async fn set_capacity(&self, counts: &CapacityUse) -> Result<(), PortError> {
        let mut st = self.begin("set_capacity")?;
        st.pools = counts.pools.clone();
        st.weight = counts.weight;
        Ok(())
    }

    async fn transition_runner(
        &self,
        name: &str,
        from: &[RunnerState],
        change: &RunnerChange,
        now: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        let mut st = self.begin("transition_runner")?;
        match st.runners.get_mut(name) {
            Some(runner) if from.contains(&runner.state) => {
                runner.apply(change, now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn repair_capacity(
        &self,
        seen: &CapacityUse,
        counts: &CapacityUse,
    ) -> Result<bool, PortError> {
        let mut st = self.begin("repair_capacity")?;
        let now_pools: BTreeMap<String, u32> = st
            .pools
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        if now_pools != seen.pools || st.weight != seen.weight {
            return Ok(false);
        }
        st.pools = counts.pools.clone();
        st.weight = counts.weight;
        Ok(true)
    }

    async fn pool_health(&self, pool: &str) -> Result<PoolHealth, PortError> {
        let st = self.begin("pool_health")?;
        Ok(st
            .health
            .get(pool)
            .cloned()
            .unwrap_or_else(|| PoolHealth::new(pool)))
    }

    async fn list_pool_health(&self) -> Result<Vec<PoolHealth>, PortError> {
        Ok(self
            .begin("list_pool_health")?
            .health
            .values()
            .cloned()
            .collect())
    }

    async fn update_pool_health(
        &self,
        pool: &str,
        f: &HealthUpdate<'_>,
    ) -> Result<PoolHealth, PortError> {
        let mut st = self.begin("update_pool_health")?;
        let mut health = st
            .health
            .get(pool)
            .cloned()
            .unwrap_or_else(|| PoolHealth::new(pool));
        if f(&mut health) {
            st.health.insert(pool.to_string(), health.clone());
        }
        Ok(health)
    }

    async fn state_doc(&self, key: &str) -> Result<Option<serde_json::Value>, PortError> {
        Ok(self.begin("state_doc")?.docs.get(key).cloned())
    }

    async fn update_state_doc(
        &self,
        key: &str,
        f: &DocUpdate<'_>,
    ) -> Result<Option<serde_json::Value>, PortError> {
        let mut st = self.begin("update_state_doc")?;
        let mut doc = st.docs.get(key).cloned();
        if f(&mut doc) {
            let Some(value) = doc.clone() else {
                return Err(PortError::rejected(
                    "ledger",
                    "a state document cannot be unset",
                ));
            };
            st.docs.insert(key.to_string(), value);
        }
        Ok(doc)
    }

    async fn drained_pools(&self) -> Result<BTreeSet<String>, PortError> {
        Ok(self.begin("drained_pools")?.drained.clone())
    }

    async fn set_drained(&self, pool: &str, drained: bool) -> Result<(), PortError> {
        let mut st = self.begin("set_drained")?;
        if drained {
            st.drained.insert(pool.to_string());
        } else {
            st.drained.remove(pool);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ledger_contract as contract;

    macro_rules! contract_tests {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test]
            async fn $name() {
                contract::$name(&MemoryLedger::new()).await;
            }
        )*};
    }

    contract_tests!(
        claim_new_busy_duplicate,
        claim_after_lease_expiry,
        claim_requeued_needs_higher_attempt,
        claim_final_states_are_duplicates,
        update_and_get,
        reserve_pool_cap,
        reserve_global_cap_mixed_weights,
        reserve_already_reserved,
        release_idempotent,
        counters_never_negative,
        set_capacity_overwrites,
        list_all,
        record_job_state_ordering,
        concurrent_reserves_respect_pool_cap,
        concurrent_reserves_respect_global_cap,
        concurrent_claims_one_winner,
        concurrent_releases_one_winner,
        drain_flags,
        claim_launched_by_higher_attempt,
        update_only_at_attempt,
        transition_runner_compare_and_set,
        repair_capacity_only_if_unchanged,
        pool_health_no_lost_update,
        state_doc_no_lost_update,
    );

    #[tokio::test]
    async fn run_all_passes() {
        contract::run_all(|| async { MemoryLedger::new() }).await;
    }

    #[tokio::test]
    async fn counts_calls_and_fails_on_demand() {
        let l = MemoryLedger::new();
        assert_eq!(l.get_job(1).await.unwrap(), None);
        assert_eq!(l.get_job(2).await.unwrap(), None);
        assert_eq!(l.calls("get_job"), 2);
        assert_eq!(l.calls("reserve"), 0);
        l.set_failing(true);
        let err = l.list_runners().await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert_eq!(l.calls("list_runners"), 1);
        l.set_failing(false);
        assert!(l.list_runners().await.unwrap().is_empty());
    }
}
