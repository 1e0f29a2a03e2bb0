//! Every [`LedgerStore`] is a [`Ledger`]: read, decide ([`super::decide`]),
//! commit conditionally on the versions read, and on a lost race read again
//! (at most [`MAX_ATTEMPTS`] times).

use super::decide::{self, Change, Plan};
use crate::circuit::PoolHealth;
use crate::job::{JobMessage, JobStateUpdate};
use crate::ports::{
    CapacityUse, ClaimOutcome, Commit, Counter, Doc, DocKey, DocKind, DocUpdate, Expect,
    HealthUpdate, JobChange, JobRecord, JobStateSink, Ledger, LedgerStore, Limits, LineOutcome,
    PortError, ReserveOutcome, RunnerChange, RunnerRecord, RunnerState, WaitLine, Write, line_key,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// Lost races (or contended commits) before an operation gives up.
pub const MAX_ATTEMPTS: u32 = 25;

/// The documents one attempt read (absent ones are missing), and the
/// counters when the operation needs them.
#[derive(Default)]
pub struct Reads {
    docs: BTreeMap<DocKey, Doc>,
    counters: Option<CapacityUse>,
}

impl Reads {
    pub fn job(&self, job_id: u64) -> Option<&JobRecord> {
        match self.docs.get(&DocKey::Job(job_id)) {
            Some(Doc::Job(j)) => Some(j),
            _ => None,
        }
    }
    pub fn runner(&self, name: &str) -> Option<&RunnerRecord> {
        match self.docs.get(&DocKey::Runner(name.to_string())) {
            Some(Doc::Runner(r)) => Some(r),
            _ => None,
        }
    }
    pub fn health(&self, pool: &str) -> PoolHealth {
        match self.docs.get(&DocKey::Health(pool.to_string())) {
            Some(Doc::Health(h)) => h.clone(),
            _ => PoolHealth::new(pool),
        }
    }
    pub fn state_doc(&self, key: &str) -> Option<serde_json::Value> {
        match self.docs.get(&DocKey::State(key.to_string())) {
            Some(Doc::State { value, .. }) => Some(value.clone()),
            _ => None,
        }
    }
    /// `pool`'s waiting line (empty when there is none, or it cannot be read).
    pub fn line(&self, pool: &str) -> WaitLine {
        self.state_doc(&line_key(pool))
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_else(|| WaitLine::new(pool))
    }
    pub fn has(&self, key: &DocKey) -> bool {
        self.docs.contains_key(key)
    }
    pub fn counters(&self) -> CapacityUse {
        self.counters.clone().unwrap_or_default()
    }
}

/// What one operation reads before it decides.
struct Reading<'a> {
    what: String,
    keys: &'a [DocKey],
    counters: bool,
    /// The documents are almost always absent (a runner's name is new for
    /// each launch): the first attempt decides on nothing read and writes
    /// only if they still are, saving a read on the hot path; a refusal reads.
    expect_absent: bool,
}

fn write<V: Clone>(change: Change, versions: &BTreeMap<DocKey, V>) -> Write<V> {
    match change {
        Change::Put(doc) => {
            let expect = versions
                .get(&doc.key())
                .map_or(Expect::Absent, |v| Expect::Version(v.clone()));
            Write::Put { doc, expect }
        }
        Change::Set(doc) => Write::Put {
            doc,
            expect: Expect::Any,
        },
        Change::Delete(key) => Write::Delete(key),
        Change::Count(c) => Write::Count(c),
    }
}

