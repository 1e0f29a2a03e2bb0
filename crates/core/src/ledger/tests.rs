//! Random operation sequences through the engine (on the memory store) against
//! a model written the plain way: a map of jobs, a map of runners, the counts
//! derived from the live runners. Every answer and the final state must agree.

use crate::fakes::MemoryLedger;
use crate::ports::ledger_contract::{base_time, job_message, runner};
use crate::ports::{
    CapacityUse, ClaimOutcome, JobChange, JobRecord, JobState, Ledger, Limits, LineOutcome,
    PortError, ReserveOutcome, RunnerRecord, RunnerState, Stage,
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
    /// The job's claimant puts it in its pool's waiting line.
    Wait {
        job: u64,
        attempt: u32,
    },
    Leave {
        job: u64,
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
        (1..4u64, 0..3u32).prop_map(|(job, attempt)| Op::Wait { job, attempt }),
        (1..4u64).prop_map(|job| Op::Leave { job }),
    ]
}

fn msg_received(job: u64) -> DateTime<Utc> {
    job_message(job, "a", 0).received_at
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
    /// Pool "a"'s waiting line: (queued_at, job) in order.
    line: Vec<u64>,
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
                timeline: Default::default(),
                conclusion: None,
                rerun: None,
                start_path: None,
            };
            let mut rec = rec;
            rec.timeline.set(Stage::Received, msg_received(job));
            rec.timeline.set(Stage::Claimed, now);
            self.jobs.insert(job, rec.clone());
            return ClaimOutcome::Claimed(rec);
        };
        let live_lease = rec.lease_until.is_some_and(|l| l >= now);
        let takeable = matches!(
            rec.state,
            JobState::Claimed | JobState::Requeued | JobState::Launched | JobState::Waiting
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
        } else if matches!(rec.state, JobState::Claimed | JobState::Waiting) {
            rec.state = JobState::Claimed;
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

    fn wait(&mut self, job: u64, attempt: u32, now: DateTime<Utc>) -> LineOutcome {
        let Some(rec) = self
            .jobs
            .get_mut(&job)
            .filter(|r| r.state == JobState::Claimed && r.launch_attempt == attempt)
        else {
            return LineOutcome::NotOurs;
        };
        rec.state = JobState::Waiting;
        rec.lease_until = None;
        rec.timeline.set_once(Stage::WaitingSince, now);
        rec.updated_at = now;
        if !self.line.contains(&job) {
            // Every job here was queued at the same time: the job id orders them.
            self.line.push(job);
            self.line.sort();
        }
        LineOutcome::Entered
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
            Op::Wait { job, attempt } => {
                let got = ledger
                    .enter_line("a", job, attempt, now)
                    .await
                    .expect("wait");
                prop_assert_eq!(got, model.wait(job, attempt, now), "{:?}", op);
            }
            Op::Leave { job } => {
                ledger.leave_line("a", job).await.expect("leave");
                model.line.retain(|j| *j != job);
            }
        }
    }
    let jobs = ledger.list_jobs().await.expect("jobs");
    prop_assert_eq!(jobs, model.jobs.values().cloned().collect::<Vec<_>>());
    let runners = ledger.list_runners().await.expect("runners");
    prop_assert_eq!(runners, model.runners.values().cloned().collect::<Vec<_>>());
    prop_assert_eq!(ledger.capacity().await.expect("capacity"), model.capacity());
    let line = ledger.waiting_line("a").await.expect("line");
    let order: Vec<u64> = line.waiters.iter().map(|w| w.job_id).collect();
    prop_assert_eq!(order, model.line);
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

// ------------------------------------------------- the decisions themselves

mod plans {
    use crate::ledger::decide::{self, Change};
    use crate::ports::ledger_contract::{base_time, runner};
    use crate::ports::{
        CapacityUse, Counter, CounterChange, Doc, Limits, ReserveOutcome, RunnerState,
    };

    fn limits(pool_max: u32, weight: u32, global: Option<u32>) -> Limits {
        Limits {
            pool_max,
            weight,
            global_max_weight: global,
        }
    }

