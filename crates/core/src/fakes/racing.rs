//! A ledger wrapper that lets another handler act in the middle of a janitor
//! pass: two hooks, each run once — right after the runners are listed (as if
//! create-runner ran just then), and just before the counters are written (as
//! if a reservation landed just then). Everything else goes to the inner
//! ledger (memory, SQLite or DynamoDB).

use crate::circuit::PoolHealth;
use crate::job::{JobMessage, JobStateUpdate};
use crate::ports::{
    CapacityUse, ClaimOutcome, HealthUpdate, JobChange, JobRecord, JobStateSink, Ledger, Limits,
    PortError, ReserveOutcome, RunnerChange, RunnerRecord, RunnerState,
};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use futures::future::BoxFuture;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// Something to do once, in the middle of a call.
pub type Hook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

pub struct RacingLedger {
    inner: Arc<dyn Ledger>,
    after_list_runners: Mutex<Option<Hook>>,
    before_counter_write: Mutex<Option<Hook>>,
}

impl RacingLedger {
    pub fn new(
        inner: Arc<dyn Ledger>,
        after_list_runners: Option<Hook>,
        before_counter_write: Option<Hook>,
    ) -> Self {
        Self {
            inner,
            after_list_runners: Mutex::new(after_list_runners),
            before_counter_write: Mutex::new(before_counter_write),
        }
    }

    async fn fire(slot: &Mutex<Option<Hook>>) {
        let hook = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(hook) = hook {
            hook().await;
        }
    }
}

#[async_trait]
impl JobStateSink for RacingLedger {
    async fn record_job_state(&self, u: &JobStateUpdate) -> Result<(), PortError> {
        self.inner.record_job_state(u).await
    }
}

#[async_trait]
impl Ledger for RacingLedger {
    async fn claim_job(
        &self,
        msg: &JobMessage,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<ClaimOutcome, PortError> {
        self.inner.claim_job(msg, now, lease).await
    }
    async fn get_job(&self, id: u64) -> Result<Option<JobRecord>, PortError> {
        self.inner.get_job(id).await
    }
    async fn update_job(
        &self,
        id: u64,
        change: &JobChange,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.inner.update_job(id, change, now).await
    }
    async fn list_jobs(&self) -> Result<Vec<JobRecord>, PortError> {
        self.inner.list_jobs().await
    }
    async fn reserve(&self, r: &RunnerRecord, l: Limits) -> Result<ReserveOutcome, PortError> {
        self.inner.reserve(r, l).await
    }
    async fn release(&self, n: &str, why: &str, now: DateTime<Utc>) -> Result<bool, PortError> {
        self.inner.release(n, why, now).await
    }
    async fn get_runner(&self, n: &str) -> Result<Option<RunnerRecord>, PortError> {
        self.inner.get_runner(n).await
    }
    async fn update_runner(
        &self,
        n: &str,
        change: &RunnerChange,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.inner.update_runner(n, change, now).await
    }
    async fn list_runners(&self) -> Result<Vec<RunnerRecord>, PortError> {
        let runners = self.inner.list_runners().await;
        Self::fire(&self.after_list_runners).await;
        runners
    }
    async fn transition_runner(
        &self,
        n: &str,
        from: &[RunnerState],
        change: &RunnerChange,
        now: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        self.inner.transition_runner(n, from, change, now).await
    }
    async fn capacity(&self) -> Result<CapacityUse, PortError> {
        self.inner.capacity().await
    }
    async fn pool_use(&self, pool: &str) -> Result<(u32, u32), PortError> {
        self.inner.pool_use(pool).await
    }
    async fn set_capacity(&self, counts: &CapacityUse) -> Result<(), PortError> {
        Self::fire(&self.before_counter_write).await;
        self.inner.set_capacity(counts).await
    }
    async fn repair_capacity(
        &self,
        seen: &CapacityUse,
        counts: &CapacityUse,
    ) -> Result<bool, PortError> {
        Self::fire(&self.before_counter_write).await;
        self.inner.repair_capacity(seen, counts).await
    }
    async fn pool_health(&self, pool: &str) -> Result<PoolHealth, PortError> {
        self.inner.pool_health(pool).await
    }
    async fn list_pool_health(&self) -> Result<Vec<PoolHealth>, PortError> {
        self.inner.list_pool_health().await
    }
    async fn update_pool_health(
        &self,
        pool: &str,
        f: &HealthUpdate<'_>,
    ) -> Result<PoolHealth, PortError> {
        self.inner.update_pool_health(pool, f).await
    }
    async fn state_doc(&self, key: &str) -> Result<Option<serde_json::Value>, PortError> {
        self.inner.state_doc(key).await
    }
    async fn update_state_doc(
        &self,
        key: &str,
        f: &crate::ports::DocUpdate<'_>,
    ) -> Result<Option<serde_json::Value>, PortError> {
        self.inner.update_state_doc(key, f).await
    }
    async fn enter_line(
        &self,
        pool: &str,
        job_id: u64,
        attempt: u32,
        now: DateTime<Utc>,
    ) -> Result<crate::ports::LineOutcome, PortError> {
        self.inner.enter_line(pool, job_id, attempt, now).await
    }
    async fn waiting_line(&self, pool: &str) -> Result<crate::ports::WaitLine, PortError> {
        self.inner.waiting_line(pool).await
    }
    async fn mark_woken(
        &self,
        pool: &str,
        ids: &[u64],
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.inner.mark_woken(pool, ids, now).await
    }
    async fn leave_line(&self, pool: &str, job_id: u64) -> Result<(), PortError> {
        self.inner.leave_line(pool, job_id).await
    }
    async fn drained_pools(&self) -> Result<BTreeSet<String>, PortError> {
        self.inner.drained_pools().await
    }
    async fn set_drained(
        &self,
        pool: &str,
        drained: bool,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.inner.set_drained(pool, drained, now).await
    }
}