/// Read, decide, commit; again when the commit lost a race. `SEVERAL`:
/// whether the operation's plans may hold more than one write (then
/// [`LedgerStore::commit`], a transaction), or at most one document write
/// ([`LedgerStore::commit_one`]). Known when compiling, so a Lambda that only
/// records job states (the webhook) carries no transaction code.
async fn run<const SEVERAL: bool, S, T, F>(
    store: &S,
    reading: Reading<'_>,
    decide: F,
) -> Result<T, PortError>
where
    S: LedgerStore + ?Sized,
    T: Clone + Send,
    F: Fn(&Reads) -> Result<Plan<T>, PortError> + Send + Sync,
{
    for attempt in 0..MAX_ATTEMPTS {
        let mut reads = Reads::default();
        let mut versions = BTreeMap::new();
        let assume_absent = reading.expect_absent && attempt == 0;
        for key in reading.keys.iter().filter(|_| !assume_absent) {
            if let Some((doc, version)) = store.read(key).await? {
                versions.insert(key.clone(), version);
                reads.docs.insert(key.clone(), doc);
            }
        }
        if reading.counters {
            reads.counters = Some(store.counters().await?);
        }
        let plan = decide(&reads)?;
        if plan.changes.is_empty() {
            if assume_absent {
                continue; // an answer without a write needs what is there
            }
            return Ok(plan.outcome);
        }
        let mut writes: Vec<_> = plan
            .changes
            .iter()
            .cloned()
            .map(|c| write(c, &versions))
            .collect();
        let committed = if SEVERAL {
            store.commit(writes).await?
        } else {
            match (writes.pop(), writes.is_empty()) {
                (Some(one @ Write::Put { .. }), true) => store.commit_one(one).await?,
                _ => {
                    return Err(PortError::rejected(
                        store.service(),
                        format!(
                            "{}: a one-document operation planned other writes",
                            reading.what
                        ),
                    ));
                }
            }
        };
        match committed {
            Commit::Done => return Ok(plan.outcome),
            Commit::Refused(i) => {
                if let Some(Some(answer)) = plan.refused.get(i) {
                    return Ok(answer.clone());
                }
            }
            Commit::Contended => {}
        }
        // Someone wrote meanwhile: read again (the first retry at once: it
        // usually finds the other writer's result and answers without a write).
        if attempt > 0 {
            store.pause(attempt).await;
        }
    }
    Err(PortError::Conflict {
        service: store.service(),
        message: format!(
            "{}: still contended after {MAX_ATTEMPTS} attempts",
            reading.what
        ),
    })
}

fn docs_only(what: String, keys: &[DocKey]) -> Reading<'_> {
    Reading {
        what,
        keys,
        counters: false,
        expect_absent: false,
    }
}

#[async_trait]
impl<S: LedgerStore> JobStateSink for S {
    async fn record_job_state(&self, update: &JobStateUpdate) -> Result<(), PortError> {
        self.enter("record_job_state")?;
        let keys = [DocKey::Job(update.job_id)];
        let what = format!("record state of job {}", update.job_id);
        run::<false, _, _, _>(self, docs_only(what, &keys), |r| {
            Ok(decide::record_job_state(r.job(update.job_id), update))
        })
        .await
    }
}

