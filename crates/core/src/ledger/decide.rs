//! Every ledger rule, once: `(records as read, request, now) → (changes, outcome)`.
//! Pure functions; [`super::engine`] reads, calls one of these, commits the
//! changes conditionally on what it read, and reads again if a commit lost a race.

use crate::circuit::PoolHealth;
use crate::job::{JobMessage, JobStateUpdate};
use crate::ports::{
    CapacityUse, ClaimOutcome, Counter, CounterChange, Doc, DocKey, JobChange, JobRecord, JobState,
    Limits, LineOutcome, PortError, ReserveOutcome, RunnerChange, RunnerRecord, RunnerState, Stage,
    Timeline, WaitLine, Waiter, line_key,
};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

/// One change a decision asks for; the engine turns it into a store write
/// guarded by the version it read.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Write the document if it is still as read (absent if none was read).
    Put(Doc),
    /// Write the document whatever is there (a flag).
    Set(Doc),
    Delete(DocKey),
    Count(CounterChange),
}

/// A decision: the changes to commit together, the answer once they commit
/// (or at once when there are none), and for each change the answer when its
/// condition fails (`None`: read again and decide again).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan<T> {
    pub changes: Vec<Change>,
    pub outcome: T,
    pub refused: Vec<Option<T>>,
}

impl<T> Plan<T> {
    /// No change: answer `outcome`.
    pub fn answer(outcome: T) -> Self {
        Self {
            changes: Vec::new(),
            outcome,
            refused: Vec::new(),
        }
    }

    /// Commit `changes`; any refusal means "read again".
    pub fn commit(changes: Vec<Change>, outcome: T) -> Self {
        let refused = changes.iter().map(|_| None).collect();
        Self {
            changes,
            outcome,
            refused,
        }
    }
}

/// The claim rule: a new job is taken; a `Claimed` one whose lease ran out is
/// resumed, and so is a `Waiting` one (its wake, or a copy of its message); a `Requeued` or `Launched` one is taken again by a message with a
/// higher launch attempt (a requeue sends the message *before* it marks the job
/// `Requeued`, so the message may arrive while the job still says `Launched`);
/// anything else is `Busy` (live lease) or a `Duplicate`.
pub fn claim(
    existing: Option<&JobRecord>,
    msg: &JobMessage,
    now: DateTime<Utc>,
    lease: chrono::Duration,
) -> Plan<ClaimOutcome> {
    let Some(rec) = existing else {
        let mut timeline = Timeline::default();
        if let Some(t) = msg.queued_at {
            timeline.set(Stage::Created, t);
        }
        timeline.set(Stage::Received, msg.received_at);
        timeline.set(Stage::Claimed, now);
        return take(JobRecord {
            job_id: msg.job_id,
            pool: msg.pool.clone(),
            repository: msg.repository.clone(),
            state: JobState::Claimed,
            launch_attempt: msg.launch_attempt,
            runner_name: None,
            taken_by: None,
            lease_until: Some(now + lease),
            message: msg.clone(),
            created_at: now,
            updated_at: now,
            end_reason: None,
            timeline,
            conclusion: None,
            rerun: None,
            start_path: None,
        });
    };
    match rec.state {
        JobState::Claimed if rec.lease_until.is_some_and(|l| l >= now) => {
            Plan::answer(ClaimOutcome::Busy(rec.clone()))
        }
        JobState::Claimed | JobState::Requeued | JobState::Launched | JobState::Waiting
            if rec.launch_attempt < msg.launch_attempt =>
        {
            let mut next = rec.clone();
            next.state = JobState::Claimed;
            next.launch_attempt = msg.launch_attempt;
            next.message = msg.clone();
            next.lease_until = Some(now + lease);
            next.updated_at = now;
            take(next)
        }
        // Woken from its pool's waiting line (or a copy of its message).
        JobState::Claimed | JobState::Waiting => {
            let mut next = rec.clone();
            next.state = JobState::Claimed;
            next.lease_until = Some(now + lease);
            next.updated_at = now;
            take(next)
        }
        _ => Plan::answer(ClaimOutcome::Duplicate(rec.clone())),
    }
}

fn take(record: JobRecord) -> Plan<ClaimOutcome> {
    Plan::commit(
        vec![Change::Put(Doc::Job(record.clone()))],
        ClaimOutcome::Claimed(record),
    )
}

