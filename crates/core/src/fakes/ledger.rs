//! The ledger in memory: a [`LedgerStore`] behind one mutex, so every commit is
//! atomic; the rules are [`crate::ledger`]'s, as for DynamoDB and SQLite
//! ([`crate::ports::ledger_contract`] checks all three).

use crate::ports::{
    CapacityUse, Commit, Counter, CounterChange, Doc, DocKey, DocKind, Expect, JobRecord,
    LedgerStore, PortError, RunnerRecord, Write,
};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Default)]
struct State {
    docs: BTreeMap<DocKey, (Doc, u64)>,
    counters: BTreeMap<Counter, u32>,
    next_version: u64,
    calls: BTreeMap<&'static str, usize>,
    fail_once: Vec<String>,
}

/// A ledger in memory. `set_failing(true)` makes every call fail as if DynamoDB
/// were down; [`MemoryLedger::calls`] counts calls per ledger operation (failed
/// ones included).
#[derive(Default)]
pub struct MemoryLedger {
    state: Mutex<State>,
    fail: AtomicBool,
}

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
        self.lock().put(Doc::Job(record));
    }

    /// Insert or replace a runner record as is, counters untouched (test setup).
    pub fn put_runner(&self, record: RunnerRecord) {
        self.lock().put(Doc::Runner(record));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn put(&mut self, doc: Doc) {
        self.next_version += 1;
        self.docs.insert(doc.key(), (doc, self.next_version));
    }

    fn count(&self, counter: &Counter) -> u32 {
        self.counters.get(counter).copied().unwrap_or(0)
    }

    /// Does `write` hold against the state as it is?
    fn holds(&self, write: &Write<u64>) -> bool {
        match write {
            Write::Put { doc, expect } => {
                let stored = self.docs.get(&doc.key()).map(|(_, v)| *v);
                match expect {
                    Expect::Absent => stored.is_none(),
                    Expect::Version(v) => stored == Some(*v),
                    Expect::Any => true,
                }
            }
            Write::Count(CounterChange::Take {
                counter,
                amount,
                cap,
            }) => cap.is_none_or(|cap| {
                u64::from(self.count(counter)) + u64::from(*amount) <= u64::from(cap)
            }),
            Write::Count(CounterChange::Swap { counter, from, .. }) => self.count(counter) == *from,
            Write::Delete(_) | Write::Count(CounterChange::Give { .. }) => true,
        }
    }

    fn apply(&mut self, write: Write<u64>) {
        match write {
            Write::Put { doc, .. } => self.put(doc),
            Write::Delete(key) => {
                self.docs.remove(&key);
            }
            Write::Count(CounterChange::Take {
                counter, amount, ..
            }) => {
                let n = self.count(&counter).saturating_add(amount);
                self.counters.insert(counter, n);
            }
            Write::Count(CounterChange::Give { counter, amount }) => {
                let n = self.count(&counter).saturating_sub(amount);
                self.counters.insert(counter, n);
            }
            Write::Count(CounterChange::Swap { counter, to, .. }) => {
                self.counters.insert(counter, to);
            }
        }
    }
}

/// Let other tasks run once (as a network round trip would), so concurrent
/// calls interleave between their read and their commit and really race.
pub(super) async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

#[async_trait]
impl LedgerStore for MemoryLedger {
    type Version = u64;

    fn service(&self) -> &'static str {
        "ledger"
    }

    /// Count the call and fail it when told to.
    fn enter(&self, op: &'static str) -> Result<(), PortError> {
        let mut st = self.lock();
        *st.calls.entry(op).or_default() += 1;
        let once = st.fail_once.iter().position(|m| m == op);
        if let Some(i) = once {
            st.fail_once.remove(i);
        }
        if once.is_some() || self.fail.load(Ordering::SeqCst) {
            return Err(PortError::unavailable(
                "ledger",
                "connection refused (fake)",
            ));
        }
        Ok(())
    }

    async fn read(&self, key: &DocKey) -> Result<Option<(Doc, u64)>, PortError> {
        yield_now().await;
        Ok(self.lock().docs.get(key).cloned())
    }

    async fn read_all(&self, kind: DocKind) -> Result<Vec<Doc>, PortError> {
        Ok(self
            .lock()
            .docs
            .iter()
            .filter(|(k, _)| k.kind() == kind)
            .map(|(_, (d, _))| d.clone())
            .collect())
    }

    async fn counters(&self) -> Result<CapacityUse, PortError> {
        let st = self.lock();
        let mut cap = CapacityUse::default();
        for (counter, n) in &st.counters {
            match counter {
                Counter::Pool(pool) if *n > 0 => {
                    cap.pools.insert(pool.clone(), *n);
                }
                Counter::Pool(_) => {}
                Counter::Weight => cap.weight = *n,
            }
        }
        Ok(cap)
    }

    async fn commit(&self, writes: Vec<Write<u64>>) -> Result<Commit, PortError> {
        yield_now().await;
        let mut st = self.lock();
        if let Some(i) = writes.iter().position(|w| !st.holds(w)) {
            return Ok(Commit::Refused(i));
        }
        for w in writes {
            st.apply(w);
        }
        Ok(Commit::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Ledger;
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
        transition_runner_only_if_written_at,
        bind_runner_only_for_job,
        repair_capacity_only_if_unchanged,
        pool_health_no_lost_update,
        state_doc_no_lost_update,
    );

    /// Four clients at once, 60 requests each, over 25 seeds: the final state
    /// is what the clients were told ([`crate::ports::ledger_interleave`]).
    #[tokio::test]
    async fn random_interleavings_match_the_model() {
        use crate::ports::ledger_interleave as il;
        for seed in 1..=25 {
            let l = MemoryLedger::new();
            let t0 = il::start();
            let plans: Vec<_> = (0..4).map(|c| il::ops(seed, c, 60)).collect();
            let told =
                futures::future::join_all(plans.iter().map(|ops| il::client(&l, ops, t0))).await;
            il::check(&l, &told).await;
        }
    }

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
