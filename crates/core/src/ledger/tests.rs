//! Random operation sequences through the engine (on the memory store) against
//! a model written the plain way: a map of jobs, a map of runners, the counts
//! derived from the live runners. Every answer and the final state must agree.

use crate::fakes::MemoryLedger;
use crate::ports::ledger_contract::{base_time, job_message, runner};
use crate::ports::{
    CapacityUse, ClaimOutcome, JobChange, JobRecord, JobState, Ledger, Limits, PortError,
    ReserveOutcome, RunnerRecord, RunnerState,
};
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use std::collections::BTreeMap;

const POOL_MAX: u32 = 2;
const GLOBAL_MAX: u32 = 4;
const LEASE: Duration = Duration::seconds(60);

#[derive(Debug, Clone)]
enum Op {
    /// Claim `job` at `attempt`, `secs` after the previous operation.
    Claim {
        job: u64,
        attempt: u32,
        secs: i64,
    },
    Requeue {
        job: u64,
        attempt: u32,
    },
    Launch {
        job: u64,
    },
    Reserve {
        runner: u8,
    },
    Release {
        runner: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1..4u64, 0..3u32, 0..90i64).prop_map(|(job, attempt, secs)| Op::Claim {
            job,
            attempt,
            secs
        }),
        (1..4u64, 0..3u32).prop_map(|(job, attempt)| Op::Requeue { job, attempt }),
        (1..4u64).prop_map(|job| Op::Launch { job }),
        (0..6u8).prop_map(|runner| Op::Reserve { runner }),
        (0..6u8).prop_map(|runner| Op::Release { runner }),
    ]
}

fn runner_name(i: u8) -> String {
    format!("rm-{}-{i}", if i.is_multiple_of(2) { "a" } else { "b" })
}

fn runner_of(i: u8, now: DateTime<Utc>) -> RunnerRecord {
    let name = runner_name(i);
    runner(
        &name,
        if i.is_multiple_of(2) { "a" } else { "b" },
        0,
        1 + u32::from(i % 3),
        now,
    )
}

/// Jobs and runners in plain maps; capacity is counted from the live runners.
#[derive(Default)]
struct Model {
    jobs: BTreeMap<u64, JobRecord>,
    runners: BTreeMap<String, RunnerRecord>,
}

impl Model {
    fn live(&self) -> impl Iterator<Item = &RunnerRecord> {
        self.runners
            .values()
            .filter(|r| r.state != RunnerState::Released)
    }

    fn capacity(&self) -> CapacityUse {
        let mut cap = CapacityUse::default();
        for r in self.live() {
            *cap.pools.entry(r.pool.clone()).or_default() += 1;
            cap.weight += r.weight;
        }
        cap
    }

    fn claim(&mut self, job: u64, attempt: u32, now: DateTime<Utc>) -> ClaimOutcome {
        let msg = job_message(job, "a", attempt);
        let Some(rec) = self.jobs.get_mut(&job) else {
            let rec = JobRecord {
                job_id: job,
                pool: msg.pool.clone(),
                repository: msg.repository.clone(),
                state: JobState::Claimed,
                launch_attempt: attempt,
                runner_name: None,
                taken_by: None,
                lease_until: Some(now + LEASE),
                message: msg,
                created_at: now,
                updated_at: now,
                end_reason: None,
            };
            self.jobs.insert(job, rec.clone());
            return ClaimOutcome::Claimed(rec);
        };
        let live_lease = rec.lease_until.is_some_and(|l| l >= now);
        let takeable = matches!(
            rec.state,
            JobState::Claimed | JobState::Requeued | JobState::Launched
        );
        if rec.state == JobState::Claimed && live_lease {
            ClaimOutcome::Busy(rec.clone())
        } else if takeable && attempt > rec.launch_attempt {
            rec.state = JobState::Claimed;
            rec.launch_attempt = attempt;
            rec.message = msg;
            rec.lease_until = Some(now + LEASE);
            rec.updated_at = now;
            ClaimOutcome::Claimed(rec.clone())
        } else if rec.state == JobState::Claimed {
            rec.lease_until = Some(now + LEASE);
            rec.updated_at = now;
            ClaimOutcome::Claimed(rec.clone())
        } else {
            ClaimOutcome::Duplicate(rec.clone())
        }
    }