/// Apply `change` to the job (only while `change.only_at_attempt` and
/// `change.only_for_runner` hold).
pub fn update_job(
    existing: Option<&JobRecord>,
    job_id: u64,
    change: &JobChange,
    now: DateTime<Utc>,
    service: &'static str,
) -> Result<Plan<()>, PortError> {
    let mut job = existing.cloned().ok_or_else(|| PortError::NotFound {
        service,
        what: format!("job {job_id}"),
    })?;
    if !job.apply(change, now) {
        return Ok(Plan::answer(()));
    }
    Ok(Plan::commit(vec![Change::Put(Doc::Job(job))], ()))
}

/// Record what GitHub says of a job; a job the ledger never saw is ignored
/// (not ours), and a late `in_progress` never undoes a final state.
pub fn record_job_state(existing: Option<&JobRecord>, update: &JobStateUpdate) -> Plan<()> {
    let Some(mut job) = existing.cloned() else {
        return Plan::answer(());
    };
    if !job.observe(update) {
        return Plan::answer(());
    }
    Plan::commit(vec![Change::Put(Doc::Job(job))], ())
}

/// Create the runner (`Reserved`) and take one slot of its pool and `weight`
/// of the global quota, all or nothing. A runner that holds a reservation
/// already (a retried step) is `AlreadyReserved`; a released one may reserve
/// again.
pub fn reserve(
    existing: Option<&RunnerRecord>,
    runner: &RunnerRecord,
    limits: Limits,
) -> Plan<ReserveOutcome> {
    if existing.is_some_and(|r| r.state != RunnerState::Released) {
        return Plan::answer(ReserveOutcome::AlreadyReserved);
    }
    if limits.pool_max == 0 {
        return Plan::answer(ReserveOutcome::PoolFull);
    }
    if limits
        .global_max_weight
        .is_some_and(|max| limits.weight > max)
    {
        return Plan::answer(ReserveOutcome::GlobalFull);
    }
    let mut record = runner.clone();
    record.state = RunnerState::Reserved;
    record.weight = limits.weight;
    Plan {
        changes: vec![
            Change::Put(Doc::Runner(record)),
            Change::Count(CounterChange::Take {
                counter: Counter::Pool(runner.pool.clone()),
                amount: 1,
                cap: Some(limits.pool_max),
            }),
            Change::Count(CounterChange::Take {
                counter: Counter::Weight,
                amount: limits.weight,
                cap: limits.global_max_weight,
            }),
        ],
        outcome: ReserveOutcome::Reserved,
        // The runner changed since it was read: read again.
        refused: vec![
            None,
            Some(ReserveOutcome::PoolFull),
            Some(ReserveOutcome::GlobalFull),
        ],
    }
}

/// Mark the runner `Released` and give its capacity back, together; `false`
/// (nothing changes) when it is unknown or released already.
pub fn release(existing: Option<&RunnerRecord>, reason: &str, now: DateTime<Utc>) -> Plan<bool> {
    let Some(runner) = existing.filter(|r| r.state != RunnerState::Released) else {
        return Plan::answer(false);
    };
    let mut next = runner.clone();
    next.state = RunnerState::Released;
    next.end_reason = Some(reason.to_string());
    next.updated_at = now;
    Plan::commit(
        vec![
            Change::Put(Doc::Runner(next)),
            Change::Count(CounterChange::Give {
                counter: Counter::Pool(runner.pool.clone()),
                amount: 1,
            }),
            Change::Count(CounterChange::Give {
                counter: Counter::Weight,
                amount: runner.weight,
            }),
        ],
        true,
    )
}

/// Apply `change` to a runner that exists.
pub fn update_runner(
    existing: Option<&RunnerRecord>,
    name: &str,
    change: &RunnerChange,
    now: DateTime<Utc>,
    service: &'static str,
) -> Result<Plan<()>, PortError> {
    let mut runner = existing.cloned().ok_or_else(|| PortError::NotFound {
        service,
        what: format!("runner {name}"),
    })?;
    if !runner.apply(change, now) {
        return Ok(Plan::answer(()));
    }
    Ok(Plan::commit(vec![Change::Put(Doc::Runner(runner))], ()))
}

/// Compare-and-set: apply `change` only while the runner is in one of `from`
/// (and was last written when `change.only_if_written_at` says).
pub fn transition_runner(
    existing: Option<&RunnerRecord>,
    from: &[RunnerState],
    change: &RunnerChange,
    now: DateTime<Utc>,
) -> Plan<bool> {
    let Some(mut runner) = existing.filter(|r| from.contains(&r.state)).cloned() else {
        return Plan::answer(false);
    };
    if !runner.apply(change, now) {
        return Plan::answer(false);
    }
    Plan::commit(vec![Change::Put(Doc::Runner(runner))], true)
}

