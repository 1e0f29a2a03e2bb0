//! Random interleavings of claims, requeues, reservations and releases from
//! several clients of one ledger, checked against a model built from what
//! each client was told: the counters match the live runners (no lost
//! update), the caps are never passed, each (job, attempt) is claimed by at
//! most one client and the job ends at the highest attempt claimed, and each
//! runner is live exactly when it was reserved once more than released.
//!
//! Each store's tests run the clients as truly concurrently as the store
//! allows (one runtime over HTTP for DynamoDB, threads with their own
//! connections for SQLite, a yielding store in memory) and then call
//! [`check`].

use super::{ClaimOutcome, JobChange, JobState, Ledger, Limits, PortError, ReserveOutcome};
use crate::ports::ledger_contract::{base_time, job_message, runner};
use chrono::{DateTime, Duration, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// Runners per pool at once.
pub const POOL_MAX: u32 = 2;
/// Weight across pools at once.
pub const GLOBAL_MAX: u32 = 5;
const POOLS: [&str; 2] = ["a", "b"];
const RUNNERS_PER_POOL: u64 = 4;
const JOBS: u64 = 4;
const ATTEMPTS: u32 = 3;
/// Long enough that no lease runs out during a run: a claim of the same
/// attempt is always `Busy`.
const LEASE: Duration = Duration::hours(1);

/// One client's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Claim {
        job: u64,
        attempt: u32,
    },
    /// Mark the job `Requeued` if it is still at `attempt`.
    Requeue {
        job: u64,
        attempt: u32,
    },
    Reserve {
        runner: String,
    },
    Release {
        runner: String,
    },
}

/// What the client was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Told {
    Claimed,
    Busy,
    Duplicate,
    Reserve(ReserveOutcome),
    Released(bool),
    Updated,
    /// A requeue of a job no claim created yet.
    NotFound,
}

fn pool_of(name: &str) -> &str {
    name.split('-').nth(1).unwrap_or("a")
}

/// Weights 1–3, fixed per runner, so the model knows them.
fn weight_of(name: &str) -> u32 {
    let k: u32 = name
        .rsplit('-')
        .next()
        .and_then(|k| k.parse().ok())
        .unwrap_or(0);
    1 + k % 3
}

/// `n` random requests for client `client` of run `seed` (xorshift: no
/// dependency, same sequence everywhere).
pub fn ops(seed: u64, client: usize, n: usize) -> Vec<Op> {
    let mut x = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(client as u64 + 1)
        | 1;
    let mut next = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    (0..n)
        .map(|_| {
            let job = 1 + next(JOBS);
            let attempt = next(u64::from(ATTEMPTS)) as u32;
            let runner = format!(
                "ri-{}-{}",
                POOLS[next(POOLS.len() as u64) as usize],
                next(RUNNERS_PER_POOL)
            );
            match next(4) {
                0 => Op::Claim { job, attempt },
                1 => Op::Requeue { job, attempt },
                2 => Op::Reserve { runner },
                _ => Op::Release { runner },
            }
        })
        .collect()
}

/// The moment every client acts at (leases never run out within a run).
pub fn start() -> DateTime<Utc> {
    base_time()
}

/// Run one client's requests in order; any error but a requeue's `NotFound`
/// fails the check.
pub async fn client(l: &dyn Ledger, ops: &[Op], t0: DateTime<Utc>) -> Vec<(Op, Told)> {
    let mut told = Vec::with_capacity(ops.len());
    for op in ops {
        let answer = match op {
            Op::Claim { job, attempt } => {
                let msg = job_message(*job, "a", *attempt);
                match l.claim_job(&msg, t0, LEASE).await.expect("claim_job") {
                    ClaimOutcome::Claimed(_) => Told::Claimed,
                    ClaimOutcome::Busy(_) => Told::Busy,
                    ClaimOutcome::Duplicate(_) => Told::Duplicate,
                }
            }
            Op::Requeue { job, attempt } => {
                let change = JobChange {
                    state: Some(JobState::Requeued),
                    clear_lease: true,
                    only_at_attempt: Some(*attempt),
                    ..JobChange::default()
                };
                match l.update_job(*job, &change, t0).await {
                    Ok(()) => Told::Updated,
                    Err(PortError::NotFound { .. }) => Told::NotFound,
                    Err(e) => panic!("update_job {job}: {e}"),
                }
            }
            Op::Reserve { runner: name } => {
                let rec = runner(name, pool_of(name), 0, weight_of(name), t0);
                let limits = Limits {
                    pool_max: POOL_MAX,
                    weight: weight_of(name),
                    global_max_weight: Some(GLOBAL_MAX),
                };
                Told::Reserve(l.reserve(&rec, limits).await.expect("reserve"))
            }
            Op::Release { runner: name } => {
                Told::Released(l.release(name, "done", t0).await.expect("release"))
            }
        };
        told.push((op.clone(), answer));
    }
    told
}