    #[test]
    fn a_reservation_takes_a_slot_and_weight_and_names_each_refusal() {
        let r = runner("r-a-1", "a", 1, 3, base_time());
        let plan = decide::reserve(None, &r, limits(2, 3, Some(5)));
        assert_eq!(plan.outcome, ReserveOutcome::Reserved);
        assert_eq!(
            plan.changes[1..],
            [
                Change::Count(CounterChange::Take {
                    counter: Counter::Pool("a".into()),
                    amount: 1,
                    cap: Some(2),
                }),
                Change::Count(CounterChange::Take {
                    counter: Counter::Weight,
                    amount: 3,
                    cap: Some(5),
                }),
            ]
        );
        // The runner written first changed meanwhile: read again; a counter
        // refused: that cap is full.
        assert_eq!(
            plan.refused,
            [
                None,
                Some(ReserveOutcome::PoolFull),
                Some(ReserveOutcome::GlobalFull)
            ]
        );
    }

    #[test]
    fn reservations_no_counter_can_take_write_nothing() {
        let r = runner("r-a-1", "a", 1, 6, base_time());
        let full = decide::reserve(None, &r, limits(0, 1, None));
        assert!(full.changes.is_empty());
        assert_eq!(full.outcome, ReserveOutcome::PoolFull);
        let heavy = decide::reserve(None, &r, limits(2, 6, Some(5)));
        assert!(heavy.changes.is_empty());
        assert_eq!(heavy.outcome, ReserveOutcome::GlobalFull);
        let live = decide::reserve(Some(&r), &r, limits(2, 1, None));
        assert_eq!(live.outcome, ReserveOutcome::AlreadyReserved);
        assert!(live.changes.is_empty());
    }

    #[test]
    fn a_release_gives_back_what_the_runner_took_once() {
        let t0 = base_time();
        let mut r = runner("r-b-2", "b", 2, 2, t0);
        let plan = decide::release(Some(&r), "done", t0);
        assert!(plan.outcome);
        let Change::Put(Doc::Runner(marked)) = &plan.changes[0] else {
            panic!("{:?}", plan.changes[0]);
        };
        assert_eq!(marked.state, RunnerState::Released);
        assert_eq!(marked.end_reason.as_deref(), Some("done"));
        assert_eq!(
            plan.changes[2],
            Change::Count(CounterChange::Give {
                counter: Counter::Weight,
                amount: 2,
            })
        );
        r.state = RunnerState::Released;
        let again = decide::release(Some(&r), "done", t0);
        assert!(!again.outcome && again.changes.is_empty());
        let unknown = decide::release(None, "done", t0);
        assert!(!unknown.outcome && unknown.changes.is_empty());
    }

    #[test]
    fn a_repair_swaps_every_counter_seen_and_reports_a_moved_one() {
        let seen = CapacityUse {
            pools: [("a".to_string(), 2)].into(),
            weight: 4,
        };
        let counts = CapacityUse {
            pools: [("b".to_string(), 1)].into(),
            weight: 1,
        };
        let plan = decide::swap_counters(&seen, &counts, Some(false));
        assert_eq!(plan.changes.len(), 3, "a, b and the weight");
        assert!(plan.changes.contains(&Change::Count(CounterChange::Swap {
            counter: Counter::Pool("a".into()),
            from: 2,
            to: 0,
        })));
        assert!(plan.refused.iter().all(|r| *r == Some(false)));
        let set = decide::swap_counters(&seen, &counts, None);
        assert!(
            set.refused.iter().all(Option::is_none),
            "set_capacity reads again"
        );
    }

    #[test]
    fn flags_and_documents_write_only_what_changes() {
        let t0 = base_time();
        assert!(decide::set_drained(true, "a", true, t0).changes.is_empty());
        assert!(
            decide::set_drained(false, "a", false, t0)
                .changes
                .is_empty()
        );
        assert_eq!(decide::set_drained(false, "a", true, t0).changes.len(), 1);
        assert!(
            decide::update_state_doc("k", None, false, "ledger")
                .unwrap()
                .changes
                .is_empty()
        );
        let err = decide::update_state_doc("k", None, true, "ledger").unwrap_err();
        assert!(err.to_string().contains("cannot be unset"), "{err}");
    }
}