/// Move every counter from `seen` to `counts`, each only if it still holds
/// what was seen: `refused_answer` is the answer when one moved meanwhile
/// (`None`: read again, as `set_capacity` does).
pub fn swap_counters(
    seen: &CapacityUse,
    counts: &CapacityUse,
    refused_answer: Option<bool>,
) -> Plan<bool> {
    let pools: BTreeSet<&String> = seen.pools.keys().chain(counts.pools.keys()).collect();
    let mut changes: Vec<Change> = pools
        .into_iter()
        .map(|pool| {
            Change::Count(CounterChange::Swap {
                counter: Counter::Pool(pool.clone()),
                from: seen.pools.get(pool).copied().unwrap_or(0),
                to: counts.pools.get(pool).copied().unwrap_or(0),
            })
        })
        .collect();
    changes.push(Change::Count(CounterChange::Swap {
        counter: Counter::Weight,
        from: seen.weight,
        to: counts.weight,
    }));
    let refused = changes.iter().map(|_| refused_answer).collect();
    Plan {
        changes,
        outcome: true,
        refused,
    }
}

/// Read-modify-write of a pool's circuit record: written only when `changed`.
pub fn update_health(next: PoolHealth, changed: bool) -> Plan<PoolHealth> {
    if !changed {
        return Plan::answer(next);
    }
    Plan::commit(vec![Change::Put(Doc::Health(next.clone()))], next)
}

/// Read-modify-write of a task's state document: written only when
/// `changed`; a document cannot be unset.
pub fn update_state_doc(
    key: &str,
    next: Option<serde_json::Value>,
    changed: bool,
    service: &'static str,
) -> Result<Plan<Option<serde_json::Value>>, PortError> {
    if !changed {
        return Ok(Plan::answer(next));
    }
    let Some(value) = next.clone() else {
        return Err(PortError::rejected(
            service,
            "a state document cannot be unset",
        ));
    };
    Ok(Plan::commit(
        vec![Change::Put(Doc::State {
            key: key.to_string(),
            value,
        })],
        next,
    ))
}

/// Drain (a flag: kept as it is when set already) or undrain a pool.
pub fn set_drained(already: bool, pool: &str, drained: bool, now: DateTime<Utc>) -> Plan<()> {
    if already == drained {
        return Plan::answer(());
    }
    let change = if drained {
        Change::Set(Doc::Drain {
            pool: pool.to_string(),
            since: now,
        })
    } else {
        Change::Delete(DocKey::Drain(pool.to_string()))
    };
    Plan::commit(vec![change], ())
}

fn line_doc(line: &WaitLine) -> Doc {
    Doc::State {
        key: line_key(&line.pool),
        value: serde_json::to_value(line).expect("a line serializes"),
    }
}

/// The job (claimed by the caller at `attempt`) enters its pool's line and
/// becomes `Waiting`, both or neither.
pub fn enter_line(
    job: Option<&JobRecord>,
    line: WaitLine,
    attempt: u32,
    now: DateTime<Utc>,
) -> Plan<LineOutcome> {
    let Some(job) = job.filter(|j| j.state == JobState::Claimed && j.launch_attempt == attempt)
    else {
        return Plan::answer(LineOutcome::NotOurs);
    };
    let mut line = line;
    let waiter = Waiter {
        job_id: job.job_id,
        queued_at: job.message.queued_since(),
        since: now,
        woken_at: None,
    };
    if !line.enter(waiter) {
        return Plan::answer(LineOutcome::Full);
    }
    let mut next = job.clone();
    next.state = JobState::Waiting;
    next.lease_until = None;
    next.timeline.set_once(Stage::WaitingSince, now);
    next.updated_at = now;
    Plan::commit(
        vec![Change::Put(Doc::Job(next)), Change::Put(line_doc(&line))],
        LineOutcome::Entered,
    )
}

/// Mark those of `job_ids` still in line woken at `now`.
pub fn mark_woken(line: WaitLine, job_ids: &[u64], now: DateTime<Utc>) -> Plan<()> {
    let mut line = line;
    if !line.mark_woken(job_ids, now) {
        return Plan::answer(());
    }
    Plan::commit(vec![Change::Put(line_doc(&line))], ())
}

/// Take `job_id` out of the line (nothing when it is not in it).
pub fn leave_line(line: WaitLine, job_id: u64) -> Plan<()> {
    let mut line = line;
    if !line.leave(job_id) {
        return Plan::answer(());
    }
    Plan::commit(vec![Change::Put(line_doc(&line))], ())
}