#[async_trait]
impl<S: LedgerStore> Ledger for S {
    async fn claim_job(
        &self,
        msg: &JobMessage,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<ClaimOutcome, PortError> {
        self.enter("claim_job")?;
        let keys = [DocKey::Job(msg.job_id)];
        let what = format!("claim job {}", msg.job_id);
        run::<false, _, _, _>(self, docs_only(what, &keys), |r| {
            Ok(decide::claim(r.job(msg.job_id), msg, now, lease))
        })
        .await
    }

    async fn get_job(&self, job_id: u64) -> Result<Option<JobRecord>, PortError> {
        self.enter("get_job")?;
        Ok(match self.read(&DocKey::Job(job_id)).await? {
            Some((Doc::Job(job), _)) => Some(job),
            _ => None,
        })
    }

    async fn update_job(
        &self,
        job_id: u64,
        change: &JobChange,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.enter("update_job")?;
        let keys = [DocKey::Job(job_id)];
        let service = self.service();
        run::<false, _, _, _>(
            self,
            docs_only(format!("update job {job_id}"), &keys),
            |r| decide::update_job(r.job(job_id), job_id, change, now, service),
        )
        .await
    }

    async fn list_jobs(&self) -> Result<Vec<JobRecord>, PortError> {
        self.enter("list_jobs")?;
        let mut jobs: Vec<JobRecord> = self
            .read_all(DocKind::Job)
            .await?
            .into_iter()
            .filter_map(|d| match d {
                Doc::Job(j) => Some(j),
                _ => None,
            })
            .collect();
        jobs.sort_by_key(|j| j.job_id);
        Ok(jobs)
    }

    async fn reserve(
        &self,
        runner: &RunnerRecord,
        limits: Limits,
    ) -> Result<ReserveOutcome, PortError> {
        self.enter("reserve")?;
        let keys = [DocKey::Runner(runner.name.clone())];
        let what = format!("reserve {}", runner.name);
        let reading = Reading {
            expect_absent: true,
            ..docs_only(what, &keys)
        };
        run::<true, _, _, _>(self, reading, |r| {
            Ok(decide::reserve(r.runner(&runner.name), runner, limits))
        })
        .await
    }

    async fn release(
        &self,
        runner_name: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        self.enter("release")?;
        let keys = [DocKey::Runner(runner_name.to_string())];
        let what = format!("release {runner_name}");
        run::<true, _, _, _>(self, docs_only(what, &keys), |r| {
            Ok(decide::release(r.runner(runner_name), reason, now))
        })
        .await
    }

    async fn get_runner(&self, name: &str) -> Result<Option<RunnerRecord>, PortError> {
        self.enter("get_runner")?;
        Ok(match self.read(&DocKey::Runner(name.to_string())).await? {
            Some((Doc::Runner(r), _)) => Some(r),
            _ => None,
        })
    }

    async fn update_runner(
        &self,
        name: &str,
        change: &RunnerChange,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.enter("update_runner")?;
        let keys = [DocKey::Runner(name.to_string())];
        let service = self.service();
        run::<false, _, _, _>(
            self,
            docs_only(format!("update runner {name}"), &keys),
            |r| decide::update_runner(r.runner(name), name, change, now, service),
        )
        .await
    }

    async fn list_runners(&self) -> Result<Vec<RunnerRecord>, PortError> {
        self.enter("list_runners")?;
        let mut runners: Vec<RunnerRecord> = self
            .read_all(DocKind::Runner)
            .await?
            .into_iter()
            .filter_map(|d| match d {
                Doc::Runner(r) => Some(r),
                _ => None,
            })
            .collect();
        runners.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(runners)
    }

    async fn transition_runner(
        &self,
        name: &str,
        from: &[RunnerState],
        change: &RunnerChange,
        now: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        self.enter("transition_runner")?;
        let keys = [DocKey::Runner(name.to_string())];
        let what = format!("transition runner {name}");
        run::<false, _, _, _>(self, docs_only(what, &keys), |r| {
            Ok(decide::transition_runner(r.runner(name), from, change, now))
        })
        .await
    }

    async fn capacity(&self) -> Result<CapacityUse, PortError> {
        self.enter("capacity")?;
        self.counters().await
    }

    async fn pool_use(&self, pool: &str) -> Result<(u32, u32), PortError> {
        self.enter("pool_use")?;
        let used = self.counter(&Counter::Pool(pool.to_string())).await?;
        Ok((used, self.counter(&Counter::Weight).await?))
    }

    async fn set_capacity(&self, counts: &CapacityUse) -> Result<(), PortError> {
        self.enter("set_capacity")?;
        let reading = Reading {
            what: "set capacity".into(),
            keys: &[],
            counters: true,
            expect_absent: false,
        };
        run::<true, _, _, _>(self, reading, |r| {
            Ok(decide::swap_counters(&r.counters(), counts, None))
        })
        .await
        .map(|_| ())
    }

    async fn repair_capacity(
        &self,
        seen: &CapacityUse,
        counts: &CapacityUse,
    ) -> Result<bool, PortError> {
        self.enter("repair_capacity")?;
        run::<true, _, _, _>(self, docs_only("repair capacity".into(), &[]), |_| {
            Ok(decide::swap_counters(seen, counts, Some(false)))
        })
        .await
    }

    async fn pool_health(&self, pool: &str) -> Result<PoolHealth, PortError> {
        self.enter("pool_health")?;
        Ok(match self.read(&DocKey::Health(pool.to_string())).await? {
            Some((Doc::Health(h), _)) => h,
            _ => PoolHealth::new(pool),
        })
    }

    async fn list_pool_health(&self) -> Result<Vec<PoolHealth>, PortError> {
        self.enter("list_pool_health")?;
        let mut all: Vec<PoolHealth> = self
            .read_all(DocKind::Health)
            .await?
            .into_iter()
            .filter_map(|d| match d {
                Doc::Health(h) => Some(h),
                _ => None,
            })
            .collect();
        all.sort_by(|a, b| a.pool.cmp(&b.pool));
        Ok(all)
    }

    async fn update_pool_health(
        &self,
        pool: &str,
        f: &HealthUpdate<'_>,
    ) -> Result<PoolHealth, PortError> {
        self.enter("update_pool_health")?;
        let keys = [DocKey::Health(pool.to_string())];
        let what = format!("update health of pool {pool}");
        run::<false, _, _, _>(self, docs_only(what, &keys), |r| {
            let mut health = r.health(pool);
            let changed = f(&mut health);
            Ok(decide::update_health(health, changed))
        })
        .await
    }

    async fn state_doc(&self, key: &str) -> Result<Option<serde_json::Value>, PortError> {
        self.enter("state_doc")?;
        Ok(match self.read(&DocKey::State(key.to_string())).await? {
            Some((Doc::State { value, .. }, _)) => Some(value),
            _ => None,
        })
    }

    async fn update_state_doc(
        &self,
        key: &str,
        f: &DocUpdate<'_>,
    ) -> Result<Option<serde_json::Value>, PortError> {
        self.enter("update_state_doc")?;
        let keys = [DocKey::State(key.to_string())];
        let service = self.service();
        let what = format!("update state document {key}");
        run::<false, _, _, _>(self, docs_only(what, &keys), |r| {
            let mut doc = r.state_doc(key);
            let changed = f(&mut doc);
            decide::update_state_doc(key, doc, changed, service)
        })
        .await
    }

    async fn enter_line(
        &self,
        pool: &str,
        job_id: u64,
        attempt: u32,
        now: DateTime<Utc>,
    ) -> Result<LineOutcome, PortError> {
        self.enter("enter_line")?;
        let keys = [DocKey::Job(job_id), DocKey::State(line_key(pool))];
        let what = format!("job {job_id} enters the line of pool {pool}");
        run::<true, _, _, _>(self, docs_only(what, &keys), |r| {
            Ok(decide::enter_line(
                r.job(job_id),
                r.line(pool),
                attempt,
                now,
            ))
        })
        .await
    }

    async fn waiting_line(&self, pool: &str) -> Result<WaitLine, PortError> {
        self.enter("waiting_line")?;
        let mut reads = Reads::default();
        let key = DocKey::State(line_key(pool));
        if let Some((doc, _)) = self.read(&key).await? {
            reads.docs.insert(key, doc);
        }
        Ok(reads.line(pool))
    }

    async fn mark_woken(
        &self,
        pool: &str,
        job_ids: &[u64],
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.enter("mark_woken")?;
        let keys = [DocKey::State(line_key(pool))];
        let what = format!("wake jobs of pool {pool}");
        run::<false, _, _, _>(self, docs_only(what, &keys), |r| {
            Ok(decide::mark_woken(r.line(pool), job_ids, now))
        })
        .await
    }

    async fn leave_line(&self, pool: &str, job_id: u64) -> Result<(), PortError> {
        self.enter("leave_line")?;
        let keys = [DocKey::State(line_key(pool))];
        let what = format!("job {job_id} leaves the line of pool {pool}");
        run::<false, _, _, _>(self, docs_only(what, &keys), |r| {
            Ok(decide::leave_line(r.line(pool), job_id))
        })
        .await
    }

    async fn drained_pools(&self) -> Result<BTreeSet<String>, PortError> {
        self.enter("drained_pools")?;
        Ok(self
            .read_all(DocKind::Drain)
            .await?
            .into_iter()
            .filter_map(|d| match d {
                Doc::Drain { pool, .. } => Some(pool),
                _ => None,
            })
            .collect())
    }

    async fn is_drained(&self, pool: &str) -> Result<bool, PortError> {
        self.enter("is_drained")?;
        Ok(self.read(&DocKey::Drain(pool.to_string())).await?.is_some())
    }

    async fn set_drained(
        &self,
        pool: &str,
        drained: bool,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.enter("set_drained")?;
        let keys = [DocKey::Drain(pool.to_string())];
        run::<true, _, _, _>(self, docs_only(format!("drain {pool}"), &keys), |r| {
            Ok(decide::set_drained(r.has(&keys[0]), pool, drained, now))
        })
        .await
    }
}