/// Compare the ledger's final state with the model of what the clients were told.
pub async fn check(l: &dyn Ledger, told: &[Vec<(Op, Told)>]) {
    let all: Vec<&(Op, Told)> = told.iter().flatten().collect();

    // Runners: live exactly when reserved once more than released.
    let runners = l.list_runners().await.expect("list_runners");
    let live: BTreeMap<&str, u32> = runners
        .iter()
        .filter(|r| r.state != super::RunnerState::Released)
        .map(|r| (r.name.as_str(), r.weight))
        .collect();
    let mut balance: BTreeMap<&str, i64> = BTreeMap::new();
    for (op, answer) in &all {
        match (op, answer) {
            (Op::Reserve { runner }, Told::Reserve(ReserveOutcome::Reserved)) => {
                *balance.entry(runner).or_default() += 1
            }
            (Op::Release { runner }, Told::Released(true)) => {
                *balance.entry(runner).or_default() -= 1
            }
            _ => {}
        }
    }
    for (name, b) in &balance {
        let expected = i64::from(live.contains_key(name));
        assert_eq!(
            *b,
            expected,
            "runner {name}: reserved − released = {b}, but it is {}",
            if expected == 1 { "live" } else { "not live" }
        );
    }
    assert!(
        live.keys().all(|n| balance.contains_key(n)),
        "a live runner no client reserved: {live:?}"
    );

    // Counters: exactly the live runners, within the caps.
    let cap = l.capacity().await.expect("capacity");
    let mut pools: BTreeMap<String, u32> = BTreeMap::new();
    for name in live.keys() {
        *pools.entry(pool_of(name).to_string()).or_default() += 1;
    }
    let weight: u32 = live.values().sum();
    assert_eq!(cap.pools, pools, "pool counters are not the live runners");
    assert_eq!(
        cap.weight, weight,
        "the weight counter is not the live runners'"
    );
    assert!(
        pools.values().all(|n| *n <= POOL_MAX),
        "pool cap passed: {pools:?}"
    );
    assert!(weight <= GLOBAL_MAX, "global cap passed: {weight}");

    // Jobs: one winner per attempt, ending at the highest attempt claimed.
    let mut claims: BTreeMap<(u64, u32), usize> = BTreeMap::new();
    let mut requeued_at: BTreeSet<(u64, u32)> = BTreeSet::new();
    for (op, answer) in &all {
        match (op, answer) {
            (Op::Claim { job, attempt }, Told::Claimed) => {
                *claims.entry((*job, *attempt)).or_default() += 1
            }
            (Op::Requeue { job, attempt }, Told::Updated) => {
                requeued_at.insert((*job, *attempt));
            }
            _ => {}
        }
    }
    for ((job, attempt), n) in &claims {
        assert_eq!(*n, 1, "job {job} attempt {attempt} claimed by {n} clients");
    }
    let jobs = l.list_jobs().await.expect("list_jobs");
    let claimed_jobs: BTreeSet<u64> = claims.keys().map(|(j, _)| *j).collect();
    assert_eq!(
        jobs.iter().map(|j| j.job_id).collect::<BTreeSet<_>>(),
        claimed_jobs,
        "stored jobs are not the claimed ones"
    );
    for job in &jobs {
        let top = claims
            .keys()
            .filter(|(j, _)| *j == job.job_id)
            .map(|(_, a)| *a)
            .max();
        assert_eq!(
            Some(job.launch_attempt),
            top,
            "job {} ended at attempt {} (lost a claim?)",
            job.job_id,
            job.launch_attempt
        );
        match job.state {
            JobState::Claimed => {}
            JobState::Requeued => assert!(
                requeued_at.contains(&(job.job_id, job.launch_attempt)),
                "job {} requeued at attempt {} by no client",
                job.job_id,
                job.launch_attempt
            ),
            other => panic!("job {} in state {other:?}", job.job_id),
        }
    }
}