    fn update(&mut self, job: u64, change: &JobChange, now: DateTime<Utc>) -> Result<(), ()> {
        let rec = self.jobs.get_mut(&job).ok_or(())?;
        rec.apply(change, now);
        Ok(())
    }

    fn reserve(&mut self, r: RunnerRecord) -> ReserveOutcome {
        if self.live().any(|l| l.name == r.name) {
            return ReserveOutcome::AlreadyReserved;
        }
        let cap = self.capacity();
        if cap.pools.get(&r.pool).copied().unwrap_or(0) >= POOL_MAX {
            return ReserveOutcome::PoolFull;
        }
        if cap.weight + r.weight > GLOBAL_MAX {
            return ReserveOutcome::GlobalFull;
        }
        self.runners.insert(r.name.clone(), r);
        ReserveOutcome::Reserved
    }

    fn release(&mut self, name: &str, now: DateTime<Utc>) -> bool {
        match self.runners.get_mut(name) {
            Some(r) if r.state != RunnerState::Released => {
                r.state = RunnerState::Released;
                r.end_reason = Some("done".into());
                r.updated_at = now;
                true
            }
            _ => false,
        }
    }
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let ledger = MemoryLedger::new();
    let mut model = Model::default();
    let mut now = base_time();
    for op in ops {
        match op {
            Op::Claim { job, attempt, secs } => {
                now += Duration::seconds(secs);
                let msg = job_message(job, "a", attempt);
                let got = ledger.claim_job(&msg, now, LEASE).await.expect("claim");
                prop_assert_eq!(got, model.claim(job, attempt, now), "{:?}", op);
            }
            Op::Requeue { job, attempt } => {
                let change = JobChange {
                    state: Some(JobState::Requeued),
                    clear_lease: true,
                    only_at_attempt: Some(attempt),
                    ..JobChange::default()
                };
                let got = ledger.update_job(job, &change, now).await;
                let want = model.update(job, &change, now);
                prop_assert_eq!(
                    got.is_ok(),
                    want.is_ok(),
                    "requeue {} at {}: {:?}",
                    job,
                    attempt,
                    got
                );
                if let Err(e) = got {
                    prop_assert!(matches!(e, PortError::NotFound { .. }), "{e}");
                }
            }
            Op::Launch { job } => {
                let change = JobChange {
                    state: Some(JobState::Launched),
                    clear_lease: true,
                    runner_name: Some(format!("runner-{job}")),
                    ..JobChange::default()
                };
                let got = ledger.update_job(job, &change, now).await.is_ok();
                prop_assert_eq!(got, model.update(job, &change, now).is_ok());
            }
            Op::Reserve { runner } => {
                let r = runner_of(runner, now);
                let limits = Limits {
                    pool_max: POOL_MAX,
                    weight: r.weight,
                    global_max_weight: Some(GLOBAL_MAX),
                };
                let got = ledger.reserve(&r, limits).await.expect("reserve");
                prop_assert_eq!(got, model.reserve(r), "{:?}", op);
            }
            Op::Release { runner } => {
                let name = runner_name(runner);
                let got = ledger.release(&name, "done", now).await.expect("release");
                prop_assert_eq!(got, model.release(&name, now), "{:?}", op);
            }
        }
    }
    let jobs = ledger.list_jobs().await.expect("jobs");
    prop_assert_eq!(jobs, model.jobs.values().cloned().collect::<Vec<_>>());
    let runners = ledger.list_runners().await.expect("runners");
    prop_assert_eq!(runners, model.runners.values().cloned().collect::<Vec<_>>());
    prop_assert_eq!(ledger.capacity().await.expect("capacity"), model.capacity());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any sequence of claims, requeues, launches, reservations and releases:
    /// the engine answers as the model does, and ends in the model's state.
    #[test]
    fn operation_sequences_follow_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        futures::executor::block_on(run(ops))?;
    }
}
